"""The paper's Figure 3 as PNG bytes: two panels side by side, left Corr(V, R) and right the normalized
variance Var(R − V)/Var(R), both against the thinking budget, one line per baseline with its bootstrap band
and a shared legend. matplotlib is imported on first use, with the Agg canvas (no display, no pyplot global
state)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class Banded:
    """Values with band edges, one per budget; None where undefined (drawn as a gap)."""

    value: Sequence[float | None]
    low: Sequence[float | None]
    high: Sequence[float | None]


@dataclass(frozen=True)
class BaselineSeries:
    """One baseline's correlation with the return and its variance ratio at `budgets`."""

    label: str
    budgets: Sequence[int]
    correlation: Banded
    ratio: Banded

    def __post_init__(self) -> None:
        lengths = {
            len(v) for band in (self.correlation, self.ratio) for v in (band.value, band.low, band.high)
        }
        if lengths != {len(self.budgets)}:
            raise ValueError(f"series {self.label!r}: one value and band edge per budget")


def _nan(values: Sequence[float | None]) -> list[float]:
    return [float("nan") if v is None else v for v in values]


def variance_figure(series: Sequence[BaselineSeries], title: str) -> Figure:
    """The two-panel figure (left: correlation, right: normalized variance), on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11.0, 4.2), dpi=100)
    FigureCanvasAgg(figure)
    corr_axes, ratio_axes = figure.subplots(1, 2)
    for one in series:
        budgets = list(one.budgets)
        for axes, band in ((corr_axes, one.correlation), (ratio_axes, one.ratio)):
            (line,) = axes.plot(budgets, _nan(band.value), marker="o", label=one.label)
            axes.fill_between(budgets, _nan(band.low), _nan(band.high), color=line.get_color(), alpha=0.2)
    corr_axes.axhline(0.0, color="grey", linewidth=0.8, linestyle="--")
    corr_axes.set_ylim(top=1.02)
    corr_axes.set_ylabel("Corr(V, R)")
    corr_axes.set_title("correlation of the baseline with the return", fontsize=10)
    ratio_axes.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")  # no variance reduction
    ratio_axes.set_ylabel("Var(R − V) / Var(R)")
    ratio_axes.set_title("normalized variance of the advantage", fontsize=10)
    ratio_axes.set_ylim(bottom=0)
    for axes in (corr_axes, ratio_axes):
        axes.set_xlabel("thinking budget t (tokens)")
        axes.grid(alpha=0.3)
    if series:
        ratio_axes.legend(fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def variance_png(series: Sequence[BaselineSeries], title: str) -> bytes:
    figure = variance_figure(series, title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
