"""PPO clipped surrogate on token log-prob ratios (docs/method.md §2.8).

Per token: `max(-A * ρ, -A * clip(ρ, 1 - clip_low, 1 + clip_high))` with `ρ = exp(logπ - logπ_old)`,
plus `kl_coef * KL(π || π_ref)` (k3 estimator) when a reference is given. No entropy bonus.

Decoupled PPO (Hilton et al. 2021; AReaL) for tokens sampled by an older policy: `logπ_old` is then the
proximal policy's (the learner's weights before the update) and the surrogate is multiplied by a behaviour
weight `w = min(π_prox / π_behav, cap)`, without gradient (`behaviour_weights`). The caller passes the
weights only where some token is stale; without them the loss is the plain PPO loss, bit for bit.

Aggregation (`LossAggregation`):
- `seq_sum_const` (the paper, Dr.GRPO style): sum over trainable tokens / a constant — by default rows ×
  padded length; the learner passes `normaliser = trees in the mini-batch × BRPOConfig.loss_normalizer`,
  so every micro-batch shares one constant, long trees keep their weight, and every arm of a comparison
  divides by the same number (docs/method.md §2.8: the authors' max response length for all arms);
- `token_mean`: sum / number of trainable tokens (pass the mini-batch's count when accumulating).
Metrics are true masked means over trainable tokens, for logging only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from anytime.brpo.config import BRPOConfig, LossAggregation


@dataclass(frozen=True)
class PPOLossConfig:
    clip_low: float = 0.2
    clip_high: float = 0.2  # > clip_low is DAPO's clip-higher
    aggregation: LossAggregation = LossAggregation.SEQ_SUM_CONST
    kl_coef: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.clip_low < 1 or self.clip_high < 0:
            raise ValueError(
                f"clip ranges must satisfy 0 <= clip_low < 1 and clip_high >= 0 (0.2 in the paper); "
                f"got clip_low={self.clip_low}, clip_high={self.clip_high}"
            )
        if self.kl_coef < 0:
            raise ValueError(f"kl_coef must be >= 0 (0 turns the KL term off); got {self.kl_coef}")

    @classmethod
    def from_config(cls, config: BRPOConfig) -> PPOLossConfig:
        return cls(config.clip_low, config.clip_high, config.aggregation)


@dataclass(frozen=True)
class PolicyLoss:
    """loss: scalar to backpropagate; metrics: detached scalars named for MLflow (`policy/clip_fraction`)."""

    loss: Tensor
    metrics: Mapping[str, Tensor]


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of `values` where `mask` holds; 0 when nothing does."""
    weights = mask.to(values.dtype)
    return (values * weights).sum() / weights.sum().clamp(min=1)


def k3_kl(logprobs: Tensor, ref_logprobs: Tensor) -> Tensor:
    """Per-token estimate of KL(π || π_ref) from samples of π: `exp(r) - r - 1`, r = logπ_ref - logπ."""
    log_ratio = ref_logprobs - logprobs
    return torch.expm1(log_ratio) - log_ratio


@dataclass(frozen=True)
class BehaviourWeights:
    """weights: [N, T] `min(π_prox / π_behav, cap)` where the mask held, exactly 1 elsewhere (no grad);
    truncated: [N, T] bool, where the cap bit."""

    weights: Tensor
    truncated: Tensor


def behaviour_weights(
    proximal_logprobs: Tensor, behaviour_logprobs: Tensor, mask: Tensor, cap: float
) -> BehaviourWeights:
    """Truncated importance weights of the proximal policy over the behaviour policy (decoupled PPO).

    proximal_logprobs, behaviour_logprobs: [N, T] (the learner's before the update; the engine's recorded
    ones); mask: [N, T] bool, the tokens to weigh (trainable tokens of stale trajectories). `cap` bounds
    the variance a token sampled unusually rarely by the behaviour policy can add.
    """
    if cap <= 1:
        raise ValueError(f"the behaviour weight cap must be > 1 (truncated IS commonly uses 2); got {cap}")
    with torch.no_grad():
        mask = mask.bool()
        raw = torch.exp(proximal_logprobs.float() - behaviour_logprobs.float())
        weights = torch.where(mask, raw.clamp(max=cap), torch.ones_like(raw))
        return BehaviourWeights(weights, mask & (raw > cap))


def ppo_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    config: PPOLossConfig | None = None,
    *,
    ref_logprobs: Tensor | None = None,
    entropy: Tensor | None = None,
    normaliser: float | Tensor | None = None,
    behaviour_weights: Tensor | None = None,
) -> PolicyLoss:
    """The policy loss over a batch of token sequences.

    logprobs: [N, T] under the current policy (with grad); old_logprobs: [N, T] under the rollout policy;
    advantages: [N, T]; mask: [N, T] bool, trainable tokens; ref_logprobs, entropy: [N, T], optional.
    normaliser: the denominator. Default: N × T for `seq_sum_const`, the trainable-token count for
    `token_mean`. For the paper's constant across micro-batches (or with several trees per row), pass
    `trees in the mini-batch × BRPOConfig.resolved_loss_normalizer`.
    behaviour_weights: [N, T], optional: each token's surrogate (not the KL term) is multiplied by it, no
    gradient through it (`behaviour_weights(...).weights`; old_logprobs are then the proximal policy's).
    """
    config = config or PPOLossConfig()
    if not logprobs.shape == old_logprobs.shape == advantages.shape == mask.shape:
        raise ValueError(
            "logprobs, old_logprobs, advantages and mask must share one shape; got "
            f"{[list(t.shape) for t in (logprobs, old_logprobs, advantages, mask)]}"
        )
    mask = mask.bool()
    log_ratio = logprobs - old_logprobs.detach()
    ratio = torch.exp(log_ratio)
    advantages = advantages.detach().to(logprobs.dtype)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - config.clip_low, 1.0 + config.clip_high)
    per_token = torch.maximum(unclipped, clipped)
    if behaviour_weights is not None:
        if behaviour_weights.shape != per_token.shape:
            raise ValueError(
                f"behaviour_weights must have the log-probs' shape {list(per_token.shape)}; "
                f"got {list(behaviour_weights.shape)}"
            )
        per_token = per_token * behaviour_weights.detach().to(per_token.dtype)
    metrics: dict[str, Tensor] = {}
    if config.kl_coef > 0:
        if ref_logprobs is None:
            raise ValueError("kl_coef > 0 needs ref_logprobs from the reference policy (or set kl_coef to 0)")
        kl = k3_kl(logprobs, ref_logprobs.detach())
        per_token = per_token + config.kl_coef * kl
        metrics["policy/kl_ref"] = masked_mean(kl, mask).detach()

    total = (per_token * mask.to(per_token.dtype)).sum()
    if normaliser is None:
        if config.aggregation is LossAggregation.SEQ_SUM_CONST:
            normaliser = float(mask.numel())
        else:
            normaliser = mask.sum().clamp(min=1).to(per_token.dtype)
    loss = total / normaliser

    with torch.no_grad():
        active = clipped > unclipped  # the clipped branch decides: no gradient through this token
        metrics["policy/loss"] = loss.detach()
        metrics["policy/clip_fraction"] = masked_mean(active.float(), mask)
        metrics["policy/clip_fraction_low"] = masked_mean((active & (ratio < 1)).float(), mask)
        metrics["policy/clip_fraction_high"] = masked_mean((active & (ratio > 1)).float(), mask)
        metrics["policy/approx_kl"] = masked_mean(torch.expm1(log_ratio) - log_ratio, mask)
        metrics["policy/ratio_mean"] = masked_mean(ratio, mask)
        metrics["policy/trainable_tokens"] = mask.sum().to(logprobs.dtype)
        if entropy is not None:
            metrics["policy/entropy"] = masked_mean(entropy.detach(), mask)
    return PolicyLoss(loss, metrics)
