"""Model facts read from the tokenizer: never token-id literals in the code.

In the torch-free core, not with the engines (`services.engines`): the engines, the learner (warm start),
the tiny-model builder and the brpo cut logic all use these ids, and the core may not import services.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from anytime.summary_format import SummaryFormat


@dataclass(frozen=True)
class ModelFacts:
    think_start_id: int
    think_end_id: int
    eos_id: int
    pad_id: int
    ellipsis_ids: tuple[int, ...]
    delimiter_ids: tuple[int, ...]

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, fmt: SummaryFormat) -> ModelFacts:
        """Look up the markers; a marker that is not a single token is an error that names it."""

        def single(token: str) -> int:
            ids = tokenizer.encode(token, add_special_tokens=False)
            if len(ids) != 1:
                raise ValueError(
                    f"{token!r} is not a single token in this tokenizer (got {len(ids)} ids); "
                    "set the summary format's think markers to the model's own tokens"
                )
            return int(ids[0])

        if tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no EOS token; set eos_token in tokenizer_config.json")
        return cls(
            think_start_id=single(fmt.think_start),
            think_end_id=single(fmt.think_end),
            eos_id=int(tokenizer.eos_token_id),
            pad_id=pad_id_of(tokenizer),
            ellipsis_ids=tuple(tokenizer.encode(fmt.ellipsis, add_special_tokens=False)),
            delimiter_ids=tuple(tokenizer.encode(fmt.delimiter, add_special_tokens=False)),
        )


def pad_id_of(tokenizer: Any) -> int:
    """The tokenizer's pad token, or its EOS when it has none (what batches are padded with)."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return int(pad)
