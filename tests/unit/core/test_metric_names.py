"""The learner's metric names that are read back: what `anytime.metric_names` builds, it reads."""

from __future__ import annotations

import pytest

from anytime.metric_names import (
    budget_reward_metric,
    masked_traces_metric,
    read_variance_ratios,
    reward_metric_budget,
    variance_ratio_key,
    variance_ratio_metric,
    variance_summary_metric,
)


@pytest.mark.parametrize("budget", [1, 16, 8000])
def test_a_reward_name_reads_back_as_its_budget(budget: int) -> None:
    assert budget_reward_metric(budget) == f"reward/budget_{budget}/mean"
    assert reward_metric_budget(budget_reward_metric(budget)) == budget


@pytest.mark.parametrize(
    "name",
    ["reward/mean", "reward/budget_16", "reward/budget_x/mean", "reward/budget_16/mean/x", "anytime/score"],
)
def test_other_names_have_no_reward_budget(name: str) -> None:
    assert reward_metric_budget(name) is None


def test_variance_names_read_back_as_baseline_and_budget() -> None:
    assert variance_ratio_metric(64, "brpo") == "variance/budget_64/brpo"
    assert variance_ratio_key(variance_ratio_metric(64, "brpo")) == ("brpo", 64)
    assert variance_summary_metric("v2") == "variance/v2"
    assert variance_ratio_key(variance_summary_metric("v2")) == ("v2", None)
    assert masked_traces_metric(64) == "variance/budget_64/traces"
    assert variance_ratio_key(masked_traces_metric(64)) is None  # a count, not a ratio
    assert variance_ratio_key("reward/budget_64/mean") is None


def test_a_step_reads_back_its_ratios_and_summaries_only() -> None:
    step = {"variance/brpo": 0.9, "variance/budget_8/brpo": 0.2, "variance/budget_8/traces": 4.0, "x": 1.0}
    assert read_variance_ratios(step) == {("brpo", None): 0.9, ("brpo", 8): 0.2}
