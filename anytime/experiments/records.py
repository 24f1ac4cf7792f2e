"""What an experiment's report reads of each of its runs: the evaluations and the learner's step metrics.
Plain data, filled from SQL by `anytime.experiments.report_inputs` (or by hand in tests)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# RunStatus.SUCCEEDED's value (anytime.db.models, not imported: it pulls in SQLAlchemy; a test ties them).
SUCCEEDED = "succeeded"
START_STEP = -1  # the step of the evaluation before training


@dataclass(frozen=True)
class EvaluationPoint:
    """One evaluation of one run. `step` −1: before training; `per_problem`: problem id → per-budget mean
    correctness over its k samples (None for rows from before sampled evaluation)."""

    policy_version: int
    step: int
    budgets: list[int]
    accuracy: list[float]
    anytime_score: float
    per_problem: dict[str, list[float]] | None


@dataclass(frozen=True)
class RunRecord:
    """One run of an arm: its evaluations by policy version and its learner metrics in step order."""

    arm: str
    seed: int
    run_id: str
    status: str
    evaluations: list[EvaluationPoint]
    step_metrics: list[tuple[int, dict[str, float]]]
    # The run's config as it ran (`anytime.run_plan.resolved_params`), and its evaluation problems that are
    # training problems too (`anytime.problems.Contamination` as JSON; None: not measured).
    resolved: dict[str, Any] = field(default_factory=dict)
    contamination: dict[str, int] | None = None
