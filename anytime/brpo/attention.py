"""Block-sparse SDPA: the CPU's equivalent of a FlexAttention BlockMask for packed trees.

A packed tree's mask is mostly empty: the trunk (prompt + thinking) is causal and each summary block sees
only its prefix and itself. SDPA with a dense mask still computes every query-key pair, and FlexAttention
has no backward on the CPU, so this kernel follows a `TreePlan` instead:
- each trunk goes through one causal SDPA call (no mask; the fused kernel skips the upper triangle);
- everything else is cut into query tiles that attend only to the key tiles they can see, with the
  matching slice of the tree mask; consecutive tiles that see the same keys share one call.
The plan is built once per forward from the batch's per-token offsets (`plan_from_offsets`) and reused by
every layer; given only a dense mask (`plan_from_mask`), the kernel still skips unseen tiles. Results equal
dense SDPA up to float rounding.

It plugs into transformers as an attention implementation (`AttentionInterface`, the documented way to add
one); `tree_attention_implementation(device)` registers it and names the implementation to load a model
with: FlexAttention on CUDA, this kernel elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

BLOCK_SPARSE_SDPA = "anytime_block_sparse_sdpa"
FLEX_ATTENTION = "flex_attention"
# Tile edge: large enough that per-call overhead stays small, small enough to skip most masked pairs.
TILE = 128


@dataclass(frozen=True)
class TileRun:
    """Queries `[start, stop)` attending to keys `keys` ([K] long) under `mask` ([1, 1, stop - start, K])."""

    start: int
    stop: int
    keys: Tensor
    mask: Tensor


@dataclass(frozen=True)
class RowPlan:
    """One row: causal spans `[start, stop)` (keys the same span) and tile runs; together they cover it."""

    causal: tuple[tuple[int, int], ...]
    runs: tuple[TileRun, ...]


TreePlan = tuple[RowPlan, ...]


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


def _plan_region(
    start: int,
    stop: int,
    length: int,
    seen_keys: Callable[[int, int], Tensor],
    run_mask: Callable[[int, int, Tensor], Tensor],
) -> list[TileRun]:
    """Tile runs for queries `[start, stop)`: `seen_keys(q0, q1)` gives [q1 - q0, key tiles] visibility
    per query (each query's own tile included, so no run has an empty key set); `run_mask(q0, q1, keys)`
    gives the [q1 - q0, len(keys)] mask."""
    seen = seen_keys(start, stop)
    padded = F.pad(seen, (0, 0, 0, -(stop - start) % TILE))
    tiles = padded.view(-1, TILE, seen.shape[1]).any(dim=1)
    runs = []
    for first, end, visible in _tile_runs(tiles):
        q0, q1 = start + first * TILE, min(stop, start + end * TILE)
        keys = _key_indices(visible, length)
        runs.append(TileRun(q0, q1, keys, run_mask(q0, q1, keys)[None, None]))
    return runs


def _causal_spans(trunk_like: list[bool], doc_start: list[int]) -> list[tuple[int, int]]:
    """Maximal runs (2+ tokens) of trunk tokens of one tree: each sees exactly `[doc_start, q]`."""
    spans, position, length = [], 0, len(trunk_like)
    while position < length:
        end = position + 1
        if trunk_like[position]:
            while end < length and trunk_like[end] and doc_start[end] == doc_start[position]:
                end += 1
            if end - position > 1:  # single tokens (padding) are cheaper inside tiles
                spans.append((position, end))
        position = end
    return spans


def _gaps(spans: list[tuple[int, int]], length: int) -> list[tuple[int, int]]:
    """The intervals of `[0, length)` that no span covers."""
    gaps, position = [], 0
    for start, stop in [*spans, (length, length)]:
        if start > position:
            gaps.append((position, start))
        position = stop
    return gaps


def plan_from_offsets(doc_start: Tensor, prefix_end: Tensor, block_start: Tensor) -> TreePlan:
    """The plan for a packed batch, from its [N, T] offsets (see `anytime.brpo.packing`).

    Query q sees keys `doc_start[q] <= k <= q` with `k < prefix_end[q]` or `k >= block_start[q]`.
    Tokens that see exactly `[doc_start, q]` (a trunk) form causal spans; the rest become tile runs.
    """
    n, length = doc_start.shape
    key_tiles = torch.arange(-(-length // TILE), device=doc_start.device)
    plans = []
    for row in range(n):
        ds, pe, bs = doc_start[row], prefix_end[row], block_start[row]

        def seen_keys(q0: int, q1: int, ds: Tensor = ds, pe: Tensor = pe, bs: Tensor = bs) -> Tensor:
            q, kt = torch.arange(q0, q1, device=ds.device)[:, None], key_tiles[None, :]
            lo, prefix, own = ds[q0:q1, None], pe[q0:q1, None], torch.maximum(bs, ds)[q0:q1, None]
            in_prefix = (prefix > lo) & (kt >= lo // TILE) & (kt <= (prefix - 1) // TILE)
            return in_prefix | ((kt >= own // TILE) & (kt <= q // TILE))  # own <= q: never empty

        def run_mask(
            q0: int, q1: int, keys: Tensor, ds: Tensor = ds, pe: Tensor = pe, bs: Tensor = bs
        ) -> Tensor:
            q, k = torch.arange(q0, q1, device=ds.device)[:, None], keys[None, :]
            return (k >= ds[q0:q1, None]) & (k <= q) & ((k < pe[q0:q1, None]) | (k >= bs[q0:q1, None]))

        causal = _causal_spans(((pe <= ds) & (bs <= ds)).tolist(), ds.tolist())
        runs = [
            run
            for start, stop in _gaps(causal, length)
            for run in _plan_region(start, stop, length, seen_keys, run_mask)
        ]
        plans.append(RowPlan(tuple(causal), tuple(runs)))
    return tuple(plans)


def plan_from_mask(mask: Tensor) -> TreePlan:
    """A plan from a dense [N, 1, T, T] bool mask alone: tile runs only, unseen key tiles skipped."""
    n, _, length, _ = mask.shape
    plans = []
    for row in range(n):
        rows = mask[row, 0]

        def seen_keys(q0: int, q1: int, rows: Tensor = rows) -> Tensor:
            tiles = F.pad(rows[q0:q1], (0, -length % TILE)).view(q1 - q0, -1, TILE).any(dim=2)
            # Keep each query's own tile: a fully masked row then behaves as it does in dense SDPA.
            tiles[torch.arange(q1 - q0), torch.arange(q0, q1) // TILE] = True
            return tiles

        def run_mask(q0: int, q1: int, keys: Tensor, rows: Tensor = rows) -> Tensor:
            return rows[q0:q1].index_select(-1, keys)

        plans.append(RowPlan((), tuple(_plan_region(0, length, length, seen_keys, run_mask))))
    return tuple(plans)


def run_plan(query: Tensor, key: Tensor, value: Tensor, plan: TreePlan, scale: float | None = None) -> Tensor:
    """Attention following `plan`. query: [N, Hq, T, D]; key, value: [N, Hkv, T, D] → [N, Hq, T, D]."""
    gqa = query.shape[1] != key.shape[1]
    rows = []
    for row, row_plan in enumerate(plan):
        q, k, v = query[row : row + 1], key[row : row + 1], value[row : row + 1]
        pieces: list[tuple[int, Tensor]] = []
        for start, stop in row_plan.causal:
            span = (q[:, :, start:stop], k[:, :, start:stop], v[:, :, start:stop])
            pieces.append(
                (start, F.scaled_dot_product_attention(*span, is_causal=True, scale=scale, enable_gqa=gqa))
            )
        for run in row_plan.runs:
            out = F.scaled_dot_product_attention(
                q[:, :, run.start : run.stop],
                k.index_select(2, run.keys),
                v.index_select(2, run.keys),
                attn_mask=run.mask,
                scale=scale,
                enable_gqa=gqa,
            )
            pieces.append((run.start, out))
        pieces.sort(key=lambda piece: piece[0])
        rows.append(torch.cat([piece for _, piece in pieces], dim=2))
    return torch.cat(rows, dim=0)


def block_sparse_attention(
    query: Tensor, key: Tensor, value: Tensor, mask: Tensor, scale: float | None = None
) -> Tensor:
    """Dense-mask SDPA, computed block-sparsely.

    query: [N, Hq, T, D]; key, value: [N, Hkv, T, D]; mask: [N, 1, T, T] bool → [N, Hq, T, D].
    """
    return run_plan(query, key, value, plan_from_mask(mask), scale)


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
