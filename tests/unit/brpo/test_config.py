"""One config switch turns BRPO into the paper's GRPO baseline; ablations set fields explicitly."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from anytime.brpo.budgets import PriorKind
from anytime.brpo.config import Algorithm, BRPOConfig, LossAggregation, SummaryMode, ThinkingBaseline


def test_brpo_defaults_are_the_papers() -> None:
    config = BRPOConfig()
    assert config.algorithm is Algorithm.BRPO
    assert (config.resolved_num_budgets, config.resolved_num_summaries) == (4, 4)
    assert config.resolved_baseline is ThinkingBaseline.BRPO
    assert config.resolved_summary_mode is SummaryMode.BRPO
    assert config.budget_prior().budgets == (2000, 4000, 6000, 8000)
    assert config.budget_prior().probs == (0.25,) * 4
    assert config.aggregation is LossAggregation.SEQ_SUM_CONST and config.kl_coef == 0.0
    assert (config.clip_low, config.clip_high, config.discount) == (0.2, 0.2, 2.0)


def test_grpo_is_one_switch() -> None:
    config = BRPOConfig(algorithm="grpo")
    assert (config.resolved_num_budgets, config.resolved_num_summaries) == (1, 1)
    assert config.resolved_baseline is ThinkingBaseline.V2
    assert config.resolved_summary_mode is SummaryMode.GRPO
    assert config.budget_prior().budgets == (8000,) and config.budget_prior().probs == (1.0,)


def test_grpo_refuses_several_budgets_and_points_to_the_ablation() -> None:
    with pytest.raises(ValidationError, match="summary_mode 'grpo' for the GRPO ablations"):
        BRPOConfig(algorithm="grpo", num_budgets=4)


def test_ablation_grpo_plus_linear() -> None:
    config = BRPOConfig(num_summaries=1, summary_mode="grpo", prior="linear", baseline="v2")
    assert config.budget_prior().probs == pytest.approx((0.1, 0.2, 0.3, 0.4))
    assert config.resolved_summary_mode is SummaryMode.GRPO


def test_explicit_probabilities_and_typos() -> None:
    config = BRPOConfig(probs=(0.1, 0.9), b_max=1000)
    assert config.budget_prior().budgets == (500, 1000)
    with pytest.raises(ValidationError, match="sum to 1"):
        BRPOConfig(probs=(0.1, 0.8))
    with pytest.raises(ValidationError, match="either `prior`"):
        BRPOConfig(probs=(0.5, 0.5), prior=PriorKind.UNIFORM)
    with pytest.raises(ValidationError):
        BRPOConfig(baseline="v3")
    with pytest.raises(ValidationError, match="Extra inputs"):
        BRPOConfig(clip=0.3)
