"""The accuracy-vs-budget plot as PNG bytes. matplotlib is imported on first use, with the Agg canvas
(no display, and no pyplot global state, so request threads can draw at once)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class CurveSeries:
    label: str
    budgets: Sequence[int]
    accuracy: Sequence[float]


def accuracy_vs_budget_png(series: Sequence[CurveSeries], title: str) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.0), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for one in series:
        axes.plot(list(one.budgets), list(one.accuracy), marker="o", label=one.label)
    axes.set_xlabel("thinking budget (tokens)")
    axes.set_ylabel("accuracy")
    axes.set_ylim(-0.02, 1.02)
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
