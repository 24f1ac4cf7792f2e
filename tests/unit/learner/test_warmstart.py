"""Warm-start examples are tokenized exactly as the rollout builds sequences, with the right loss mask."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from anytime.model_facts import ModelFacts
from anytime.problems import Problem
from anytime.prompting import prompt_ids
from anytime.summary_format import SummaryFormat
from services.learner.warmstart import IGNORE, build_examples, collate, encode_example

FMT = SummaryFormat()
PROBLEM = Problem(
    id="p", problem="Digit chain: start at 6.\nA+5", answer="1", trace="A+5: 6->1\nso the result is 1"
)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_full_example_trains_thinking_and_answer_only(tokenizer) -> None:
    facts = ModelFacts.from_tokenizer(tokenizer, FMT)
    example = encode_example(PROBLEM, tokenizer, facts, FMT, cut_at=None)
    prompt = prompt_ids(tokenizer, PROBLEM.problem)
    assert example.input_ids[: len(prompt)] == prompt
    text = tokenizer.decode(example.input_ids[len(prompt) :])
    assert text == "A+5: 6->1\nso the result is 1\n</think>\n\n**Final Answer**\n\\boxed{1}<|endoftext|>"
    trained = tokenizer.decode(
        [t for t, label in zip(example.input_ids, example.labels, strict=True) if label != IGNORE]
    )
    assert trained == "A+5: 6->1\nso the result is 1\n</think>\\boxed{1}<|endoftext|>"
    # The delimiter is appended as its own ids, exactly as the rollout appends it.
    start = example.input_ids.index(facts.think_end_id) + 1
    assert tuple(example.input_ids[start : start + len(facts.delimiter_ids)]) == facts.delimiter_ids


def test_cut_example_inserts_the_ellipsis_and_trains_the_answer_only(tokenizer) -> None:
    facts = ModelFacts.from_tokenizer(tokenizer, FMT)
    example = encode_example(PROBLEM, tokenizer, facts, FMT, cut_at=3)
    prompt = prompt_ids(tokenizer, PROBLEM.problem)
    kept = tokenizer.encode("A+5: 6->1\n", add_special_tokens=False)[:3]
    assert example.input_ids == [
        *prompt,
        *kept,
        *facts.ellipsis_ids,
        *facts.delimiter_ids,
        *tokenizer.encode("\\boxed{1}", add_special_tokens=False),
        facts.eos_id,
    ]
    trained = [t for t, label in zip(example.input_ids, example.labels, strict=True) if label != IGNORE]
    assert tokenizer.decode(trained) == "\\boxed{1}<|endoftext|>"


def test_problem_without_trace_is_refused(tokenizer) -> None:
    facts = ModelFacts.from_tokenizer(tokenizer, FMT)
    with pytest.raises(ValueError, match="no trace"):
        encode_example(Problem(id="q", problem="x", answer="1"), tokenizer, facts, FMT, None)


def test_build_examples_adds_cut_copies_and_collate_pads(tokenizer) -> None:
    facts = ModelFacts.from_tokenizer(tokenizer, FMT)
    examples = build_examples([PROBLEM] * 10, tokenizer, facts, FMT, cut_fraction=1.0, seed=0)
    assert len(examples) == 20
    batch = collate(examples[:2], facts.pad_id)
    width = max(len(e.input_ids) for e in examples[:2])
    assert batch["input_ids"].shape == (2, width)
    assert torch.equal(batch["attention_mask"].sum(1), torch.tensor([len(e.input_ids) for e in examples[:2]]))
    assert (batch["labels"][batch["attention_mask"] == 0] == IGNORE).all()
