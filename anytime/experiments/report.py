"""An experiment's report as data: per arm its estimates with 95 % intervals, the paired differences
against the reference arm, the training logs' variance ratios and curves, and the runs left out. What the
API serves as JSON; `estimates` computes it, `markdown` and `figure` render it."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel


class Method(StrEnum):
    """How an estimate's interval was made (`anytime.stats` gives the formulas).

    CROSSED: every seed on the same problems; the t-interval over the seed means widened by the variance
    the shared problems add (Satterthwaite df). T_OVER_SEEDS: the t-interval over one value per seed (the
    seeds' stored accuracies where rows carry no per-problem values, or the seed means where the seeds were
    evaluated on different problems). OVER_PROBLEMS: one seed only, the t-interval over its problems: it
    covers drawing other held-out problems and evaluation samples, not training another seed."""

    CROSSED = "crossed t-interval over seeds and shared problems"
    T_OVER_SEEDS = "t-interval over seed means"
    OVER_PROBLEMS = "one seed: t-interval over its problems (not over training seeds)"


class SignTest(BaseModel):
    """Seeds where the arm is above / below the reference, ties dropped; exact two-sided p."""

    above: int
    below: int
    ties: int
    p_value: float


class Estimate(BaseModel):
    """A mean over seeds with its interval (None with one seed)."""

    mean: float
    low: float | None
    high: float | None
    sign_test: SignTest | None = None


class BudgetEstimates(BaseModel):
    """Accuracy at each of the report's budgets and the anytime score, over `seeds`."""

    method: Method
    seeds: list[int]
    problems: int | None  # per seed; None without per-problem values or when seeds differ
    accuracy: list[Estimate]
    anytime_score: Estimate


class ArmResult(BaseModel):
    arm: str
    seeds: list[int]
    run_ids: list[str]
    start: BudgetEstimates | None  # None: no run of the arm entered the statistics
    end: BudgetEstimates | None
    gain: BudgetEstimates | None  # end − start


class PairedComparison(BaseModel):
    """`arm` minus `reference`, paired by seed and problem; every estimate carries its sign test."""

    arm: str
    reference: str
    seeds: list[int]
    end: BudgetEstimates
    gain: BudgetEstimates


class VarianceRatio(BaseModel):
    """Var(Q − V)/Var(Q) of `baseline` at `budget` (None: the summary over budgets)."""

    arm: str
    baseline: str
    budget: int | None
    estimate: Estimate
    seeds: int
    steps: int  # logged values, all seeds together


class TrainingCurve(BaseModel):
    """Per step (`steps`), the mean over seeds of the learner's metrics; None where no seed logged one."""

    arm: str
    steps: list[int]
    reward: dict[int, list[float | None]]  # training budget → `reward/budget_{b}/mean`
    anytime_score: list[float | None]
    anytime_score_metric: str | None
    variance: dict[str, dict[int, list[float | None]]]  # baseline → budget → ratio
    variance_summary: dict[str, list[float | None]]


class ExcludedRun(BaseModel):
    run_id: str
    arm: str
    seed: int
    status: str
    reason: str


class ArmSettings(BaseModel):
    """What an arm ran with: the resolved config of its first run (the per-seed fields `name`, `seed` and
    `eval_seed` left out) and the most contaminated of its runs' evaluation sets."""

    arm: str
    resolved: dict[str, Any]
    eval_problems: int | None  # None: no run measured it
    in_training: int | None


class ExperimentReport(BaseModel):
    arms: list[str]
    reference: str
    budgets: list[int]
    seeds: list[int]
    problems_per_evaluation: list[
        int
    ]  # distinct counts over the included evaluations with per-problem values
    level: float
    results: list[ArmResult]
    comparisons: list[PairedComparison]
    variance_ratios: list[VarianceRatio]
    training: list[TrainingCurve]
    excluded_runs: list[ExcludedRun]
    settings: list[ArmSettings] = []
