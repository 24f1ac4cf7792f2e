"""Bootstrap intervals over problems: hand-made per-problem values, checked against direct computations."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from anytime.stats import Interval, bootstrap_mean_ci, bootstrap_mean_cis


def test_a_constant_vector_has_a_zero_width_interval_at_its_value() -> None:
    interval = bootstrap_mean_ci([0.75] * 7)
    assert interval == Interval(mean=0.75, low=0.75, high=0.75)
    third = bootstrap_mean_ci([1 / 3] * 7)  # not exactly representable: still one number throughout
    assert third.low == third.mean == third.high == pytest.approx(1 / 3)


def test_a_small_case_equals_a_direct_percentile_bootstrap_with_the_same_seed() -> None:
    values = [0.0, 0.25, 1.0, 0.5, 1.0]
    resamples, seed = 500, 7
    rng = random.Random(seed)
    means = sorted(
        sum(values[i] for i in rng.choices(range(len(values)), k=len(values))) / len(values)
        for _ in range(resamples)
    )

    def quantile(q: float) -> float:  # linear between order statistics (numpy's default)
        position = q * (resamples - 1)
        lo = math.floor(position)
        return means[lo] + (means[lo + 1] - means[lo]) * (position - lo)

    interval = bootstrap_mean_ci(values, resamples=resamples, seed=seed)
    assert interval.mean == pytest.approx(0.55)
    assert interval.low == pytest.approx(quantile(0.025))
    assert interval.high == pytest.approx(quantile(0.975))
    assert interval.low < interval.mean < interval.high
    assert bootstrap_mean_ci(values, resamples=resamples, seed=seed) == interval  # the seed fixes it


def test_two_problems_zero_and_one_give_the_whole_unit_interval() -> None:
    # Resampled means are 0, 1/2, 1 with probabilities 1/4, 1/2, 1/4: the 2.5 % and 97.5 % quantiles are 0, 1.
    interval = bootstrap_mean_ci([0.0, 1.0], resamples=2000)
    assert (interval.low, interval.mean, interval.high) == (0.0, 0.5, 1.0)
    narrower = bootstrap_mean_ci([0.0, 1.0], level=0.4, resamples=2000)
    assert (narrower.low, narrower.high) == (0.5, 0.5)


def test_columns_share_the_problem_draws() -> None:
    accuracy = [[0.0, 1.0, 0.5, 1.0], [1.0, 1.0, 0.5, 0.0]]
    together = bootstrap_mean_cis(accuracy, resamples=300, seed=3)
    alone = [bootstrap_mean_ci(column, resamples=300, seed=3) for column in accuracy]
    assert together == alone
    # Per-problem differences (a paired comparison) are just another column.
    difference = [a - b for a, b in zip(*accuracy, strict=True)]
    paired = bootstrap_mean_ci(difference, resamples=300, seed=3)
    assert paired.mean == pytest.approx(together[0].mean - together[1].mean)


def test_more_problems_narrow_the_interval() -> None:
    rng = random.Random(0)
    few = [float(rng.random() < 0.5) for _ in range(20)]
    many = few * 16
    assert bootstrap_mean_ci(many).high - bootstrap_mean_ci(many).low < (
        bootstrap_mean_ci(few).high - bootstrap_mean_ci(few).low
    )


@pytest.mark.parametrize(
    ("columns", "kwargs", "message"),
    [
        ([[]], {}, "at least one"),
        ([[1.0], [1.0, 0.0]], {}, "one value per problem"),
        ([[1.0]], {"level": 1.0}, "level"),
        ([[1.0]], {"resamples": 0}, "resamples"),
    ],
)
def test_bad_inputs_are_refused(columns: list[list[float]], kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bootstrap_mean_cis(columns, **kwargs)
