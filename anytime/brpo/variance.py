"""The paper's variance ratios (Figure 3, docs/method.md §2.11): how much of the thinking return's variance a
baseline leaves in the advantage, per budget, over the traces that still think there.

Definitions (the authors' `compute_cot_advantage` mask and `ray_trainer` metrics):
- mask `M[n, j]`: trace n still has a thinking segment at budget j, i.e. `j == 0` or `len(z) > b_{j-1}`
  (a trace that ended at or before `b_{j-1}` only has collapsed, empty segments from j on);
- ratio `r_j = Var(Q[:, j] - V[:, j]) / Var(Q[:, j])` over the masked rows, population variances
  (divide by the count), pooled over every trace of every problem; undefined (None) with fewer than 2
  masked rows or `Var(Q) = 0`. The baselines themselves are computed from all G traces (V2 averages
  ended traces too), exactly as in training;
- summary over budgets: the mean of the defined `r_j` weighted by their masked counts `n_j`, i.e. the
  average over masked (trace, segment) pairs of their budget's ratio.

Torch-free (plain lists): the learner and `anytime study variance` pass their tensors as `.tolist()`.
Bootstrap intervals resample problems (a problem keeps its traces and their baselines).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from anytime.brpo.config import ThinkingBaseline

# Logged and studied whatever the run's own baseline is (the paper's Figure 3 compares these three).
PAPER_BASELINES = (ThinkingBaseline.BRPO, ThinkingBaseline.V1, ThinkingBaseline.V2)

Rows = Sequence[Sequence[float]]  # [N][S]
Mask = Sequence[Sequence[bool]]  # [N][S]

# Var(Q) at or below this share of the mean square is rounding, not spread (the sums below cancel).
_ZERO_SPREAD = 1e-12


def thinking_mask(length: int, budgets: Sequence[int]) -> list[bool]:
    """[S] whether a trace of `length` thinking tokens still thinks when budget j's segment starts."""
    return [j == 0 or length > budgets[j - 1] for j in range(len(budgets))]


@dataclass(frozen=True)
class _Sums:
    """Masked sums at one budget: count, Σq, Σq², Σd, Σd² with d = q - baseline."""

    n: float = 0.0
    q: float = 0.0
    qq: float = 0.0
    d: float = 0.0
    dd: float = 0.0

    def __add__(self, other: _Sums) -> _Sums:
        return _Sums(
            self.n + other.n, self.q + other.q, self.qq + other.qq, self.d + other.d, self.dd + other.dd
        )

    @property
    def ratio(self) -> float | None:
        if self.n < 2:
            return None
        mean_square = self.qq / self.n
        spread = mean_square - (self.q / self.n) ** 2
        if spread <= _ZERO_SPREAD * mean_square:
            return None
        return max(self.dd / self.n - (self.d / self.n) ** 2, 0.0) / spread


def _check_shapes(returns: Rows, baseline: Rows, mask: Mask) -> int:
    num = len(returns[0]) if returns else 0
    for name, rows in (("baseline", baseline), ("mask", mask)):
        if len(rows) != len(returns):
            raise ValueError(f"{name} has {len(rows)} rows but the returns have {len(returns)}")
    if any(len(row) != num for table in (returns, baseline, mask) for row in table):
        raise ValueError(f"every row of returns, baseline and mask needs S = {num} entries")
    return num


def _budget_sums(returns: Rows, baseline: Rows, mask: Mask) -> list[_Sums]:
    num = _check_shapes(returns, baseline, mask)
    sums = [_Sums() for _ in range(num)]
    for q_row, v_row, m_row in zip(returns, baseline, mask, strict=True):
        for j in range(num):
            if m_row[j]:
                q, d = q_row[j], q_row[j] - v_row[j]
                sums[j] = sums[j] + _Sums(1.0, q, q * q, d, d * d)
    return sums


def variance_ratios(returns: Rows, baseline: Rows, mask: Mask) -> list[float | None]:
    """Q [N][S], V [N][S], M [N][S] → [S] `Var_M(Q - V) / Var_M(Q)` per budget, None where undefined."""
    return [s.ratio for s in _budget_sums(returns, baseline, mask)]


def masked_counts(mask: Mask) -> list[int]:
    """[S] how many rows the mask keeps at each budget."""
    return [sum(bool(row[j]) for row in mask) for j in range(len(mask[0]) if mask else 0)]


def summary_ratio(ratios: Sequence[float | None], counts: Sequence[int]) -> float | None:
    """The count-weighted mean of the defined per-budget ratios; None when none is defined."""
    pairs = [(r, n) for r, n in zip(ratios, counts, strict=True) if r is not None and n > 0]
    total = sum(n for _, n in pairs)
    return math.fsum(r * n for r, n in pairs) / total if total else None


@dataclass(frozen=True)
class ProblemReturns:
    """One problem's G traces: returns Q [G][S], each baseline [G][S] by name, mask M [G][S]."""

    returns: Rows
    baselines: Mapping[str, Rows]
    mask: Mask


@dataclass(frozen=True)
class RatioEstimate:
    """A ratio with its bootstrap interval (None where undefined).

    traces: the masked rows at that budget; for a summary, the masked (trace, budget) pairs of all budgets.
    """

    ratio: float | None
    low: float | None
    high: float | None
    traces: int


@dataclass(frozen=True)
class VarianceStudy:
    """Per baseline name: per-budget estimates [S] and the summary over budgets."""

    per_budget: Mapping[str, list[RatioEstimate]]
    summary: Mapping[str, RatioEstimate]
    resamples: int
    level: float


def _quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile of sorted values (numpy's default)."""
    position = q * (len(values) - 1)
    below = math.floor(position)
    above = min(below + 1, len(values) - 1)
    return values[below] + (values[above] - values[below]) * (position - below)


def _interval(values: list[float], level: float) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    values.sort()
    tail = (1.0 - level) / 2
    return _quantile(values, tail), _quantile(values, 1.0 - tail)


def bootstrap_study(
    problems: Sequence[ProblemReturns], resamples: int = 2000, level: float = 0.95, seed: int = 0
) -> VarianceStudy:
    """Point ratios over all problems, with percentile intervals from resampling problems with replacement.

    A replicate where a ratio is undefined is left out of that ratio's interval.
    """
    if not problems:
        raise ValueError("no problems to study")
    if resamples < 1 or not 0 < level < 1:
        raise ValueError(f"need resamples >= 1 and 0 < level < 1; got {resamples}, {level}")
    names = list(problems[0].baselines)
    num = len(problems[0].mask[0])
    # flat[name][i]: problem i's masked sums, budget-major (n, Σq, Σq², Σd, Σd² per budget)
    flat = {
        name: [
            [
                x
                for s in _budget_sums(p.returns, p.baselines[name], p.mask)
                for x in (s.n, s.q, s.qq, s.d, s.dd)
            ]
            for p in problems
        ]
        for name in names
    }

    def estimate(name: str, weights: Mapping[int, int]) -> tuple[list[float | None], list[int]]:
        total = [0.0] * (5 * num)
        for i, k in weights.items():
            total = [t + k * x for t, x in zip(total, flat[name][i], strict=True)]
        sums = [_Sums(*total[5 * j : 5 * j + 5]) for j in range(num)]
        return [s.ratio for s in sums], [int(s.n) for s in sums]

    everything = dict.fromkeys(range(len(problems)), 1)
    rng = random.Random(seed)
    draws = [Counter(rng.choices(range(len(problems)), k=len(problems))) for _ in range(resamples)]
    per_budget: dict[str, list[RatioEstimate]] = {}
    summary: dict[str, RatioEstimate] = {}
    for name in names:
        point, counts = estimate(name, everything)
        budget_draws: list[list[float]] = [[] for _ in range(num)]
        summary_draws: list[float] = []
        for weights in draws:
            ratios, replicate_counts = estimate(name, weights)
            for j, ratio in enumerate(ratios):
                if ratio is not None:
                    budget_draws[j].append(ratio)
            overall = summary_ratio(ratios, replicate_counts)
            if overall is not None:
                summary_draws.append(overall)
        per_budget[name] = [
            RatioEstimate(point[j], *_interval(budget_draws[j], level), counts[j]) for j in range(num)
        ]
        summary[name] = RatioEstimate(
            summary_ratio(point, counts), *_interval(summary_draws, level), sum(counts)
        )
    return VarianceStudy(per_budget, summary, resamples, level)
