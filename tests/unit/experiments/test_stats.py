"""`anytime.stats` on hand-made values: the crossed t-interval (seeds × shared problems) by hand and
against a direct loop, the bootstrap (seeds, then problems; one seed: an evaluation's problems) against a
direct loop and known answers, the t-interval, the sign test. Its coverage: test_interval_coverage."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import pytest

from anytime.stats import (
    Interval,
    SeedInterval,
    binomial_two_sided_p,
    bootstrap_seeds_problems,
    crossed_t_intervals,
    sign_test,
    student_t_quantile,
    t_interval,
)


def direct_bootstrap(per_seed: list[list[float]], resamples: int, seed: int) -> tuple[float, float]:
    """The documented bootstrap written out with loops: seeds with replacement, then problems within each
    drawn seed; the statistic is the mean over all drawn (seed, problem) values (equal problem counts)."""
    n, p = len(per_seed), len(per_seed[0])
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, n, size=(resamples, n))
    problems = rng.integers(0, p, size=(resamples, n, p))
    statistic = []
    for r in range(resamples):
        drawn = [per_seed[seeds[r, i]][problems[r, i, j]] for i in range(n) for j in range(p)]
        statistic.append(sum(drawn) / len(drawn))
    low, high = np.percentile(statistic, [2.5, 97.5])
    return float(low), float(high)


def direct_crossed(y: list[list[float]], level: float = 0.95) -> tuple[float, float]:
    """The documented crossed t-interval written out with loops over y[seed][problem] (n, P ≥ 2)."""
    n, p = len(y), len(y[0])
    grand = sum(map(sum, y)) / (n * p)
    seed = [sum(row) / p for row in y]
    problem = [sum(row[j] for row in y) / n for j in range(p)]
    ms_seed = p * sum((m - grand) ** 2 for m in seed) / (n - 1)
    ms_problem = n * sum((m - grand) ** 2 for m in problem) / (p - 1)
    ms_residual = sum((y[i][j] - seed[i] - problem[j] + grand) ** 2 for i in range(n) for j in range(p)) / (
        (n - 1) * (p - 1)
    )
    a, b = ms_seed / (n * p), max(ms_problem - ms_residual, 0.0) / (n * p)
    q = 1 - (1 - level) / 2
    if b > 0:
        spread = a**2 / (n - 1) + (ms_problem / (n * p)) ** 2 / (p - 1)
        spread += (ms_residual / (n * p)) ** 2 / ((n - 1) * (p - 1))
        df = max(1, math.floor((a + b) ** 2 / spread))
    else:
        df = n - 1
    half = max(student_t_quantile(q, df) * math.sqrt(a + b), student_t_quantile(q, n - 1) * math.sqrt(a))
    return grand - half, grand + half


def _one_column(values: list[float], **kwargs: Any) -> Interval:
    """An evaluation's bootstrap of one column: one seed, one value per problem."""
    return bootstrap_seeds_problems([[[v] for v in values]], **kwargs)[0]


# ------------------------------------------------------------------------------- crossed t-interval


def test_crossed_t_interval_by_hand() -> None:
    # y[seed][problem] = [[.25, .25, .5], [0, .5, .75]]: seed means 1/3, 5/12; problem means 1/8, 3/8, 5/8;
    # grand 3/8. MS_seed = 3·2·(1/24)²/1 = 1/96, MS_problem = 2·(2·(1/4)²)/2 = 1/8, residuals ±1/6, ∓1/12,
    # ∓1/12 → MS_residual = (1/12)/2 = 1/24. V = (1/96 + 1/8 − 1/24)/6 = 1/64, √V = 1/8.
    # Satterthwaite: V² = 81/331776 over (1/576)² + (1/48)²/2 + (1/144)²/2 = 81/331776 → df 1.
    (got,) = crossed_t_intervals([[[0.25], [0.25], [0.5]], [[0.0], [0.5], [0.75]]])
    assert got.mean == pytest.approx(0.375)
    assert (got.low, got.high) == pytest.approx((0.375 - 12.7062047 / 8, 0.375 + 12.7062047 / 8), abs=1e-6)


def test_shared_problems_that_add_nothing_give_the_t_interval_over_seed_means() -> None:
    # y = [[.25, 0, .25], [.25, .25, −.25]]: MS_problem = 1/32 < MS_residual = 7/96, so the problem term is
    # 0 and the interval is the t-interval over the seed means 1/6 and 1/12: 1/8 ± 12.706 · (1/24).
    values = [[0.25, 0.0, 0.25], [0.25, 0.25, -0.25]]
    (got,) = crossed_t_intervals([[[v] for v in row] for row in values])
    seeds = t_interval([sum(row) / 3 for row in values])
    assert (got.mean, got.low, got.high) == pytest.approx((seeds.mean, seeds.low, seeds.high), abs=1e-12)
    assert got.high == pytest.approx(0.125 + 12.7062047 / 24, abs=1e-6)


def test_crossed_t_interval_equals_a_direct_loop_and_is_never_narrower_than_over_seeds() -> None:
    rng = np.random.default_rng(3)
    for n, p in [(2, 5), (3, 32), (6, 17)]:
        problems = rng.normal(0, rng.uniform(0, 0.3), (1, p, 8))
        y = rng.normal(0.5, 0.1, (n, 1, 8)) + problems + rng.normal(0, 0.2, (n, p, 8))  # 8 columns
        got = crossed_t_intervals(y.tolist())
        for c, interval in enumerate(got):
            column = y[:, :, c].tolist()
            assert interval.mean == pytest.approx(np.mean(column), abs=1e-12)
            assert (interval.low, interval.high) == pytest.approx(direct_crossed(column), abs=1e-12)
            seeds = t_interval([sum(row) / p for row in column])
            low, high = interval.low, interval.high
            assert low is not None and high is not None and seeds.low is not None and seeds.high is not None
            assert low <= seeds.low + 1e-12 and high >= seeds.high - 1e-12


def test_crossed_t_interval_edge_cases() -> None:
    # One seed: no interval; one problem: the t-interval over seeds; a constant: zero width at it.
    assert crossed_t_intervals([[[0.5], [1.0]]]) == [SeedInterval(mean=0.75, low=None, high=None)]
    (one_problem,) = crossed_t_intervals([[[0.5]], [[0.7]]])
    seeds = t_interval([0.5, 0.7])
    assert (one_problem.low, one_problem.high) == pytest.approx((seeds.low, seeds.high), abs=1e-12)
    assert crossed_t_intervals([[[0.25]] * 3] * 2) == [SeedInterval(mean=0.25, low=0.25, high=0.25)]
    with pytest.raises(ValueError, match="same"):
        crossed_t_intervals([[[1.0], [0.0]], [[1.0]]])
    with pytest.raises(ValueError, match="level"):
        crossed_t_intervals([[[1.0]], [[0.0]]], level=0.0)


# ------------------------------------------------------------------------------------------ bootstrap


def test_bootstrap_equals_a_direct_loop_implementation() -> None:
    values = [[0.25, 0.25, 0.5], [0.0, 0.5, 0.75]]
    got = bootstrap_seeds_problems([[[v] for v in seed] for seed in values], resamples=400, seed=7)[0]
    low, high = direct_bootstrap(values, 400, 7)
    assert got.mean == pytest.approx(0.375)
    assert (got.low, got.high) == pytest.approx((low, high), abs=1e-12)
    assert got.low < 0.375 < got.high


def test_one_seed_is_the_bootstrap_over_its_problems() -> None:
    values = [0.0, 0.25, 1.0, 0.5, 1.0]
    interval = _one_column(values, resamples=500, seed=7)
    assert interval.mean == pytest.approx(0.55)
    assert (interval.low, interval.high) == pytest.approx(direct_bootstrap([values], 500, 7), abs=1e-12)
    assert interval.low < interval.mean < interval.high
    assert _one_column(values, resamples=500, seed=7) == interval  # the seed fixes it


def test_bootstrap_known_answers() -> None:
    # Problems agree within each seed: only the seed draw matters → {a, (a+b)/2, b} w.p. 1/4, 1/2, 1/4.
    between = bootstrap_seeds_problems([[[0.2]] * 3, [[0.6]] * 3], resamples=2000, seed=0)[0]
    assert (between.low, between.high) == pytest.approx((0.2, 0.6))
    # One seed, problems 0 and 1 → drawn means {0, 1/2, 1} w.p. 1/4, 1/2, 1/4.
    within = bootstrap_seeds_problems([[[0.0], [1.0]]], resamples=2000, seed=0)[0]
    assert (within.mean, within.low, within.high) == (0.5, 0.0, 1.0)
    narrower = bootstrap_seeds_problems([[[0.0], [1.0]]], level=0.4, resamples=2000, seed=0)[0]
    assert (narrower.low, narrower.high) == (0.5, 0.5)


def test_a_constant_column_has_a_zero_width_interval_at_its_value() -> None:
    assert _one_column([0.75] * 7) == Interval(mean=0.75, low=0.75, high=0.75)
    constant = bootstrap_seeds_problems([[[0.25]] * 3, [[0.25]] * 2], resamples=50, seed=3)[0]
    assert (constant.mean, constant.low, constant.high) == (0.25, 0.25, 0.25)
    third = _one_column([1 / 3] * 7)  # not exactly representable: within rounding of it
    assert third.low == pytest.approx(1 / 3) and third.high == pytest.approx(1 / 3)


def test_columns_share_the_problem_draws() -> None:
    accuracy = [[0.0, 1.0, 0.5, 1.0], [1.0, 1.0, 0.5, 0.0]]  # [budget][problem]
    rows = [list(row) for row in zip(*accuracy, strict=True)]  # [problem][budget]
    together = bootstrap_seeds_problems([rows], resamples=300, seed=3)
    alone = [_one_column(column, resamples=300, seed=3) for column in accuracy]
    assert together == alone
    # Per-problem differences (a paired comparison) are just another column.
    difference = [a - b for a, b in zip(*accuracy, strict=True)]
    paired = _one_column(difference, resamples=300, seed=3)
    assert paired.mean == pytest.approx(together[0].mean - together[1].mean)


def test_more_problems_narrow_the_interval() -> None:
    rng = random.Random(0)
    few = [float(rng.random() < 0.5) for _ in range(20)]
    wide, narrow = _one_column(few), _one_column(few * 16)
    assert narrow.high - narrow.low < wide.high - wide.low


@pytest.mark.parametrize(
    ("values", "kwargs", "message"),
    [
        ([], {}, "at least one problem"),
        ([[]], {}, "at least one problem"),
        ([[[1.0]], [[1.0, 0.0]]], {}, "same number of columns"),
        ([[[1.0]]], {"level": 1.0}, "level"),
        ([[[1.0]]], {"resamples": 0}, "resamples"),
    ],
)
def test_bad_inputs_are_refused(values: Any, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bootstrap_seeds_problems(values, **kwargs)


# ---------------------------------------------------------------------------- t-interval, sign test


@pytest.mark.parametrize(
    ("above", "below", "p"),
    [
        (3, 0, 0.25),
        (5, 0, 0.0625),
        (0, 5, 0.0625),
        (4, 1, 12 / 32),
        (7, 3, 2 * 176 / 1024),
        (1, 1, 1.0),
        (0, 0, 1.0),
    ],
)
def test_two_sided_binomial_p_matches_hand_computed(above: int, below: int, p: float) -> None:
    # e.g. 7 vs 3: 2 * (C(10,0) + C(10,1) + C(10,2) + C(10,3)) / 2^10 = 2 * 176 / 1024
    assert binomial_two_sided_p(above, below) == pytest.approx(p, abs=1e-15)


def test_sign_test_drops_ties_including_rounding() -> None:
    count = sign_test([0.1, 0.2, 0.3, 0.0, 1e-16])
    assert (count.above, count.below, count.ties) == (3, 0, 2)
    assert count.p_value == pytest.approx(0.25)


@pytest.mark.parametrize(("df", "table"), [(1, 12.7062), (2, 4.3027), (4, 2.7764), (5, 2.5706), (30, 2.0423)])
def test_student_t_quantile_matches_the_table(df: int, table: float) -> None:
    assert student_t_quantile(0.975, df) == pytest.approx(table, abs=1e-4)


def test_t_interval_by_hand() -> None:
    # mean 0.6, sd = sqrt(0.02), half width = t(0.975, 1) * sd / sqrt(2) = 12.7062047 * 0.1
    interval = t_interval([0.5, 0.7])
    assert interval.mean == pytest.approx(0.6)
    assert interval.low == pytest.approx(0.6 - 1.27062047, abs=1e-6)
    assert interval.high == pytest.approx(0.6 + 1.27062047, abs=1e-6)
    assert t_interval([0.5]).low is None
