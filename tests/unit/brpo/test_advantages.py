"""Thinking and summary advantages (docs/method.md §2.5–2.6): hand-computed cases, then properties."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from anytime.brpo import summary_advantages, thinking_advantages
from anytime.brpo.advantages import brpo_advantages, budget_returns, distinct_prefixes
from anytime.brpo.config import BRPOConfig
from anytime.brpo.reference import summary_advantages_loop, thinking_advantages_loop

UNIFORM4 = [0.25] * 4
# docs/method.md §2.5 worked example: trace a = [0, 0, 1, 1], trace b = [0, 1, 1, 1].
WORKED = torch.tensor([[[0.0, 0.0, 1.0, 1.0], [0.0, 1.0, 1.0, 1.0]]])


def test_worked_example_reproduces_exactly() -> None:
    advantages = thinking_advantages(WORKED, UNIFORM4, "brpo")
    expected = torch.tensor([[[-0.125, 0.03125, 0.25, 0.08036], [0.125, 0.28125, 0.08333, 0.02679]]])
    torch.testing.assert_close(advantages, expected, atol=5e-6, rtol=0)
    # Exact fractions: a_3 = 0.25 - (3/4 * 1/7 + 1/4 * 1/4), b_2 = 0.5 - (2/4 * 1/3 + 2/4 * 1/2).
    assert advantages[0, 0, 3].item() == pytest.approx(0.25 - (3 / 28 + 1 / 16), abs=1e-7)
    assert advantages[0, 1, 2].item() == pytest.approx(0.5 - (1 / 6 + 1 / 4), abs=1e-7)


def test_worked_example_baselines_one_by_one() -> None:
    # docs/method.md §2.5's table: R, V1, V2 for each (trace, budget).
    returns = torch.tensor([[[0.5, 0.5, 0.5, 0.25], [0.75, 0.75, 0.5, 0.25]]])
    v1 = torch.tensor([[[0, 0, 0, 1 / 7], [0, 0, 1 / 3, 0.25 * 6 / 7]]])
    v2 = torch.tensor([[[0.625, 0.625, 0.5, 0.25]] * 2])
    torch.testing.assert_close(thinking_advantages(WORKED, UNIFORM4, "none"), returns)
    torch.testing.assert_close(thinking_advantages(WORKED, UNIFORM4, "v1"), returns - v1)
    torch.testing.assert_close(thinking_advantages(WORKED, UNIFORM4, "v2"), returns - v2)


def test_collapsed_budgets_single_trace() -> None:
    # Trace of 10 closed tokens, budgets 4/8/12/16, A = 2; budgets 2 and 3 share the full-trace cut but
    # have their own summaries: R = [0.5, 1, 0.5, 1]. G = 1 so V2 = 0 and BRPO = j/S * V1.
    scores = torch.tensor([[[0.5, 1.0, 0.5, 1.0]]])
    v1 = [0.0, 0.5 * 0.75, (0.5 + 2.0) / 3 * 0.5, (0.5 + 2.0 + 2.0) / 7 * 0.25]
    returns = [0.75, 0.625, 0.375, 0.25]
    expected = torch.tensor([[[r - j * v / 4 for j, (r, v) in enumerate(zip(returns, v1, strict=True))]]])
    torch.testing.assert_close(thinking_advantages(scores, UNIFORM4), expected)


def test_eos_ended_trace_full_cut_scores_zero() -> None:
    # Budgets 4/8, a trace of 6 tokens ending in EOS: the cut at 4 earned 1, the full cut is forced to 0.
    advantages = thinking_advantages(torch.tensor([[[1.0, 0.0]]]), [0.5, 0.5])
    torch.testing.assert_close(advantages, torch.tensor([[[0.5, 0.0 - 1 * (1.0 * 0.5) / 2]]]))


def test_s_equals_one_is_grpo_mean_centring() -> None:
    scores = torch.tensor([[[1.0], [0.0], [1.0], [1.0]], [[0.0], [0.0], [0.0], [1.0]]])
    centred = scores - scores.mean(dim=1, keepdim=True)
    for baseline in ("brpo", "v2"):
        torch.testing.assert_close(thinking_advantages(scores, [1.0], baseline), centred)
    rewards = scores[..., None]  # A = 1
    thinking, summary = brpo_advantages(
        rewards,
        BRPOConfig(algorithm="grpo"),
        distinct_prefixes(rewards),
        BRPOConfig(algorithm="grpo").budget_prior(),
    )
    torch.testing.assert_close(thinking, centred)
    torch.testing.assert_close(summary, centred[..., None])  # GRPO: the summary gets the same advantage


def test_one_config_runs_the_paper_method() -> None:
    rewards = torch.cat([WORKED[..., None]] * 4, dim=-1)  # A = 4 identical summaries per budget
    thinking, summary = brpo_advantages(
        rewards, BRPOConfig(), distinct_prefixes(rewards), BRPOConfig().budget_prior()
    )
    torch.testing.assert_close(thinking, thinking_advantages(WORKED, UNIFORM4, "brpo"))
    torch.testing.assert_close(summary, torch.zeros_like(rewards))
    with pytest.raises(ValueError, match=r"S, A = \(1, 1\)"):
        brpo_advantages(
            rewards,
            BRPOConfig(algorithm="grpo"),
            distinct_prefixes(rewards),
            BRPOConfig(algorithm="grpo").budget_prior(),
        )


def test_single_trace_group_has_no_group_baseline() -> None:
    scores = torch.tensor([[[1.0]]])
    torch.testing.assert_close(thinking_advantages(scores, [1.0], "v2"), scores)


def test_summary_advantages_with_siblings_and_a_equals_one() -> None:
    rewards = torch.tensor([[[[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 0.0]]]])
    expected = torch.tensor([[[[0.5, -0.5, -0.5, 0.5], [0.25, 0.25, 0.25, -0.75]]]])
    torch.testing.assert_close(
        summary_advantages(rewards, prefix_groups=distinct_prefixes(rewards)), expected
    )
    # A = 1 (B=1, G=2, S=2): the authors' baseline is the mean over the G traces at the same budget.
    single = torch.tensor([[[[1.0], [0.0]], [[0.0], [0.0]]]])
    centred = torch.tensor([[[[0.5], [0.0]], [[-0.5], [0.0]]]])
    for mode in ("brpo", "brpo_per_budget"):
        torch.testing.assert_close(
            summary_advantages(single, mode, prefix_groups=distinct_prefixes(single)), centred
        )
    lone = torch.tensor([[[[1.0], [0.0]]]])  # G = 1: the mean of one trace is itself
    torch.testing.assert_close(
        summary_advantages(lone, prefix_groups=distinct_prefixes(lone)), torch.zeros_like(lone)
    )
    # grpo: only the last budget, centred over the group; earlier budgets get 0.
    last = torch.tensor([[[[1.0], [1.0]], [[0.0], [0.0]]]])
    grpo = summary_advantages(last, "grpo", prefix_groups=distinct_prefixes(last))
    torch.testing.assert_close(grpo, torch.tensor([[[[0.0], [0.5]], [[0.0], [-0.5]]]]))


def test_collapsed_summaries_pool_by_default_and_per_budget_on_request() -> None:
    # Budgets 2 and 3 share the full-trace prompt: 4 summaries [1, 0 | 1, 1], pooled mean 0.75.
    rewards = torch.tensor([[[[0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [1.0, 1.0]]]])
    groups = torch.tensor([[[0, 1, 2, 2]]])
    pooled = summary_advantages(rewards, prefix_groups=groups)
    torch.testing.assert_close(pooled[0, 0, 2:], torch.tensor([[0.25, -0.75], [0.25, 0.25]]))
    torch.testing.assert_close(pooled[0, 0, :2], torch.tensor([[-0.5, 0.5], [0.0, 0.0]]))
    own = summary_advantages(rewards, "brpo_per_budget", prefix_groups=groups)  # the per-budget variant
    torch.testing.assert_close(own[0, 0, 2:], torch.tensor([[0.5, -0.5], [0.0, 0.0]]))
    torch.testing.assert_close(own[0, 0, :2], pooled[0, 0, :2])


def test_grpo_summaries_with_several_samples_are_refused() -> None:
    rewards = torch.zeros(1, 2, 4, 2)
    with pytest.raises(ValueError, match="needs A = 1; got A = 2"):
        summary_advantages(rewards, "grpo", prefix_groups=distinct_prefixes(rewards))


def test_bad_inputs_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match=r"\[B, G, S\]"):
        thinking_advantages(torch.zeros(2, 4), UNIFORM4)
    with pytest.raises(ValueError, match=r"probs must have shape \[S\] = \[4\]"):
        thinking_advantages(torch.zeros(1, 2, 4), [0.5, 0.5])
    with pytest.raises(ValueError, match="'v3' is not a valid ThinkingBaseline"):
        thinking_advantages(torch.zeros(1, 2, 4), UNIFORM4, "v3")
    with pytest.raises(ValueError, match=r"\[B, G, S, A\]"):
        summary_advantages(torch.zeros(1, 2, 4), prefix_groups=torch.zeros(1, 2, 4))
    with pytest.raises(ValueError, match=r"prefix_groups must be \[B, G, S\] = \[1, 2, 4\]"):
        summary_advantages(torch.zeros(1, 2, 4, 2), prefix_groups=torch.zeros(1, 2, 3))


# ---------------------------------------------------------------- properties


@st.composite
def score_batches(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    b, g, s = draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 8))
    a = draw(st.integers(1, 4))
    rewards = draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=b * g * s * a, max_size=b * g * s * a))
    weights = draw(st.lists(st.floats(0.0, 1.0), min_size=s, max_size=s))
    weights[-1] += 1e-3  # never all zero
    probs = torch.tensor(weights, dtype=torch.float64)
    return torch.tensor(rewards).reshape(b, g, s, a), (probs / probs.sum()).float()


BASELINES = ["brpo", "v1", "v2", "none"]


@settings(max_examples=60, deadline=None)
@given(score_batches(), st.sampled_from(BASELINES), st.sampled_from([1.0, 2.0, 3.5]))
def test_shapes_finiteness_and_agreement_with_the_loop_oracle(
    batch: tuple[torch.Tensor, torch.Tensor], baseline: str, discount: float
) -> None:
    rewards, probs = batch
    scores = rewards.mean(-1)
    advantages = thinking_advantages(scores, probs, baseline, discount)
    assert advantages.shape == scores.shape and advantages.dtype == torch.float32
    assert torch.isfinite(advantages).all()
    oracle = thinking_advantages_loop(scores.tolist(), probs.tolist(), baseline, discount)
    torch.testing.assert_close(advantages, torch.tensor(oracle), atol=1e-5, rtol=1e-5)


@settings(max_examples=40, deadline=None)
@given(score_batches())
def test_none_baseline_is_the_return_and_brpo_starts_as_v2(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    rewards, probs = batch
    scores = rewards.mean(-1)
    torch.testing.assert_close(thinking_advantages(scores, probs, "none"), budget_returns(scores, probs))
    torch.testing.assert_close(
        thinking_advantages(scores, probs, "none")[..., 0], (scores * probs).sum(-1), atol=1e-6, rtol=1e-6
    )
    brpo, v2 = thinking_advantages(scores, probs, "brpo"), thinking_advantages(scores, probs, "v2")
    torch.testing.assert_close(brpo[..., 0], v2[..., 0])


@settings(max_examples=60, deadline=None)
@given(score_batches(), st.sampled_from(["brpo", "brpo_per_budget", "grpo"]), st.data())
def test_summary_advantages_match_the_oracle_and_sum_to_zero(
    batch: tuple[torch.Tensor, torch.Tensor], mode: str, data: st.DataObject
) -> None:
    rewards, _ = batch
    if mode == "grpo":
        rewards = rewards[..., :1]  # the authors' grpo summaries: A = 1
    b, g, s, a = rewards.shape
    first_collapsed = data.draw(st.integers(0, s - 1))
    groups = torch.tensor([min(j, first_collapsed) for j in range(s)]).expand(b, g, s)
    advantages = summary_advantages(rewards, mode, prefix_groups=groups)
    assert advantages.shape == rewards.shape and torch.isfinite(advantages).all()
    oracle = summary_advantages_loop(rewards.tolist(), mode, groups.tolist())
    torch.testing.assert_close(advantages, torch.tensor(oracle))
    if mode == "brpo_per_budget" and a > 1:
        torch.testing.assert_close(advantages.sum(-1), torch.zeros(rewards.shape[:3]), atol=1e-6, rtol=0)
    if a == 1 and mode != "grpo":  # centred over the group at every budget
        torch.testing.assert_close(advantages.sum(1), torch.zeros(b, s, 1), atol=1e-6, rtol=0)


@settings(max_examples=40, deadline=None)
@given(score_batches(), st.data())
def test_pooled_summary_advantages_sum_to_zero_per_prefix(
    batch: tuple[torch.Tensor, torch.Tensor], data: st.DataObject
) -> None:
    rewards, _ = batch
    b, g, s, a = rewards.shape
    # Collapsed cuts are a suffix of budgets sharing one prefix: ids 0..k-1, then k repeated.
    first_collapsed = data.draw(st.integers(0, s - 1))
    groups = torch.tensor([min(j, first_collapsed) for j in range(s)]).expand(b, g, s)
    advantages = summary_advantages(rewards, "brpo", prefix_groups=groups)
    pooled = advantages[:, :, first_collapsed:].sum(dim=(-1, -2))
    if a > 1:
        torch.testing.assert_close(pooled, torch.zeros(b, g), atol=1e-5, rtol=0)
