"""`anytime model tiny --chat r1`: the tiny model with R1-Distill's template, built from the command line."""

from __future__ import annotations

import json
from pathlib import Path

from transformers import AutoTokenizer

from tests.conftest import anytime_cli

BOS, EOS = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"
USER, ASSISTANT = "<｜User｜>", "<｜Assistant｜>"


def test_the_r1_chat_format_is_a_command_line_choice(tmp_path: Path) -> None:
    out = tmp_path / "tiny-r1"
    done = anytime_cli("model", "tiny", "--out", str(out), "--chat", "r1")
    assert f"tiny model written to {out}" in done.stdout
    tokenizer = AutoTokenizer.from_pretrained(out)
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "2+2?"}], tokenize=False, add_generation_prompt=True
    )
    assert rendered == f"{BOS}{USER}2+2?{ASSISTANT}<think>\n"
    eos = tokenizer.encode(EOS, add_special_tokens=False)
    assert len(eos) == 1 and json.loads((out / "config.json").read_text())["eos_token_id"] == eos[0]
    assert json.loads((out / "anytime_tiny_spec.json").read_text())["chat_format"] == "r1"
    refused = anytime_cli("model", "tiny", "--out", str(tmp_path / "x"), "--chat", "chatml", check=False)
    assert refused.returncode == 2 and "'chatml' is not one of 'tiny', 'r1'" in refused.stderr
    assert not (tmp_path / "x").exists()
