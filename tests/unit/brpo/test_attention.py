"""Block-sparse SDPA equals dense SDPA on tree masks (values and gradients) and skips unseen pairs."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from anytime.brpo.attention import (
    TreePlan,
    block_sparse_attention,
    block_sparse_sdpa_forward,
    plan_from_mask,
    plan_from_offsets,
    run_plan,
)
from anytime.brpo.cuts import cut_trace
from anytime.brpo.packing import PackedBatch, PackedTree, collate_trees, pack_tree

ELLIPSIS, DELIM = (91, 92), (81,)


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


def _attend(batch: PackedBatch, plan: TreePlan | None) -> tuple[torch.Tensor, ...]:
    n, length = batch.shape
    generator = torch.Generator().manual_seed(1)
    query = torch.randn(n, 4, length, 16, generator=generator, requires_grad=True)
    key = torch.randn(n, 2, length, 16, generator=generator, requires_grad=True)
    value = torch.randn(n, 2, length, 16, generator=generator, requires_grad=True)
    mask = batch.dense_mask()
    if plan is None:
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, enable_gqa=True)
    else:
        out = run_plan(query, key, value, plan)
    weights = torch.randn(out.shape, generator=generator)
    return (out, *torch.autograd.grad((out * weights).sum(), (query, key, value)))


@pytest.mark.parametrize("shared_row", [False, True])
@pytest.mark.parametrize("source", ["offsets", "mask"])
def test_equals_dense_sdpa_with_gqa_and_gradients(shared_row: bool, source: str) -> None:
    batch = _batch(shared_row)
    if source == "offsets":
        plan = plan_from_offsets(batch.doc_start, batch.prefix_end, batch.block_start)
    else:
        plan = plan_from_mask(batch.dense_mask())
    for sparse, dense in zip(_attend(batch, plan), _attend(batch, None), strict=True):
        torch.testing.assert_close(sparse, dense, atol=1e-5, rtol=1e-5)


def test_block_sparse_attention_from_a_mask() -> None:
    batch = _batch(False)
    n, length = batch.shape
    x = torch.randn(n, 2, length, 8)
    torch.testing.assert_close(
        block_sparse_attention(x, x, x, batch.dense_mask()),
        F.scaled_dot_product_attention(x, x, x, attn_mask=batch.dense_mask()),
    )


def test_plan_runs_trunks_causally_and_skips_unseen_pairs() -> None:
    trees = _trees()
    batch = _batch(shared_row=True)
    (plan,) = plan_from_offsets(batch.doc_start, batch.prefix_end, batch.block_start)
    second = trees[0].length
    assert plan.causal == ((0, 303), (second, second + 93)), (
        "each tree's prompt + thinking is one causal span"
    )
    covered = sorted([*plan.causal, *((run.start, run.stop) for run in plan.runs)])
    assert covered[0][0] == 0 and covered[-1][1] == batch.shape[1]
    assert all(a[1] == b[0] for a, b in itertools.pairwise(covered)), "spans and runs tile the row"
    computed = sum((run.stop - run.start) * len(run.keys) for run in plan.runs)
    computed += sum((stop - start) ** 2 for start, stop in plan.causal)
    assert computed < 0.5 * batch.shape[1] ** 2


def test_kernel_refuses_the_stand_in_mask_without_its_plan() -> None:
    x = torch.randn(1, 2, 8, 4)
    stand_in = torch.ones((), dtype=torch.bool).expand(1, 1, 8, 8)
    module = torch.nn.Module()
    with pytest.raises(RuntimeError, match="without its tree_plan"):
        block_sparse_sdpa_forward(module, x, x, x, stand_in)
    causal = torch.ones(8, 8, dtype=torch.bool).tril()[None, None]
    out, _ = block_sparse_sdpa_forward(module, x, x, x, causal)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(x, x, x, is_causal=True).transpose(1, 2))
