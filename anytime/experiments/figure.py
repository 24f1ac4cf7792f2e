"""An experiment's report as a PNG: accuracy vs budget per arm (start and end, with bands) and each arm's
paired difference of the anytime score from the reference. matplotlib (the `api` extra) is imported on
first use."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from anytime.experiments.report import ExperimentReport

if TYPE_CHECKING:
    from matplotlib.axes import Axes


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
