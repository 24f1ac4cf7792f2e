"""A rollout job as plain code: validated arguments, the process's engine at the right policy version,
trajectories into Redis. The Celery task (`services.rollout.worker`) is a thin binding of this.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from anytime.celery_app import task_name
from anytime.logging import get_logger
from anytime.problems import Problem
from anytime.queues import Queue
from anytime.trajectory_store import TrajectoryStore
from services.rollout.anytime_eval import EvalSampling, GradeMany, evaluate_anytime
from services.rollout.anytime_rollout import RolloutConfig, rollout
from services.rollout.engine import Engine, StalePolicyError
from services.rollout.settings import RolloutSettings, make_engine

logger = get_logger(__name__)

GENERATE_TASK = task_name(Queue.ROLLOUT, "generate")


class EngineHolder:
    """The process's engines, one per run, created on first use and moved forward through policy versions.

    At most `settings.max_engines` are kept; the least recently used is closed to make room (a run that
    comes back later starts its engine again at the version it asks for).
    """

    def __init__(self, settings: RolloutSettings) -> None:
        self.settings = settings
        self.engines: OrderedDict[str, Engine] = OrderedDict()

    def at_version(self, run_id: str, model_dir: Path, policy_version: int) -> Engine:
        engine = self.engines.get(run_id)
        if engine is None:
            while len(self.engines) >= self.settings.max_engines:
                _, oldest = self.engines.popitem(last=False)
                oldest.close()
            engine = make_engine(self.settings.engine, model_dir, self.settings, policy_version)
            self.engines[run_id] = engine
        elif policy_version > engine.policy_version:
            engine.load_weights(model_dir, policy_version)
        elif policy_version < engine.policy_version:
            raise StalePolicyError(
                f"run {run_id} asked for policy version {policy_version}, but version "
                f"{engine.policy_version} is loaded; an older policy is refused rather than served under "
                "the wrong version"
            )
        self.engines.move_to_end(run_id)
        return engine


class RolloutJob(BaseModel):
    """The task's keyword arguments: one step's rollout of a run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str = Field(min_length=1)
    step: int = Field(ge=0)
    policy_version: int = Field(ge=0, description="The policy to roll out; its weights are in model_dir.")
    model_dir: Path
    problems: list[Problem] = Field(min_length=1)
    config: RolloutConfig
    seed: int = 0


def run_rollout_job(job: RolloutJob, holder: EngineHolder, store: TrajectoryStore) -> dict[str, Any]:
    """The task's work as a plain function: job → trajectories in Redis → their ids."""
    engine = holder.at_version(job.run_id, job.model_dir, job.policy_version)
    log = logger.bind(run_id=job.run_id, step=job.step, policy_version=engine.policy_version)
    log.info("rollout started", problems=len(job.problems), group=job.config.group_size)
    trajectories = rollout(engine, job.problems, job.config, run_id=job.run_id, step=job.step, seed=job.seed)
    stored = store.put_many(trajectories)
    log.info("rollout stored", trajectories=len(trajectories), new=stored)
    return {
        "run_id": job.run_id,
        "step": job.step,
        "policy_version": engine.policy_version,
        "trajectory_ids": [t.id for t in trajectories],
        "stored": stored,
        # What the verifier needs and only the tokenizer knows (the verifier stays tokenizer-free).
        "think_end_id": engine.facts.think_end_id,
        "eos_id": engine.facts.eos_id,
    }


EVALUATE_TASK = task_name(Queue.EVAL, "anytime")


class EvalJob(BaseModel):
    """Anytime accuracy of one policy version on an evaluation set, at every budget of a grid."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str = Field(min_length=1)
    policy_version: int = Field(ge=0)
    model_dir: Path
    problems: list[Problem] = Field(min_length=1)
    budgets: list[int] = Field(min_length=1)
    summary_max_tokens: int = Field(default=32, ge=1)
    sampling: EvalSampling = Field(
        default=EvalSampling(), description="k, temperature, seed; unset (an older driver's job): greedy."
    )


class EvalResult(BaseModel):
    """What the evaluation task returns: accuracy per budget (mean over problems × samples), the anytime
    score (their mean over the uniform grid), and 95 % bootstrap intervals over problems for both."""

    run_id: str
    policy_version: int
    budgets: list[int]
    accuracy: list[float]
    accuracy_ci_low: list[float]
    accuracy_ci_high: list[float]
    anytime_score: float
    anytime_score_ci_low: float
    anytime_score_ci_high: float
    num_problems: int = Field(description="n: problems evaluated (what the bootstrap resamples).")
    num_samples: int = Field(description="k: traces per problem.")
    temperature: float
    seed: int
    per_problem: dict[str, list[float]] = Field(
        description="Problem id → accuracy at each budget (the mean over its k samples), for paired tests."
    )
    statuses: dict[str, int]
    mean_thinking_length: float
    closed_share: float

    def metrics(self) -> dict[str, float]:
        """MLflow metrics (slash-namespaced, one per budget)."""
        metrics: dict[str, float] = {}
        for b, a, low, high in zip(
            self.budgets, self.accuracy, self.accuracy_ci_low, self.accuracy_ci_high, strict=True
        ):
            metrics[f"eval/accuracy/budget_{b}"] = a
            metrics[f"eval/accuracy_ci_low/budget_{b}"] = low
            metrics[f"eval/accuracy_ci_high/budget_{b}"] = high
        metrics["eval/anytime_score"] = self.anytime_score
        metrics["eval/anytime_score_ci_low"] = self.anytime_score_ci_low
        metrics["eval/anytime_score_ci_high"] = self.anytime_score_ci_high
        metrics["eval/num_problems"] = self.num_problems
        metrics["eval/num_samples"] = self.num_samples
        metrics["eval/thinking_length_mean"] = self.mean_thinking_length
        return metrics


def run_eval_job(job: EvalJob, holder: EngineHolder, grade: GradeMany) -> dict[str, Any]:
    engine = holder.at_version(job.run_id, job.model_dir, job.policy_version)
    evaluation = evaluate_anytime(
        engine, job.problems, job.budgets, job.summary_max_tokens, grade, sampling=job.sampling
    )
    per_budget, score = evaluation.intervals()
    result = EvalResult(
        run_id=job.run_id,
        policy_version=job.policy_version,
        budgets=job.budgets,
        accuracy=evaluation.accuracy,
        accuracy_ci_low=[i.low for i in per_budget],
        accuracy_ci_high=[i.high for i in per_budget],
        anytime_score=evaluation.anytime_score,
        anytime_score_ci_low=score.low,
        anytime_score_ci_high=score.high,
        num_problems=evaluation.total,
        num_samples=evaluation.num_samples,
        temperature=job.sampling.temperature,
        seed=job.sampling.seed,
        per_problem=dict(zip(evaluation.problem_ids, evaluation.per_problem, strict=True)),
        statuses=dict(evaluation.statuses),
        mean_thinking_length=evaluation.mean_thinking_length,
        closed_share=evaluation.closed_share,
    )
    logger.info(
        "evaluation done",
        run_id=job.run_id,
        policy_version=job.policy_version,
        samples=evaluation.num_samples,
        temperature=job.sampling.temperature,
        accuracy=[round(a, 4) for a in result.accuracy],
        anytime_score=round(result.anytime_score, 4),
        anytime_score_ci=[round(score.low, 4), round(score.high, 4)],
    )
    return result.model_dump(mode="json")
