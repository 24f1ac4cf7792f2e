"""An experiment's numbers: its arms × seeds runs turned into estimates with 95 % intervals, paired
differences against a reference arm, and the training logs' variance ratios and curves
(`build_report`). Pure and torch-free: the caller reads the rows (`report_inputs`); numpy (for the
intervals) is imported on first use.

Simplifications and definitions first (the numerics are in `anytime.stats`):
- only runs with status `succeeded`, a start evaluation (step −1) and a later one enter any statistic;
  the others are listed in `excluded_runs` with the reason. "End" is the evaluation of the highest policy
  version;
- a quantity is one value per (seed, problem): a problem's accuracy at each budget (the mean over its k
  samples) and its anytime score (their mean over the uniform grid); the estimate is the mean over seeds of
  the seed's mean over problems. Every seed is evaluated on the same problems (a crossed design), so the
  interval is the crossed t-interval (`crossed_t_intervals`): the t-interval over the seed means, widened
  by the variance the shared problems add, Student-t with Satterthwaite df (n − 1 when the problems add
  none). From one seed (a demo), the t-interval over its problems (`Method.OVER_PROBLEMS`): it says
  how the numbers would move on other held-out problems, not with another training seed. Where the
  seeds' problem ids differ it is the t-interval over the seed means (each seed mean then carries its
  own problems' variance); where any evaluation involved lacks per-problem values (rows from before
  sampled evaluation), the t-interval over the seeds' stored accuracies (`method` says which);
- gain = end − start, per problem within a run; paired differences against the reference are arm minus
  reference within one seed and one problem id (the experiment evaluates both arms of a seed on the same
  problems; different ids are an error, not something to average over): `end` = end − end,
  `gain` = gain − gain. Each difference also carries an exact two-sided sign test over seeds;
- variance ratios and training curves: see `anytime.experiments.training_logs`.
No resampling: the same rows always give the same report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from anytime.experiments.records import START_STEP, SUCCEEDED, EvaluationPoint, RunRecord
from anytime.experiments.report import (
    ArmResult,
    ArmSettings,
    BudgetEstimates,
    Estimate,
    ExcludedRun,
    ExperimentReport,
    Method,
    PairedComparison,
    SignTest,
)
from anytime.experiments.training_logs import training_curve, variance_ratio_rows
from anytime.stats import DEFAULT_LEVEL, SeedInterval, crossed_t_intervals, sign_test, t_interval


@dataclass(frozen=True)
class _Values:
    """One seed's values of a quantity: `rows` [P][S + 1] per problem (ids sorted; last column the anytime
    score) or None, and `summary` [S + 1] from the stored accuracies."""

    label: str
    ids: tuple[str, ...] | None
    rows: list[list[float]] | None
    summary: list[float]

    @staticmethod
    def of(run_id: str, point: EvaluationPoint) -> _Values:
        if len(point.accuracy) != len(point.budgets):
            raise ValueError(
                f"run {run_id} v{point.policy_version}: one accuracy per budget needed; "
                f"{len(point.budgets)} budgets, {len(point.accuracy)} accuracies"
            )
        summary = [*point.accuracy, point.anytime_score]
        if point.per_problem is None:
            return _Values(f"{run_id} v{point.policy_version}", None, None, summary)
        ids = tuple(sorted(point.per_problem))
        wrong = {p: len(point.per_problem[p]) for p in ids if len(point.per_problem[p]) != len(point.budgets)}
        if wrong or not ids:
            raise ValueError(
                f"run {run_id} v{point.policy_version}: per_problem needs one value per budget "
                f"({len(point.budgets)}) for at least one problem; got lengths {wrong or 'no problems'}"
            )
        rows = [[*point.per_problem[p], math.fsum(point.per_problem[p]) / len(point.budgets)] for p in ids]
        return _Values(f"{run_id} v{point.policy_version}", ids, rows, summary)

    def minus(self, other: _Values) -> _Values:
        label = f"({self.label}) − ({other.label})"
        summary = [a - b for a, b in zip(self.summary, other.summary, strict=True)]
        if self.rows is None or other.rows is None:
            return _Values(label, None, None, summary)
        if self.ids != other.ids:
            only = sorted(set(self.ids or ()) ^ set(other.ids or ()))
            raise ValueError(
                f"{label}: a paired difference needs the same problems; {len(only)} ids are in only one "
                f"(e.g. {only[:3]}). Evaluate every run of a seed on the same held-out problems."
            )
        rows = [
            [a - b for a, b in zip(r, s, strict=True)] for r, s in zip(self.rows, other.rows, strict=True)
        ]
        return _Values(label, self.ids, rows, summary)

    def seed_value(self) -> list[float]:
        if self.rows is None:
            return self.summary
        return [math.fsum(column) / len(self.rows) for column in zip(*self.rows, strict=True)]


@dataclass(frozen=True)
class _Run:
    record: RunRecord
    start: _Values
    end: _Values


def _estimate(interval: SeedInterval, signs: Sequence[float] | None) -> Estimate:
    test = None
    if signs is not None:
        count = sign_test(signs)
        test = SignTest(above=count.above, below=count.below, ties=count.ties, p_value=count.p_value)
    return Estimate(mean=interval.mean, low=interval.low, high=interval.high, sign_test=test)


def _estimates(by_seed: Mapping[int, _Values], level: float, *, paired: bool) -> BudgetEstimates:
    seeds = sorted(by_seed)
    values = [by_seed[s] for s in seeds]
    rows = [v.rows for v in values]
    per_seed = [v.seed_value() for v in values]
    columns = len(per_seed[0])
    counts = {len(r) for r in rows if r is not None}
    problems = counts.pop() if len(counts) == 1 and all(r is not None for r in rows) else None
    if len(rows) == 1 and rows[0] is not None and len(rows[0]) > 1:
        intervals = [t_interval(list(column), level=level) for column in zip(*rows[0], strict=True)]
        method = Method.OVER_PROBLEMS
    elif all(r is not None for r in rows) and len({v.ids for v in values}) == 1:
        intervals = crossed_t_intervals([r for r in rows if r is not None], level=level)
        method = Method.CROSSED
    else:
        intervals = [t_interval([p[c] for p in per_seed], level=level) for c in range(columns)]
        method = Method.T_OVER_SEEDS
    out = [_estimate(iv, [p[c] for p in per_seed] if paired else None) for c, iv in enumerate(intervals)]
    return BudgetEstimates(
        method=method, seeds=seeds, problems=problems, accuracy=out[:-1], anytime_score=out[-1]
    )


def build_report(
    arms: Sequence[str],
    reference: str,
    runs: Sequence[RunRecord],
    *,
    level: float = DEFAULT_LEVEL,
) -> ExperimentReport:
    """The report of an experiment's `runs` (see the module docstring for every definition)."""
    _validate(arms, reference, runs)
    included, excluded = _split(runs)
    budgets = _budgets(included, runs)
    by_arm: dict[str, dict[int, _Run]] = {arm: {} for arm in arms}
    for run in included:
        by_arm[run.record.arm][run.record.seed] = run
    results = [_arm_result(arm, by_arm[arm], level) for arm in arms]
    comparisons = [
        _comparison(arm, reference, by_arm[arm], by_arm[reference], level)
        for arm in arms
        if arm != reference and set(by_arm[arm]) & set(by_arm[reference])
    ]
    counts = {len(v.rows) for r in included for v in (r.start, r.end) if v.rows is not None}
    records = {arm: {s: r.record for s, r in by_arm[arm].items()} for arm in arms}
    return ExperimentReport(
        arms=list(arms),
        reference=reference,
        budgets=budgets,
        seeds=sorted({r.record.seed for r in included}),
        problems_per_evaluation=sorted(counts),
        level=level,
        results=results,
        comparisons=comparisons,
        variance_ratios=[row for arm in arms for row in variance_ratio_rows(arm, records[arm], level)],
        training=[training_curve(arm, list(records[arm].values())) for arm in arms],
        excluded_runs=excluded,
        settings=[arm_settings(arm, [r for r in runs if r.arm == arm]) for arm in arms],
    )


def _validate(arms: Sequence[str], reference: str, runs: Sequence[RunRecord]) -> None:
    if len(set(arms)) != len(arms) or not arms:
        raise ValueError(f"arms must be distinct names, at least one; got {list(arms)}")
    if reference not in arms:
        raise ValueError(f"the reference arm {reference!r} is not one of the arms {list(arms)}")
    unknown = sorted({r.arm for r in runs} - set(arms))
    if unknown:
        raise ValueError(f"runs of arms {unknown} that the experiment does not name (arms: {list(arms)})")
    pairs = [(r.arm, r.seed) for r in runs]
    repeated = sorted({p for p in pairs if pairs.count(p) > 1})
    if repeated:
        raise ValueError(f"one run per arm and seed; (arm, seed) {repeated} have several")


def _split(runs: Sequence[RunRecord]) -> tuple[list[_Run], list[ExcludedRun]]:
    included, excluded = [], []
    for record in sorted(runs, key=lambda r: (r.arm, r.seed)):
        start = next((e for e in record.evaluations if e.step == START_STEP), None)
        end = max(record.evaluations, key=lambda e: e.policy_version, default=None)
        if record.status != SUCCEEDED:
            reason = f"status {record.status}"
        elif start is None:
            reason = f"no start evaluation (step {START_STEP})"
        elif end is None or end.step == START_STEP:
            reason = "no evaluation after training"
        else:
            included.append(_Run(record, _Values.of(record.run_id, start), _Values.of(record.run_id, end)))
            continue
        excluded.append(
            ExcludedRun(
                run_id=record.run_id, arm=record.arm, seed=record.seed, status=record.status, reason=reason
            )
        )
    return included, excluded


def _budgets(included: Sequence[_Run], runs: Sequence[RunRecord]) -> list[int]:
    grids = {tuple(e.budgets) for r in included for e in r.record.evaluations}
    if len(grids) > 1:
        raise ValueError(
            f"the experiment's runs were evaluated on different budget grids {sorted(grids)}; a report needs "
            "one grid (the experiment's evaluation settings apply to every run)"
        )
    if grids:
        return list(grids.pop())
    return next((list(e.budgets) for r in runs for e in r.evaluations), [])


def _arm_result(arm: str, runs: Mapping[int, _Run], level: float) -> ArmResult:
    seeds = sorted(runs)
    ids = [runs[s].record.run_id for s in seeds]
    if not runs:
        return ArmResult(arm=arm, seeds=[], run_ids=[], start=None, end=None, gain=None)
    return ArmResult(
        arm=arm,
        seeds=seeds,
        run_ids=ids,
        start=_estimates({s: r.start for s, r in runs.items()}, level, paired=False),
        end=_estimates({s: r.end for s, r in runs.items()}, level, paired=False),
        gain=_estimates({s: r.end.minus(r.start) for s, r in runs.items()}, level, paired=False),
    )


def _comparison(
    arm: str, reference: str, runs: Mapping[int, _Run], ref_runs: Mapping[int, _Run], level: float
) -> PairedComparison:
    seeds = sorted(set(runs) & set(ref_runs))
    end = {s: runs[s].end.minus(ref_runs[s].end) for s in seeds}
    gain = {
        s: runs[s].end.minus(runs[s].start).minus(ref_runs[s].end.minus(ref_runs[s].start)) for s in seeds
    }
    return PairedComparison(
        arm=arm,
        reference=reference,
        seeds=seeds,
        end=_estimates(end, level, paired=True),
        gain=_estimates(gain, level, paired=True),
    )


_PER_SEED = ("name", "seed", "eval_seed")


def arm_settings(arm: str, runs: Sequence[RunRecord]) -> ArmSettings:
    """The arm's resolved config (its first run's, by seed) and its worst contamination."""
    first = min(runs, key=lambda r: r.seed, default=None)
    resolved = {} if first is None else {k: v for k, v in first.resolved.items() if k not in _PER_SEED}
    measured = [r.contamination for r in runs if r.contamination is not None]
    worst = max(measured, key=lambda c: c["in_training"], default=None)
    return ArmSettings(
        arm=arm,
        resolved=resolved,
        eval_problems=None if worst is None else worst["eval_problems"],
        in_training=None if worst is None else worst["in_training"],
    )
