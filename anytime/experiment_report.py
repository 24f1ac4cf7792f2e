"""An experiment's report: its arms × seeds runs turned into estimates with 95 % intervals, paired
differences against a reference arm, the training logs' variance ratios and curves (a pydantic model), and
that model as Markdown and as a PNG. Pure and torch-free: the caller reads the rows; numpy (for the
bootstrap) and matplotlib (for the PNG) are imported on first use, both from the `api` extra.

Simplifications and definitions first (the numerics are in `anytime.stats_bootstrap`):
- only runs with status `succeeded`, a start evaluation (step −1) and a later one enter any statistic;
  the others are listed in `excluded_runs` with the reason. "End" is the evaluation of the highest policy
  version;
- a quantity is one value per (seed, problem): a problem's accuracy at each budget (the mean over its k
  samples) and its anytime score (their mean over the uniform grid); the estimate is the mean over seeds of
  the seed's mean over problems, its interval a percentile bootstrap that resamples seeds, then problems
  within each drawn seed (`bootstrap_seeds_problems`). Where any evaluation involved lacks per-problem
  values (rows from before sampled evaluation) it falls back to a t-interval over the seeds' stored
  accuracies (`method` says which);
- gain = end − start, per problem within a run; paired differences against the reference are arm minus
  reference within one seed and one problem id (the experiment evaluates both arms of a seed on the same
  problems; different ids are an error, not something to average over): `end` = end − end,
  `gain` = gain − gain. Each difference also carries an exact two-sided sign test over seeds;
- variance ratios (`variance/budget_{b}/{baseline}` and the summary `variance/summary/{baseline}` or
  `variance/{baseline}`): each seed's mean over its logged steps, then mean and t-interval over seeds;
- training curves: per step, the mean over the seeds that logged the metric (None where none did).
The bootstrap is seeded (`seed`): the same rows always give the same report.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from pydantic import BaseModel

from anytime.stats_bootstrap import (
    DEFAULT_LEVEL,
    SeedInterval,
    bootstrap_seeds_problems,
    sign_test,
    t_interval,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes

# RunStatus.SUCCEEDED's value (anytime.db.models, not imported: it pulls in SQLAlchemy; a test ties them).
SUCCEEDED = "succeeded"
START_STEP = -1
_REWARD = re.compile(r"reward/budget_(\d+)/mean")
_VARIANCE = re.compile(r"variance/budget_(\d+)/([^/]+)")
_VARIANCE_SUMMARY = re.compile(r"variance/(?:summary/)?([^/]+)")
_NOT_RATIOS = {"traces"}  # `variance/budget_{b}/traces` counts the masked traces
_BASELINE_ORDER = ("brpo", "v1", "v2", "run_baseline", "v2_baseline")
_TRAINING_SCORES = ("anytime/score_uniform", "anytime/score")  # the first one a run logged


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


class Method(StrEnum):
    BOOTSTRAP = "bootstrap over seeds and problems"
    T_OVER_SEEDS = "t-interval over seeds (no per-problem values)"


class SignTest(BaseModel):
    """Seeds where the arm is above / below the reference, ties dropped; exact two-sided p."""

    above: int
    below: int
    ties: int
    p_value: float


class Estimate(BaseModel):
    """A mean over seeds with its interval (None with one seed and no per-problem values)."""

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


class ExperimentReport(BaseModel):
    arms: list[str]
    reference: str
    budgets: list[int]
    seeds: list[int]
    problems_per_evaluation: list[
        int
    ]  # distinct counts over the included evaluations with per-problem values
    level: float
    resamples: int
    bootstrap_seed: int
    results: list[ArmResult]
    comparisons: list[PairedComparison]
    variance_ratios: list[VarianceRatio]
    training: list[TrainingCurve]
    excluded_runs: list[ExcludedRun]


# ------------------------------------------------------------------------------------------- values


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


@dataclass(frozen=True)
class _Settings:
    level: float
    resamples: int
    seed: int


def _estimate(interval: SeedInterval, signs: Sequence[float] | None) -> Estimate:
    test = None
    if signs is not None:
        count = sign_test(signs)
        test = SignTest(above=count.above, below=count.below, ties=count.ties, p_value=count.p_value)
    return Estimate(mean=interval.mean, low=interval.low, high=interval.high, sign_test=test)


def _estimates(by_seed: Mapping[int, _Values], settings: _Settings, *, paired: bool) -> BudgetEstimates:
    seeds = sorted(by_seed)
    values = [by_seed[s] for s in seeds]
    rows = [v.rows for v in values]
    per_seed = [v.seed_value() for v in values]
    columns = len(per_seed[0])
    if all(r is not None for r in rows):
        intervals = bootstrap_seeds_problems(
            [r for r in rows if r is not None],
            level=settings.level,
            resamples=settings.resamples,
            seed=settings.seed,
        )
        counts = {len(r) for r in rows if r is not None}
        method, problems = Method.BOOTSTRAP, (counts.pop() if len(counts) == 1 else None)
    else:
        intervals = [t_interval([p[c] for p in per_seed], level=settings.level) for c in range(columns)]
        method, problems = Method.T_OVER_SEEDS, None
    out = [_estimate(iv, [p[c] for p in per_seed] if paired else None) for c, iv in enumerate(intervals)]
    return BudgetEstimates(
        method=method, seeds=seeds, problems=problems, accuracy=out[:-1], anytime_score=out[-1]
    )


# ------------------------------------------------------------------------------------------- report


def build_report(
    arms: Sequence[str],
    reference: str,
    runs: Sequence[RunRecord],
    *,
    resamples: int = 2000,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> ExperimentReport:
    """The report of an experiment's `runs` (see the module docstring for every definition)."""
    _validate(arms, reference, runs)
    included, excluded = _split(runs)
    budgets = _budgets(included, runs)
    settings = _Settings(level, resamples, seed)
    by_arm: dict[str, dict[int, _Run]] = {arm: {} for arm in arms}
    for run in included:
        by_arm[run.record.arm][run.record.seed] = run
    results = [_arm_result(arm, by_arm[arm], settings) for arm in arms]
    comparisons = [
        _comparison(arm, reference, by_arm[arm], by_arm[reference], settings)
        for arm in arms
        if arm != reference and set(by_arm[arm]) & set(by_arm[reference])
    ]
    counts = {len(v.rows) for r in included for v in (r.start, r.end) if v.rows is not None}
    return ExperimentReport(
        arms=list(arms),
        reference=reference,
        budgets=budgets,
        seeds=sorted({r.record.seed for r in included}),
        problems_per_evaluation=sorted(counts),
        level=level,
        resamples=resamples,
        bootstrap_seed=seed,
        results=results,
        comparisons=comparisons,
        variance_ratios=[row for arm in arms for row in _variance_ratios(arm, by_arm[arm], settings)],
        training=[_training_curve(arm, [r.record for r in by_arm[arm].values()]) for arm in arms],
        excluded_runs=excluded,
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


def _arm_result(arm: str, runs: Mapping[int, _Run], settings: _Settings) -> ArmResult:
    seeds = sorted(runs)
    ids = [runs[s].record.run_id for s in seeds]
    if not runs:
        return ArmResult(arm=arm, seeds=[], run_ids=[], start=None, end=None, gain=None)
    return ArmResult(
        arm=arm,
        seeds=seeds,
        run_ids=ids,
        start=_estimates({s: r.start for s, r in runs.items()}, settings, paired=False),
        end=_estimates({s: r.end for s, r in runs.items()}, settings, paired=False),
        gain=_estimates({s: r.end.minus(r.start) for s, r in runs.items()}, settings, paired=False),
    )


def _comparison(
    arm: str, reference: str, runs: Mapping[int, _Run], ref_runs: Mapping[int, _Run], settings: _Settings
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
        end=_estimates(end, settings, paired=True),
        gain=_estimates(gain, settings, paired=True),
    )


# ------------------------------------------------------------------------------------ training logs


def _ratio_key(name: str) -> tuple[str, int | None] | None:
    """`(baseline, budget)` of a variance-ratio metric (budget None: the summary over budgets), else None."""
    if match := _VARIANCE.fullmatch(name):
        baseline, budget = match.group(2), int(match.group(1))
    elif match := _VARIANCE_SUMMARY.fullmatch(name):
        baseline, budget = match.group(1), None
    else:
        return None
    return None if baseline in _NOT_RATIOS else (baseline, budget)


def _ratios(metrics: Mapping[str, float]) -> dict[tuple[str, int | None], float]:
    """This step's variance ratios; `variance/summary/{b}` wins over `variance/{b}` when both are logged."""
    found: dict[tuple[str, int | None], float] = {}
    for name in sorted(metrics, key=lambda n: n.startswith("variance/summary/")):
        key = _ratio_key(name)
        if key is not None:
            found[key] = metrics[name]
    return found


def _baseline_order(name: str) -> tuple[int, str]:
    return (_BASELINE_ORDER.index(name) if name in _BASELINE_ORDER else len(_BASELINE_ORDER), name)


def _variance_ratios(arm: str, runs: Mapping[int, _Run], settings: _Settings) -> list[VarianceRatio]:
    logged: dict[tuple[str, int | None], dict[int, list[float]]] = {}
    for seed, run in runs.items():
        for _, metrics in run.record.step_metrics:
            for key, value in _ratios(metrics).items():
                logged.setdefault(key, {}).setdefault(seed, []).append(value)
    rows = []
    for (baseline, budget), per_seed in logged.items():
        means = [math.fsum(v) / len(v) for _, v in sorted(per_seed.items())]
        interval = t_interval(means, level=settings.level)
        rows.append(
            VarianceRatio(
                arm=arm,
                baseline=baseline,
                budget=budget,
                estimate=_estimate(interval, None),
                seeds=len(means),
                steps=sum(len(v) for v in per_seed.values()),
            )
        )
    far = 1 << 62  # the summary after every budget
    return sorted(rows, key=lambda r: (_baseline_order(r.baseline), far if r.budget is None else r.budget))


def _mean_or_none(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return math.fsum(present) / len(present) if present else None


def _training_curve(arm: str, records: Sequence[RunRecord]) -> TrainingCurve:
    per_run = [dict(r.step_metrics) for r in records]  # step → metrics (a repeated step: the last one)
    steps = sorted({step for run in per_run for step in run})
    names = {name for run in per_run for metrics in run.values() for name in metrics}
    score = next((n for n in _TRAINING_SCORES if n in names), None)

    def curve(pick: str | None) -> list[float | None]:
        return [
            _mean_or_none(run[step].get(pick) if step in run and pick else None for run in per_run)
            for step in steps
        ]

    def ratio_curve(key: tuple[str, int | None]) -> list[float | None]:
        return [
            _mean_or_none(_ratios(run[step]).get(key) if step in run else None for run in per_run)
            for step in steps
        ]

    keys = {key for run in per_run for metrics in run.values() for key in _ratios(metrics)}
    baselines = sorted({b for b, _ in keys}, key=_baseline_order)
    rewards = sorted(int(m.group(1)) for n in names if (m := _REWARD.fullmatch(n)))
    return TrainingCurve(
        arm=arm,
        steps=steps,
        reward={b: curve(f"reward/budget_{b}/mean") for b in rewards},
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


# ------------------------------------------------------------------------------------------ Markdown


def _ci(e: Estimate, signed: bool = False) -> str:
    number = f"{e.mean:+.3f}" if signed else f"{e.mean:.3f}"
    if e.low is None or e.high is None:
        return f"{number} [no CI: one seed]"
    return f"{number} [{e.low:.3f}, {e.high:.3f}]"


def _sign(e: Estimate) -> str:
    t = e.sign_test
    return "—" if t is None else f"{t.p_value:.3g} ({t.above}↑ {t.below}↓ {t.ties}=)"


def _dagger(estimates: BudgetEstimates | None) -> str:
    return " †" if estimates is not None and estimates.method is Method.T_OVER_SEEDS else ""


def report_markdown(report: ExperimentReport) -> str:
    """The report as Markdown: the arms' table, the per-budget paired differences, the variance ratios, the
    runs left out and how to read it."""
    ref = report.reference
    pct = f"{report.level:.0%}".replace("%", " %")
    budgets = report.budgets
    comparisons = {c.arm: c for c in report.comparisons}
    problems = ", ".join(map(str, report.problems_per_evaluation)) or "unknown (no per-problem values)"
    seeds = ", ".join(map(str, report.seeds)) or "none"
    lines = [
        "## Experiment report",
        "",
        f"Arms: {', '.join(report.arms)} (reference: **{ref}**) · seeds: {seeds} ({len(report.seeds)})"
        f" · problems per evaluation: {problems} · budgets: {', '.join(map(str, budgets))}"
        f" · {pct} intervals: {Method.BOOTSTRAP.value}"
        f" ({report.resamples} resamples, seed {report.bootstrap_seed}) unless marked †",
        "",
        "| arm | seeds | anytime score start → end | "
        + " | ".join(f"accuracy @ {b} (end)" for b in budgets)
        + f" | Δ anytime vs {ref} (end − end) | sign test p |",
        "| --- " * (5 + len(budgets)) + "|",
    ]
    for result in report.results:
        name = f"{result.arm} (reference)" if result.arm == ref else result.arm
        if result.start is None or result.end is None:
            lines.append(f"| {name} | 0 | no run entered the statistics |" + " |" * (len(budgets) + 2))
            continue
        c = comparisons.get(result.arm)
        delta = "—" if c is None else _ci(c.end.anytime_score, signed=True) + _dagger(c.end)
        score = f"{_ci(result.start.anytime_score)} → {_ci(result.end.anytime_score)}{_dagger(result.end)}"
        lines.append(
            f"| {name} | {len(result.seeds)} | {score} | "
            + " | ".join(_ci(e) for e in result.end.accuracy)
            + f" | {delta} | {'—' if c is None else _sign(c.end.anytime_score)} |"
        )
    lines += _difference_lines(report, pct)
    lines += _variance_lines(report, pct)
    lines += _excluded_lines(report)
    lines += [
        "",
        f"How to read this: each value is the mean over seeds [{pct} interval]; a paired difference whose"
        f" interval excludes 0 separates the arm from {ref} on these problems and seeds; the sign test asks"
        " whether the arm wins on more seeds than chance (with n seeds its smallest two-sided p is 2/2^n:"
        f" {2 / 2 ** max(len(report.seeds), 1):.3g} here). "
        "† marks a t-interval over the seeds' stored accuracies (those rows carry no per-problem values).",
        "",
    ]
    return "\n".join(lines)


def _difference_lines(report: ExperimentReport, pct: str) -> list[str]:
    if not report.comparisons:
        return []
    header = " | ".join([*(f"@ {b}" for b in report.budgets), "anytime score"])
    lines = [
        "",
        f"### Paired differences vs {report.reference} (mean [{pct} CI], sign-test p)",
        "",
        f"| arm | difference | {header} |",
        "| --- " * (3 + len(report.budgets)) + "|",
    ]
    for c in report.comparisons:
        for label, est in (("end − end", c.end), ("gain − gain", c.gain)):
            cells = [f"{_ci(e, signed=True)}, p {_sign(e)}" for e in [*est.accuracy, est.anytime_score]]
            lines.append(f"| {c.arm} | {label}{_dagger(est)} | " + " | ".join(cells) + " |")
    return lines


def _variance_lines(report: ExperimentReport, pct: str) -> list[str]:
    if not report.variance_ratios:
        return []
    budgets = sorted({r.budget for r in report.variance_ratios if r.budget is not None})
    cells: dict[tuple[str, str], dict[int | None, str]] = {}
    for r in report.variance_ratios:
        cells.setdefault((r.arm, r.baseline), {})[r.budget] = _ci(r.estimate)
    lines = [
        "",
        "### Variance ratios Var(Q − V)/Var(Q) during training",
        "",
        f"Mean over steps and seeds [{pct} t-interval over seeds]; lower: the baseline removes more of it.",
        "",
        "| arm | baseline | " + " | ".join(f"@ {b}" for b in budgets) + " | all budgets |",
        "| --- " * (3 + len(budgets)) + "|",
    ]
    for (arm, baseline), row in cells.items():
        values = [row.get(b, "—") for b in [*budgets, None]]
        lines.append(f"| {arm} | {baseline} | " + " | ".join(values) + " |")
    return lines


def _excluded_lines(report: ExperimentReport) -> list[str]:
    if not report.excluded_runs:
        return []
    lines = ["", f"**⚠ {len(report.excluded_runs)} run(s) left out of every statistic above:**", ""]
    lines += [f"- {r.run_id} ({r.arm}, seed {r.seed}): {r.reason}" for r in report.excluded_runs]
    return lines


# ----------------------------------------------------------------------------------------------- PNG


def _arm_color(report: ExperimentReport, arm: str) -> str:
    """The same color for an arm in both panels: matplotlib's default cycle by arm position."""
    return f"C{report.arms.index(arm) % 10}"


def report_png(report: ExperimentReport) -> bytes:
    """Left: accuracy vs budget per arm, end solid and start dashed, each with its band. Right: each arm's
    paired difference of the anytime score from the reference (end − end) with its interval."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11.0, 4.2), dpi=100)
    FigureCanvasAgg(figure)
    curves, deltas = figure.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    for result in report.results:
        if result.start is None or result.end is None:
            continue
        color = _arm_color(report, result.arm)
        for label, est, style, alpha in (
            ("end", result.end, "-o", 0.2),
            ("start", result.start, "--x", 0.08),
        ):
            means = [e.mean for e in est.accuracy]
            curves.plot(report.budgets, means, style, color=color, label=f"{result.arm} {label}")
            if all(e.low is not None and e.high is not None for e in est.accuracy):
                low = [e.mean if e.low is None else e.low for e in est.accuracy]
                high = [e.mean if e.high is None else e.high for e in est.accuracy]
                curves.fill_between(report.budgets, low, high, color=color, alpha=alpha)
    curves.set_xlabel("thinking budget (tokens)")
    curves.set_ylabel("accuracy")
    curves.set_ylim(-0.02, 1.02)
    curves.set_title(f"accuracy vs budget, {len(report.seeds)} seeds ({report.level:.0%} bands)", fontsize=10)
    curves.grid(alpha=0.3)
    curves.legend(fontsize=7)
    _draw_deltas(deltas, report)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _draw_deltas(axes: Axes, report: ExperimentReport) -> None:
    axes.axvline(0.0, color="gray", linewidth=1)
    axes.set_title(f"Δ anytime score vs {report.reference} (end − end)", fontsize=10)
    axes.set_xlabel(f"paired difference [{report.level:.0%} CI]")
    if not report.comparisons:
        axes.text(0.5, 0.5, "no other arm to compare", ha="center", va="center", transform=axes.transAxes)
        axes.set_yticks([])
        return
    for y, c in enumerate(report.comparisons):
        e = c.end.anytime_score
        spread = None if e.low is None or e.high is None else [[e.mean - e.low], [e.high - e.mean]]
        axes.errorbar([e.mean], [y], xerr=spread, fmt="o", capsize=4, color=_arm_color(report, c.arm))
        if e.sign_test is not None:
            note = f"sign test p={e.sign_test.p_value:.3g}"
            axes.annotate(
                note, (e.mean, y), textcoords="offset points", xytext=(0, 8), ha="center", fontsize=8
            )
    axes.set_yticks(range(len(report.comparisons)), [c.arm for c in report.comparisons])
    axes.set_ylim(len(report.comparisons) - 0.3, -0.7)  # the first arm on top, as in the table
    axes.grid(alpha=0.3, axis="x")
