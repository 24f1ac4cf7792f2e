"""What `reasoning_effort` and `min_accuracy` mean for one model: read off its evaluation curve.

A promoted checkpoint's evaluation (`anytime.db.models.Evaluation`: accuracy at each evaluated budget)
decides its efforts. Effort `e` with tolerance `t_e` is the smallest evaluated budget whose accuracy is
within `t_e` of the best, relative to the best: `accuracy >= best * (1 - t_e)` (10 % of a best of 0.80 is
0.08, so `low` needs 0.72). `high` has tolerance 0: the smallest budget that reaches the best (a tie for the
best goes to the smaller budget). The curve is read as measured, not smoothed: on a curve that dips and
recovers, the first budget over the threshold wins, even if a later one falls below it again.

Simplifications, stated first: a curve whose accuracy is 0 at every budget says nothing about which budget
helps, so it calibrates nothing (the model keeps the default ¼/1/4 × the server's default budget, and says
why), as does a model with no evaluation. `min_accuracy: a` is the smallest budget whose accuracy is at
least `a`. Comparisons allow `ACCURACY_SLACK` for float rounding, so an accuracy exactly at a threshold
(18/25 = 0.72 against 0.8 × 0.9 = 0.7200000000000001) counts as reaching it.

Pure functions of plain data: the service reads the evaluation row from SQL when a model's card or a
request needs it (nothing is stored at promotion, so a re-evaluated or re-promoted checkpoint is read fresh).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

Effort = Literal["low", "medium", "high"]
EFFORTS: tuple[Effort, ...] = ("low", "medium", "high")

# `reasoning_effort` without an evaluation → a multiple of the server's default budget
# (ANYTIME_API_INFERENCE_DEFAULT_BUDGET): `medium` is the default, as in OpenAI's API.
REASONING_EFFORT_FACTORS: dict[Effort, float] = {"low": 0.25, "medium": 1.0, "high": 4.0}

ACCURACY_SLACK = 1e-9  # accuracies are means of 0/1 grades; this absorbs float rounding, nothing more


def effort_budget(effort: Effort, default_budget: int) -> int:
    """`reasoning_effort` → thinking tokens: `REASONING_EFFORT_FACTORS[effort]` × the default, at least 1."""
    return max(1, round(REASONING_EFFORT_FACTORS[effort] * default_budget))


@dataclass(frozen=True)
class EffortTolerances:
    """How far below the best accuracy each effort may stay, as a fraction of the best (0.10: within 10 %)."""

    low: float
    medium: float
    high: float = 0.0

    def __post_init__(self) -> None:
        values = {"low": self.low, "medium": self.medium, "high": self.high}
        bad = {name: v for name, v in values.items() if not (0.0 <= v < 1.0)}
        if bad:
            raise ValueError(f"effort tolerances are fractions of the best accuracy in [0, 1); got {bad}")
        if not self.low >= self.medium >= self.high:
            raise ValueError(
                f"effort tolerances must not grow with the effort (low >= medium >= high), or `low` could "
                f"think longer than `medium`; got low={self.low}, medium={self.medium}, high={self.high}"
            )

    def of(self, effort: Effort) -> float:
        return {"low": self.low, "medium": self.medium, "high": self.high}[effort]


@dataclass(frozen=True)
class AccuracyCurve:
    """One evaluation: `accuracy[i]` at `budgets[i]` thinking tokens (ascending), of `policy_version`;
    `ci_low`/`ci_high` bound its 95 % intervals (None: an evaluation from before sampled evaluation)."""

    policy_version: int
    budgets: tuple[int, ...]
    accuracy: tuple[float, ...]
    ci_low: tuple[float, ...] | None = None
    ci_high: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not self.budgets or len(self.budgets) != len(self.accuracy):
            raise ValueError(
                f"one accuracy per budget, at least one budget: {len(self.budgets)} budgets, "
                f"{len(self.accuracy)} accuracies"
            )
        if any(b < 1 for b in self.budgets) or list(self.budgets) != sorted(set(self.budgets)):
            raise ValueError(f"budgets must be ascending positive integers; got {list(self.budgets)}")
        if not all(math.isfinite(a) and 0.0 <= a <= 1.0 for a in self.accuracy):
            raise ValueError(f"accuracies must lie in [0, 1]; got {list(self.accuracy)}")
        for name, bounds in (("ci_low", self.ci_low), ("ci_high", self.ci_high)):
            if bounds is not None and len(bounds) != len(self.budgets):
                raise ValueError(f"{name}: one bound per budget ({len(self.budgets)}); got {len(bounds)}")

    @property
    def best_accuracy(self) -> float:
        return max(self.accuracy)

    @property
    def best_budget(self) -> int:
        """The smallest budget with the best accuracy."""
        return self.smallest_budget_reaching(self.best_accuracy) or self.budgets[-1]

    def smallest_budget_reaching(self, target: float) -> int | None:
        """The smallest evaluated budget whose accuracy is at least `target` (None: none is)."""
        reached = (
            b for b, a in zip(self.budgets, self.accuracy, strict=True) if a >= target - ACCURACY_SLACK
        )
        return next(reached, None)

    def accuracy_at(self, budget: int) -> float:
        return self.accuracy[self.budgets.index(budget)]

    def interval_at(self, budget: int) -> tuple[float, float] | None:
        if self.ci_low is None or self.ci_high is None:
            return None
        i = self.budgets.index(budget)
        return self.ci_low[i], self.ci_high[i]


@dataclass(frozen=True)
class EffortLevel:
    """What one effort thinks to; `threshold` and `accuracy` are None when the default gave it."""

    budget: int
    threshold: float | None = None  # the accuracy it had to reach: best × (1 - tolerance)
    accuracy: float | None = None  # the curve's accuracy at `budget`


def calibrate_efforts(curve: AccuracyCurve, tolerances: EffortTolerances) -> dict[Effort, EffortLevel] | None:
    """Each effort's smallest budget within its tolerance of the best (see the module doc); None when the
    curve is 0 everywhere (it calibrates nothing)."""
    best = curve.best_accuracy
    if best <= 0.0:
        return None
    levels: dict[Effort, EffortLevel] = {}
    for effort in EFFORTS:
        threshold = best * (1.0 - tolerances.of(effort))
        budget = curve.smallest_budget_reaching(threshold)
        assert budget is not None  # the best's own budget always reaches a threshold at or below the best
        levels[effort] = EffortLevel(budget, threshold, curve.accuracy_at(budget))
    return levels


def default_efforts(default_budget: int) -> dict[Effort, EffortLevel]:
    """¼, 1 and 4 × the server's default budget: what a model without a usable evaluation gets."""
    return {effort: EffortLevel(effort_budget(effort, default_budget)) for effort in EFFORTS}


class AccuracyUnreachable(ValueError):
    """`min_accuracy` asks for more than the model's curve reaches, or the model has no curve (a 422)."""


@dataclass(frozen=True)
class EffortMapping:
    """One model's efforts: calibrated from `curve` (`source="evaluation"`) or the default, with `note`
    saying which and why."""

    source: Literal["evaluation", "default"]
    levels: Mapping[Effort, EffortLevel]
    note: str
    curve: AccuracyCurve | None = None
    tolerances: EffortTolerances | None = None

    def budget(self, effort: Effort) -> int:
        return self.levels[effort].budget

    def budget_reaching(self, min_accuracy: float) -> int:
        """The smallest evaluated budget whose accuracy is at least `min_accuracy`; `AccuracyUnreachable`
        (saying the best the curve reaches) when none is, or when there is no curve."""
        if self.curve is None:
            raise AccuracyUnreachable(
                f"min_accuracy needs the model's evaluation curve, and this model has none ({self.note}); "
                "give `budget` or `reasoning_effort` instead"
            )
        budget = self.curve.smallest_budget_reaching(min_accuracy)
        if budget is None:
            curve = self.curve
            raise AccuracyUnreachable(
                f"no evaluated budget reaches accuracy {min_accuracy}: policy version "
                f"{curve.policy_version}'s evaluation reaches at best {curve.best_accuracy} (at budget "
                f"{curve.best_budget}); ask for at most that, or give `budget`"
            )
        return budget


def effort_mapping(
    curve: AccuracyCurve | None, tolerances: EffortTolerances, default_budget: int, no_curve: str
) -> EffortMapping:
    """The model's efforts from `curve`, or the default with `no_curve` (why there is none) as the note."""
    default = default_efforts(default_budget)
    factors = "¼, 1 and 4 × the server's default budget (ANYTIME_API_INFERENCE_DEFAULT_BUDGET)"
    if curve is None:
        return EffortMapping("default", default, f"{no_curve}: efforts are {factors}")
    levels = calibrate_efforts(curve, tolerances)
    if levels is None:
        note = (
            f"policy version {curve.policy_version}'s evaluation has accuracy 0 at every budget, so it says "
            f"nothing about which budget helps: efforts are {factors}"
        )
        return EffortMapping("default", default, note, curve, tolerances)
    note = (
        f"from policy version {curve.policy_version}'s evaluation: each effort is the smallest evaluated "
        f"budget with accuracy >= best × (1 - tolerance), best = {curve.best_accuracy} "
        f"(tolerances low {tolerances.low}, medium {tolerances.medium}, high {tolerances.high})"
    )
    return EffortMapping("evaluation", levels, note, curve, tolerances)


def curve_of(
    policy_version: int,
    budgets: Sequence[int],
    accuracy: Sequence[float],
    ci_low: Sequence[float] | None = None,
    ci_high: Sequence[float] | None = None,
) -> AccuracyCurve:
    """An `AccuracyCurve` from an evaluation row's columns (JSON lists)."""
    return AccuracyCurve(
        policy_version,
        tuple(int(b) for b in budgets),
        tuple(float(a) for a in accuracy),
        None if ci_low is None else tuple(float(x) for x in ci_low),
        None if ci_high is None else tuple(float(x) for x in ci_high),
    )
