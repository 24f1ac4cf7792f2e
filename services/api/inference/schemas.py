"""OpenAI-compatible request and response bodies, plus our anytime fields.

Ours travel in the `openai` client's `extra_body`: `budget` (the most thinking tokens) or `budgets`
(an answer at each, from one thought). `max_tokens` caps the answer (the summary), not the thinking.
Unknown fields are errors, so a misspelt `budget` is a 422 rather than a silently unbudgeted call.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.api.schemas import PositiveJsonInt


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart]

    @property
    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_usage: bool = False


class AnytimeParams(BaseModel):
    """What both endpoints take besides the prompt."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        description="The configured model's name, or \"run:<id>\" for a run's promoted checkpoint."
    )
    budget: PositiveJsonInt | None = Field(
        default=None, description="The most thinking tokens; unset: think until </think> or the limit."
    )
    budgets: list[PositiveJsonInt] | None = Field(
        default=None, min_length=1, description="An answer at each budget (ascending), from one thought."
    )
    max_tokens: PositiveJsonInt | None = Field(default=None, description="The most answer tokens.")
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    n: Literal[1] = Field(
        default=1, description="One thought per request (use `budgets` for several answers)."
    )
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None

    @field_validator("budgets")
    @classmethod
    def _ascending(cls, value: list[int] | None) -> list[int] | None:
        if value is None:
            return None
        if any(a >= b for a, b in pairwise(value)):
            raise ValueError(f"budgets must be strictly increasing, e.g. [64, 128, 256]; got {value}")
        return value

    @model_validator(mode="after")
    def _one_of_budget_and_budgets(self) -> AnytimeParams:
        if self.budget is not None and self.budgets is not None:
            raise ValueError("give either `budget` or `budgets`, not both")
        return self


class ChatCompletionRequest(AnytimeParams):
    messages: list[ChatMessage] = Field(min_length=1, description="At least one message.")


class CompletionRequest(AnytimeParams):
    prompt: str = Field(min_length=1, description="Raw text; the thought starts right after it.")


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int = Field(description="Thinking plus answer tokens.")
    total_tokens: int
    thinking_tokens: int
    answer_tokens: int
    completion_tokens_details: dict[str, int] = Field(description="`reasoning_tokens`, as OpenAI reports it.")


class AnytimeChoiceFields(BaseModel):
    """Our fields on every choice: which budget it answers and how the thought was cut."""

    index: int
    finish_reason: Literal["stop", "length"]
    budget: int | None = Field(description="The budget answered (null: no budget given, or a stop).")
    thinking_tokens: int = Field(description="Thinking tokens the answer saw.")
    thought_cut: bool = Field(description="The thought was cut (or never closed) and the ellipsis inserted.")
    stopped: bool = Field(description="The answer to a stop request.")


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    reasoning_content: str


class ChatChoice(AnytimeChoiceFields):
    message: AssistantMessage


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class CompletionChoice(AnytimeChoiceFields):
    text: str
    reasoning_content: str
    logprobs: None = None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage


class StopResponse(BaseModel):
    id: str
    stopped: bool = Field(description="False when the thought had already ended: the last answer is given.")
    thinking_tokens: int
    content: str
    reasoning_content: str
