"""Request text → prompt ids, the way training builds them (`anytime.prompting.prompt_ids`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.api.inference.schemas import ChatMessage


def chat_prompt_ids(tokenizer: Any, messages: Sequence[ChatMessage]) -> list[int]:
    """The conversation through the model's chat template plus the generation prompt (the thought starts
    right after); for one user message this is exactly `anytime.prompting.prompt_ids`."""
    text = tokenizer.apply_chat_template(
        [{"role": m.role, "content": m.text} for m in messages], tokenize=False, add_generation_prompt=True
    )
    return list(tokenizer.encode(text, add_special_tokens=False))


def completion_prompt_ids(tokenizer: Any, prompt: str) -> list[int]:
    """Raw text, tokenized as it is (the caller writes the template, if any)."""
    return list(tokenizer.encode(prompt))
