"""The paper's model's chat format on the CPU: a tiny tokenizer built with R1-Distill's template and special
tokens, saved and loaded back as the engines load it, renders prompts, cuts and inserted text as the paper's
model sees them (docs/method.md §5.1 for the prompt, §2.3 for the cuts).

Every expectation is the prompt rendered by hand and tokenized piece by piece: a marker is one token (looked
up by its text), the text between markers is encoded on its own without special tokens.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer

from anytime.brpo.cuts import trace_cuts
from anytime.model_facts import ModelFacts
from anytime.prompting import prompt_ids
from anytime.summary_format import SummaryFormat
from anytime.tinymodel.build import TinyModelSpec, build_tiny_model
from anytime.tinymodel.chat_formats import R1_CHAT
from anytime.tinymodel.tokenizer import build_tokenizer

FMT = SummaryFormat()
# The paper's user message: the problem, then this suffix (its leading space included).
SUFFIX = " Let's think step by step and output the final answer within \\boxed{}."
PROBLEM = "What is $\\frac{1}{2} + 3$?"
BOS, EOS = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"
USER, ASSISTANT = "<｜User｜>", "<｜Assistant｜>"


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    corpus = [PROBLEM + SUFFIX, "Let me add. One half plus three is 7/2.", FMT.ellipsis + FMT.delimiter] * 20
    built = build_tokenizer(corpus, 320, FMT, chat=R1_CHAT)
    out: Path = tmp_path_factory.mktemp("r1") / "tokenizer"
    built.save_pretrained(out)
    return AutoTokenizer.from_pretrained(out)  # as the engines and the learner load it


def token(tokenizer: Any, text: str) -> int:
    """A marker's one id, looked up by its text (never an id literal)."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert len(ids) == 1, (text, ids)
    return int(ids[0])


def text_ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False))


def test_a_prompt_is_the_r1_user_turn_rendered_by_hand(tokenizer: Any) -> None:
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": PROBLEM + SUFFIX}], tokenize=False, add_generation_prompt=True
    )
    assert rendered == f"{BOS}{USER}{PROBLEM}{SUFFIX}{ASSISTANT}<think>\n"
    by_hand = [
        token(tokenizer, BOS),
        token(tokenizer, USER),
        *text_ids(tokenizer, PROBLEM + SUFFIX),
        token(tokenizer, ASSISTANT),
        token(tokenizer, "<think>"),
        *text_ids(tokenizer, "\n"),
    ]
    ids = prompt_ids(tokenizer, PROBLEM, SUFFIX)
    assert ids == by_hand
    assert ids.count(token(tokenizer, BOS)) == 1  # the template writes the BOS; encoding adds none
    assert tokenizer.encode("x")[0] == token(tokenizer, BOS)  # … which it would with special tokens


def test_system_and_assistant_turns_render_as_r1_distills_template(tokenizer: Any) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "1+1?"},
        {"role": "assistant", "content": "<think>\nOne and one.\n</think>\n\nIt is 2."},
        {"role": "user", "content": "2+2?"},
    ]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    # The system text right after the BOS; an earlier answer without its thought, closed by EOS.
    assert rendered == (f"{BOS}Be brief.{USER}1+1?{ASSISTANT}\n\nIt is 2.{EOS}{USER}2+2?{ASSISTANT}<think>\n")


def test_model_facts_come_from_the_tokenizer(tokenizer: Any) -> None:
    facts = ModelFacts.from_tokenizer(tokenizer, FMT)
    assert tokenizer.eos_token == EOS and tokenizer.bos_token == BOS
    assert facts.think_start_id == token(tokenizer, "<think>")
    assert facts.think_end_id == token(tokenizer, "</think>")
    assert facts.eos_id == token(tokenizer, EOS) == facts.pad_id  # R1-Distill pads with its EOS
    # The inserted strings, each encoded on its own without special tokens (no BOS before them).
    assert list(facts.ellipsis_ids) == text_ids(tokenizer, "...\n\n...\n\n</think>")
    assert list(facts.delimiter_ids) == text_ids(tokenizer, "\n\n**Final Answer**\n")
    assert facts.ellipsis_ids[-1] == facts.think_end_id
    assert token(tokenizer, BOS) not in (*facts.ellipsis_ids, *facts.delimiter_ids)
    # Decoding keeps the think markers and the role markers, and drops the BOS and EOS as special.
    ids = [token(tokenizer, BOS), token(tokenizer, USER), facts.think_end_id, facts.eos_id]
    assert tokenizer.decode(ids, skip_special_tokens=True) == f"{USER}</think>"


def test_a_cuts_summary_prompt_is_prompt_thinking_ellipsis_and_delimiter(tokenizer: Any) -> None:
    facts = ModelFacts.from_tokenizer(tokenizer, FMT)
    prompt = prompt_ids(tokenizer, PROBLEM, SUFFIX)
    # Sampled thinking ids (used as they are, never re-tokenized), closed by `</think>`.
    thought = text_ids(tokenizer, "Let me add. One half plus three is 7/2.")
    assert len(thought) > 8
    z = [*thought, facts.think_end_id]
    cut_short, whole = trace_cuts(z, [8, 2 * len(z)], facts)
    assert (cut_short.cut, whole.cut) == (8, len(z))
    ellipsis, delimiter = (
        text_ids(tokenizer, "...\n\n...\n\n</think>"),
        text_ids(tokenizer, "\n\n**Final Answer**\n"),
    )
    # Cut short: prompt + z[:L] + tokens("...\n\n...\n\n</think>") + tokens("\n\n**Final Answer**\n").
    assert cut_short.summary_prompt(prompt, z) == [*prompt, *z[:8], *ellipsis, *delimiter]
    # The whole closed thought: its own `</think>`, no ellipsis.
    assert whole.summary_prompt(prompt, z) == [*prompt, *z, *delimiter]
    text = tokenizer.decode(cut_short.summary_prompt(prompt, z)[len(prompt) + 8 :])
    assert text == "...\n\n...\n\n</think>\n\n**Final Answer**\n"
    # A thought that ended with EOS (never closed) gets the ellipsis even at its full length.
    (unclosed,) = trace_cuts([*thought, facts.eos_id], [2 * len(z)], facts)
    assert unclosed.summary_prompt(prompt, [*thought, facts.eos_id])[-len(ellipsis) - len(delimiter) :] == [
        *ellipsis,
        *delimiter,
    ]


@pytest.mark.slow
def test_the_tiny_model_builds_with_the_r1_format(tmp_path: Path) -> None:
    """`TinyModelSpec(chat_format="r1")`: the model folder's BOS, EOS and padding are the tokenizer's."""
    out = build_tiny_model(
        tmp_path / "tiny-r1", spec=TinyModelSpec(corpus_problems_per_task=20, chat_format="r1")
    )
    loaded = AutoTokenizer.from_pretrained(out)
    config = json.loads((out / "config.json").read_text())
    generation = json.loads((out / "generation_config.json").read_text())
    ids = (token(loaded, BOS), token(loaded, EOS), token(loaded, EOS))
    assert (config["bos_token_id"], config["eos_token_id"], config["pad_token_id"]) == ids
    assert (generation["bos_token_id"], generation["eos_token_id"], generation["pad_token_id"]) == ids
    assert prompt_ids(loaded, PROBLEM)[:2] == [token(loaded, BOS), token(loaded, USER)]
    assert json.loads((out / "anytime_tiny_spec.json").read_text())["chat_format"] == "r1"
