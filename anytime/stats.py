"""Intervals and tests for evaluations and experiments: the crossed t-interval over seeds and shared
problems (an experiment's estimates), a percentile bootstrap over problems (one evaluation), a t-interval
over seeds, and an exact two-sided sign test. Pure numerics; numpy is imported on first use, so the modules
that import this one stay numpy-free at import.

Simplifications first:
- the crossed t-interval (`crossed_t_intervals`) is for an experiment's seeds that were all evaluated on
  the same problems (a crossed design): each value y[s, p] is read as μ + seed_s + problem_p + residual,
  and the grand mean ȳ (over seeds of the mean over problems) gets the two-way ANOVA variance
      V = MS_seed / (nP) + max(0, MS_problem − MS_residual) / (nP),
  MS_seed = P·Σ_s (ȳ_s − ȳ)² / (n − 1), MS_problem = n·Σ_p (ȳ_p − ȳ)² / (P − 1),
  MS_residual = Σ (y − ȳ_s − ȳ_p + ȳ)² / ((n − 1)(P − 1)). The first term is exactly the t-interval over
  the seed means' sd² / n; the second is the variance the shared problems add (their variance component
  over P, method of moments, clamped at 0). The half width is `t(1 − α/2, df)·√V`, df by Satterthwaite
  rounded down (n − 1 when the problem term is 0), but never less than the t-interval over the seed
  means' `t(1 − α/2, n − 1)·√(MS_seed / (nP))`: Satterthwaite's df runs high exactly when the seed term
  is small by chance, which the t-interval's n − 1 df allow for (without this floor 2 seeds cover about
  0.93). No interval from a single seed (the seeds' variance is then unknown); one problem gives the
  t-interval over seeds. Why not a bootstrap: with 3 seeds a percentile bootstrap over seeds is
  about ±1.96·√(2/3)·SE where t(0.975, 2) is 4.30, and resampling problems independently within each seed
  treats the shared problems as n·P independent ones; both make intervals too narrow (simulated coverage
  in tests/unit/experiments/test_interval_coverage.py);
- the bootstrap is a percentile bootstrap of a mean: the interval is the (α/2, 1 − α/2) quantiles of the
  resampled statistic, linear between order statistics (numpy's default quantile);
- what is resampled is the *problem*: an evaluation draws k samples per problem, and those k share their
  problem, so they are not k independent draws of the evaluation set. Pass one value per problem (its mean
  over its k samples) and the problems are resampled with replacement, each problem's samples together;
- given several seeds the bootstrap resamples seeds with replacement, then, inside each drawn seed, that
  seed's problems with replacement; the statistic is the mean over the drawn seeds of the mean over their
  drawn problems. That ignores a crossed design and undercovers with few seeds: the experiment report
  uses the crossed t-interval; the bootstrap's use is one evaluation (one seed, its problems);
- the t-interval treats one value per seed as a normal sample: `mean ± t(1 − α/2, n − 1) · sd / √n`, sd
  with n − 1; no interval from a single seed;
- the sign test counts seeds whose value is above 0 and below 0; ties (|value| ≤ `TIE_TOLERANCE`, which
  absorbs the rounding of a mean of differences) are dropped; p = min(1, 2 · P(X ≤ min(above, below))),
  X ~ Binomial(above + below, 1/2); p = 1 when every seed ties.
The bootstrap's seed is fixed by default: the same values always give the same interval.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

DEFAULT_LEVEL = 0.95
DEFAULT_RESAMPLES = 2000
DEFAULT_SEED = 0
TIE_TOLERANCE = 1e-12


@dataclass(frozen=True)
class Interval:
    """A mean and its bootstrap confidence interval `[low, high]`."""

    mean: float
    low: float
    high: float


@dataclass(frozen=True)
class SeedInterval:
    """A mean over seeds and its t-interval; `low`/`high` are None where no interval exists (one seed)."""

    mean: float
    low: float | None
    high: float | None


@dataclass(frozen=True)
class SignCount:
    """Seeds above 0, below 0 and tied, and the exact two-sided sign-test p-value."""

    above: int
    below: int
    ties: int
    p_value: float


def _check(level: float, resamples: int) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level is a probability in (0, 1), e.g. 0.95; got {level}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1 (e.g. 2000); got {resamples}")


def seed_problem_draws(
    problem_counts: Sequence[int], resamples: int, seed: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """The bootstrap's index draws from `numpy.random.default_rng(seed)`, in this order:
    seeds `[R, n]` = `integers(0, n, (R, n))`, then problems `[R, n, P_max]` =
    `integers(0, P[seeds][..., None], (R, n, P_max))` (only the first `P[seed]` of a row are used)."""
    import numpy as np

    counts = np.asarray(problem_counts, dtype=np.int64)
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, len(counts), size=(resamples, len(counts)))
    # Equal counts draw with a scalar bound: the same numbers as the array bound, several times faster.
    bound = int(counts[0]) if (counts == counts[0]).all() else counts[seeds][..., None]
    problems = rng.integers(0, bound, size=(*seeds.shape, int(counts.max())))
    return seeds, problems


def bootstrap_seeds_problems(
    values: Sequence[Sequence[Sequence[float]]],
    *,
    level: float = DEFAULT_LEVEL,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> list[Interval]:
    """One interval per column of the mean over seeds of the mean over problems.

    values: [n seeds][P_s problems][C columns] (one seed: an evaluation's [P][C] rows); every column is
    resampled with the same draws (`seed_problem_draws`), so the budgets' intervals and the anytime score's
    come from the same resampled seeds and problems. The point estimate is the mean over seeds of each
    seed's mean over its problems. For an experiment's seeds on shared problems use `crossed_t_intervals`:
    this one's intervals over a few seeds are too narrow (see the module docstring).
    """
    import numpy as np

    _check(level, resamples)
    if not values or any(len(rows) == 0 for rows in values):
        raise ValueError("every seed needs at least one problem; got an empty seed or no seeds")
    arrays = [np.asarray(rows, dtype=np.float64) for rows in values]
    widths = {a.shape[1] if a.ndim == 2 else -1 for a in arrays}
    if len(widths) != 1 or -1 in widths:
        raise ValueError(
            f"every problem needs the same number of columns; got shapes {[a.shape for a in arrays]}"
        )
    counts = np.array([len(a) for a in arrays], dtype=np.int64)
    p_max, columns = int(counts.max()), widths.pop()
    padded = np.zeros((len(arrays), p_max, columns))
    for i, a in enumerate(arrays):
        padded[i, : len(a)] = a
    seeds, problems = seed_problem_draws(counts.tolist(), resamples, seed)
    # How often each drawn (resample, seed slot) drew each problem, then the drawn sums as one matrix
    # product per original seed: [R·n, P_max] @ [P_max, C] (no [R, n, P_max, C] gather in memory).
    slots = seeds.size
    used = np.arange(p_max) < counts[seeds][..., None]  # [R, n, P_max]
    flat = (np.arange(slots).reshape(seeds.shape)[..., None] * p_max + problems)[used]
    weights = np.bincount(flat, minlength=slots * p_max).reshape(slots, p_max).astype(np.float64)
    sums = np.empty((slots, columns))
    drawn = seeds.ravel()
    for i, rows in enumerate(padded):
        sums[drawn == i] = weights[drawn == i] @ rows
    statistic = (sums / counts[drawn][:, None]).reshape(*seeds.shape, columns).mean(1)  # [R, C]
    tail = (1.0 - level) / 2.0
    lows, highs = np.quantile(statistic, [tail, 1.0 - tail], axis=0)
    return [
        Interval(mean=float(np.mean([a[:, c].mean() for a in arrays])), low=float(low), high=float(high))
        for c, (low, high) in enumerate(zip(lows, highs, strict=True))
    ]


def crossed_t_intervals(
    values: Sequence[Sequence[Sequence[float]]], *, level: float = DEFAULT_LEVEL
) -> list[SeedInterval]:
    """One crossed t-interval (see the module docstring) per column of the mean over seeds of the mean over
    problems.

    values: [n seeds][P problems][C columns], every seed on the same P problems in the same order (a paired
    difference is just another column: its per-problem differences). The columns are independent: each gets
    its own variance and df. `low`/`high` are None with one seed.
    """
    import numpy as np

    _check(level, 1)
    wanted = "[seeds][problems][columns] values, every seed on the same (at least one) problems"
    try:
        y = np.asarray(values, dtype=np.float64)
    except ValueError as err:  # ragged: seeds with different problem counts or column counts
        raise ValueError(f"a crossed interval needs {wanted}; got ragged values ({err})") from err
    if y.ndim != 3 or 0 in y.shape:
        raise ValueError(f"a crossed interval needs {wanted}; got shape {y.shape}")
    n, p, _ = y.shape
    seed_means, problem_means = y.mean(axis=1), y.mean(axis=0)  # [n, C], [P, C]
    grand = seed_means.mean(axis=0)  # [C]
    if n == 1:
        return [SeedInterval(mean=float(m), low=None, high=None) for m in grand]
    seed_term = p * ((seed_means - grand) ** 2).sum(axis=0) / (n - 1) / (n * p)  # MS_seed / (nP)
    if p > 1:
        residual = y - seed_means[:, None, :] - problem_means[None, :, :] + grand
        ms_problem = n * ((problem_means - grand) ** 2).sum(axis=0) / (p - 1)
        ms_residual = (residual**2).sum(axis=(0, 1)) / ((n - 1) * (p - 1))
        problem_term = np.maximum(ms_problem - ms_residual, 0.0) / (n * p)
    else:
        ms_problem = ms_residual = problem_term = np.zeros_like(grand)
    # Satterthwaite's df: V² / Σ (c_i·MS_i)² / df_i over the mean squares in V (used where problem_term > 0).
    problem_df = max(p - 1, 1)
    satterthwaite = (
        seed_term**2 / (n - 1)
        + (ms_problem / (n * p)) ** 2 / problem_df
        + (ms_residual / (n * p)) ** 2 / ((n - 1) * problem_df)
    )
    out = []
    tail = 1.0 - (1.0 - level) / 2.0
    seeds_only = student_t_quantile(tail, n - 1)
    for mean, seeds, problems, spread in zip(grand, seed_term, problem_term, satterthwaite, strict=True):
        df = max(1, math.floor((seeds + problems) ** 2 / spread)) if problems > 0 else n - 1
        half = max(student_t_quantile(tail, df) * math.sqrt(seeds + problems), seeds_only * math.sqrt(seeds))
        out.append(SeedInterval(mean=float(mean), low=float(mean - half), high=float(mean + half)))
    return out


def t_interval(values: Sequence[float], *, level: float = DEFAULT_LEVEL) -> SeedInterval:
    """The mean of one value per seed and its Student-t interval (none from a single seed)."""
    if not values:
        raise ValueError("a t-interval needs at least one seed's value; got none")
    _check(level, 1)
    n = len(values)
    mean = math.fsum(values) / n
    if n == 1:
        return SeedInterval(mean=mean, low=None, high=None)
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = student_t_quantile(1.0 - (1.0 - level) / 2.0, n - 1) * sd / math.sqrt(n)
    return SeedInterval(mean=mean, low=mean - half, high=mean + half)


def student_t_cdf(t: float, df: int) -> float:
    """P(T ≤ t) for Student's t with integer `df` ≥ 1, from the closed-form finite series in θ = atan(t/√df)
    (Abramowitz & Stegun 26.7.3–4): A(t|df) = P(|T| < |t|)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1; got {df}")
    theta = math.atan(abs(t) / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    term, series = 1.0, 1.0
    if df % 2 == 1:
        for k in range(1, (df - 1) // 2):  # 1 + 2/3 c² + (2·4)/(3·5) c⁴ + …
            term *= c2 * (2 * k) / (2 * k + 1)
            series += term
        inside = (2 / math.pi) * (theta + (math.sin(theta) * math.cos(theta) * series if df > 1 else 0.0))
    else:
        for k in range(1, df // 2):  # 1 + 1/2 c² + (1·3)/(2·4) c⁴ + …
            term *= c2 * (2 * k - 1) / (2 * k)
            series += term
        inside = math.sin(theta) * series
    return 0.5 + math.copysign(inside / 2, t)


@functools.cache  # pure; the crossed intervals ask for the same few df over and over
def student_t_quantile(q: float, df: int) -> float:
    """The q-quantile of Student's t with integer `df` (bisection on `student_t_cdf`, to 1e-12)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"a quantile needs q in (0, 1); got {q}")
    low, high = -1.0, 1.0
    while student_t_cdf(low, df) > q:
        low *= 2
    while student_t_cdf(high, df) < q:
        high *= 2
    while high - low > 1e-12 * max(1.0, abs(high)):
        middle = (low + high) / 2
        low, high = (middle, high) if student_t_cdf(middle, df) < q else (low, middle)
    return (low + high) / 2


def sign_test(differences: Sequence[float]) -> SignCount:
    """Exact two-sided sign test of per-seed differences against 0 (see the module docstring)."""
    above = sum(d > TIE_TOLERANCE for d in differences)
    below = sum(d < -TIE_TOLERANCE for d in differences)
    return SignCount(above, below, len(differences) - above - below, binomial_two_sided_p(above, below))


def binomial_two_sided_p(successes: int, failures: int) -> float:
    """min(1, 2 · P(X ≤ min(successes, failures))) for X ~ Binomial(successes + failures, 1/2)."""
    n = successes + failures
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(successes, failures) + 1))
    return min(1.0, 2 * tail / 2**n)
