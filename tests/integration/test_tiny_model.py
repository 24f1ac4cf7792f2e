"""The tiny reasoner built by the CLI loads and generates in transformers, with its model facts intact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from anytime.model_facts import ModelFacts
from anytime.prompting import prompt_ids
from anytime.summary_format import SummaryFormat

pytestmark = pytest.mark.integration


def test_directory_is_a_hugging_face_model(tiny_model_dir: Path) -> None:
    assert (tiny_model_dir / "model.safetensors").is_file()
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["model_type"] == "qwen2" and config["architectures"] == ["Qwen2ForCausalLM"]
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    params = sum(p.numel() for p in model.parameters())
    assert 1_000_000 <= params <= 10_000_000, params


def test_tokenizer_has_think_tokens_eos_and_chat_template(tiny_model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    facts = ModelFacts.from_tokenizer(tokenizer, SummaryFormat())
    assert len({facts.think_start_id, facts.think_end_id, facts.eos_id, facts.pad_id}) == 4
    ids = prompt_ids(tokenizer, "Digit chain: start at 1.\nA+2")
    assert ids[-2:] == [facts.think_start_id, *tokenizer.encode("\n", add_special_tokens=False)]
    # Think markers survive decoding (they are not special); EOS is dropped as special.
    text = tokenizer.decode([facts.think_end_id, facts.eos_id], skip_special_tokens=True)
    assert text == "</think>"
    # Digits are one token each, and a step's operation with its operand is one token.
    assert len(tokenizer.encode("1234", add_special_tokens=False)) == 4
    assert len(tokenizer.encode("*7", add_special_tokens=False)) == 1


def test_same_seed_builds_the_same_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    from tests.conftest import anytime_cli

    again = tmp_path / "again"
    anytime_cli("model", "tiny", "--out", str(again), "--seed", "0")
    assert (again / "tokenizer.json").read_text() == (tiny_model_dir / "tokenizer.json").read_text()
    a = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    b = AutoModelForCausalLM.from_pretrained(again).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_generates_in_transformers(warm_model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(warm_model_dir)
    model = AutoModelForCausalLM.from_pretrained(warm_model_dir)
    ids = torch.tensor([prompt_ids(tokenizer, "Digit chain: start at 3.\nA+4\nB*2")])
    out = model.generate(ids, max_new_tokens=12, do_sample=False)
    new = out[0, ids.shape[1] :].tolist()
    assert len(new) > 0
    assert all(0 <= t < len(tokenizer) for t in new), "a warm-started model samples real tokens"
