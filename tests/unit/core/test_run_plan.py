"""`RunPlan`: a run's budgets, prior and job settings, resolved once from its config (hand-computed cases)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from anytime.contracts.learn import LearnerConfig
from anytime.run_config import RunConfig
from anytime.run_plan import RunPlan, resolved_params


def test_brpo_plan_has_four_uniform_budgets_and_the_eval_grid() -> None:
    config = RunConfig(model="m", dataset="d", b_max=128, num_budgets=4, eval_num_budgets=2, lr=3e-6)
    plan = RunPlan.from_config(config)
    assert plan.prior.budgets == (32, 64, 96, 128) and plan.prior.probs == (0.25,) * 4
    assert plan.prior_name == "uniform"
    assert plan.rollout.budgets == plan.prior.budgets
    assert (plan.rollout.group_size, plan.rollout.num_summaries, plan.rollout.summary_max_tokens) == (
        4,
        4,
        32,
    )
    assert plan.sampling.temperature == 1.0
    assert plan.learner.brpo.budget_prior() == plan.prior and plan.learner.lr == 3e-6
    assert plan.eval_budgets == (64, 128) and plan.learner.eval_budgets == (64, 128)
    assert (plan.eval_sampling.num_samples, plan.eval_sampling.temperature) == (4, 0.6)
    # 128 + 4 · 4 · 32: the paper's tree room, whatever the arm
    assert plan.brpo.resolved_loss_normalizer == 128 + 16 * 32 == 640


def test_grpo_plan_is_one_budget_one_summary() -> None:
    plan = RunPlan.from_config(RunConfig(model="m", dataset="d", algorithm="grpo", b_max=128))
    assert plan.prior.budgets == (128,) and plan.prior.probs == (1.0,) and plan.prior_name == "base"
    assert plan.rollout.num_summaries == 1 and plan.brpo.resolved_baseline.value == "v2"
    assert plan.eval_budgets == (32, 64, 96, 128)  # the grid is the run's, not the algorithm's


def test_linear_prior_and_greedy_eval() -> None:
    plan = RunPlan.from_config(
        RunConfig(model="m", dataset="d", b_max=40, num_budgets=4, prior="linear", eval_temperature=0)
    )
    assert plan.prior.budgets == (10, 20, 30, 40)
    assert plan.prior.probs == pytest.approx((0.1, 0.2, 0.3, 0.4))
    assert plan.eval_sampling.num_samples == 1 and plan.eval_sampling.greedy


def test_the_learner_section_reaches_the_learner_and_unset_knobs_stay_the_papers() -> None:
    default = RunPlan.from_config(RunConfig(model="m", dataset="d")).learner
    paper = LearnerConfig()
    assert (default.mini_batches, default.weight_decay, default.brpo.clip_high) == (
        paper.mini_batches,
        paper.weight_decay,
        paper.brpo.clip_high,
    )
    config = RunConfig.model_validate(
        {
            "model": "m",
            "dataset": "d",
            "learner": {"clip_high": 0.28, "mini_batches": 4, "micro_batch_tokens": 4096, "weight_decay": 0},
        }
    )
    learner = RunPlan.from_config(config).learner
    assert (learner.brpo.clip_high, learner.brpo.clip_low) == (0.28, 0.2)
    assert (learner.mini_batches, learner.micro_batch_tokens, learner.weight_decay) == (4, 4096, 0.0)
    knobs = RunPlan.from_config(config).resolved()["learner"]
    assert (knobs["clip_high"], knobs["mini_batches"], knobs["weight_decay"]) == (0.28, 4, 0.0)
    # MLflow params: flattened to learner.clip_high, …
    assert resolved_params(config, RunPlan.from_config(config))["learner"] == knobs


@pytest.mark.parametrize(
    ("learner", "words"),
    [
        ({"temperature": 1.0}, "not a learner knob: set rollout.temperature"),
        ({"seed": 1}, "not a learner knob: set the run's seed"),
        ({"typo": 1}, "learner.typo\n  Extra inputs are not permitted"),
        ({"mini_batches": 0}, "greater than or equal to 1"),
        ({"old_logprobs": "rollout"}, "temperature 1"),
    ],
)
def test_a_bad_learner_section_is_refused_with_a_message(learner: dict[str, object], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        RunConfig.model_validate({"model": "m", "dataset": "d", "temperature": 0.7, "learner": learner})


def test_a_flat_body_and_its_sections_are_one_config() -> None:
    flat = {
        "model": "m",
        "dataset": "d",
        "b_max": 64,
        "num_budgets": 2,
        "lr": 1e-4,
        "eval_dataset": "e",
        "eval_samples": 2,
        "temperature": 1.0,
        "max_staleness": 1,
        "rollout_shards": 3,
    }
    nested = {
        "model": "m",
        "dataset": "d",
        "method": {"b_max": 64, "num_budgets": 2},
        "learner": {"lr": 1e-4},
        "evaluation": {"dataset": "e", "samples": 2},
        "rollout": {"temperature": 1.0, "max_staleness": 1, "shards": 3},
    }
    config = RunConfig.model_validate(flat)
    assert config == RunConfig.model_validate(nested)
    assert (config.method.b_max, config.learner.lr, config.evaluation.dataset, config.rollout.shards) == (
        64,
        1e-4,
        "e",
        3,
    )
    # The stored form (nested, every default filled in) and the flat view validate to the same config.
    assert RunConfig.model_validate(config.model_dump(mode="json")) == config
    assert RunConfig.model_validate(config.flat()) == config
    assert {k: config.flat()[k] for k in flat} == flat


def test_a_field_set_flat_and_in_its_section_is_refused_unless_equal() -> None:
    with pytest.raises(ValidationError, match=r"b_max and method\.b_max are one field set twice"):
        RunConfig.model_validate({"model": "m", "dataset": "d", "b_max": 64, "method": {"b_max": 32}})
    same = RunConfig.model_validate({"model": "m", "dataset": "d", "b_max": 64, "method": {"b_max": 64}})
    assert same.method.b_max == 64


def test_the_learner_keys_that_moved_still_work_from_the_learner_section() -> None:
    old = RunConfig.model_validate(
        {"model": "m", "dataset": "d", "learner": {"clip_high": 0.28, "max_policy_lag": 1}}
    )
    assert (old.method.clip_high, old.rollout.max_staleness) == (0.28, 1)
    assert RunPlan.from_config(old).learner.max_staleness == 1


def test_presets_are_defaults_for_what_a_body_leaves_out() -> None:
    tiny = RunConfig(model="m", dataset="d")
    paper = RunConfig(model="m", dataset="d", preset="paper-1.5b")
    assert (tiny.method.b_max, tiny.method.group_size, tiny.method.summary_max_tokens, tiny.learner.lr) == (
        128,
        4,
        32,
        1e-5,
    )
    assert (paper.method.b_max, paper.method.group_size, paper.method.summary_max_tokens) == (8000, 8, 128)
    assert paper.learner.lr == 1e-6
    # What a body sets wins over its preset's default.
    assert RunConfig(model="m", dataset="d", preset="paper-1.5b", b_max=4000).method.b_max == 4000
    with pytest.raises(ValidationError, match="preset"):
        RunConfig(model="m", dataset="d", preset="huge")
