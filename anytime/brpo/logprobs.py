"""Per-token log-probs of a Hugging Face causal LM on packed trees (docs/method.md §2.10).

Several trees go through one forward as rows of a `PackedBatch`. The tree mask reaches the model as a
prepared 4-D attention mask, which transformers passes to the attention kernel untouched:
- `sdpa`: an explicit boolean mask [N, 1, T, T];
- the block-sparse SDPA kernel (`attention.py`, the CPU default): the same boolean mask, with the tiles a
  query cannot see skipped;
- `eager`: the same mask as additive float (0 or the dtype's minimum);
- `flex_attention` (the GPU path): a FlexAttention `BlockMask` built from the two per-token offsets, so
  the T×T mask is never materialised. Imported only on that path; the CPU never needs it.
`tree_attention_implementation(device)` names the implementation to load a model with.
Position ids carry the tree's positions (each block continues from its cut).

The LM head runs only at positions some token is predicted from (`logits_to_keep`, the models' own way
to skip the others). Simplification: those logits of the whole batch are held at once ([N, M, V], float32
for the log-softmax); a model with a large vocabulary and long trees wants the caller to split trees into
smaller batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from anytime.brpo.attention import BLOCK_SPARSE_SDPA, FLEX_ATTENTION, plan_from_offsets
from anytime.brpo.packing import PackedBatch

# FlexAttention's tile; packing rows to a multiple of it avoids the numeric issue the reference notes.
FLEX_BLOCK_SIZE = 128


@dataclass(frozen=True)
class TokenLogProbs:
    """logprobs: [N, T] log π(token_t | its tree context), 0 where nothing predicts the token (t = 0,
    padding); entropy: [N, T] entropy of that predictive distribution, when asked for."""

    logprobs: Tensor
    entropy: Tensor | None


def _attention_implementation(model: Any) -> str:
    config = model.config
    layer_types = getattr(config, "layer_types", None) or ["full_attention"]
    if any(kind != "full_attention" for kind in layer_types):
        raise ValueError(
            "packed trees need full attention in every layer; this model has layer types "
            f"{sorted(set(layer_types))} (turn sliding-window attention off in its config)"
        )
    return str(config._attn_implementation)


def flex_block_mask(batch: PackedBatch) -> Any:
    """The tree mask as a FlexAttention BlockMask [N, 1, T, T] (GPU; T should be a multiple of 128)."""
    from torch.nn.attention.flex_attention import create_block_mask  # GPU path only

    doc_start, prefix_end, block_start = batch.doc_start, batch.prefix_end, batch.block_start

    def tree_mask(b: Tensor, h: Tensor, q: Tensor, k: Tensor) -> Tensor:
        return (k >= doc_start[b, q]) & (k <= q) & ((k < prefix_end[b, q]) | (k >= block_start[b, q]))

    n, t = batch.shape
    return create_block_mask(
        tree_mask, n, None, t, t, device=batch.input_ids.device, BLOCK_SIZE=FLEX_BLOCK_SIZE
    )


def tree_attention(model: Any, batch: PackedBatch, dtype: torch.dtype) -> tuple[Any, dict[str, Any]]:
    """The 4-D mask in the form the model's attention implementation expects, and extra model kwargs."""
    implementation = _attention_implementation(model)
    if implementation == "sdpa":
        return batch.dense_mask(), {}
    if implementation == BLOCK_SPARSE_SDPA:
        # The plan carries the whole mask; transformers only needs a 4-D mask to pass through, so an
        # expanded view stands in for it (no T×T memory). The kernel refuses it without the plan.
        n, length = batch.shape
        stand_in = torch.ones((), dtype=torch.bool, device=batch.input_ids.device).expand(
            n, 1, length, length
        )
        plan = plan_from_offsets(batch.doc_start, batch.prefix_end, batch.block_start)
        return stand_in, {"tree_plan": plan}
    if implementation == "eager":
        mask = batch.dense_mask()
        additive = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
        return additive.masked_fill(~mask, torch.finfo(dtype).min), {}
    if implementation == FLEX_ATTENTION:
        return flex_block_mask(batch), {}
    raise ValueError(
        f"attention implementation {implementation!r} cannot take a tree mask; load the model with "
        "attn_implementation=tree_attention_implementation(device) (anytime.brpo.attention)"
    )


def logprobs_from_logits(
    logits: Tensor,
    input_ids: Tensor,
    source_index: Tensor,
    with_entropy: bool = False,
    positions: Tensor | None = None,
    wanted: Tensor | None = None,
) -> TokenLogProbs:
    """logits [N, M, V], input_ids [N, T], source_index [N, T] → log-prob of each token under the logits
    at its source position (its predecessor in its own sequence); 0 where the source is -1.

    positions: [M] long, the sequence positions the logits are at (ascending; default: all T, M = T), so
    logits computed only where some token needs them can be used; every wanted token's source must be
    among them. wanted: [N, T] bool, the tokens whose log-prob is needed (default: all); the others are 0.
    """
    n, m, vocab = logits.shape
    logits = logits.float()
    has_source = source_index >= 0
    if wanted is not None:
        has_source = has_source & wanted
    source = source_index.clamp(min=0)
    if positions is not None:  # sequence position → column of `logits` (0 for positions not kept)
        column = torch.zeros(source_index.shape[1], dtype=torch.long, device=source.device)
        column[positions] = torch.arange(m, device=source.device)
        source = torch.where(has_source, column[source], 0)
    normaliser = torch.logsumexp(logits, dim=-1)  # [N, M]
    picked = logits.reshape(n, m * vocab).gather(1, source * vocab + input_ids)
    zero = torch.zeros((), device=logits.device)
    logprobs = torch.where(has_source, picked - normaliser.gather(1, source), zero)
    entropy = None
    if with_entropy:
        probs = torch.softmax(logits, dim=-1)
        per_position = normaliser - (probs * logits).sum(-1)
        entropy = torch.where(has_source, per_position.gather(1, source), zero)
    return TokenLogProbs(logprobs, entropy)


def logit_positions(source_index: Tensor, wanted: Tensor | None = None) -> Tensor | None:
    """[M] ascending positions whose logits some (wanted) token is predicted from, in any row; None when
    that is every position. source_index: [N, T]; wanted: [N, T] bool (default: every token)."""
    needed = source_index >= 0 if wanted is None else (source_index >= 0) & wanted
    positions = torch.unique(source_index[needed])
    return None if positions.numel() == source_index.shape[1] else positions


def packed_logprobs(
    model: Any,
    batch: PackedBatch,
    temperature: float = 1.0,
    with_entropy: bool = False,
    wanted: Tensor | None = None,
) -> TokenLogProbs:
    """One forward of `model` (a transformers causal LM) over the packed trees in `batch`.

    Logits are divided by the rollout temperature, so the log-probs are those of the sampling policy.
    Gradients flow when called outside `torch.no_grad()`. The LM head runs only at the positions some token
    is predicted from (`logits_to_keep`): not at a block's last token or padding, nor, given `wanted` ([N, T]
    bool, e.g. the trainable tokens), at the sources of tokens not wanted, whose log-probs are then 0.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 (the rollout's sampling temperature); got {temperature}")
    mask, extra = tree_attention(model, batch, next(model.parameters()).dtype)
    positions = logit_positions(batch.source_index, wanted)
    if positions is not None:
        extra["logits_to_keep"] = positions
    output = model(
        input_ids=batch.input_ids,
        position_ids=batch.position_ids,
        attention_mask=mask,
        use_cache=False,
        **extra,
    )
    logits = output.logits
    if positions is not None and logits.shape[1] != positions.numel():  # a model without logits_to_keep
        logits = logits[:, positions]
    if temperature != 1.0:
        logits = logits / temperature
    return logprobs_from_logits(logits, batch.input_ids, batch.source_index, with_entropy, positions, wanted)
