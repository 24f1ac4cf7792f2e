"""The `eval` queue's task: anytime accuracy of one policy version on an evaluation set, at every budget
of a grid (`services.rollout.worker`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from anytime.problems import Problem
from anytime.queues import Queue, task_name
from anytime.samples import RolloutSample

EVALUATE_TASK = task_name(Queue.EVAL, "anytime")


# The evaluation's MLflow metrics sort before the training log's (MLflow sorts by character code).
EVAL_METRIC_PREFIX = "Eval/"


class EvalSampling(BaseModel):
    """How an evaluation samples. The default here is greedy, one trace per problem (the most likely
    output; what `anytime eval` prints); runs default to the authors' protocol (`RunConfig.eval_*`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_samples: int = Field(
        default=1, ge=1, description="k: thinking traces per problem, one summary per (trace, budget)."
    )
    temperature: float = Field(default=0.0, ge=0.0, description="Thinking and summaries; 0 is greedy.")
    seed: int = Field(
        default=0, ge=0, description="The rollout's seed: same seed, same policy, same numbers."
    )

    @model_validator(mode="after")
    def _greedy_is_one_sample(self) -> EvalSampling:
        if self.greedy and self.num_samples != 1:
            raise ValueError(
                f"temperature 0 is greedy: its {self.num_samples} samples would be one trace repeated; "
                "set num_samples to 1 or a temperature above 0 (the authors use 0.6)"
            )
        return self

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


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
    sample_problems: list[str] = Field(
        default_factory=list, description="Problems whose traces the result shows in full (`samples`)."
    )
    step: int = Field(default=-1, ge=-1, description="The run's last step before this evaluation (-1: none).")


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
    samples: list[RolloutSample] = Field(
        default_factory=list, description="The traces of the job's `sample_problems`, readable."
    )

    def metrics(self) -> dict[str, float]:
        """MLflow metrics (slash-namespaced, one per budget), under `EVAL_METRIC_PREFIX`: MLflow's UI sorts
        metric names by character code, so the capital puts the held-out evaluation before every training
        metric (all lowercase) in its tables and charts."""
        metrics: dict[str, float] = {}
        for b, a, low, high in zip(
            self.budgets, self.accuracy, self.accuracy_ci_low, self.accuracy_ci_high, strict=True
        ):
            metrics[f"{EVAL_METRIC_PREFIX}accuracy/budget_{b}"] = a
            metrics[f"{EVAL_METRIC_PREFIX}accuracy_ci_low/budget_{b}"] = low
            metrics[f"{EVAL_METRIC_PREFIX}accuracy_ci_high/budget_{b}"] = high
        metrics[f"{EVAL_METRIC_PREFIX}anytime_score"] = self.anytime_score
        metrics[f"{EVAL_METRIC_PREFIX}anytime_score_ci_low"] = self.anytime_score_ci_low
        metrics[f"{EVAL_METRIC_PREFIX}anytime_score_ci_high"] = self.anytime_score_ci_high
        metrics[f"{EVAL_METRIC_PREFIX}num_problems"] = self.num_problems
        metrics[f"{EVAL_METRIC_PREFIX}num_samples"] = self.num_samples
        metrics[f"{EVAL_METRIC_PREFIX}thinking_length_mean"] = self.mean_thinking_length
        return metrics
