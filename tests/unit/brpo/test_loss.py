"""PPO clipped surrogate: hand-computed values, gradients, clipping, aggregation, KL and metrics; the
decoupled-PPO behaviour weights of stale tokens."""

from __future__ import annotations

import math

import pytest
import torch

from anytime.brpo.config import BRPOConfig, LossAggregation
from anytime.brpo.loss import PPOLossConfig, behaviour_weights, ppo_loss


def _leaf(values: list[list[float]]) -> torch.Tensor:
    return torch.tensor(values, requires_grad=True)


def test_on_policy_loss_is_minus_advantage_sum_over_a_constant() -> None:
    logprobs = _leaf([[-1.0, -2.0, -0.5], [-1.0, -1.0, -1.0]])
    advantages = torch.tensor([[1.0, -2.0, 3.0], [0.5, 0.5, 0.5]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    out = ppo_loss(logprobs, logprobs.detach(), advantages, mask)
    # seq_sum_const: (-1 + 2 - 0.5) / (2 rows × 3 tokens)
    assert out.loss.item() == pytest.approx(0.5 / 6)
    out.loss.backward()
    assert logprobs.grad is not None
    torch.testing.assert_close(logprobs.grad, -advantages * mask / 6)
    assert out.metrics["policy/clip_fraction"].item() == 0.0
    assert out.metrics["policy/approx_kl"].item() == pytest.approx(0.0, abs=1e-7)


def test_token_mean_and_explicit_normaliser() -> None:
    logprobs = torch.zeros(1, 4)
    advantages = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    mask = torch.tensor([[True, True, False, False]])
    mean = ppo_loss(
        logprobs, logprobs, advantages, mask, PPOLossConfig(aggregation=LossAggregation.TOKEN_MEAN)
    )
    assert mean.loss.item() == pytest.approx(-1.0)
    fixed = ppo_loss(logprobs, logprobs, advantages, mask, normaliser=10.0)
    assert fixed.loss.item() == pytest.approx(-0.2)


@pytest.mark.parametrize(
    ("advantage", "ratio", "clip_high", "value", "clipped"),
    [
        (1.0, 1.5, 0.2, -1.2, True),  # gain capped at 1 + clip
        (1.0, 1.5, 0.28, -1.28, True),  # clip-higher
        (1.0, 0.5, 0.2, -0.5, False),  # positive advantage, low ratio: unclipped
        (-1.0, 0.5, 0.2, 0.8, True),  # negative advantage, low ratio: capped at 1 - clip
        (-1.0, 1.5, 0.2, 1.5, False),  # negative advantage, high ratio: full penalty
    ],
)
def test_clipping(advantage: float, ratio: float, clip_high: float, value: float, clipped: bool) -> None:
    logprobs = torch.tensor([[math.log(ratio)]], requires_grad=True)
    out = ppo_loss(
        logprobs,
        torch.zeros(1, 1),
        torch.tensor([[advantage]]),
        torch.ones(1, 1, dtype=torch.bool),
        PPOLossConfig(clip_high=clip_high),
    )
    assert out.loss.item() == pytest.approx(value, rel=1e-6)
    out.loss.backward()
    assert logprobs.grad is not None
    assert (logprobs.grad.abs().item() == 0.0) == clipped
    assert out.metrics["policy/clip_fraction"].item() == float(clipped)
    side = "high" if ratio > 1 else "low"
    assert out.metrics[f"policy/clip_fraction_{side}"].item() == float(clipped)


def test_kl_to_reference_is_off_by_default_and_k3_when_on() -> None:
    logprobs = torch.zeros(1, 2)
    ref = torch.full((1, 2), math.log(2.0))
    mask = torch.ones(1, 2, dtype=torch.bool)
    advantages = torch.zeros(1, 2)
    assert "policy/kl_ref" not in ppo_loss(logprobs, logprobs, advantages, mask, ref_logprobs=ref).metrics
    config = PPOLossConfig(kl_coef=0.1, aggregation=LossAggregation.TOKEN_MEAN)
    out = ppo_loss(logprobs, logprobs, advantages, mask, config, ref_logprobs=ref)
    k3 = 2.0 - math.log(2.0) - 1.0
    assert out.metrics["policy/kl_ref"].item() == pytest.approx(k3)
    assert out.loss.item() == pytest.approx(0.1 * k3)
    with pytest.raises(ValueError, match="needs ref_logprobs"):
        ppo_loss(logprobs, logprobs, advantages, mask, config)


def test_metrics_use_only_trainable_tokens() -> None:
    logprobs = torch.tensor([[0.0, 5.0]])
    mask = torch.tensor([[True, False]])
    entropy = torch.tensor([[1.5, 100.0]])
    out = ppo_loss(logprobs, torch.zeros(1, 2), torch.ones(1, 2), mask, entropy=entropy)
    assert out.metrics["policy/entropy"].item() == 1.5
    assert out.metrics["policy/approx_kl"].item() == 0.0
    assert out.metrics["policy/trainable_tokens"].item() == 1.0
    assert all(not v.requires_grad for v in out.metrics.values())


def test_config_checks_and_from_run_config() -> None:
    with pytest.raises(ValueError, match="clip_low < 1"):
        PPOLossConfig(clip_low=1.0)
    config = PPOLossConfig.from_config(BRPOConfig(clip_high=0.28, aggregation="token_mean"))
    assert (config.clip_low, config.clip_high, config.aggregation) == (0.2, 0.28, LossAggregation.TOKEN_MEAN)
    with pytest.raises(ValueError, match="one shape"):
        ppo_loss(torch.zeros(1, 2), torch.zeros(1, 3), torch.zeros(1, 2), torch.ones(1, 2, dtype=torch.bool))


def test_behaviour_weights_truncate_only_the_masked_tokens_and_weigh_the_surrogate() -> None:
    # Five tokens against the proximal policy (old log-probs 0): ratios 1.1, 1.5, 1, 1, 1.
    logprobs = _leaf([[math.log(1.1), math.log(1.5), 0.0, 0.0, 0.0]])
    proximal = torch.zeros(1, 5, requires_grad=True)  # no gradient may flow into the weights
    behaviour = torch.tensor([[math.log(2.0), math.log(1 / 3), 0.0, -5.0, -5.0]])
    advantages = torch.tensor([[1.0, 1.0, -1.0, 2.0, 5.0]])
    trainable = torch.tensor([[True, True, True, True, False]])
    stale = torch.tensor([[True, True, True, False, False]])  # token 3 is a fresh tree's: weight 1
    weighed = behaviour_weights(proximal, behaviour, stale & trainable, cap=2.0)
    assert not weighed.weights.requires_grad
    torch.testing.assert_close(weighed.weights, torch.tensor([[0.5, 2.0, 1.0, 1.0, 1.0]]))
    assert weighed.truncated.tolist() == [[False, True, False, False, False]]  # raw weight 3 > cap 2

    out = ppo_loss(
        logprobs,
        proximal.detach(),
        advantages,
        trainable,
        normaliser=10.0,
        behaviour_weights=weighed.weights,
    )
    # 0.5 · (-1.1)  +  2 · (-1.2, clipped)  +  1 · 1  +  1 · (-2)  = -3.95, over 10
    assert out.loss.item() == pytest.approx(-0.395, rel=1e-6)
    out.loss.backward()
    assert logprobs.grad is not None
    # d/dlogπ of -w·A·ρ is -w·A·ρ where unclipped; the clipped token and the untrainable one give 0.
    torch.testing.assert_close(logprobs.grad, torch.tensor([[-0.055, 0.0, 0.1, -0.2, 0.0]]))
    assert proximal.grad is None
    assert out.metrics["policy/clip_fraction"].item() == pytest.approx(0.25)


def test_unit_behaviour_weights_change_nothing_and_the_cap_must_exceed_one() -> None:
    logprobs = _leaf([[-1.0, -0.2, -3.0]])
    old = torch.tensor([[-1.1, -0.9, -2.5]])
    advantages = torch.tensor([[1.0, -1.0, 0.5]])
    mask = torch.tensor([[True, True, False]])
    plain = ppo_loss(logprobs, old, advantages, mask)
    plain.loss.backward()
    assert logprobs.grad is not None
    plain_grad = logprobs.grad.clone()
    logprobs.grad = None
    weighed = ppo_loss(logprobs, old, advantages, mask, behaviour_weights=torch.ones(1, 3))
    weighed.loss.backward()
    assert logprobs.grad is not None
    assert torch.equal(weighed.loss, plain.loss) and torch.equal(logprobs.grad, plain_grad)
    with pytest.raises(ValueError, match="cap must be > 1"):
        behaviour_weights(old, old, mask, cap=1.0)
    with pytest.raises(ValueError, match="shape"):
        ppo_loss(logprobs, old, advantages, mask, behaviour_weights=torch.ones(1, 2))
