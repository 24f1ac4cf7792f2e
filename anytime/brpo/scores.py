"""Per-summary rewards → per-budget scores `R[B, G, S]` (DESIGN.md §2.2, PAPER.md §2.5).

A trace's rewards arrive per distinct cut, in sampling order (a collapsed cut serving k budgets has
k·A of them); `split_by_budget` gives each budget its own A, so `R[g, j]` is always a mean of A rewards
and collapsed budgets are separate estimates of the same full-trace score.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from anytime.brpo.cuts import Cut, cut_of_budget, split_by_budget


def trace_rewards(cuts: Sequence[Cut], per_cut: Sequence[Sequence[float]], num_summaries: int) -> Tensor:
    """[S, A] rewards of one trace from its per-cut rewards (each cut's list: `num_budgets * A` values)."""
    return torch.tensor(split_by_budget(cuts, per_cut, num_summaries), dtype=torch.float32)


def reward_tensor(
    cuts: Sequence[Sequence[Sequence[Cut]]],
    per_cut: Sequence[Sequence[Sequence[Sequence[float]]]],
    num_summaries: int,
) -> Tensor:
    """[B, G, S, A] from `cuts[b][g]` and `per_cut[b][g][cut][sample]` (every trace has the same S and G)."""
    rows = [
        torch.stack([trace_rewards(c, r, num_summaries) for c, r in zip(cs, rs, strict=True)])
        for cs, rs in zip(cuts, per_cut, strict=True)
    ]
    return torch.stack(rows)


def budget_scores(rewards: Tensor) -> Tensor:
    """[B, G, S, A] → [B, G, S]: `R[g, j]`, the mean reward of the A summaries of (trace g, budget j)."""
    if rewards.ndim != 4:
        raise ValueError(f"rewards must be [B, G, S, A]; got shape {list(rewards.shape)}")
    return rewards.float().mean(-1)


def prefix_groups(cuts: Sequence[Sequence[Sequence[Cut]]]) -> Tensor:
    """[B, G, S] long: for each budget, the index of the distinct cut it was summarised from.

    Pass to `summary_advantages(..., prefix_groups=…)` to pool a collapsed cut's summaries into one
    baseline, as the reference code does.
    """
    return torch.tensor(
        [[[cs.index(cut) for cut in cut_of_budget(cs)] for cs in row] for row in cuts], dtype=torch.long
    )
