"""OpenAI-compatible request and response bodies, plus our anytime fields.

Ours travel in the `openai` client's `extra_body`: `budget` (the most thinking tokens) or `budgets`
(an answer at each, from one thought). `max_completion_tokens` (or its old name `max_tokens`) caps the
answer (the summary), not the thinking; `reasoning_effort` picks a budget from the model's evaluation curve
(or relative to the server's default when it has none; `services.api.inference.effort`), `min_accuracy` the
smallest budget the curve says reaches that accuracy.
Unknown fields are errors, so a misspelt `budget` is a 422 rather than a silently unbudgeted call; OpenAI
parameters this server does not honour (`UNSUPPORTED_PARAMETERS`) are refused as such, saying why.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from anytime.brpo.budgets import check_budgets
from services.api.inference.effort import EFFORTS, Effort, EffortMapping
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

    include_usage: bool = Field(
        default=False,
        description="Accepted as OpenAI has it; the last chunk carries `usage` either way (the thought's "
        "`reasoning_tokens` and `budget` are what a client of a thinking budget reads).",
    )


# OpenAI parameters refused by name ("`seed` is not supported by this server: …"), with why or what instead;
# any other unknown field is "unknown field" (a typo). Sent as null, they mean "not given" and are dropped.
UNSUPPORTED_PARAMETERS = {
    "stop": "the answer ends at the model's end of sequence (as in training); cap it with "
    "`max_completion_tokens`",
    "seed": "requests are batched and share the engine's sampler; use `temperature: 0` for repeatable "
    "answers",
    "logprobs": "log-probabilities are not returned",
    "top_logprobs": "log-probabilities are not returned",
    "logit_bias": "it would change the distribution the model was trained to think with",
    "frequency_penalty": "it would change the distribution the model was trained to think with",
    "presence_penalty": "it would change the distribution the model was trained to think with",
    "best_of": "one thought per request; use `budgets` for several answers from it",
    "echo": "the prompt is not echoed",
    "suffix": "the answer follows the thought",
    "tools": "tool calls are not supported",
    "tool_choice": "tool calls are not supported",
    "parallel_tool_calls": "tool calls are not supported",
    "functions": "function calls are not supported",
    "function_call": "function calls are not supported",
    "response_format": "the answer is free text after the thought",
    "modalities": "text only",
    "audio": "text only",
    "prediction": "predicted outputs are not supported",
    "store": "completions are not stored",
    "metadata": "completions are not stored",
    "service_tier": "there is one tier",
    "web_search_options": "there is no web search",
}


class AnytimeParams(BaseModel):
    """What both endpoints take besides the prompt."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        description="The configured model's name, or \"run:<id>\" for a run's promoted checkpoint "
        "(`GET /v1/models` lists them)."
    )
    budget: PositiveJsonInt | None = Field(
        default=None,
        description="The most thinking tokens. Unset (and no `budgets` or `reasoning_effort`): the server's "
        "default budget (ANYTIME_API_INFERENCE_DEFAULT_BUDGET), or less when the context leaves less room.",
    )
    budgets: list[PositiveJsonInt] | None = Field(
        default=None, min_length=1, description="An answer at each budget (ascending), from one thought."
    )
    reasoning_effort: Effort | None = Field(
        default=None,
        description=(
            "A budget from the model's evaluation curve (`GET /v1/models/{id}` shows it): low / medium = the "
            "smallest evaluated budget whose accuracy is within ANYTIME_API_INFERENCE_EFFORT_LOW_TOLERANCE "
            "(10 %) / …_MEDIUM_TOLERANCE (3 %) of the best, high = the smallest budget reaching the best. A "
            "model without an evaluation: relative to the server's default budget D "
            "(ANYTIME_API_INFERENCE_DEFAULT_BUDGET), low = D/4, medium = D, high = 4·D. Either way at most "
            "what the context leaves. Give `budget` or `budgets` for an exact number of thinking tokens."
        ),
    )
    min_accuracy: float | None = Field(
        default=None,
        gt=0.0,
        le=1.0,
        description="The smallest evaluated budget whose accuracy on the model's evaluation curve is at "
        "least this (422, saying the best the curve reaches, when none is or the model has no evaluation).",
    )
    max_completion_tokens: PositiveJsonInt | None = Field(
        default=None,
        description="The most answer (summary) tokens, written after the thought; the thought is capped by "
        "the budget. Unset: ANYTIME_API_INFERENCE_ANSWER_MAX_TOKENS.",
    )
    max_tokens: PositiveJsonInt | None = Field(
        default=None,
        description="OpenAI's older name for `max_completion_tokens` (the answer cap, not the thinking); "
        "when both are given they must be equal.",
    )
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    n: int = Field(default=1, description="1: one thought per request (use `budgets` for several answers).")
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _drop_null_unsupported(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not (k in UNSUPPORTED_PARAMETERS and v is None)}
        return data

    @field_validator("n")
    @classmethod
    def _one_thought(cls, value: int) -> int:
        if value != 1:
            raise ValueError(
                f"`n` > 1 is not supported by this server (got {value}): one thought per request; use "
                "`budgets` for several answers from it, or send several requests"
            )
        return value

    @field_validator("max_tokens")
    @classmethod
    def _one_answer_cap(cls, value: int | None, info: ValidationInfo) -> int | None:
        modern = info.data.get("max_completion_tokens")
        if value is not None and modern is not None and value != modern:
            raise ValueError(
                f"`max_tokens` ({value}) and `max_completion_tokens` ({modern}) both cap the answer and "
                "differ; give one of them"
            )
        return value

    @property
    def summary_max_tokens(self) -> int | None:
        """The answer (summary) cap the request gives: `max_completion_tokens` or `max_tokens` (None: the
        server's default)."""
        return self.max_completion_tokens or self.max_tokens

    @field_validator("budgets")
    @classmethod
    def _ascending(cls, value: list[int] | None) -> list[int] | None:
        if value is None:
            return None
        return list(check_budgets(value))

    @model_validator(mode="after")
    def _one_of_budget_and_budgets(self) -> AnytimeParams:
        if self.budget is not None and self.budgets is not None:
            raise ValueError("give either `budget` or `budgets`, not both")
        if self.reasoning_effort is not None and (self.budget is not None or self.budgets is not None):
            raise ValueError(
                "give either `reasoning_effort` or `budget`/`budgets`, not both (a budget is exact; an "
                "effort is read off the model's evaluation curve)"
            )
        if self.min_accuracy is not None and (
            self.budget is not None or self.budgets is not None or self.reasoning_effort is not None
        ):
            raise ValueError(
                "give `min_accuracy` alone, not with `budget`, `budgets` or `reasoning_effort`: each of them "
                "picks the thinking budget"
            )
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
    budget: int = Field(
        description="The most thinking tokens the thought was given (its largest budget): the request's, or "
        "what its `reasoning_effort`, `min_accuracy` or the server's default chose, lowered to the context."
    )


class AnytimeChoiceFields(BaseModel):
    """Our fields on every choice: which budget it answers and how the thought was cut."""

    index: int
    finish_reason: Literal["stop", "length"]
    budget: int | None = Field(
        description="The thinking budget this answer was cut at: the request's, or the one its "
        "`reasoning_effort` or the server's default gave (null: the answer to a stop)."
    )
    thinking_tokens: int = Field(description="Thinking tokens the answer saw.")
    thought_cut: bool = Field(description="The thought was cut (or never closed) and the ellipsis inserted.")
    stopped: bool = Field(description="The answer to a stop request.")
    answer_empty: bool = Field(
        description="The model wrote no answer text after the forced delimiter (its first answer token "
        "ended it); `content` is then the forced text (`**Final Answer**`), never an empty string."
    )


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str = Field(
        description="The answer written after the thought; never empty: when the model wrote nothing after "
        "the forced delimiter, the forced text itself (see `answer_empty`)."
    )
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
    answer_empty: bool = Field(
        description="The model wrote no answer text; `content` is the forced delimiter's text."
    )


class ServedModelCard(BaseModel):
    """One entry of `GET /v1/models`, in OpenAI's shape."""

    id: str = Field(description="What to send as `model`.")
    object: Literal["model"] = "model"
    created: int = Field(description="Unix seconds: when the API started, or when the checkpoint was saved.")
    owned_by: Literal["anytime"] = "anytime"
    policy_version: int | None = Field(
        default=None, description="A run's checkpoint: its policy version (null: the configured model)."
    )
    reasoning_effort: ReasoningEffortCard | None = Field(
        default=None, description="What each `reasoning_effort` thinks to for this model, and where from."
    )


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ServedModelCard]


class EffortLevelOut(BaseModel):
    budget: int = Field(description="Thinking tokens (before lowering to what a request's context leaves).")
    accuracy: float | None = Field(description="The evaluation's accuracy at `budget` (null: the default).")
    threshold: float | None = Field(
        description="The accuracy this effort had to reach: best × (1 - tolerance) (null: the default)."
    )
    accuracy_ci: tuple[float, float] | None = Field(
        default=None, description="The evaluation's 95 % interval at `budget`, when it was sampled."
    )


class CurvePoint(BaseModel):
    budget: int
    accuracy: float
    accuracy_ci: tuple[float, float] | None = None


class ReasoningEffortCard(BaseModel):
    """One model's `reasoning_effort` mapping as `GET /v1/models/{id}` shows it."""

    source: Literal["evaluation", "default"] = Field(
        description="evaluation: read off the promoted checkpoint's evaluation curve; default: ¼/1/4 × the "
        "server's default budget (no usable evaluation; `note` says why)."
    )
    note: str
    policy_version: int | None = Field(description="The evaluated policy (null: no evaluation).")
    best_accuracy: float | None
    tolerances: dict[str, float] | None = Field(
        description="Each effort's tolerance: a fraction of the best accuracy it may stay below it."
    )
    low: EffortLevelOut
    medium: EffortLevelOut
    high: EffortLevelOut
    curve: list[CurvePoint] = Field(description="The evaluation the mapping came from (empty: none).")

    @classmethod
    def of(cls, mapping: EffortMapping) -> ReasoningEffortCard:
        curve = mapping.curve
        levels = {
            effort: EffortLevelOut(
                budget=level.budget,
                accuracy=level.accuracy,
                threshold=level.threshold,
                accuracy_ci=curve.interval_at(level.budget) if curve and level.accuracy is not None else None,
            )
            for effort, level in mapping.levels.items()
        }
        tolerances = mapping.tolerances
        return cls(
            source=mapping.source,
            note=mapping.note,
            policy_version=curve.policy_version if curve else None,
            best_accuracy=curve.best_accuracy if curve else None,
            tolerances={e: tolerances.of(e) for e in EFFORTS} if tolerances else None,
            low=levels["low"],
            medium=levels["medium"],
            high=levels["high"],
            curve=[
                CurvePoint(budget=b, accuracy=a, accuracy_ci=curve.interval_at(b))
                for b, a in zip(curve.budgets, curve.accuracy, strict=True)
            ]
            if curve
            else [],
        )


ServedModelCard.model_rebuild()
