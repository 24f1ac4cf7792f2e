"""Shared-prefix (cascade) attention: the log-sum-exp merge, the slot layout, a step vs per-row copies."""

from __future__ import annotations

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from services.engines.shared_prefix import (
    PromptKV,
    SharedPrefix,
    enable_shared_prefix_attention,
    merge_attention,
    padded_runs,
    partial_attention,
)


def test_merging_two_partial_softmaxes_equals_one_softmax_over_all_keys() -> None:
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(3, 2, 5, 8, generator=gen)
    k = torch.randn(3, 2, 11, 8, generator=gen)
    v = torch.randn(3, 2, 11, 8, generator=gen)
    expected = torch.softmax(q @ k.transpose(-1, -2) * 0.3, dim=-1) @ v
    first = partial_attention(q, k[:, :, :7], v[:, :, :7], None, 0.3)
    second = partial_attention(q, k[:, :, 7:], v[:, :, 7:], None, 0.3)
    assert torch.allclose(merge_attention(*first, *second), expected, atol=1e-6)


def test_a_minus_infinity_bias_removes_a_key() -> None:
    gen = torch.Generator().manual_seed(1)
    q = torch.randn(1, 1, 2, 4, generator=gen)
    k, v = torch.randn(1, 1, 3, 4, generator=gen), torch.randn(1, 1, 3, 4, generator=gen)
    bias = torch.tensor([float("-inf"), 0.0, 0.0])[None, None, None, :]
    out, lse = partial_attention(q, k, v, bias, 1.0)
    expected, expected_lse = partial_attention(q, k[:, :, 1:], v[:, :, 1:], None, 1.0)
    assert torch.allclose(out, expected) and torch.allclose(lse, expected_lse)


def test_padded_runs_group_similar_sizes_and_skip_zeros() -> None:
    # 16 + 16 + 12 + 4 rows in 4 x 16 = 64 slots (≤ 1.5 x 48); one more 4 would be 80 slots for 52 rows.
    assert padded_runs([16, 16, 12, 4, 4, 0, 4]) == [(0, 4, 16), (4, 5, 4), (6, 7, 4)]
    assert padded_runs([0, 0]) == []


def _per_row_copy_attention(
    query: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    prompt_of_row: list[int],
    suffix_key: torch.Tensor,
    suffix_value: torch.Tensor,
) -> torch.Tensor:
    """The old path: copy each row's prompt KV, append its suffix, run sdpa with the padding mask."""
    index = torch.tensor(prompt_of_row)
    k = torch.cat([keys[index], suffix_key], dim=2)
    v = torch.cat([values[index], suffix_value], dim=2)
    visible = torch.cat([mask[index], torch.ones(len(prompt_of_row), suffix_key.shape[2])], dim=1).bool()
    out = torch.nn.functional.scaled_dot_product_attention(
        query, k, v, attn_mask=visible[:, None, None, :], enable_gqa=True
    )
    return out.transpose(1, 2)


def test_one_decode_step_equals_attention_over_per_row_copies() -> None:
    """GQA (4 heads, 2 KV heads), left padding, two prefill groups, prompts with 5, 2, 1 rows interleaved;
    then rows finish."""
    gen = torch.Generator().manual_seed(2)
    prompts, kv_heads, width, dim, steps = 3, 2, 9, 8, 4
    keys = torch.randn(prompts, kv_heads, width, dim, generator=gen)
    values = torch.randn(prompts, kv_heads, width, dim, generator=gen)
    mask = torch.ones(prompts, width)
    mask[1, :4] = 0
    mask[2, :7] = 0
    # Prompts 0 and 1 prefilled together; prompt 2 on its own, without its padding.
    groups = (
        PromptKV.from_prefill((keys[:2],), (values[:2],), mask[:2]),
        PromptKV.from_prefill((keys[2:, :, 7:],), (values[2:, :, 7:],), mask[2:, 7:]),
    )
    where = [(0, 0), (0, 1), (1, 0)]
    prompt_of_row = [0, 1, 0, 2, 0, 0, 1, 0]
    rows = len(prompt_of_row)
    query = torch.randn(rows, 4, 1, dim, generator=gen)
    suffix_key = torch.randn(rows, kv_heads, steps, dim, generator=gen)
    suffix_value = torch.randn(rows, kv_heads, steps, dim, generator=gen)
    prefix = SharedPrefix.build(groups, tuple(where[p] for p in prompt_of_row))
    ours = prefix.attend(0, query, suffix_key, suffix_value, dim**-0.5)
    expected = _per_row_copy_attention(query, keys, values, mask, prompt_of_row, suffix_key, suffix_value)
    assert ours.shape == (rows, 1, 4, dim)
    assert torch.allclose(ours, expected, atol=1e-6)

    keep = [1, 2, 6]  # prompt 2's only row and three of prompt 0's rows finished
    fewer = prefix.select_rows(keep)
    assert fewer.groups is groups and fewer.num_slots == 4  # no copy; prompt 2 drops out
    ours = fewer.attend(0, query[keep], suffix_key[keep], suffix_value[keep], dim**-0.5)
    kept_prompts = [prompt_of_row[r] for r in keep]
    expected = _per_row_copy_attention(
        query[keep], keys, values, mask, kept_prompts, suffix_key[keep], suffix_value[keep]
    )
    assert torch.allclose(ours, expected, atol=1e-6)


def test_only_sdpa_models_with_full_attention_are_switched() -> None:
    config = Qwen2Config(
        vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1,
    )  # fmt: skip
    eager = Qwen2ForCausalLM(config).eval()
    eager.set_attn_implementation("eager")
    with pytest.raises(ValueError, match="shared_prefix=False"):
        enable_shared_prefix_attention(eager)
    with pytest.raises(TypeError, match="transformers model"):
        enable_shared_prefix_attention(torch.nn.Linear(2, 2))
    model = Qwen2ForCausalLM(config).eval()
    model.set_attn_implementation("sdpa")  # what from_pretrained picks
    ids = torch.tensor([[3, 4, 5, 6]])
    with torch.no_grad():
        before = model(ids).logits
        enable_shared_prefix_attention(model)
        enable_shared_prefix_attention(model)  # idempotent
        after = model(ids).logits
    assert model.config._attn_implementation == "anytime_shared_prefix"
    assert torch.equal(before, after)  # calls without `shared_prefix=` run sdpa as before
