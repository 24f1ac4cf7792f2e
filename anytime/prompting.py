"""Problem text → prompt token ids through the model's own chat template."""

from __future__ import annotations

from typing import Any


def prompt_ids(tokenizer: Any, problem: str, suffix: str = "") -> list[int]:
    """The user turn plus the generation prompt; the model's thinking starts right after these ids."""
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": problem + suffix}], tokenize=False, add_generation_prompt=True
    )
    return list(tokenizer.encode(text, add_special_tokens=False))
