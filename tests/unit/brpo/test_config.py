"""One config switch turns BRPO into the paper's GRPO baseline; ablations set fields explicitly."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from anytime.brpo.budgets import PriorKind
from anytime.brpo.config import (
    PAPER_ARMS,
    Algorithm,
    BRPOConfig,
    LossAggregation,
    SummaryMode,
    ThinkingBaseline,
)
from anytime.run_config import RunConfig
from anytime.run_plan import RunPlan


def test_brpo_defaults_are_the_papers() -> None:
    config = BRPOConfig()
    assert config.algorithm is Algorithm.BRPO
    assert (config.resolved_num_budgets, config.resolved_num_summaries) == (4, 4)
    assert config.resolved_baseline is ThinkingBaseline.BRPO
    assert config.resolved_summary_mode is SummaryMode.BRPO
    assert config.budget_prior().budgets == (2000, 4000, 6000, 8000)
    assert config.budget_prior().probs == (0.25,) * 4
    assert config.aggregation is LossAggregation.SEQ_SUM_CONST and "kl_coef" not in BRPOConfig.model_fields
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


def test_grpo_with_several_summaries_is_refused_with_the_fix() -> None:
    # Neither the paper nor the authors run GRPO with A > 1 (their grpo summaries train one summary).
    with pytest.raises(ValidationError, match=r"S = 1, A = 1\); got S = 1, A = 4"):
        BRPOConfig(algorithm="grpo", num_summaries=4)
    with pytest.raises(ValidationError, match=r"needs num_summaries 1 \(got 4\)\. Set num_summaries 1"):
        BRPOConfig(summary_mode="grpo")  # A = 4 by default for brpo
    with pytest.raises(ValidationError, match="needs num_summaries 1"):
        RunConfig(model="m", dataset="d.jsonl", summary_mode="grpo", num_summaries=2)
    assert BRPOConfig(summary_mode="grpo", num_summaries=1).resolved_summary_mode is SummaryMode.GRPO


def test_summary_modes_are_named_and_the_authors_pooling_is_the_default() -> None:
    assert BRPOConfig().resolved_summary_mode is SummaryMode.BRPO
    assert BRPOConfig(summary_mode="brpo_per_budget").resolved_summary_mode is SummaryMode.BRPO_PER_BUDGET
    run = RunConfig(model="m", dataset="d.jsonl", summary_mode="brpo_per_budget")
    assert RunPlan.from_config(run).brpo.resolved_summary_mode is SummaryMode.BRPO_PER_BUDGET
    with pytest.raises(ValidationError):
        RunConfig(model="m", dataset="d.jsonl", summary_mode="per_budget")


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


# ---------------------------------------------------------------- the loss constant


def test_loss_constant_is_one_for_brpo_and_grpo_with_the_same_budget_and_summary_length() -> None:
    brpo = RunConfig(model="m", dataset="d.jsonl", b_max=128, summary_max_tokens=24, num_summaries=2)
    grpo = RunConfig(model="m", dataset="d.jsonl", b_max=128, summary_max_tokens=24, algorithm="grpo")
    # b_max + 4·4·summary_max_tokens, whatever S and A (BRPO here: S·A = 8; GRPO: 1).
    assert (
        RunPlan.from_config(brpo).brpo.resolved_loss_normalizer
        == RunPlan.from_config(grpo).brpo.resolved_loss_normalizer
        == 512
    )
    arms = {
        RunPlan.from_config(RunConfig(model="m", dataset="d.jsonl", **arm)).brpo
        for arm in PAPER_ARMS.values()
    }
    assert {config.resolved_loss_normalizer for config in arms} == {128 + 16 * 32}
    # The authors' setting: 8000 + 16·128 = 10048 (their max response length: 10176).
    assert (
        BRPOConfig().resolved_loss_normalizer
        == BRPOConfig(algorithm="grpo").resolved_loss_normalizer
        == 10048
    )


def test_loss_constant_can_be_set_and_reaches_the_algorithm_config() -> None:
    run = RunConfig(model="m", dataset="d.jsonl", algorithm="grpo", loss_normalizer=1000)
    assert RunPlan.from_config(run).brpo.resolved_loss_normalizer == 1000
    with pytest.raises(ValidationError):
        RunConfig(model="m", dataset="d.jsonl", loss_normalizer=0)


# ---------------------------------------------------------------- the paper's arms (docs/method.md §5.4)

# arm: (S, A, summary mode, prior, thinking baseline), copied from docs/method.md §5.4's table.
PAPER_TABLE = {
    "grpo": (1, 1, "grpo", (1.0,), "v2"),
    "ar-linear": (4, 4, "brpo", (0.1, 0.2, 0.3, 0.4), "brpo"),
    "ar-uniform": (4, 4, "brpo", (0.25,) * 4, "brpo"),
    "ar-base": (4, 4, "brpo", (0.0, 0.0, 0.0, 1.0), "brpo"),
    "grpo+linear": (4, 1, "grpo", (0.1, 0.2, 0.3, 0.4), "v2"),
    "grpo+decouple": (4, 4, "brpo", (0.0, 0.0, 0.0, 1.0), "v2"),
    "grpo+vr": (4, 1, "grpo", (0.0, 0.0, 0.0, 1.0), "brpo"),
    "grpo+vr+decouple": (4, 4, "brpo", (0.0, 0.0, 0.0, 1.0), "brpo"),
}


@pytest.mark.parametrize("arm", sorted(PAPER_TABLE))
def test_the_run_config_launches_each_paper_arm(arm: str) -> None:
    run = RunConfig(model="m", dataset="d.jsonl", b_max=8000, **PAPER_ARMS[arm])
    assert RunConfig.model_validate(run.model_dump(mode="json")) == run  # as the API stores and reloads it
    config = RunPlan.from_config(run).brpo
    num_budgets, num_summaries, summary_mode, probs, baseline = PAPER_TABLE[arm]
    assert (config.resolved_num_budgets, config.resolved_num_summaries) == (num_budgets, num_summaries)
    assert config.resolved_summary_mode == summary_mode and config.resolved_baseline == baseline
    assert config.budget_prior().probs == pytest.approx(probs)
    expected_budgets = (8000,) if num_budgets == 1 else (2000, 4000, 6000, 8000)
    assert config.budget_prior().budgets == expected_budgets
