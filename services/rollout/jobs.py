"""A rollout job as plain code: validated arguments, the process's engine at the right policy version,
trajectories into Redis. The Celery task (`services.rollout.worker`) is a thin binding of this; the jobs'
contracts (names, requests, results) are the core's (`anytime.contracts.rollout`, `.evaluation`).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

from anytime.contracts.evaluation import EvalJob, EvalResult
from anytime.contracts.rollout import RolloutJob, RolloutResult
from anytime.logging import get_logger
from anytime.trajectory_store import TrajectoryStore
from services.engines.factory import make_engine
from services.engines.seam import Engine, StalePolicyError
from services.rollout.anytime_eval import GradeMany, evaluate_anytime
from services.rollout.anytime_rollout import rollout
from services.rollout.settings import RolloutSettings

logger = get_logger(__name__)


class EngineHolder:
    """The process's engines, one per run, created on first use and moved forward through policy versions.

    At most `settings.max_engines` are kept; the least recently used is closed to make room (a run that
    comes back later starts its engine again at the version it asks for).
    """

    def __init__(self, settings: RolloutSettings) -> None:
        self.settings = settings
        self.engines: OrderedDict[str, Engine] = OrderedDict()

    def at_version(
        self, run_id: str, model_dir: Path, policy_version: int, accept_newer: bool = False
    ) -> Engine:
        """The run's engine serving `policy_version`, or with `accept_newer` any newer version it holds
        already (a pipelined run's shards of two steps may ask for two versions; turning back would cost a
        weight reload and serve an older policy than needed)."""
        engine = self.engines.get(run_id)
        if engine is None:
            while len(self.engines) >= self.settings.max_engines:
                _, oldest = self.engines.popitem(last=False)
                oldest.close()
            engine = make_engine(self.settings.engine, model_dir, self.settings, policy_version)
            self.engines[run_id] = engine
        elif policy_version > engine.policy_version:
            engine.load_weights(model_dir, policy_version)
        elif policy_version < engine.policy_version and not accept_newer:
            raise StalePolicyError(
                f"run {run_id} asked for policy version {policy_version}, but version "
                f"{engine.policy_version} is loaded; an older policy is refused rather than served under "
                "the wrong version"
            )
        self.engines.move_to_end(run_id)
        return engine


def run_rollout_job(job: RolloutJob, holder: EngineHolder, store: TrajectoryStore) -> dict[str, Any]:
    """The task's work as a plain function: job → trajectories in Redis → their ids."""
    engine = holder.at_version(job.run_id, job.model_dir, job.policy_version, job.accept_newer)
    log = logger.bind(run_id=job.run_id, step=job.step, policy_version=engine.policy_version)
    log.info(
        "rollout started", problems=len(job.problems), group=job.config.group_size, asked=job.policy_version
    )
    trajectories = rollout(engine, job.problems, job.config, run_id=job.run_id, step=job.step, seed=job.seed)
    stored = store.put_many(trajectories)
    log.info("rollout stored", trajectories=len(trajectories), new=stored)
    result = RolloutResult(
        run_id=job.run_id,
        step=job.step,
        policy_version=engine.policy_version,
        trajectory_ids=[t.id for t in trajectories],
        stored=stored,
        think_end_id=engine.facts.think_end_id,
        eos_id=engine.facts.eos_id,
    )
    return result.model_dump(mode="json")


def run_eval_job(job: EvalJob, holder: EngineHolder, grade: GradeMany) -> dict[str, Any]:
    engine = holder.at_version(job.run_id, job.model_dir, job.policy_version)
    evaluation = evaluate_anytime(
        engine,
        job.problems,
        job.budgets,
        job.summary_max_tokens,
        grade,
        sampling=job.sampling,
        sample_problems=job.sample_problems,
        step=job.step,
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
        samples=evaluation.samples,
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
