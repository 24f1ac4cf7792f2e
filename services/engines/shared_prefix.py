"""Shared-prefix (cascade) attention: many decode rows read ONE copy of their prompt's KV cache.

Why: in the anytime rollout a cut's `k·A` summaries continue one long prompt (problem + thinking prefix)
for at most `summary_max_tokens` tokens. Copying the prompt's KV into every row (`batch_select_indices` on
a `DynamicCache`) costs rows × prefix in memory, and the cache's per-step `torch.cat` copies all of it again
at every generated token, so the summary phase cost rows × prefix per token. Here the prompt KV is kept once
(batch dim = distinct prompts, never rows) and only the generated suffix is held per row.

How (exact, FlashInfer's "cascade inference" / vLLM's cascade attention): softmax attention over the keys
`[prefix | suffix]` splits into two partial softmaxes, each returning its normalised output `o` and its
log-sum-exp `l`; the full output is `(e^l1·o1 + e^l2·o2) / (e^l1 + e^l2)`. The prefix part batches the
rows of one prompt as extra query positions against that prompt's single KV copy (a GEMM per group of
prompts, no copy of the prefix); the suffix part is per row. Both are float32 softmaxes, so the result
equals the per-row-copy path within float rounding (tests check 1e-5 on log-probs).

Hook: transformers looks the attention function up by the model's `attn_implementation`. We register
`shared_prefix_attention` under `SHARED_PREFIX_ATTENTION` (with sdpa's mask builder) and switch the served
model to it once; any call without a `shared_prefix=` argument (prefill, a full forward, `generate`) goes to
sdpa unchanged, so the model computes exactly what it did before for every other caller. Decode steps pass
`shared_prefix=SharedPrefix(...)` (the model forwards extra keyword arguments to the attention function)
and a plain `DynamicCache` that holds only the rows' generated tokens, so the attention receives the rows'
suffix keys and values.

Layout of the prefix part: the engine prefills prompts in groups of similar length (`PromptKV`, little left
padding: cut prompts of one rollout range from the problem alone to the whole thought). Within a group, the
rows of a prompt get consecutive query slots, and contiguous prompts with similar row counts form one
segment whose slots pad every prompt to its widest (at most `MAX_PADDING` times the rows it holds, see
`padded_runs`): a mix of `n = 4` and `n = 16` prompts does not pad every prompt to 16, and prompts whose
rows all finished drop out of the computation without any copy. Rows keep their order (the sampler's
random numbers go to the same rows as on the per-row-copy path); only the small query and output tensors
move between row order and slot order.

Simplifications: decode steps only (one new token per row) and full attention layers only (no sliding
window); the prefill runs sdpa. The two-part attention costs a fixed few dozen small tensor ops per layer
and step, which is why the engine takes this path only where the prompts outweigh the generated tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

SHARED_PREFIX_ATTENTION = "anytime_shared_prefix"
MAX_PADDING = 1.5  # padded size / real size of a prefill group or a segment of query slots, at most


def partial_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, bias: torch.Tensor | None, scaling: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention over one part of the keys, with its log-sum-exp for a later merge.

    Shapes: query [B, Hkv, M, D] (M query rows per KV head: grouped heads and/or stacked rows), key and value
    [B, Hkv, N, D], bias [B, 1, 1, N] (0 or -inf) or None → output [B, Hkv, M, D], lse [B, Hkv, M] (float32).
    """
    scores = torch.matmul(query, key.transpose(-1, -2)).float() * scaling
    if bias is not None:
        scores = scores + bias
    lse = torch.logsumexp(scores, dim=-1)
    probs = torch.exp(scores - lse.unsqueeze(-1)).to(value.dtype)
    return torch.matmul(probs, value), lse


def merge_attention(
    out_a: torch.Tensor, lse_a: torch.Tensor, out_b: torch.Tensor, lse_b: torch.Tensor
) -> torch.Tensor:
    """Attention over the union of two disjoint key sets, from each set's output [..., D] and lse [...]."""
    lse = torch.logaddexp(lse_a, lse_b)
    weight_a = torch.exp(lse_a - lse).unsqueeze(-1)
    weight_b = torch.exp(lse_b - lse).unsqueeze(-1)
    return (out_a.float() * weight_a + out_b.float() * weight_b).to(out_a.dtype)


def padded_runs(sizes: Sequence[int]) -> list[tuple[int, int, int]]:
    """Contiguous runs of non-zero `sizes`, each padded to its largest: (start, stop, width) per run.

    A run grows while its padded total `width × len` stays within `MAX_PADDING` × the sum of its sizes;
    zeros end a run and belong to none. Sort `sizes` first for few runs.
    """
    runs = []
    start = 0
    while start < len(sizes):
        if sizes[start] == 0:
            start += 1
            continue
        stop, width, used = start + 1, sizes[start], sizes[start]
        while stop < len(sizes) and sizes[stop] > 0:
            wider = max(width, sizes[stop])
            if wider * (stop + 1 - start) > MAX_PADDING * (used + sizes[stop]):
                break
            width, used, stop = wider, used + sizes[stop], stop + 1
        runs.append((start, stop, width))
        start = stop
    return runs


@dataclass(frozen=True)
class PromptKV:
    """The KV of prompts prefilled together, left-padded to one width W.

    keys[layer], values[layer]: [P, Hkv, W, D]; key_bias: [P, 1, 1, W], 0 at prompt tokens, -inf at padding.
    """

    keys: tuple[torch.Tensor, ...]
    values: tuple[torch.Tensor, ...]
    key_bias: torch.Tensor

    @classmethod
    def from_prefill(
        cls, keys: tuple[torch.Tensor, ...], values: tuple[torch.Tensor, ...], padding_mask: torch.Tensor
    ) -> PromptKV:
        """From a prefill's per-layer KV and its padding mask [P, W] (1 = prompt token)."""
        bias = torch.zeros(padding_mask.shape, dtype=torch.float32, device=padding_mask.device)
        return cls(keys, values, bias.masked_fill(padding_mask == 0, float("-inf"))[:, None, None, :])

    def cached_elements(self) -> int:
        return sum(k.numel() + v.numel() for k, v in zip(self.keys, self.values, strict=True))


@dataclass(frozen=True)
class PrefixSegment:
    """Prompts `start..stop-1` of group `group`, `width` query slots each, from slot `offset` on."""

    group: int
    start: int
    stop: int
    width: int
    offset: int


@dataclass(frozen=True)
class SharedPrefix:
    """Each distinct prompt's KV once (in prefill groups), and which prompt each decode row continues.

    prompt_of_row: (group, prompt within the group) of each live row, in row order; slots: [R] the row's
    query slot in the prefix part (see the module docstring).
    """

    groups: tuple[PromptKV, ...]
    prompt_of_row: tuple[tuple[int, int], ...]
    segments: tuple[PrefixSegment, ...]
    slots: torch.Tensor
    num_slots: int

    @classmethod
    def build(cls, groups: tuple[PromptKV, ...], prompt_of_row: tuple[tuple[int, int], ...]) -> SharedPrefix:
        counts = [[0] * g.key_bias.shape[0] for g in groups]
        for group, prompt in prompt_of_row:
            counts[group][prompt] += 1
        segments, first_slot, offset = [], [[0] * len(c) for c in counts], 0
        for group, group_counts in enumerate(counts):
            for start, stop, width in padded_runs(group_counts):
                segments.append(PrefixSegment(group, start, stop, width, offset))
                for prompt in range(start, stop):
                    first_slot[group][prompt] = offset + (prompt - start) * width
                offset += (stop - start) * width
        slots, taken = [], [[0] * len(c) for c in counts]
        for group, prompt in prompt_of_row:
            slots.append(first_slot[group][prompt] + taken[group][prompt])
            taken[group][prompt] += 1
        device = groups[0].key_bias.device
        slot_tensor = torch.tensor(slots, dtype=torch.long, device=device)
        return cls(groups, prompt_of_row, tuple(segments), slot_tensor, offset)

    def select_rows(self, keep: list[int]) -> SharedPrefix:
        """The same prompts for the rows `keep` only (finished rows dropped); the prompt KV is not copied."""
        return self.build(self.groups, tuple(self.prompt_of_row[r] for r in keep))

    def cached_elements(self) -> int:
        """Elements of prompt KV held (all layers, keys and values): independent of the number of rows."""
        return sum(g.cached_elements() for g in self.groups)

    def attend(
        self,
        layer: int,
        query: torch.Tensor,
        suffix_key: torch.Tensor,
        suffix_value: torch.Tensor,
        scaling: float,
    ) -> torch.Tensor:
        """One decode step of attention over [prompt | the row's own suffix].

        Shapes: query [R, H, 1, D]; suffix key and value [R, Hkv, T, D] (T generated tokens, this one
        included) → [R, 1, H, D], the layout attention functions return.
        """
        rows, heads, length, dim = query.shape
        if length != 1:
            raise ValueError(f"shared-prefix attention decodes one token per row; got {length} positions")
        kv_heads = suffix_key.shape[1]
        group = heads // kv_heads
        q = query.reshape(rows, kv_heads, group, dim)  # head h reads KV head h // group, as repeat_kv does
        suffix_out, suffix_lse = partial_attention(q, suffix_key, suffix_value, None, scaling)

        slots = q.new_zeros(self.num_slots, kv_heads, group, dim)
        slots[self.slots] = q
        prefix_out = torch.empty_like(slots)
        prefix_lse = torch.empty(self.num_slots, kv_heads, group, dtype=torch.float32, device=q.device)
        for s in self.segments:
            kv = self.groups[s.group]
            prompts, span = s.stop - s.start, slice(s.offset, s.offset + (s.stop - s.start) * s.width)
            stacked = slots[span].view(prompts, s.width, kv_heads, group, dim).transpose(1, 2)
            out, lse = partial_attention(
                stacked.reshape(prompts, kv_heads, s.width * group, dim),
                kv.keys[layer][s.start : s.stop],
                kv.values[layer][s.start : s.stop],
                kv.key_bias[s.start : s.stop],
                scaling,
            )
            prefix_out[span] = out.view(prompts, kv_heads, s.width, group, dim).transpose(1, 2).flatten(0, 1)
            prefix_lse[span] = lse.view(prompts, kv_heads, s.width, group).transpose(1, 2).flatten(0, 1)
        out = merge_attention(prefix_out[self.slots], prefix_lse[self.slots], suffix_out, suffix_lse)
        return out.reshape(rows, 1, heads, dim)


def shared_prefix_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    shared_prefix: SharedPrefix | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """The registered attention function: cascade attention on decode steps, sdpa on every other call.

    On a decode step `key`/`value` are the rows' suffixes (the cache holds nothing else) and the model-built
    mask is ignored: a suffix has no padding and the prompt's padding is in `shared_prefix.key_bias`.
    """
    if shared_prefix is None:
        out, _ = sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
        return out, None
    layer: int = module.layer_idx  # type: ignore[assignment]
    return shared_prefix.attend(layer, query, key, value, scaling or query.shape[-1] ** -0.5), None


def enable_shared_prefix_attention(model: torch.nn.Module) -> None:
    """Serve `model` through `shared_prefix_attention` (idempotent); the model must run sdpa today."""
    if not isinstance(model, PreTrainedModel):
        raise TypeError(f"shared-prefix decoding needs a transformers model; got {type(model).__name__}")
    config = model.config
    if config._attn_implementation == SHARED_PREFIX_ATTENTION:
        return
    if config._attn_implementation != "sdpa":
        raise ValueError(
            f"shared-prefix decoding wraps sdpa attention; the model runs {config._attn_implementation!r}: "
            "load it with attn_implementation='sdpa' or start the engine with shared_prefix=False"
        )
    if any(kind != "full_attention" for kind in getattr(config, "layer_types", None) or ()):
        raise ValueError(
            f"shared-prefix decoding supports full attention layers only; got {set(config.layer_types)}: "
            "start the engine with shared_prefix=False"
        )
    AttentionInterface.register(SHARED_PREFIX_ATTENTION, shared_prefix_attention)
    AttentionMaskInterface.register(SHARED_PREFIX_ATTENTION, sdpa_mask)
    model.set_attn_implementation(SHARED_PREFIX_ATTENTION)
