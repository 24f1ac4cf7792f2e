"""The learner's per-step metric names that other code reads back: built and read here only.

The learner writes them (`services.learner.metrics`), the experiment report and the CLI read them, so the
format lives in one place and a budget or baseline is never parsed out of a name anywhere else:
- `reward/budget_{b}/mean`: the mean reward of the summaries at budget b;
- `variance/budget_{b}/{baseline}`: the variance ratio Var(Q − V)/Var(Q) of a baseline at budget b, and
  `variance/{baseline}` its summary over budgets;
- `variance/budget_{b}/traces`: how many traces that ratio was taken over (a count, not a ratio).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

MASKED_TRACES = "traces"  # `variance/budget_{b}/traces`: the size of the ratio's mask, not a baseline
_REWARD = re.compile(r"reward/budget_(\d+)/mean")
_VARIANCE = re.compile(r"variance/budget_(\d+)/([^/]+)")
_VARIANCE_SUMMARY = re.compile(r"variance/([^/]+)")

# (baseline, budget) of a variance ratio; budget None: the summary over budgets.
RatioKey = tuple[str, int | None]


def budget_reward_metric(budget: int) -> str:
    """`reward/budget_{budget}/mean`."""
    return f"reward/budget_{budget}/mean"


def reward_metric_budget(name: str) -> int | None:
    """The budget of a `budget_reward_metric` name; None for any other name."""
    match = _REWARD.fullmatch(name)
    return int(match.group(1)) if match else None


def variance_ratio_metric(budget: int, baseline: str) -> str:
    """`variance/budget_{budget}/{baseline}`."""
    return f"variance/budget_{budget}/{baseline}"


def variance_summary_metric(baseline: str) -> str:
    """`variance/{baseline}`: the baseline's ratio summarised over budgets."""
    return f"variance/{baseline}"


def masked_traces_metric(budget: int) -> str:
    """`variance/budget_{budget}/traces`: the number of traces the ratios at `budget` were taken over."""
    return variance_ratio_metric(budget, MASKED_TRACES)


def variance_ratio_key(name: str) -> RatioKey | None:
    """`(baseline, budget)` of a variance-ratio name (budget None: the summary), else None (the masked
    traces' count included)."""
    if match := _VARIANCE.fullmatch(name):
        baseline, budget = match.group(2), int(match.group(1))
    elif match := _VARIANCE_SUMMARY.fullmatch(name):
        baseline, budget = match.group(1), None
    else:
        return None
    return None if baseline == MASKED_TRACES else (baseline, budget)


def read_variance_ratios(metrics: Mapping[str, float]) -> dict[RatioKey, float]:
    """One step's variance ratios by `(baseline, budget)`."""
    return {key: value for name, value in metrics.items() if (key := variance_ratio_key(name)) is not None}
