"""The strings that turn a (possibly cut) thought into a summary prompt (docs/method.md §2.3).

`prompt + thinking[:cut] + inserted + delimiter`, where `inserted` closes a thought that was cut or never
closed. Each string is tokenized on its own and appended to sampled ids; the sampled prefix is never
re-tokenized. The think tokens are looked up in the tokenizer (see `anytime.model_facts`).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, field_validator


class SummaryFormat(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    think_start: str = "<think>"
    think_end: str = "</think>"
    # Closes a thought that was cut short or never closed; must end with `think_end`.
    ellipsis: str = "...\n\n...\n\n</think>"
    # Asks for the answer; the answer is the last \boxed{} in the paragraph that starts with it.
    delimiter: str = "\n\n**Final Answer**\n"

    @field_validator("delimiter")
    @classmethod
    def _delimiter_starts_paragraph(cls, value: str) -> str:
        if not value.startswith("\n\n") or value.strip() == "":
            raise ValueError(
                "delimiter must start a new paragraph ('\\n\\n…') and contain text, "
                "e.g. '\\n\\n**Final Answer**\\n'"
            )
        return value

    def model_post_init(self, _context: object) -> None:
        if not self.ellipsis.endswith(self.think_end):
            raise ValueError(
                f"ellipsis must end with the think-end marker {self.think_end!r}; got {self.ellipsis!r}"
            )

    @property
    def answer_heading(self) -> str:
        """The delimiter as it appears at the start of its paragraph (without the leading blank line)."""
        return self.delimiter.lstrip("\n")
