"""Advantages (docs/method.md §2.5–2.6): thinking returns minus a baseline, and decoupled summary advantages.

Pure tensor functions, vectorised over problems B, traces G, budgets S and summaries A (no Python loops
over them). Estimators are registered by name behind `ThinkingBaseline` / `SummaryMode`; each takes one
typed input, so adding one is a function and a registry entry, never another branch.

No standard-deviation normalisation anywhere (the paper's Dr.GRPO correction). Summary baselines are
the authors' (docs/method.md §2.6): the mean over the summaries of one prompt, a collapsed cut's k·A
pooled, or with A = 1 the mean over the G traces at the budget; callers pass which budgets share a prompt.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import torch
from torch import Tensor

from anytime.brpo.budgets import BudgetPrior
from anytime.brpo.config import BRPOConfig, SummaryMode, ThinkingBaseline


@dataclass(frozen=True)
class ThinkingInput:
    """What every thinking baseline sees.

    scores:  [B, G, S] mean summary reward of trace g at budget j (`R` in docs/method.md §2.4)
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
    prefix_groups: [B, G, S] ids; budgets of one trace with equal ids were summarised from the same prompt
        (they collapsed onto one cut: the trace ended before them)
    """

    rewards: Tensor
    prefix_groups: Tensor

    @property
    def num_summaries(self) -> int:
        return self.rewards.shape[-1]


def group_mean_summary_advantages(rewards: Tensor) -> Tensor:
    """A = 1: [B, G, S, 1] reward minus the mean over the G traces at the same budget (the trace itself in
    it, so a group of one gives 0) — the authors' baseline when a prompt has no sibling summaries."""
    return rewards - rewards.mean(dim=1, keepdim=True)


def pooled_summary_advantages(x: SummaryInput) -> Tensor:
    """The authors' decoupled summaries: [B, G, S, A] reward minus the mean of every summary written from
    the same prompt; collapsed budgets (one cut) pool their k·A summaries. A = 1: the group mean."""
    r = x.rewards
    if x.num_summaries == 1:
        return group_mean_summary_advantages(r)
    same = (x.prefix_groups[..., :, None] == x.prefix_groups[..., None, :]).to(r.dtype)  # [B, G, S, S]
    total = same @ r.sum(-1, keepdim=True)  # [B, G, S, 1]: the pool's sum, at every budget of the pool
    count = same.sum(-1, keepdim=True) * x.num_summaries
    return r - total / count


def per_budget_summary_advantages(x: SummaryInput) -> Tensor:
    """The per-budget variant (docs/method.md §2.6): [B, G, S, A] reward minus the mean of its budget's A
    summaries (collapsed budgets not pooled). A = 1: the group mean, as the authors'."""
    r = x.rewards
    if x.num_summaries == 1:
        return group_mean_summary_advantages(r)
    return r - r.mean(-1, keepdim=True)


def last_summary_advantages(x: SummaryInput) -> Tensor:
    """The authors' GRPO summaries: [B, G, S, 1] only the last budget's summary, minus its mean over the G
    traces; every other summary 0. A > 1 is refused (the authors would train one of the A, the last)."""
    if x.num_summaries != 1:
        raise ValueError(
            f"summary mode 'grpo' trains the last budget's one summary and needs A = 1; got A = "
            f"{x.num_summaries}: sample one summary per budget, or use summary mode 'brpo'"
        )
    advantages = torch.zeros_like(x.rewards)
    advantages[:, :, -1:] = group_mean_summary_advantages(x.rewards[:, :, -1:])
    return advantages


SUMMARY_ESTIMATORS: Mapping[SummaryMode, Callable[[SummaryInput], Tensor]] = MappingProxyType(
    {
        SummaryMode.BRPO: pooled_summary_advantages,
        SummaryMode.BRPO_PER_BUDGET: per_budget_summary_advantages,
        SummaryMode.GRPO: last_summary_advantages,
    }
)


def distinct_prefixes(rewards: Tensor) -> Tensor:
    """[B, G, S] prefix ids for rewards [B, G, S, A] whose budgets never collapsed: each its own prompt."""
    b, g, s = rewards.shape[:3]
    return torch.arange(s, device=rewards.device).expand(b, g, s)


def summary_advantages(
    rewards: Tensor, mode: SummaryMode | str = SummaryMode.BRPO, *, prefix_groups: Tensor
) -> Tensor:
    """Advantage of every summary (docs/method.md §2.6); all its tokens receive its entry.

    rewards: [B, G, S, A]; prefix_groups: [B, G, S], equal ids within a trace for budgets summarised from
    one prompt (the index of each budget's distinct cut; `distinct_prefixes` when none collapsed).
    `brpo`: reward minus the mean of the summaries from the same prompt, collapsed budgets pooled;
    `brpo_per_budget`: minus the mean of its budget's A; `grpo`: only the last budget's summary (A = 1).
    With A = 1, `brpo` and `brpo_per_budget` use the mean over the G traces at the budget.
    Returns [B, G, S, A] (float).
    """
    if rewards.ndim != 4:
        raise ValueError(f"rewards must be [B, G, S, A]; got shape {list(rewards.shape)}")
    if prefix_groups.shape != rewards.shape[:3]:
        raise ValueError(
            f"prefix_groups must be [B, G, S] = {list(rewards.shape[:3])}; got {list(prefix_groups.shape)}"
        )
    rewards = rewards.to(torch.promote_types(rewards.dtype, torch.float32))
    return SUMMARY_ESTIMATORS[SummaryMode(mode)](SummaryInput(rewards, prefix_groups.to(rewards.device)))


def brpo_advantages(
    rewards: Tensor, config: BRPOConfig, prefix_groups: Tensor, prior: BudgetPrior
) -> tuple[Tensor, Tensor]:
    """Both advantages from summary rewards [B, G, S, A] under one config: ([B, G, S], [B, G, S, A]).

    prefix_groups: [B, G, S] which budgets of a trace share a cut (see `summary_advantages`). prior: the
    thinking prior the run's plan resolved `config` to (`BRPOConfig.budget_prior`). With
    `BRPOConfig(algorithm="grpo")` (S = 1, A = 1, base prior, v2, grpo summaries) this is GRPO's
    mean-centring: every token of a trace gets `r - mean_G r` (G > 1).
    """
    expected = (config.resolved_num_budgets, config.resolved_num_summaries)
    if rewards.ndim != 4 or tuple(rewards.shape[2:]) != expected:
        raise ValueError(
            f"rewards must be [B, G, S, A] with S, A = {expected} for this config; got {list(rewards.shape)}"
        )
    scores = rewards.float().mean(-1)
    probs = prior.probs
    thinking = thinking_advantages(scores, probs, config.resolved_baseline, config.discount)
    return thinking, summary_advantages(rewards, config.resolved_summary_mode, prefix_groups=prefix_groups)
