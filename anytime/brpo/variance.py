"""The paper's variance analysis (Figure 3, docs/method.md §2.11): per budget, how well a baseline tracks the
thinking return (Corr(V, R)) and how much of the return's variance it leaves in the advantage
(Var(R − V)/Var(R)), over the traces that still think there.

Notation (docs/method.md §2.5, 0-indexed budgets s = 0..S−1, b_0 < … < b_{S−1} = b_max, prior p, G traces per
problem): r[g, k] is trace g's dense score at budget b_k, the mean reward of its A summaries of the thought
cut at min(b_k, |z_g|). At budget index s
- the return is R[g, s] = Σ_{k≥s} p_k r[g, k];
- V2 (group, "GRPO-like"): V2[g, s] = mean over all G traces of the problem, g itself included, of R[·, s]
  (0 when G = 1);
- V1 (own history): V1[g, 0] = 0 and, for s > 0, V1[g, s] = prev[g, s] · Σ_{k≥s} p_k with
  prev[g, s] = Σ_{j<s} d^j r[g, j] / Σ_{j<s} d^j, d the discount (2.0, i.e. the paper's λ = 1/2: the
  latest earlier budget weighs most);
- BRPO: B[g, s] = (s · V1[g, s] + (S − s) · V2[g, s]) / S (pure V2 at s = 0).
The baselines are computed from all G traces exactly as in training (`services.learner.metrics.
problem_returns`); this module only takes the resulting rows.

Statistics (the authors' `compute_cot_advantage` mask and `ray_trainer` validation metrics):
- mask `M[n, s]`: trace n still has a thinking segment at budget s, i.e. `s == 0` or `|z_n| > b_{s−1}` (a
  trace that ended at or before `b_{s−1}` only has collapsed, empty segments from s on);
- every statistic at budget s pools the masked (problem, trace) rows of every problem, with population
  moments (divide by the count);
- ratio `Var(R[:, s] − V[:, s]) / Var(R[:, s])`: undefined (None) with fewer than 2 masked rows or
  `Var(R) = 0`;
- correlation `Corr(V[:, s], R[:, s]) = Cov / sqrt(Var(V) · Var(R))` (Pearson): also undefined where
  `Var(V) = 0` — V1 at s = 0 is identically 0, so its correlation there is None, never a number (the
  authors' code divides by `sqrt(0) + 1e-6` and plots 0);
- summary over budgets: the mean of the defined per-budget ratios weighted by their masked counts.

Torch-free (plain lists): the learner and `anytime study variance` pass their tensors as `.tolist()`.
Bootstrap intervals resample problems (a problem keeps its traces and their baselines); the correlation and
the ratio of one replicate come from the same resample.
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

# A variance at or below this share of the mean square is rounding, not spread (the sums below cancel).
_ZERO_SPREAD = 1e-12
_FIELDS = 6  # n, Σr, Σr², Σv, Σv², Σrv


def thinking_mask(length: int, budgets: Sequence[int]) -> list[bool]:
    """[S] whether a trace of `length` thinking tokens still thinks when budget j's segment starts."""
    return [j == 0 or length > budgets[j - 1] for j in range(len(budgets))]


@dataclass(frozen=True)
class _Sums:
    """Masked sums at one budget: count n, Σr, Σr², Σv, Σv², Σrv (r the return, v the baseline)."""

    n: float = 0.0
    r: float = 0.0
    rr: float = 0.0
    v: float = 0.0
    vv: float = 0.0
    rv: float = 0.0

    @property
    def fields(self) -> tuple[float, float, float, float, float, float]:
        return (self.n, self.r, self.rr, self.v, self.vv, self.rv)

    def __add__(self, other: _Sums) -> _Sums:
        return _Sums(*(a + b for a, b in zip(self.fields, other.fields, strict=True)))

    def _spread(self, total: float, squares: float) -> float | None:
        """Population variance from a sum and a sum of squares; None when it is rounding, not spread."""
        mean_square = squares / self.n
        spread = mean_square - (total / self.n) ** 2
        return None if spread <= _ZERO_SPREAD * mean_square else spread

    def _covariance(self) -> float:
        return self.rv / self.n - (self.r / self.n) * (self.v / self.n)

    @property
    def ratio(self) -> float | None:
        """Var(R − V) / Var(R); None with fewer than 2 rows or Var(R) = 0."""
        if self.n < 2 or (var_r := self._spread(self.r, self.rr)) is None:
            return None
        var_v = max(self.vv / self.n - (self.v / self.n) ** 2, 0.0)
        return max(var_r + var_v - 2 * self._covariance(), 0.0) / var_r

    @property
    def correlation(self) -> float | None:
        """Pearson Corr(V, R); None with fewer than 2 rows, Var(R) = 0 or Var(V) = 0."""
        if self.n < 2 or (var_r := self._spread(self.r, self.rr)) is None:
            return None
        if (var_v := self._spread(self.v, self.vv)) is None:
            return None
        return min(max(self._covariance() / math.sqrt(var_r * var_v), -1.0), 1.0)


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
    for r_row, v_row, m_row in zip(returns, baseline, mask, strict=True):
        for j in range(num):
            if m_row[j]:
                r, v = r_row[j], v_row[j]
                sums[j] = sums[j] + _Sums(1.0, r, r * r, v, v * v, r * v)
    return sums


def variance_ratios(returns: Rows, baseline: Rows, mask: Mask) -> list[float | None]:
    """R [N][S], V [N][S], M [N][S] → [S] `Var_M(R − V) / Var_M(R)` per budget, None where undefined."""
    return [s.ratio for s in _budget_sums(returns, baseline, mask)]


def correlations(returns: Rows, baseline: Rows, mask: Mask) -> list[float | None]:
    """R [N][S], V [N][S], M [N][S] → [S] Pearson `Corr_M(V, R)` per budget, None where undefined."""
    return [s.correlation for s in _budget_sums(returns, baseline, mask)]


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
    """One problem's G traces: returns R [G][S], each baseline V [G][S] by name, mask M [G][S]."""

    returns: Rows
    baselines: Mapping[str, Rows]
    mask: Mask


@dataclass(frozen=True)
class Estimate:
    """A statistic (a ratio, a correlation or a difference of ratios) with its bootstrap percentile
    interval; None where undefined.

    traces: the masked rows at that budget; for a summary, the masked (trace, budget) pairs of all budgets.
    """

    value: float | None
    low: float | None
    high: float | None
    traces: int


@dataclass(frozen=True)
class VarianceStudy:
    """Per baseline name: per-budget ratios and correlations [S], and the ratio summary over budgets.

    replicates[name]: every resample's per-budget ratios [resamples][S] (None where undefined), kept so that
    two baselines can be compared on the same resamples (`ratio_difference`).
    """

    ratios: Mapping[str, list[Estimate]]
    correlations: Mapping[str, list[Estimate]]
    summary: Mapping[str, Estimate]
    resamples: int
    level: float
    replicates: Mapping[str, list[list[float | None]]]

    def ratio_difference(self, first: str, second: str, budget: int) -> Estimate:
        """ratio(first) − ratio(second) at budget index `budget`, its interval paired over the resamples."""
        a, b = self.ratios[first][budget], self.ratios[second][budget]
        value = None if a.value is None or b.value is None else a.value - b.value
        draws = [
            x - y
            for xs, ys in zip(self.replicates[first], self.replicates[second], strict=True)
            if (x := xs[budget]) is not None and (y := ys[budget]) is not None
        ]
        return _estimate(value, draws, self.level, a.traces)


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


def _estimate(value: float | None, draws: list[float], level: float, traces: int) -> Estimate:
    """The point value with the percentile interval of its replicates; no interval for an undefined point."""
    if value is None:
        return Estimate(None, None, None, traces)
    return Estimate(value, *_interval(draws, level), traces)


def bootstrap_study(
    problems: Sequence[ProblemReturns], resamples: int = 2000, level: float = 0.95, seed: int = 0
) -> VarianceStudy:
    """Point ratios and correlations over all problems, with percentile intervals from resampling problems
    with replacement (one set of resamples for every baseline and both statistics).

    A replicate where a statistic is undefined is left out of that statistic's interval.
    """
    if not problems:
        raise ValueError("no problems to study")
    if resamples < 1 or not 0 < level < 1:
        raise ValueError(f"need resamples >= 1 and 0 < level < 1; got {resamples}, {level}")
    names = list(problems[0].baselines)
    num = len(problems[0].mask[0])
    # flat[name][i]: problem i's masked sums, budget-major (_FIELDS numbers per budget)
    flat = {
        name: [
            [x for s in _budget_sums(p.returns, p.baselines[name], p.mask) for x in s.fields]
            for p in problems
        ]
        for name in names
    }

    def estimate(name: str, weights: Mapping[int, int]) -> list[_Sums]:
        total = [0.0] * (_FIELDS * num)
        for i, k in weights.items():
            total = [t + k * x for t, x in zip(total, flat[name][i], strict=True)]
        return [_Sums(*total[_FIELDS * j : _FIELDS * (j + 1)]) for j in range(num)]

    everything = dict.fromkeys(range(len(problems)), 1)
    rng = random.Random(seed)
    draws = [Counter(rng.choices(range(len(problems)), k=len(problems))) for _ in range(resamples)]
    ratios: dict[str, list[Estimate]] = {}
    corrs: dict[str, list[Estimate]] = {}
    summary: dict[str, Estimate] = {}
    replicates: dict[str, list[list[float | None]]] = {}
    for name in names:
        point = estimate(name, everything)
        counts = [int(s.n) for s in point]
        point_ratios = [s.ratio for s in point]
        ratio_draws: list[list[float]] = [[] for _ in range(num)]
        corr_draws: list[list[float]] = [[] for _ in range(num)]
        summary_draws: list[float] = []
        replicates[name] = []
        for weights in draws:
            sums = estimate(name, weights)
            replicate = [s.ratio for s in sums]
            replicates[name].append(replicate)
            for j, s in enumerate(sums):
                if (ratio := replicate[j]) is not None:
                    ratio_draws[j].append(ratio)
                if (corr := s.correlation) is not None:
                    corr_draws[j].append(corr)
            overall = summary_ratio(replicate, [int(s.n) for s in sums])
            if overall is not None:
                summary_draws.append(overall)
        ratios[name] = [_estimate(point_ratios[j], ratio_draws[j], level, counts[j]) for j in range(num)]
        corrs[name] = [_estimate(point[j].correlation, corr_draws[j], level, counts[j]) for j in range(num)]
        summary[name] = _estimate(summary_ratio(point_ratios, counts), summary_draws, level, sum(counts))
    return VarianceStudy(ratios, corrs, summary, resamples, level, replicates)
