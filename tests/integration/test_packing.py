"""Packed trees give the same log-probs as running every summary sequence on its own (docs/method.md §2.10).

Tiny Qwen2 in float32: random traces (closed, EOS-ended, cut at b_max without `</think>`, and short ones
whose budgets collapse onto the whole thought), S = 4 budgets, A = 2 summaries of random lengths, several
trees per forward. Every token is compared, the first token of each block included.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from anytime.brpo.attention import tree_attention_implementation
from anytime.brpo.cuts import Cut, cut_of_budget, trace_cuts
from anytime.brpo.logprobs import packed_logprobs
from anytime.brpo.loss import ppo_loss
from anytime.brpo.packing import BlockSpan, PackedBatch, PackedTree, collate_trees, pack_tree
from anytime.model_facts import ModelFacts
from anytime.prompting import prompt_ids
from anytime.summary_format import SummaryFormat

pytestmark = pytest.mark.integration

BUDGETS = [12, 24, 36, 48]
NUM_SUMMARIES = 2
TOLERANCE = 1e-4


@dataclass(frozen=True)
class Case:
    prompt: list[int]
    thinking: list[int]
    cuts: list[Cut]
    summaries: list[list[list[int]]]
    tree: PackedTree

    def block_sequence(self, block: BlockSpan) -> list[int]:
        """The summary's own sequence: prompt + z[:c] + inserted + delimiter + summary."""
        cut = cut_of_budget(self.cuts)[block.budget_index]
        return (
            cut.summary_prompt(self.prompt, self.thinking)
            + self.summaries[block.budget_index][block.sample_index]
        )


@dataclass(frozen=True)
class Tiny:
    model: Any
    facts: ModelFacts
    tokenizer: Any
    path: Path


def _load(path: Path, attn: str) -> Any:
    return AutoModelForCausalLM.from_pretrained(path, attn_implementation=attn, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path) -> Iterator[Tiny]:
    # Many tiny forwards: one thread avoids the oversubscription stalls of a small, busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    facts = ModelFacts.from_tokenizer(tokenizer, SummaryFormat())
    yield Tiny(_load(tiny_model_dir, "sdpa"), facts, tokenizer, tiny_model_dir)
    torch.set_num_threads(threads)


def _cases(tiny: Tiny, seed: int) -> list[Case]:
    """Four traces with random lengths: closed, EOS-ended, stopped at b_max, and closed before b_1."""
    rng = random.Random(seed)
    facts = tiny.facts
    special = {facts.think_end_id, facts.eos_id, facts.pad_id}
    vocab = [i for i in range(len(tiny.tokenizer)) if i not in special]
    prompt = prompt_ids(tiny.tokenizer, "Digit chain: start at 3, then +4 *2.")
    b_max = BUDGETS[-1]
    endings = [
        (rng.randint(1, b_max), facts.think_end_id),
        (rng.randint(1, b_max), facts.eos_id),
        (b_max, None),
        (rng.randint(1, BUDGETS[0]), facts.think_end_id),
    ]
    cases = []
    for length, last in endings:
        thinking = [rng.choice(vocab) for _ in range(length - 1)] + [
            last if last is not None else rng.choice(vocab)
        ]
        cuts = trace_cuts(thinking, BUDGETS, facts)
        summaries = [
            [[rng.choice(vocab) for _ in range(rng.randint(1, 9))] for _ in range(NUM_SUMMARIES)]
            for _ in BUDGETS
        ]
        cases.append(Case(prompt, thinking, cuts, summaries, pack_tree(prompt, thinking, cuts, summaries)))
    return cases


def _alone(model: Any, ids: list[int]) -> torch.Tensor:
    """[len(ids) - 1] log-prob of every token after the first, running the sequence on its own."""
    x = torch.tensor([ids])
    logits = model(input_ids=x).logits[0].float()
    return logits[:-1].log_softmax(-1).gather(-1, x[0, 1:, None])[:, 0]


def _assert_packed_equals_unpacked(
    model: Any, cases: list[Case], batch: PackedBatch, packed: torch.Tensor
) -> None:
    for index, case in enumerate(cases):
        tree, values = case.tree, batch.tree_values(packed, index)
        trunk_len = tree.prompt_len + tree.thinking_len
        with torch.no_grad():
            trunk = _alone(model, case.prompt + case.thinking)
        diff = (values[1:trunk_len] - trunk).abs().max().item()
        assert diff <= TOLERANCE, f"trunk of tree {index}: {diff}"
        for block in tree.blocks:
            with torch.no_grad():
                alone = _alone(model, case.block_sequence(block))
            span = block.end - block.start
            diff = (values[block.start : block.end] - alone[-span:]).abs().max().item()
            assert diff <= TOLERANCE, f"tree {index}, {block}: {diff}"


@pytest.mark.parametrize("attn", ["sdpa", "eager", "block_sparse"])
def test_packed_logprobs_equal_unpacked(tiny: Tiny, attn: str) -> None:
    if attn == "block_sparse":
        attn = tree_attention_implementation("cpu")
    model = tiny.model if attn == "sdpa" else _load(tiny.path, attn)
    for seed, max_row_tokens in ((0, None), (1, 10_000)):  # a row per tree, then all trees in one row
        cases = _cases(tiny, seed)
        assert any(cut.budgets_served > 1 for case in cases for cut in case.cuts), "include collapsed budgets"
        batch = collate_trees([c.tree for c in cases], tiny.facts.pad_id, 16, max_row_tokens)
        assert batch.shape[0] == (len(cases) if max_row_tokens is None else 1)
        with torch.no_grad():
            packed = packed_logprobs(model, batch).logprobs
        _assert_packed_equals_unpacked(model, cases, batch, packed)
        for index, case in enumerate(cases):
            trainable = batch.tree_values(batch.trainable, index)
            assert not any(trainable[block.start] for block in case.tree.blocks)
        assert int(batch.trainable.sum()) == sum(int(c.tree.trainable.sum()) for c in cases)


def test_packed_gradient_equals_the_sum_of_unpacked_gradients(tiny: Tiny) -> None:
    model, case = tiny.model, _cases(tiny, seed=2)[0]
    tree = case.tree
    weights = torch.linspace(-1, 1, tree.length) * tree.trainable  # any per-token weights, trainable only
    model.zero_grad()
    (packed_logprobs(model, collate_trees([tree], tiny.facts.pad_id)).logprobs[0] * weights).sum().backward()
    packed_grads = [p.grad.clone() for p in model.parameters()]

    model.zero_grad()
    trunk_len = tree.prompt_len + tree.thinking_len
    trunk = torch.cat([torch.zeros(1), _alone(model, case.prompt + case.thinking)])
    loss = (trunk * weights[:trunk_len]).sum()
    for block in tree.blocks:
        span = block.end - block.start
        loss = (
            loss
            + (_alone(model, case.block_sequence(block))[-span:] * weights[block.start : block.end]).sum()
        )
    loss.backward()
    for packed_grad, param in zip(packed_grads, model.parameters(), strict=True):
        torch.testing.assert_close(packed_grad, param.grad, atol=1e-5, rtol=1e-4)
    model.zero_grad()


def test_block_sparse_model_still_handles_ordinary_padded_batches(tiny: Tiny) -> None:
    # Loaded for trees, the model must still run plain (left-padded) batches exactly like SDPA.
    model = _load(tiny.path, tree_attention_implementation("cpu"))
    ids = torch.tensor([[tiny.facts.pad_id] * 3 + list(range(40, 50)), list(range(60, 73))])
    mask = torch.ones_like(ids)
    mask[0, :3] = 0
    with torch.no_grad():
        sparse = model(input_ids=ids, attention_mask=mask).logits
        dense = tiny.model(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(sparse[0, 3:], dense[0, 3:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sparse[1], dense[1], atol=1e-5, rtol=1e-5)


def test_a_learner_step_on_packed_trees_is_finite(tiny: Tiny) -> None:
    model = _load(tiny.path, tree_attention_implementation("cpu"))
    trees = [c.tree for c in _cases(tiny, seed=3)]
    batch = collate_trees(trees, tiny.facts.pad_id).with_advantages(
        torch.randn(len(trees), len(BUDGETS)), torch.randn(len(trees), len(BUDGETS), NUM_SUMMARIES)
    )
    with torch.no_grad():
        old = packed_logprobs(model, batch).logprobs
    model.zero_grad()
    new = packed_logprobs(model, batch, with_entropy=True)
    out = ppo_loss(new.logprobs, old, batch.advantages, batch.trainable, entropy=new.entropy)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert out.metrics["policy/approx_kl"].item() == pytest.approx(0.0, abs=1e-6)
    assert out.metrics["policy/entropy"].item() > 0
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.zero_grad()


def test_inserted_strings_are_tokenized_on_their_own(tiny: Tiny) -> None:
    facts, fmt = tiny.facts, SummaryFormat()
    assert list(facts.ellipsis_ids) == tiny.tokenizer.encode(fmt.ellipsis, add_special_tokens=False)
    assert list(facts.delimiter_ids) == tiny.tokenizer.encode(fmt.delimiter, add_special_tokens=False)
    assert facts.ellipsis_ids[-1] == facts.think_end_id
    case = _cases(tiny, seed=4)[1]  # EOS-ended: every cut gets the ellipsis
    tree, first = case.tree, case.tree.blocks[0]
    assert tree.input_ids[: tree.prompt_len + tree.thinking_len].tolist() == case.prompt + case.thinking
    head = tree.input_ids[first.start : first.start + first.prefix_len].tolist()
    assert head == [*facts.ellipsis_ids, *facts.delimiter_ids]


@pytest.mark.parametrize(
    "device", [pytest.param("cpu", marks=pytest.mark.slow), pytest.param("cuda", marks=pytest.mark.gpu)]
)
def test_flex_attention_block_mask_equals_the_explicit_mask(tiny: Tiny, device: str) -> None:
    # The GPU path; on the CPU it compiles (slow) but checks the same BlockMask semantics.
    cases = _cases(tiny, seed=5)
    # Two rows, the second holding two trees back to back: the BlockMask must keep them apart too.
    row = cases[0].tree.length + cases[1].tree.length
    batch = collate_trees([c.tree for c in cases], tiny.facts.pad_id, multiple_of=128, max_row_tokens=row)
    with torch.no_grad():
        dense = packed_logprobs(tiny.model, batch).logprobs
        flex_model = _load(tiny.path, "flex_attention").to(device)
        flex = packed_logprobs(flex_model, batch.to(device)).logprobs.cpu()
    assert (flex - dense).abs().max().item() <= TOLERANCE
