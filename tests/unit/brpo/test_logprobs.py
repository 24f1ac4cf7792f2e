"""Per-token log-probs on packed trees: logits only where a token is predicted from, the same values."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from anytime.brpo.attention import tree_attention_implementation
from anytime.brpo.cuts import cut_trace
from anytime.brpo.logprobs import logit_positions, logprobs_from_logits, packed_logprobs
from anytime.brpo.packing import PackedBatch, collate_trees, pack_tree


def _listed(positions: torch.Tensor | None) -> list[int]:
    assert positions is not None
    return [int(p) for p in positions]


def test_logit_positions_are_the_sources_of_wanted_tokens() -> None:
    source = torch.tensor([[-1, 0, 1, 1, 4, -1], [-1, 0, 0, 2, 3, 4]])
    assert _listed(logit_positions(source)) == [0, 1, 2, 3, 4]  # nothing is predicted from position 5
    wanted = torch.tensor([[0, 1, 0, 0, 1, 0], [0, 0, 0, 0, 0, 1]], dtype=torch.bool)
    assert _listed(logit_positions(source, wanted)) == [0, 4]
    assert logit_positions(torch.tensor([[-1, 0, 1, 2], [3, 2, 1, 0]])) is None  # every position: no gather


def test_log_probs_from_logits_kept_at_some_positions() -> None:
    # V = 2; logits [0, ln 3] give probabilities [1/4, 3/4], logits [0, 0] give [1/2, 1/2].
    third = math.log(3.0)
    full = torch.tensor([[[0.0, 0.0], [0.0, third], [9.0, 9.0], [0.0, 0.0]]])
    ids = torch.tensor([[1, 1, 0, 0]])
    source = torch.tensor([[-1, 0, 1, 1]])  # tokens 2 and 3 are both predicted from position 1
    expected = [0.0, math.log(0.5), math.log(0.25), math.log(0.25)]
    assert logprobs_from_logits(full, ids, source).logprobs[0].tolist() == pytest.approx(expected)
    positions = torch.tensor([0, 1])
    kept = logprobs_from_logits(full[:, positions], ids, source, with_entropy=True, positions=positions)
    assert kept.logprobs[0].tolist() == pytest.approx(expected)
    assert kept.entropy is not None
    quarter = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert kept.entropy[0].tolist() == pytest.approx([0.0, math.log(2.0), quarter, quarter])
    wanted = torch.tensor([[True, True, False, True]])
    only = logprobs_from_logits(full[:, positions], ids, source, positions=positions, wanted=wanted)
    assert only.logprobs[0].tolist() == pytest.approx([0.0, math.log(0.5), 0.0, math.log(0.25)])


def _batch() -> PackedBatch:
    generator = torch.Generator().manual_seed(0)
    trees = []
    for length in (40, 13):
        thinking = torch.randint(10, 60, (length,), generator=generator).tolist()
        cuts = cut_trace(length, "length", [10, 20, 30, 40], (61, 62), (63,))
        summaries = [[[5, 6, 7], [8]] for _ in range(4)]
        trees.append(pack_tree([1, 2, 3], thinking, cuts, summaries))
    return collate_trees(trees, pad_id=0, multiple_of=16, max_row_tokens=10_000)


def _model(attn: str) -> Qwen2ForCausalLM:
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128,
    )  # fmt: skip
    model = Qwen2ForCausalLM(config)
    model.set_attn_implementation(attn)
    return model


def test_block_sparse_log_probs_and_gradients_equal_dense_sdpa() -> None:
    batch = _batch()
    dense = _model("sdpa")
    sparse = copy.deepcopy(dense)
    sparse.set_attn_implementation(tree_attention_implementation("cpu"))
    results = []
    for model in (dense, sparse):
        out = packed_logprobs(model, batch, temperature=0.7, with_entropy=True)
        assert out.entropy is not None
        (out.logprobs * batch.trainable).sum().backward()
        grads = [p.grad for p in model.parameters()]
        results.append((out.logprobs.detach(), out.entropy.detach(), grads))
    (lp_dense, ent_dense, g_dense), (lp_sparse, ent_sparse, g_sparse) = results
    torch.testing.assert_close(lp_sparse, lp_dense, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ent_sparse, ent_dense, atol=1e-5, rtol=1e-5)
    for sparse_grad, dense_grad in zip(g_sparse, g_dense, strict=True):
        torch.testing.assert_close(sparse_grad, dense_grad, atol=1e-5, rtol=1e-4)


def test_wanted_tokens_only_keep_their_values_and_the_rest_are_zero() -> None:
    batch = _batch()
    model = _model(tree_attention_implementation("cpu"))
    with torch.no_grad():
        every = packed_logprobs(model, batch, with_entropy=True)
        trainable = packed_logprobs(model, batch, with_entropy=True, wanted=batch.trainable)
    assert every.entropy is not None and trainable.entropy is not None
    keep = batch.trainable
    torch.testing.assert_close(trainable.logprobs[keep], every.logprobs[keep])
    torch.testing.assert_close(trainable.entropy[keep], every.entropy[keep])
    assert trainable.logprobs[~keep].eq(0).all() and trainable.entropy[~keep].eq(0).all()
    assert every.logprobs[keep].lt(0).all()
