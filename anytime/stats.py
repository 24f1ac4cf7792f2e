"""Bootstrap confidence intervals over problems (standard library only: torch- and numpy-free).

Simplifications first: a percentile bootstrap of a mean; the interval is the (α/2, 1 − α/2) quantiles of
the resampled means, interpolated linearly between order statistics (numpy's default quantile).

What is resampled is the *problem*: an evaluation draws k samples per problem, and those k share their
problem, so they are not k independent draws of the evaluation set. Pass one value per problem (its mean
over its k samples) and the problems are resampled with replacement with each problem's samples kept
together. A paired comparison of two policies on the same problems passes the per-problem differences.

The seed is fixed by default: the same values always give the same interval.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_LEVEL = 0.95
DEFAULT_RESAMPLES = 2000
DEFAULT_SEED = 0


@dataclass(frozen=True)
class Interval:
    """A mean over problems and its bootstrap confidence interval `[low, high]`."""

    mean: float
    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def overlaps(self, other: Interval) -> bool:
        return self.low <= other.high and other.low <= self.high


def bootstrap_mean_cis(
    columns: Sequence[Sequence[float]],
    *,
    level: float = DEFAULT_LEVEL,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> list[Interval]:
    """One interval per column; every column holds one value per problem (the same problems, in the same
    order), and all columns are resampled with the same problem draws, so the intervals of different
    budgets (and of their mean, the anytime score) come from the same resampled evaluation sets.
    Shapes: columns [C][n] → C intervals."""
    if not columns:
        return []
    n = len(columns[0])
    if n == 0 or any(len(column) != n for column in columns):
        raise ValueError(
            f"every column needs one value per problem, at least one; got lengths {[len(c) for c in columns]}"
        )
    if not 0.0 < level < 1.0:
        raise ValueError(f"level is a probability in (0, 1), e.g. 0.95; got {level}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1 (e.g. 2000); got {resamples}")
    rng = random.Random(seed)
    problems = range(n)
    means: list[list[float]] = [[] for _ in columns]
    for _ in range(resamples):
        draw = rng.choices(problems, k=n)
        for column, out in zip(columns, means, strict=True):
            out.append(math.fsum(map(column.__getitem__, draw)) / n)  # fsum: a constant column is exact
    tail = (1.0 - level) / 2.0
    intervals = []
    for column, resampled in zip(columns, means, strict=True):
        resampled.sort()
        intervals.append(
            Interval(
                mean=math.fsum(column) / n,
                low=_quantile(resampled, tail),
                high=_quantile(resampled, 1.0 - tail),
            )
        )
    return intervals


def bootstrap_mean_ci(
    per_problem_values: Sequence[float],
    *,
    level: float = DEFAULT_LEVEL,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> Interval:
    """The mean of one value per problem and its percentile-bootstrap interval (problems resampled with
    replacement, `resamples` times, from `random.Random(seed)`)."""
    return bootstrap_mean_cis([per_problem_values], level=level, resamples=resamples, seed=seed)[0]


def _quantile(ordered: Sequence[float], q: float) -> float:
    """The q-quantile of sorted values, linear between order statistics."""
    position = q * (len(ordered) - 1)
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)
