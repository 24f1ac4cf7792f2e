"""Advantages (DESIGN.md §2.3–2.4): thinking returns minus a baseline, and decoupled summary advantages.

Pure tensor functions, vectorised over problems B, traces G, budgets S and summaries A (no Python loops
over them). Estimators are registered by name behind `ThinkingBaseline` / `SummaryMode`; each takes one
typed input, so adding one is a function and a registry entry, never another branch.

No standard-deviation normalisation anywhere (the paper's Dr.GRPO correction).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import torch
from torch import Tensor

from anytime.brpo.config import BRPOConfig, SummaryMode, ThinkingBaseline


@dataclass(frozen=True)
class ThinkingInput:
    """What every thinking baseline sees.

    scores:  [B, G, S] mean summary reward of trace g at budget j (`R` in DESIGN.md)
    probs:   [S] the thinking prior
    returns: [B, G, S] `Q[g, j] = sum_{k>=j} p_k R[g, k]`
    discount: V1 weighs earlier budget k by `discount**k` (newest weighted most)
    """

    scores: Tensor
    probs: Tensor
    returns: Tensor
    discount: float

    @property
    def num_budgets(self) -> int:
        return self.scores.shape[-1]


def remaining_mass(probs: Tensor) -> Tensor:
    """[S] → [S]: `sum_{k>=j} p_k`, the prior mass still to be earned once segment j starts."""
    return probs.flip(-1).cumsum(-1).flip(-1)


def budget_returns(scores: Tensor, probs: Tensor) -> Tensor:
    """[B, G, S], [S] → [B, G, S]: `Q[g, j] = sum_{k>=j} p_k R[g, k]` (a reverse cumulative sum)."""
    return (scores * probs).flip(-1).cumsum(-1).flip(-1)


def group_baseline(x: ThinkingInput) -> Tensor:
    """V2: [B, G, S] mean return over the G traces at each budget (the trace itself in it); 0 when G = 1."""
    if x.returns.shape[1] == 1:
        return torch.zeros_like(x.returns)
    return x.returns.mean(dim=1, keepdim=True).expand_as(x.returns)


def history_baseline(x: ThinkingInput) -> Tensor:
    """V1: [B, G, S] discounted mean of the trace's own earlier scores, scaled to the remaining mass.

    `V1[g, j] = (sum_{k<j} d^k R[g, k] / sum_{k<j} d^k) * sum_{k>=j} p_k`, 0 at j = 0. Each row of the
    weight matrix is divided by `d^(j-1)` first, so weights stay <= 1 and large S cannot overflow.
    """
    num = x.num_budgets
    index = torch.arange(num, dtype=x.scores.dtype, device=x.scores.device)
    earlier = index[None, :] < index[:, None]  # [S(j), S(k)]: k < j
    exponent = (index[None, :] - index[:, None] + 1).clamp(max=0)
    weights = torch.where(earlier, torch.as_tensor(x.discount, dtype=x.scores.dtype) ** exponent, 0.0)
    norm = weights.sum(-1)  # [S]; 0 only for j = 0
    prev = (x.scores @ weights.T) / norm.clamp(min=torch.finfo(x.scores.dtype).tiny)
    return prev * remaining_mass(x.probs)


def brpo_baseline(x: ThinkingInput) -> Tensor:
    """BRPO: [B, G, S] `(j * V1 + (S - j) * V2) / S` — pure V2 at the first segment, more V1 later."""
    num = x.num_budgets
    j = torch.arange(num, dtype=x.scores.dtype, device=x.scores.device)
    return (j * history_baseline(x) + (num - j) * group_baseline(x)) / num


def no_baseline(x: ThinkingInput) -> Tensor:
    return torch.zeros_like(x.returns)


THINKING_BASELINES: Mapping[ThinkingBaseline, Callable[[ThinkingInput], Tensor]] = MappingProxyType(
    {
        ThinkingBaseline.BRPO: brpo_baseline,
        ThinkingBaseline.V1: history_baseline,
        ThinkingBaseline.V2: group_baseline,
        ThinkingBaseline.NONE: no_baseline,
    }
)


def _as_probs(probs: Tensor | Sequence[float], like: Tensor) -> Tensor:
    probs = torch.as_tensor(probs, dtype=like.dtype, device=like.device)
    if probs.shape != like.shape[-1:]:
        raise ValueError(f"probs must have shape [S] = [{like.shape[-1]}]; got {list(probs.shape)}")
    return probs


def thinking_advantages(
    scores: Tensor,
    probs: Tensor | Sequence[float],
    baseline: ThinkingBaseline | str = ThinkingBaseline.BRPO,
    discount: float = 2.0,
) -> Tensor:
    """Advantage of thinking segment j of each trace: `Q[g, j] - baseline[g, j]`.

    scores: [B, G, S] per-budget scores R (mean reward of the A summaries); probs: [S], sums to 1.
    Returns [B, G, S] (float); segment j's tokens `[c_{j-1}, c_j)` all receive entry j.
    """
    if scores.ndim != 3:
        raise ValueError(f"scores must be [B, G, S]; got shape {list(scores.shape)}")
    if discount <= 0:
        raise ValueError(f"discount must be > 0 (2.0 in the paper); got {discount}")
    scores = scores.to(torch.promote_types(scores.dtype, torch.float32))
    probs_t = _as_probs(probs, scores)
    x = ThinkingInput(scores, probs_t, budget_returns(scores, probs_t), discount)
    return x.returns - THINKING_BASELINES[ThinkingBaseline(baseline)](x)


@dataclass(frozen=True)
class SummaryInput:
    """What every summary estimator sees.

    rewards: [B, G, S, A] reward of summary a of (trace g, budget j)
    prefix_groups: [B, G, S] optional ids; budgets of one trace with equal ids were summarised from the
        same prompt (a collapsed cut) and pool their summaries into one baseline
    """

    rewards: Tensor
    prefix_groups: Tensor | None


def _pooled_mean_minus(rewards: Tensor, total: Tensor, count: Tensor) -> Tensor:
    """`r - total/count`, with a 0 baseline where the pool is a single sample (nothing to compare to)."""
    baseline = torch.where(count > 1, total / count.clamp(min=1), torch.zeros_like(total))
    return rewards - baseline


def sibling_summary_advantages(x: SummaryInput) -> Tensor:
    """BRPO (decoupled): [B, G, S, A] reward minus the mean of the summaries written from the same prefix."""
    r = x.rewards
    num_summaries = r.shape[-1]
    if x.prefix_groups is None:
        total, count = r.sum(-1, keepdim=True), torch.full_like(r[..., :1], num_summaries)
    else:
        same = x.prefix_groups[..., :, None] == x.prefix_groups[..., None, :]  # [B, G, S, S]
        total = same.to(r.dtype) @ r.sum(-1, keepdim=True)  # [B, G, S, 1]
        count = same.sum(-1, keepdim=True).to(r.dtype) * num_summaries
    return _pooled_mean_minus(r, total, count)


def last_budget_group_advantages(x: SummaryInput) -> Tensor:
    """GRPO: [B, G, S, A] only the last budget's summaries, minus their mean over the group (G and A)."""
    r = x.rewards
    last = r[:, :, -1:, :]  # [B, G, 1, A]
    pool = last.shape[1] * last.shape[3]
    total = last.sum(dim=(1, 3), keepdim=True).expand_as(last)
    advantages = torch.zeros_like(r)
    advantages[:, :, -1:, :] = _pooled_mean_minus(last, total, torch.full_like(total, pool))
    return advantages


SUMMARY_ESTIMATORS: Mapping[SummaryMode, Callable[[SummaryInput], Tensor]] = MappingProxyType(
    {SummaryMode.BRPO: sibling_summary_advantages, SummaryMode.GRPO: last_budget_group_advantages}
)


def summary_advantages(
    rewards: Tensor, mode: SummaryMode | str = SummaryMode.BRPO, prefix_groups: Tensor | None = None
) -> Tensor:
    """Advantage of every summary (DESIGN.md §2.4); all of a summary's tokens receive its entry.

    rewards: [B, G, S, A]. `brpo`: reward minus the mean of its A siblings (0 baseline when A = 1);
    `grpo`: the last budget's summaries minus their mean over the G traces, every other summary 0.
    prefix_groups: [B, G, S], optional — pass it to pool collapsed budgets' summaries into one baseline,
    as the reference code does (DESIGN.md leaves each budget's A summaries on their own).
    Returns [B, G, S, A] (float).
    """
    if rewards.ndim != 4:
        raise ValueError(f"rewards must be [B, G, S, A]; got shape {list(rewards.shape)}")
    if prefix_groups is not None and prefix_groups.shape != rewards.shape[:3]:
        raise ValueError(
            f"prefix_groups must be [B, G, S] = {list(rewards.shape[:3])}; got {list(prefix_groups.shape)}"
        )
    rewards = rewards.to(torch.promote_types(rewards.dtype, torch.float32))
    return SUMMARY_ESTIMATORS[SummaryMode(mode)](SummaryInput(rewards, prefix_groups))


def brpo_advantages(
    rewards: Tensor, config: BRPOConfig, prefix_groups: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Both advantages from summary rewards [B, G, S, A] under one config: ([B, G, S], [B, G, S, A]).

    The thinking prior is the config's. With `BRPOConfig(algorithm="grpo")` (S = 1, A = 1, base prior,
    v2, grpo summaries) this is GRPO's mean-centring: every token of a trace gets `r - mean_G r`.
    """
    expected = (config.resolved_num_budgets, config.resolved_num_summaries)
    if rewards.ndim != 4 or tuple(rewards.shape[2:]) != expected:
        raise ValueError(
            f"rewards must be [B, G, S, A] with S, A = {expected} for this config; got {list(rewards.shape)}"
        )
    scores = rewards.float().mean(-1)
    probs = config.budget_prior().probs
    thinking = thinking_advantages(scores, probs, config.resolved_baseline, config.discount)
    return thinking, summary_advantages(rewards, config.resolved_summary_mode, prefix_groups)
