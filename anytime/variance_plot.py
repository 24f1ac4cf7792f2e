"""The variance-ratio plot (the paper's Figure 3, right) as PNG bytes: `Var(Q − V)/Var(Q)` against the
budget, one line per baseline with its bootstrap band. matplotlib is imported on first use, with the Agg
canvas (no display, no pyplot global state)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class RatioSeries:
    """One baseline's ratios at `budgets`, with band edges; None where a ratio is undefined (a gap)."""

    label: str
    budgets: Sequence[int]
    ratio: Sequence[float | None]
    low: Sequence[float | None]
    high: Sequence[float | None]


def _nan(values: Sequence[float | None]) -> list[float]:
    return [float("nan") if v is None else v for v in values]


def variance_ratio_png(series: Sequence[RatioSeries], title: str) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.0), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for one in series:
        budgets = list(one.budgets)
        (line,) = axes.plot(budgets, _nan(one.ratio), marker="o", label=one.label)
        axes.fill_between(budgets, _nan(one.low), _nan(one.high), color=line.get_color(), alpha=0.2)
    axes.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")  # no variance reduction
    axes.set_xlabel("thinking budget (tokens)")
    axes.set_ylabel("Var(Q − V) / Var(Q)")
    axes.set_ylim(bottom=0)
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
