"""Splitting a step's trees into mini-batches (one optimizer step each) and micro-batches (one forward each).

Mini-batches take whole problem groups in order, as the paper (64 prompts → 2 × 32 prompts, docs/method.md
§2.8), so one optimizer step sees every trace of its problems; with fewer groups than mini-batches the
traces themselves are split. No shuffling: the order is the batch's (problem id, trace index), which keeps
the CPU path deterministic. Micro-batches fill a token budget greedily in order; a tree longer than the
budget goes alone.
"""

from __future__ import annotations

from collections.abc import Sequence


def _chunks(count: int, parts: int) -> list[range]:
    """`range(count)` in `parts` contiguous, near-equal, non-empty chunks (earlier ones larger)."""
    parts = min(parts, count)
    size, extra = divmod(count, parts)
    bounds, start = [], 0
    for index in range(parts):
        stop = start + size + (1 if index < extra else 0)
        bounds.append(range(start, stop))
        start = stop
    return bounds


def split_minibatches(group_sizes: Sequence[int], num_minibatches: int) -> list[list[int]]:
    """Tree indices of each mini-batch; trees are numbered group after group (`group_sizes[i]` trees each)."""
    if num_minibatches < 1:
        raise ValueError(f"need at least one mini-batch; got {num_minibatches}")
    starts = [sum(group_sizes[:i]) for i in range(len(group_sizes))]
    total = sum(group_sizes)
    if total == 0:
        return []
    if len(group_sizes) >= num_minibatches:
        return [
            [tree for g in chunk for tree in range(starts[g], starts[g] + group_sizes[g])]
            for chunk in _chunks(len(group_sizes), num_minibatches)
        ]
    return [list(chunk) for chunk in _chunks(total, num_minibatches)]


def plan_microbatches(lengths: Sequence[int], token_budget: int) -> list[list[int]]:
    """Positions into `lengths` per micro-batch: consecutive trees while their tokens fit `token_budget`."""
    if token_budget < 1:
        raise ValueError(f"the micro-batch token budget must be >= 1; got {token_budget}")
    plans: list[list[int]] = []
    used = 0
    for position, length in enumerate(lengths):
        if plans and used + length <= token_budget:
            plans[-1].append(position)
            used += length
        else:
            plans.append([position])
            used = length
    return plans
