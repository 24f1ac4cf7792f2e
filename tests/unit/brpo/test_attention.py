"""Block-sparse attention equals dense SDPA on tree masks (values and gradients) and computes only the tree:
causal runs and prefix runs read off hand-made trees."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from anytime.brpo.attention import (
    CausalRun,
    PrefixRun,
    block_sparse_attention,
    block_sparse_sdpa_forward,
    plan_from_mask,
    plan_from_offsets,
    plan_mask,
    run_plan,
    run_tiles,
)
from anytime.brpo.cuts import cut_trace
from anytime.brpo.packing import PackedBatch, PackedTree, collate_trees, pack_tree

ELLIPSIS, DELIM = (91, 92), (81,)
Attend = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _trees() -> list[PackedTree]:
    generator = torch.Generator().manual_seed(0)
    trees = []
    for length in (300, 90):  # one trace cut at every budget, one whose last three budgets collapse
        thinking = torch.randint(10, 90, (length,), generator=generator).tolist()
        cuts = cut_trace(length, "length", [75, 150, 225, 300], ELLIPSIS, DELIM)
        summaries = [[[5] * 40, [6] * 25] for _ in range(4)]
        trees.append(pack_tree([1, 2, 3], thinking, cuts, summaries))
    return trees


def _batch(shared_row: bool) -> PackedBatch:
    return collate_trees(_trees(), pad_id=0, multiple_of=64, max_row_tokens=10_000 if shared_row else None)


def _attend(batch: PackedBatch, attend: Attend | None) -> tuple[torch.Tensor, ...]:
    """Output and query/key/value gradients of random GQA attention over `batch` (None: dense SDPA)."""
    n, length = batch.shape
    generator = torch.Generator().manual_seed(1)
    query = torch.randn(n, 4, length, 16, generator=generator, requires_grad=True)
    key = torch.randn(n, 2, length, 16, generator=generator, requires_grad=True)
    value = torch.randn(n, 2, length, 16, generator=generator, requires_grad=True)
    if attend is None:
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=batch.dense_mask(), enable_gqa=True)
    else:
        out = attend(query, key, value)
    weights = torch.randn(out.shape, generator=generator)
    return (out, *torch.autograd.grad((out * weights).sum(), (query, key, value)))


def _offsets_plan(batch: PackedBatch) -> Attend:
    plan = plan_from_offsets(batch.doc_start, batch.prefix_end, batch.block_start)
    return lambda q, k, v: run_plan(q, k, v, plan)


def _mask_plan(batch: PackedBatch) -> Attend:
    tiles = plan_from_mask(batch.dense_mask())
    return lambda q, k, v: run_tiles(q, k, v, tiles)


@pytest.mark.parametrize("shared_row", [False, True])
@pytest.mark.parametrize("source", [_offsets_plan, _mask_plan])
def test_equals_dense_sdpa_with_gqa_and_gradients(shared_row: bool, source: Callable[..., Attend]) -> None:
    batch = _batch(shared_row)
    for sparse, dense in zip(_attend(batch, source(batch)), _attend(batch, None), strict=True):
        torch.testing.assert_close(sparse, dense, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shared_row", [False, True])
def test_the_plan_computes_exactly_the_tree_mask(shared_row: bool) -> None:
    batch = _batch(shared_row)
    plan = plan_from_offsets(batch.doc_start, batch.prefix_end, batch.block_start)
    assert torch.equal(plan_mask(plan, batch.shape[1]), batch.dense_mask())


def test_without_gradients_and_in_bfloat16() -> None:
    batch = _batch(shared_row=True)
    plan = plan_from_offsets(batch.doc_start, batch.prefix_end, batch.block_start)
    n, length = batch.shape
    generator = torch.Generator().manual_seed(2)
    query, key = (
        torch.randn(n, 4, length, 16, generator=generator),
        torch.randn(n, 2, length, 16, generator=generator),
    )
    dense = F.scaled_dot_product_attention(query, key, key, attn_mask=batch.dense_mask(), enable_gqa=True)
    with torch.no_grad():
        torch.testing.assert_close(run_plan(query, key, key, plan), dense, atol=1e-5, rtol=1e-5)
    low = run_plan(query.bfloat16(), key.bfloat16(), key.bfloat16(), plan)
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), dense, atol=3e-2, rtol=3e-2)


def test_under_autocast_mixed_inputs_run_in_its_precision_as_sdpa_does() -> None:
    batch = _batch(shared_row=False)
    plan = plan_from_offsets(batch.doc_start, batch.prefix_end, batch.block_start)
    n, length = batch.shape
    query = torch.randn(n, 4, length, 16, requires_grad=True)  # float32 (after RoPE) with a bf16 value
    key, value = torch.randn(n, 2, length, 16), torch.randn(n, 2, length, 16).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        sparse = run_plan(query, key, value, plan)
        dense = F.scaled_dot_product_attention(
            query, key, value, attn_mask=batch.dense_mask(), enable_gqa=True
        )
    assert sparse.dtype == dense.dtype == torch.bfloat16
    torch.testing.assert_close(sparse, dense, atol=1e-2, rtol=1e-2)
    (grad,) = torch.autograd.grad(sparse.float().sum(), query)
    assert grad.dtype == torch.float32


def test_block_sparse_attention_from_a_mask() -> None:
    batch = _batch(False)
    n, length = batch.shape
    x = torch.randn(n, 2, length, 8)
    torch.testing.assert_close(
        block_sparse_attention(x, x, x, batch.dense_mask()),
        F.scaled_dot_product_attention(x, x, x, attn_mask=batch.dense_mask()),
    )


def _hand_tree(budgets: list[int]) -> PackedTree:
    """Prompt [1, 2], thinking of 5 tokens (closed), A = 2 summaries of lengths 2 and 1 per budget."""
    cuts = cut_trace(5, "think_end", budgets, ELLIPSIS, DELIM)
    summaries = [[[30 + j, 40 + j], [50 + j]] for j in range(len(budgets))]
    return pack_tree([1, 2], [10, 11, 12, 13, 7], cuts, summaries)


def test_plan_of_a_hand_made_tree() -> None:
    # trunk [0, 7) | cut 2: [7, 12) [12, 16) | cut 4: [16, 21) [21, 25) | cut 5 (closed): [25, 28) [28, 30)
    batch = collate_trees([_hand_tree([2, 4, 6])], pad_id=0)
    (row,) = plan_from_offsets(batch.doc_start, batch.prefix_end, batch.block_start)
    bounds = [0, 7, 12, 16, 21, 25, 28, 30]
    # The trunk, then each block on its own.
    assert row.causal == tuple(CausalRun(a, b) for a, b in itertools.pairwise(bounds))
    # The two summaries of a cut share one call over their prefix, prompt + z[:c].
    assert row.prefixes == (
        PrefixRun(7, 16, ((0, 4),)),
        PrefixRun(16, 25, ((0, 6),)),
        PrefixRun(25, 30, ((0, 7),)),
    )


def test_a_block_right_after_its_whole_prefix_continues_the_trunk_and_padding_shares_a_call() -> None:
    # One budget past the thought: cut 5, blocks [7, 10) and [10, 12); the first sees exactly [0, q].
    tree = _hand_tree([6])
    batch = collate_trees([tree], pad_id=0, multiple_of=8)  # 12 tokens + 4 padding
    (row,) = plan_from_offsets(batch.doc_start, batch.prefix_end, batch.block_start)
    assert row.causal == (CausalRun(0, 10), CausalRun(10, 12), CausalRun(12, 16, count=4))
    assert row.prefixes == (PrefixRun(10, 12, ((0, 7),)),)
    assert torch.equal(plan_mask((row,), 16), batch.dense_mask())


def test_a_query_that_sees_nothing_is_refused() -> None:
    offsets = torch.tensor([[0, 0, 0]]), torch.tensor([[0, 0, 0]]), torch.tensor([[0, 0, 3]])
    with pytest.raises(ValueError, match="query 2 cannot see itself"):
        plan_from_offsets(*offsets)


def test_kernel_refuses_the_stand_in_mask_without_its_plan() -> None:
    x = torch.randn(1, 2, 8, 4)
    stand_in = torch.ones((), dtype=torch.bool).expand(1, 1, 8, 8)
    module = torch.nn.Module()
    with pytest.raises(RuntimeError, match="without its tree_plan"):
        block_sparse_sdpa_forward(module, x, x, x, stand_in)
    causal = torch.ones(8, 8, dtype=torch.bool).tril()[None, None]
    out, _ = block_sparse_sdpa_forward(module, x, x, x, causal)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(x, x, x, is_causal=True).transpose(1, 2))
