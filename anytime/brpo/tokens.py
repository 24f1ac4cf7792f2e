"""Token-level credit (docs/method.md §2.5, §2.6, §2.8): which tokens train, and with which advantage.

Every token of a packed tree carries a role, a budget index and a sample index. The advantage of a token
is then a gather, vectorised over any leading batch shape:

- thinking token in segment `[c_{j-1}, c_j)` → `A_think[j]`;
- generated summary token of (budget j, sample a) → `A_sum[j, a]`;
- prompt, inserted (ellipsis, `</think>`), delimiter and padding tokens → 0 and not trainable.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum

import torch
from torch import Tensor


class TokenRole(IntEnum):
    PADDING = 0
    PROMPT = 1
    THINKING = 2
    INSERTED = 3  # ellipsis + `</think>` and the delimiter, duplicated at the start of every summary block
    SUMMARY = 4


def trainable_mask(roles: Tensor) -> Tensor:
    """[...] roles → [...] bool: thinking and generated summary tokens train; nothing else does."""
    return (roles == TokenRole.THINKING) | (roles == TokenRole.SUMMARY)


def thinking_segments(thinking_len: int, budgets: Sequence[int]) -> Tensor:
    """[L] long: the budget index j of each thinking token, i.e. the j with `c_{j-1} <= t < c_j`.

    `c_j = min(b_j, L)`, so `j = #{k : b_k <= t}`: token number b_j (1-indexed) closes segment j.
    """
    if budgets and thinking_len > budgets[-1]:
        raise ValueError(f"a thought of {thinking_len} tokens exceeds the largest budget {budgets[-1]}")
    positions = torch.arange(thinking_len)
    return torch.searchsorted(torch.as_tensor(list(budgets), dtype=torch.long), positions, right=True)


def token_advantages(
    roles: Tensor,
    budget_index: Tensor,
    sample_index: Tensor,
    thinking_adv: Tensor,
    summary_adv: Tensor,
    tree_index: Tensor | None = None,
) -> Tensor:
    """Per-token advantages from per-segment and per-summary ones.

    roles, budget_index, sample_index (and tree_index): [...] per token; indices are ignored where
    they do not apply (prompt, inserted, padding). Without tree_index: thinking_adv [S], summary_adv
    [S, A] for one tree; with it: [num_trees, S] and [num_trees, S, A]. Returns [...] float, 0 on
    untrainable tokens.
    """
    num_budgets, num_summaries = summary_adv.shape[-2:]
    if thinking_adv.shape[-1] != num_budgets:
        got = thinking_adv.shape[-1]
        raise ValueError(f"thinking advantages cover {got} budgets but summary advantages {num_budgets}")
    budget = budget_index.clamp(0, num_budgets - 1)
    sample = sample_index.clamp(0, num_summaries - 1)
    if tree_index is None:
        think, summary = thinking_adv[budget], summary_adv[budget, sample]
    else:
        tree = tree_index.clamp(min=0)
        think, summary = thinking_adv[tree, budget], summary_adv[tree, budget, sample]
    dtype = torch.promote_types(thinking_adv.dtype, summary_adv.dtype)
    zero = torch.zeros((), dtype=dtype, device=roles.device)
    summary = torch.where(roles == TokenRole.SUMMARY, summary.to(dtype), zero)
    return torch.where(roles == TokenRole.THINKING, think.to(dtype), summary)
