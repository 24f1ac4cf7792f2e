"""`RunPlan`: a run's budgets, prior and job settings, resolved once from its config (hand-computed cases)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from anytime.contracts.learn import LearnerConfig
from anytime.run_config import RunConfig


def test_brpo_plan_has_four_uniform_budgets_and_the_eval_grid() -> None:
    config = RunConfig(model="m", dataset="d", b_max=128, num_budgets=4, eval_num_budgets=2, lr=3e-6)
    plan = config.plan()
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
    plan = RunConfig(model="m", dataset="d", algorithm="grpo", b_max=128).plan()
    assert plan.prior.budgets == (128,) and plan.prior.probs == (1.0,) and plan.prior_name == "base"
    assert plan.rollout.num_summaries == 1 and plan.brpo.resolved_baseline.value == "v2"
    assert plan.eval_budgets == (32, 64, 96, 128)  # the grid is the run's, not the algorithm's


def test_linear_prior_and_greedy_eval() -> None:
    plan = RunConfig(
        model="m", dataset="d", b_max=40, num_budgets=4, prior="linear", eval_temperature=0
    ).plan()
    assert plan.prior.budgets == (10, 20, 30, 40)
    assert plan.prior.probs == pytest.approx((0.1, 0.2, 0.3, 0.4))
    assert plan.eval_sampling.num_samples == 1 and plan.eval_sampling.greedy


def test_the_learner_section_reaches_the_learner_and_unset_knobs_stay_the_papers() -> None:
    default = RunConfig(model="m", dataset="d").plan().learner
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
    learner = config.plan().learner
    assert (learner.brpo.clip_high, learner.brpo.clip_low) == (0.28, 0.2)
    assert (learner.mini_batches, learner.micro_batch_tokens, learner.weight_decay) == (4, 4096, 0.0)
    knobs = config.plan().resolved()["learner"]
    assert (knobs["clip_high"], knobs["mini_batches"], knobs["weight_decay"]) == (0.28, 4, 0.0)
    assert config.resolved_params()["learner"] == knobs  # MLflow params: flattened to learner.clip_high, …


@pytest.mark.parametrize(
    ("learner", "words"),
    [
        ({"lr": 1e-6}, "a top-level run field"),
        ({"typo": 1}, "unknown learner key"),
        ({"mini_batches": 0}, "greater than or equal to 1"),
        ({"old_logprobs": "rollout"}, "temperature 1"),
    ],
)
def test_a_bad_learner_section_is_refused_with_a_message(learner: dict[str, object], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        RunConfig.model_validate({"model": "m", "dataset": "d", "temperature": 0.7, "learner": learner})


def test_a_flat_body_is_unchanged_by_the_section() -> None:
    body = {"model": "m", "dataset": "d", "b_max": 64, "num_budgets": 2}
    config = RunConfig.model_validate(body)
    assert config.learner is None and config.model_dump(exclude_defaults=True) == body
