"""What an experiment's report takes from the learner's step metrics: the variance ratios per arm (each
seed's mean over its logged steps, then the mean and t-interval over seeds) and the training curves (per
step, the mean over the seeds that logged the metric; None where none did). Metric names are read with
`anytime.metric_names`."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from anytime.experiments.records import RunRecord
from anytime.experiments.report import Estimate, TrainingCurve, VarianceRatio
from anytime.metric_names import (
    RatioKey,
    budget_reward_metric,
    read_variance_ratios,
    reward_metric_budget,
)
from anytime.stats import t_interval

BASELINE_ORDER = ("brpo", "v1", "v2")
TRAINING_SCORE = "anytime/score"


def _baseline_order(name: str) -> tuple[int, str]:
    return (BASELINE_ORDER.index(name) if name in BASELINE_ORDER else len(BASELINE_ORDER), name)


def variance_ratio_rows(arm: str, records: Mapping[int, RunRecord], level: float) -> list[VarianceRatio]:
    """The arm's variance ratios over its runs (seed → record), by baseline, then budget, the summary last."""
    logged: dict[RatioKey, dict[int, list[float]]] = {}
    for seed, record in records.items():
        for _, metrics in record.step_metrics:
            for key, value in read_variance_ratios(metrics).items():
                logged.setdefault(key, {}).setdefault(seed, []).append(value)
    rows = []
    for (baseline, budget), per_seed in logged.items():
        means = [math.fsum(v) / len(v) for _, v in sorted(per_seed.items())]
        interval = t_interval(means, level=level)
        rows.append(
            VarianceRatio(
                arm=arm,
                baseline=baseline,
                budget=budget,
                estimate=Estimate(mean=interval.mean, low=interval.low, high=interval.high, sign_test=None),
                seeds=len(means),
                steps=sum(len(v) for v in per_seed.values()),
            )
        )
    far = 1 << 62  # the summary after every budget
    return sorted(rows, key=lambda r: (_baseline_order(r.baseline), far if r.budget is None else r.budget))


def _mean_or_none(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return math.fsum(present) / len(present) if present else None


def training_curve(arm: str, records: Sequence[RunRecord]) -> TrainingCurve:
    """The arm's training curves: rewards per training budget, the anytime score, the variance ratios."""
    per_run = [dict(r.step_metrics) for r in records]  # step → metrics (a repeated step: the last one)
    steps = sorted({step for run in per_run for step in run})
    names = {name for run in per_run for metrics in run.values() for name in metrics}
    score = TRAINING_SCORE if TRAINING_SCORE in names else None

    def curve(pick: str | None) -> list[float | None]:
        return [
            _mean_or_none(run[step].get(pick) if step in run and pick else None for run in per_run)
            for step in steps
        ]

    def ratio_curve(key: RatioKey) -> list[float | None]:
        return [
            _mean_or_none(
                read_variance_ratios(run[step]).get(key) if step in run else None for run in per_run
            )
            for step in steps
        ]

    keys = {key for run in per_run for metrics in run.values() for key in read_variance_ratios(metrics)}
    baselines = sorted({b for b, _ in keys}, key=_baseline_order)
    rewards = sorted(b for n in names if (b := reward_metric_budget(n)) is not None)
    return TrainingCurve(
        arm=arm,
        steps=steps,
        reward={b: curve(budget_reward_metric(b)) for b in rewards},
        anytime_score=curve(score),
        anytime_score_metric=score,
        variance={
            b: {
                budget: ratio_curve((b, budget))
                for budget in sorted(x for n, x in keys if n == b and x is not None)
            }
            for b in baselines
        },
        variance_summary={b: ratio_curve((b, None)) for b in baselines if (b, None) in keys},
    )
