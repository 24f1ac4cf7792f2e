"""An experiment's report as Markdown: the arms' table, the per-budget paired differences, the variance
ratios, the runs left out and how to read it."""

from __future__ import annotations

from anytime.experiments.report import BudgetEstimates, Estimate, ExperimentReport, Method


def format_estimate(e: Estimate, signed: bool = False) -> str:
    """`mean [low, high]` as every table of the report writes it (the README quotes it so)."""
    number = f"{e.mean:+.3f}" if signed else f"{e.mean:.3f}"
    if e.low is None or e.high is None:
        return f"{number} [no CI: one seed]"
    return f"{number} [{e.low:.3f}, {e.high:.3f}]"


def _sign(e: Estimate) -> str:
    t = e.sign_test
    return "—" if t is None else f"{t.p_value:.3g} ({t.above}↑ {t.below}↓ {t.ties}=)"


_MARKS = {Method.T_OVER_SEEDS: " †", Method.OVER_PROBLEMS: " ‡"}


def _dagger(estimates: BudgetEstimates | None) -> str:
    return "" if estimates is None else _MARKS.get(estimates.method, "")


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
        f" · {pct} intervals: {Method.CROSSED.value} (Student t, Satterthwaite df) unless marked † or ‡",
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
        delta = "—" if c is None else format_estimate(c.end.anytime_score, signed=True) + _dagger(c.end)
        start, end = format_estimate(result.start.anytime_score), format_estimate(result.end.anytime_score)
        score = f"{start} → {end}{_dagger(result.end)}"
        lines.append(
            f"| {name} | {len(result.seeds)} | {score} | "
            + " | ".join(format_estimate(e) for e in result.end.accuracy)
            + f" | {delta} | {'—' if c is None else _sign(c.end.anytime_score)} |"
        )
    lines += _contamination_lines(report)
    lines += _difference_lines(report, pct)
    lines += _variance_lines(report, pct)
    lines += _excluded_lines(report)
    lines += [
        "",
        f"How to read this: each value is the mean over seeds [{pct} interval]; a paired difference whose"
        f" interval excludes 0 separates the arm from {ref} on new seeds and problems alike; the sign test"
        " asks whether the arm wins on more seeds than chance (with n seeds its smallest two-sided p is"
        f" 2/2^n: {2 / 2 ** max(len(report.seeds), 1):.3g} here). "
        "Every seed is evaluated on the same problems, so an interval is the t-interval over the seed means"
        " (n − 1 df) widened by the variance the shared problems add."
        " † marks a t-interval over seed means alone (rows without per-problem values, or seeds evaluated on"
        " different problems); ‡ one seed's t-interval over its problems: it covers other held-out problems"
        " and evaluation samples, not another training seed.",
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
            estimates = [*est.accuracy, est.anytime_score]
            cells = [f"{format_estimate(e, signed=True)}, p {_sign(e)}" for e in estimates]
            lines.append(f"| {c.arm} | {label}{_dagger(est)} | " + " | ".join(cells) + " |")
    return lines


def _variance_lines(report: ExperimentReport, pct: str) -> list[str]:
    if not report.variance_ratios:
        return []
    budgets = sorted({r.budget for r in report.variance_ratios if r.budget is not None})
    cells: dict[tuple[str, str], dict[int | None, str]] = {}
    for r in report.variance_ratios:
        cells.setdefault((r.arm, r.baseline), {})[r.budget] = format_estimate(r.estimate)
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


def _contamination_lines(report: ExperimentReport) -> list[str]:
    """Whether the held-out problems are held out: each arm's worst run, as measured when it was created."""
    dirty = [c for c in report.settings if c.in_training]
    unmeasured = [c.arm for c in report.settings if c.in_training is None]
    if dirty:
        lines = [
            f"**Contaminated:** arm {c.arm}: {c.in_training} of its {c.eval_problems} evaluation problems "
            "are also training problems; its held-out scores partly measure memory."
            for c in dirty
        ]
    elif report.settings and not unmeasured:
        lines = ["Held out: no arm's evaluation problems appear in its training dataset."]
    else:
        lines = []
    if unmeasured:
        lines.append(f"Contamination not measured for: {', '.join(unmeasured)} (created before it was).")
    return [*lines, ""] if lines else []
