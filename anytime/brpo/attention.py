"""Block-sparse attention for packed trees: the CPU's equivalent of a FlexAttention BlockMask.

A packed tree's mask is mostly empty, and regular: every query q sees a causal tail `[s, q]`, from the start s
of its segment (its trunk, its summary block) to itself, and, in a summary block, its prefix (prompt +
`z[:c]`) in full. FlexAttention has no backward on the CPU, and SDPA with a dense mask computes every pair, so
this kernel follows a `TreePlan` instead, built once per forward from the batch's offsets
(`plan_from_offsets`) and reused by every layer:
- causal runs: each segment through one fused causal call (consecutive segments of one length, such as
  padding tokens, share a call as a batch);
- prefix runs: queries that also see key ranges in full; the blocks of one cut share their prefix, so all
  their queries go through one unmasked call.
A query's two partial attentions are merged by their log-sum-exps (as split-KV flash attention does), and
the backward runs the fused kernel's backward on each part with the merged output and log-sum-exp, which is
the exact gradient of the whole. No mask is built or applied, and no pair outside the tree mask is computed
beyond the fused causal kernel's own diagonal tiles. This calls ATen's CPU flash-attention ops (those
`F.scaled_dot_product_attention` runs on the CPU), which return the log-sum-exp the public function keeps to
itself; on another device the plan's dense mask goes through plain SDPA.

Given only a dense mask (`block_sparse_attention`: transformers hands the kernel an ordinary mask), query
tiles attend to the key tiles they can see, under the matching slice of the mask.

It plugs into transformers as an attention implementation (`AttentionInterface`, the documented way to add
one); `tree_attention_implementation(device)` registers it and names the implementation to load a model
with: FlexAttention on CUDA, this kernel elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

BLOCK_SPARSE_SDPA = "anytime_block_sparse_sdpa"
FLEX_ATTENTION = "flex_attention"
# Tile edge of the dense-mask path: large enough that per-call overhead stays small, small enough to skip
# most masked pairs.
TILE = 128


@dataclass(frozen=True)
class CausalRun:
    """Queries `[start, stop)` as `count` equal segments, each attending causally within itself."""

    start: int
    stop: int
    count: int = 1

    @property
    def segment(self) -> int:
        return (self.stop - self.start) // self.count


@dataclass(frozen=True)
class PrefixRun:
    """Queries `[start, stop)` also see every key of `keys`: ordered, disjoint `(begin, end)` ranges, all
    before `start`."""

    start: int
    stop: int
    keys: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class RowPlan:
    """One row: causal runs that tile it in order, and the prefix runs some of its queries add."""

    causal: tuple[CausalRun, ...]
    prefixes: tuple[PrefixRun, ...]


TreePlan = tuple[RowPlan, ...]


@dataclass(frozen=True)
class TileRun:
    """Queries `[start, stop)` attending to keys `keys` ([K] long) under `mask` ([1, 1, stop - start, K])."""

    start: int
    stop: int
    keys: Tensor
    mask: Tensor


# The dense-mask path's plan: tile runs covering each row.
TilePlan = tuple[tuple[TileRun, ...], ...]


def _segments(doc_start: Tensor, prefix_end: Tensor, block_start: Tensor) -> list[PrefixRun]:
    """A row's segments ([T] offsets): maximal runs of queries sharing a causal tail start and a full key set.

    Query q sees `[ds, min(pe, q + 1)) ∪ [own, q]` (`own = max(bs, ds)`): the causal tail `[ds, q]` where
    the prefix reaches the tail (or q), else the tail `[own, q]` with the prefix `[ds, pe)` apart (or
    empty). A segment starting at s after its tail start also sees `[tail, s)` in full. Each segment comes
    as a `PrefixRun`: its queries and the keys it sees in full (none for a trunk or padding).
    """
    index = torch.arange(doc_start.shape[0], device=doc_start.device)
    own = torch.maximum(block_start, doc_start)
    has_prefix = prefix_end > doc_start
    reaches = has_prefix & (prefix_end >= torch.minimum(own, index + 1))
    tail = torch.where(reaches, doc_start, own)
    apart = has_prefix & ~reaches
    shape = torch.stack([tail, torch.where(apart, doc_start, 0), torch.where(apart, prefix_end, 0)])
    blind = (tail > index).nonzero().flatten().tolist()
    if blind:
        q = blind[0]
        raise ValueError(
            f"query {q} cannot see itself (doc_start {int(doc_start[q])}, prefix_end {int(prefix_end[q])}, "
            f"block_start {int(block_start[q])}): every token of a packed batch must attend to itself"
        )
    change = torch.ones_like(index, dtype=torch.bool)
    change[1:] = (shape[:, 1:] != shape[:, :-1]).any(dim=0)
    starts = change.nonzero().flatten()
    stops = [*starts[1:].tolist(), int(index.shape[0])]
    segments = []
    for start, stop, (begin, first, end) in zip(
        starts.tolist(), stops, shape[:, starts].T.tolist(), strict=True
    ):
        keys = [(first, end)] if end > first else []
        if begin < start:
            keys.append((begin, start))
        segments.append(PrefixRun(start, stop, tuple(keys)))
    return segments


def _row_plan(segments: list[PrefixRun]) -> RowPlan:
    """Causal runs (consecutive segments of one length batched) and prefix runs (consecutive segments
    seeing the same keys merged) from a row's segments."""
    causal: list[CausalRun] = []
    prefixes: list[PrefixRun] = []
    for segment in segments:
        size = segment.stop - segment.start
        last = causal[-1] if causal else None
        if last is not None and last.segment == size and last.stop == segment.start:
            causal[-1] = CausalRun(last.start, segment.stop, last.count + 1)
        else:
            causal.append(CausalRun(segment.start, segment.stop))
        if not segment.keys:
            continue
        if prefixes and prefixes[-1].keys == segment.keys and prefixes[-1].stop == segment.start:
            prefixes[-1] = PrefixRun(prefixes[-1].start, segment.stop, segment.keys)
        else:
            prefixes.append(segment)
    return RowPlan(tuple(causal), tuple(prefixes))


def plan_from_offsets(doc_start: Tensor, prefix_end: Tensor, block_start: Tensor) -> TreePlan:
    """The plan for a packed batch, from its [N, T] offsets (see `anytime.brpo.packing`).

    Query q sees keys `doc_start[q] <= k <= q` with `k < prefix_end[q]` or `k >= block_start[q]`; every query
    must see itself (`block_start[q] <= q` or `prefix_end[q] > q`).
    """
    rows = zip(doc_start.cpu(), prefix_end.cpu(), block_start.cpu(), strict=True)
    return tuple(_row_plan(_segments(ds, pe, bs)) for ds, pe, bs in rows)


def plan_mask(plan: TreePlan, length: int, device: torch.device | str = "cpu") -> Tensor:
    """[N, 1, T, T] bool: the mask `plan` computes (True where a query row attends to a key column)."""
    index = torch.arange(length, device=device)
    masks = []
    for row in plan:
        tail = torch.empty(length, dtype=torch.long, device=device)
        for run in row.causal:
            within = torch.arange(run.stop - run.start, device=device)
            tail[run.start : run.stop] = run.start + within // run.segment * run.segment
        mask = (index[None, :] >= tail[:, None]) & (index[None, :] <= index[:, None])
        for prefix in row.prefixes:
            for begin, end in prefix.keys:
                mask[prefix.start : prefix.stop, begin:end] = True
        masks.append(mask)
    return torch.stack(masks)[:, None]


def _segments_of(x: Tensor, row: int, run: CausalRun) -> Tensor:
    """[N, H, T, ...] → [count, H, segment, ...]: the run's segments as a batch (a view)."""
    return x[row, :, run.start : run.stop].unflatten(1, (run.count, run.segment)).transpose(0, 1)


def _keys_of(x: Tensor, row: int, ranges: tuple[tuple[int, int], ...]) -> Tensor:
    """[N, H, T, D] → [1, H, K, D]: the key ranges of one row, back to back."""
    parts = [x[row : row + 1, :, begin:end] for begin, end in ranges]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)


def _flash(
    query: Tensor, key: Tensor, value: Tensor, causal: bool, scale: float | None
) -> tuple[Tensor, Tensor]:
    """ATen's CPU flash attention: (output [B, Hq, L, D], log-sum-exp [B, Hq, L] float32); GQA native."""
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        query, key, value, 0.0, causal, scale=scale
    )
    return out, lse


def _merge_into(out: Tensor, lse: Tensor, part_out: Tensor, part_lse: Tensor) -> None:
    """Fold a partial attention over other keys into (out [.., L, D], lse [.., L]), in place."""
    total = torch.logaddexp(lse, part_lse)
    merged = (
        out.float() * (lse - total).exp()[..., None] + part_out.float() * (part_lse - total).exp()[..., None]
    )
    out.copy_(merged)
    lse.copy_(total)


def _tree_attention(
    query: Tensor, key: Tensor, value: Tensor, plan: TreePlan, scale: float | None
) -> tuple[Tensor, Tensor]:
    """Forward: output [N, Hq, T, D] (laid out as [N, T, Hq, D], the model's next layout) and its
    log-sum-exp [N, Hq, T] float32."""
    n, heads, length, dim = query.shape
    out = query.new_empty(n, length, heads, dim).transpose(1, 2)
    lse = query.new_empty(n, heads, length, dtype=torch.float32)
    for row, row_plan in enumerate(plan):
        for run in row_plan.causal:
            q, k, v = (_segments_of(x, row, run) for x in (query, key, value))
            part_out, part_lse = _flash(q, k, v, True, scale)
            _segments_of(out, row, run).copy_(part_out)
            _segments_of(lse, row, run).copy_(part_lse)
        for prefix in row_plan.prefixes:
            queries = slice(prefix.start, prefix.stop)
            part_out, part_lse = _flash(
                query[row : row + 1, :, queries],
                _keys_of(key, row, prefix.keys),
                _keys_of(value, row, prefix.keys),
                False,
                scale,
            )
            _merge_into(out[row : row + 1, :, queries], lse[row : row + 1, :, queries], part_out, part_lse)
    return out, lse


def _tree_attention_backward(
    grad_out: Tensor,
    saved: tuple[Tensor, ...],
    plan: TreePlan,
    scale: float | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients for query, key, value: each part's fused backward, with the merged output and
    log-sum-exp, accumulated in one buffer per input."""
    query, key, value, out, lse = saved
    if grad_out.stride(-1) != 1 or 0 in grad_out.stride():  # the fused kernel reads rows of D values
        grad_out = grad_out.contiguous()
    grads = torch.zeros_like(query), torch.zeros_like(key), torch.zeros_like(value)
    backward = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward
    for row, row_plan in enumerate(plan):
        for run in row_plan.causal:
            views = [_segments_of(x, row, run) for x in (grad_out, query, key, value, out, lse)]
            parts = backward(*views, 0.0, True, scale=scale)
            for grad, part in zip(grads, parts, strict=True):
                _segments_of(grad, row, run).add_(part)
        for prefix in row_plan.prefixes:
            queries = slice(prefix.start, prefix.stop)
            grad_query, grad_key, grad_value = backward(
                grad_out[row : row + 1, :, queries],
                query[row : row + 1, :, queries],
                _keys_of(key, row, prefix.keys),
                _keys_of(value, row, prefix.keys),
                out[row : row + 1, :, queries],
                lse[row : row + 1, :, queries],
                0.0,
                False,
                scale=scale,
            )
            grads[0][row : row + 1, :, queries].add_(grad_query)
            offset = 0
            for begin, end in prefix.keys:
                grads[1][row : row + 1, :, begin:end].add_(grad_key[:, :, offset : offset + end - begin])
                grads[2][row : row + 1, :, begin:end].add_(grad_value[:, :, offset : offset + end - begin])
                offset += end - begin
    return grads


class _TreeAttentionFunction(torch.autograd.Function):
    """Autograd for `_tree_attention`: saves the inputs, the output and its log-sum-exp, nothing per part."""

    @staticmethod
    def forward(
        ctx: Any, query: Tensor, key: Tensor, value: Tensor, plan: TreePlan, scale: float | None
    ) -> Tensor:
        out, lse = _tree_attention(query, key, value, plan, scale)
        ctx.save_for_backward(query, key, value, out, lse)
        ctx.plan, ctx.scale = plan, scale
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        return (*_tree_attention_backward(grad_out, ctx.saved_tensors, ctx.plan, ctx.scale), None, None)


def run_plan(query: Tensor, key: Tensor, value: Tensor, plan: TreePlan, scale: float | None = None) -> Tensor:
    """Attention following `plan`. query: [N, Hq, T, D]; key, value: [N, Hkv, T, D] → [N, Hq, T, D]."""
    if query.device.type != "cpu":  # the fused CPU kernels only: the same mask, dense
        mask = plan_mask(plan, query.shape[2], query.device)
        gqa = query.shape[1] != key.shape[1]
        return F.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=scale, enable_gqa=gqa)
    if torch.is_autocast_enabled("cpu"):  # as autocast runs SDPA: inputs in its lower precision
        dtype = torch.get_autocast_dtype("cpu")
        query, key, value = query.to(dtype), key.to(dtype), value.to(dtype)
    if torch.is_grad_enabled() and any(x.requires_grad for x in (query, key, value)):
        out: Tensor = _TreeAttentionFunction.apply(query, key, value, plan, scale)
        return out
    return _tree_attention(query, key, value, plan, scale)[0]


def _tile_runs(seen: Tensor) -> list[tuple[int, int, Tensor]]:
    """[Q tiles, K tiles] → consecutive query tiles seeing the same key tiles, merged."""
    runs: list[tuple[int, int, Tensor]] = []
    for index in range(seen.shape[0]):
        if runs and torch.equal(runs[-1][2], seen[index]):
            runs[-1] = (runs[-1][0], index + 1, runs[-1][2])
        else:
            runs.append((index, index + 1, seen[index]))
    return runs


def _key_indices(tiles: Tensor, length: int) -> Tensor:
    """[K tiles] bool → the key positions those tiles cover."""
    offsets = torch.arange(TILE, device=tiles.device)
    keys = (tiles.nonzero().flatten()[:, None] * TILE + offsets).flatten()
    return keys[keys < length]


def plan_from_mask(mask: Tensor) -> TilePlan:
    """Tile runs from a dense [N, 1, T, T] bool mask alone: unseen key tiles skipped."""
    n, _, length, _ = mask.shape
    plans = []
    for row in range(n):
        rows = mask[row, 0]
        seen = F.pad(rows, (0, -length % TILE)).view(length, -1, TILE).any(dim=2)
        # Keep each query's own tile: a fully masked row then behaves as it does in dense SDPA.
        seen[torch.arange(length), torch.arange(length) // TILE] = True
        tiles = F.pad(seen, (0, 0, 0, -length % TILE)).view(-1, TILE, seen.shape[1]).any(dim=1)
        runs = []
        for first, end, visible in _tile_runs(tiles):
            q0, q1 = first * TILE, min(length, end * TILE)
            keys = _key_indices(visible, length)
            runs.append(TileRun(q0, q1, keys, rows[q0:q1].index_select(-1, keys)[None, None]))
        plans.append(tuple(runs))
    return tuple(plans)


def run_tiles(
    query: Tensor, key: Tensor, value: Tensor, plan: TilePlan, scale: float | None = None
) -> Tensor:
    """Attention following tile runs. query: [N, Hq, T, D]; key, value: [N, Hkv, T, D] → [N, Hq, T, D]."""
    gqa = query.shape[1] != key.shape[1]
    rows = []
    for row, runs in enumerate(plan):
        q, k, v = query[row : row + 1], key[row : row + 1], value[row : row + 1]
        pieces = [
            F.scaled_dot_product_attention(
                q[:, :, run.start : run.stop],
                k.index_select(2, run.keys),
                v.index_select(2, run.keys),
                attn_mask=run.mask,
                scale=scale,
                enable_gqa=gqa,
            )
            for run in runs
        ]
        rows.append(torch.cat(pieces, dim=2))
    return torch.cat(rows, dim=0)


def block_sparse_attention(
    query: Tensor, key: Tensor, value: Tensor, mask: Tensor, scale: float | None = None
) -> Tensor:
    """Dense-mask SDPA, computed block-sparsely.

    query: [N, Hq, T, D]; key, value: [N, Hkv, T, D]; mask: [N, 1, T, T] bool → [N, Hq, T, D].
    """
    return run_tiles(query, key, value, plan_from_mask(mask), scale)


def block_sparse_sdpa_forward(
    module: torch.nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    tree_plan: TreePlan | None = None,
    **kwargs: Any,
) -> tuple[Tensor, None]:
    """transformers attention interface: with a `tree_plan` (passed through the model call) follow it; with a
    square boolean mask plan from the mask; anything else (generation, padding masks) is plain SDPA."""
    length = query.shape[2]
    if (
        tree_plan is None
        and attention_mask is not None
        and attention_mask.numel() > 1
        and not any(attention_mask.stride())
    ):
        raise RuntimeError(
            "got the stand-in tree mask without its tree_plan: this model does not pass attention kwargs "
            "through; load it with attn_implementation='sdpa' to use the dense tree mask instead"
        )
    if dropout == 0 and key.shape[2] == length:
        if tree_plan is not None:
            # The output is laid out as [N, T, Hq, D] already: the transpose is a view, no copy.
            return run_plan(query, key, value, tree_plan, scaling).transpose(1, 2).contiguous(), None
        if (
            attention_mask is not None
            and attention_mask.dtype == torch.bool
            and tuple(attention_mask.shape[-2:]) == (length, length)
        ):
            output = block_sparse_attention(query, key, value, attention_mask, scaling)
            return output.transpose(1, 2).contiguous(), None
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)


def tree_attention_implementation(device: torch.device | str) -> str:
    """The `attn_implementation` to load a model with for packed trees on `device` (registers the CPU one)."""
    if torch.device(device).type == "cuda":
        return FLEX_ATTENTION
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    AttentionInterface.register(BLOCK_SPARSE_SDPA, block_sparse_sdpa_forward)
    # Calls without a prepared tree mask (generation, padding) get SDPA's usual masks.
    AttentionMaskInterface.register(BLOCK_SPARSE_SDPA, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    return BLOCK_SPARSE_SDPA
