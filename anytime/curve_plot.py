"""The accuracy-vs-budget plot as PNG bytes. matplotlib is imported on first use, with the Agg canvas
(no display, and no pyplot global state, so request threads can draw at once)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class CurveSeries:
    """One curve; `low`/`high` (one per budget, both or neither) bound a confidence band drawn around it."""

    label: str
    budgets: Sequence[int]
    accuracy: Sequence[float]
    low: Sequence[float] | None = None
    high: Sequence[float] | None = None

    def __post_init__(self) -> None:
        if (self.low is None) != (self.high is None):
            raise ValueError(f"series {self.label!r}: give both band edges (low and high) or neither")
        edges = [] if self.low is None or self.high is None else [self.low, self.high]
        if len({len(v) for v in [self.budgets, self.accuracy, *edges]}) != 1:
            raise ValueError(f"series {self.label!r}: one accuracy (and band edge) per budget")


def series_label(name: str, num_samples: int | None, temperature: float | None) -> str:
    """`name` with how the curve was sampled: "(greedy)", "(k=4, T=0.6, 95 % CI)", or nothing when unknown."""
    if temperature is None:
        return name
    if temperature == 0:
        return f"{name} (greedy)"
    return f"{name} (k={num_samples}, T={temperature:g}, 95 % CI)"


def accuracy_vs_budget_png(series: Sequence[CurveSeries], title: str) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.0), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for one in series:
        budgets = list(one.budgets)
        (line,) = axes.plot(budgets, list(one.accuracy), marker="o", label=one.label)
        if one.low is not None and one.high is not None:
            axes.fill_between(budgets, list(one.low), list(one.high), color=line.get_color(), alpha=0.2)
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


class EvaluatedPolicy(Protocol):
    """What drawing needs of one evaluation (an `anytime.db.models.Evaluation` row has it): the policy, its
    accuracy per budget, how it was sampled and its 95 % band (None for greedy or older rows)."""

    @property
    def policy_version(self) -> int: ...
    @property
    def budgets(self) -> Sequence[int]: ...
    @property
    def accuracy(self) -> Sequence[float]: ...
    @property
    def num_samples(self) -> int | None: ...
    @property
    def temperature(self) -> float | None: ...
    @property
    def accuracy_ci_low(self) -> Sequence[float] | None: ...
    @property
    def accuracy_ci_high(self) -> Sequence[float] | None: ...


def start_vs_end_series(evaluations: Sequence[EvaluatedPolicy], name: str = "") -> list[CurveSeries]:
    """The first (start) and last (end) of a run's evaluations, in policy-version order, as two curves
    labelled `[name ]start v<version>` / `[name ]end v<version>` with how they were sampled and their bands;
    one curve for one evaluation, none for none."""
    ordered = sorted(evaluations, key=lambda e: e.policy_version)
    prefix = f"{name} " if name else ""
    return [
        CurveSeries(
            series_label(f"{prefix}{label} v{e.policy_version}", e.num_samples, e.temperature),
            e.budgets,
            e.accuracy,
            e.accuracy_ci_low,
            e.accuracy_ci_high,
        )
        for label, e in zip(("start", "end"), ordered[:1] + ordered[1:][-1:], strict=False)
    ]
