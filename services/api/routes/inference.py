"""OpenAI-compatible inference with a thinking budget: `/v1/chat/completions`, `/v1/completions`,
`/v1/models`, and `/v1/inference/{id}/stop` to end a request's thought now and get the answer from what it has
thought. Errors are OpenAI's error object (`services.api.inference.errors`).

Each budget is one choice (`index` = budget index): `content` (chat) or `text` (completions) is the answer
written after the cut thought, `reasoning_content` the thought it saw. With `stream: true` the response is
server-sent events: an opening chunk (its `id` is what `/stop` takes), one chunk per budget as soon as the
thought passes it, a last chunk with `usage` (always: `completion_tokens_details.reasoning_tokens` and the
`budget` the thought was given are what a client budgets by), then `data: [DONE]`. `content` is never empty:
when the model wrote no answer after the forced delimiter, it is the forced text, with `answer_empty: true`.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, status
from fastapi.responses import JSONResponse, StreamingResponse

from anytime.contracts.sampling import SamplingConfig
from services.api.deps import BAD_BODY, ApiKey, SessionDep, SettingsDep
from services.api.inference.anytime_job import (
    AnswerEvent,
    AnytimeAnswer,
    AnytimeJob,
    FailedEvent,
    FinishedEvent,
    JobUsage,
)
from services.api.inference.budgets import BudgetRefused, request_budgets
from services.api.inference.effort import EffortMapping
from services.api.inference.engines import ServedModel
from services.api.inference.errors import ErrorObject, ErrorResponse, InferenceError, OpenAIErrorRoute
from services.api.inference.prompts import chat_prompt_ids, completion_prompt_ids
from services.api.inference.schemas import (
    AnytimeParams,
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionRequest,
    Completion,
    CompletionChoice,
    CompletionRequest,
    ModelList,
    ServedModelCard,
    StopResponse,
    Usage,
)
from services.api.inference.service import InferenceService, ModelNotServed, ModelUnavailable, RunningJob
from services.api.settings import ApiSettings

router = APIRouter(tags=["inference"], route_class=OpenAIErrorRoute)


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "model": ErrorResponse}


_READ_ERRORS: dict[int | str, dict[str, Any]] = {
    status.HTTP_401_UNAUTHORIZED: _error("Missing or wrong API key."),
    status.HTTP_404_NOT_FOUND: _error("The model is not served here; the message says what is."),
    status.HTTP_422_UNPROCESSABLE_CONTENT: _error("An unknown query parameter."),
    status.HTTP_503_SERVICE_UNAVAILABLE: _error("The database is not migrated or does not answer."),
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    **_READ_ERRORS,
    status.HTTP_400_BAD_REQUEST: _error(BAD_BODY[status.HTTP_400_BAD_REQUEST]["description"]),
    status.HTTP_422_UNPROCESSABLE_CONTENT: _error(
        "Bad budget(s), messages or parameters; unsupported OpenAI parameters; unknown fields."
    ),
    status.HTTP_503_SERVICE_UNAVAILABLE: _error(
        "The model could not be loaded, or the database is not migrated or does not answer."
    ),
}


def get_inference(request: Request) -> InferenceService:
    service: InferenceService = request.app.state.inference
    return service


InferenceDep = Annotated[InferenceService, Depends(get_inference)]


@router.post("/v1/chat/completions", dependencies=[ApiKey], responses=_ERRORS, response_model=ChatCompletion)
async def chat_completions(
    body: ChatCompletionRequest, inference: InferenceDep, session: SessionDep, settings: SettingsDep
) -> Any:
    """Think up to `budget` tokens (or an answer at each of `budgets`), then answer; see the module doc."""
    running = await _start(
        body, lambda tok: chat_prompt_ids(tok, body.messages), "chatcmpl", inference, session, settings
    )
    return await _respond(body, running, _chat_choice, "chat.completion")


@router.post("/v1/completions", dependencies=[ApiKey], responses=_ERRORS, response_model=Completion)
async def completions(
    body: CompletionRequest, inference: InferenceDep, session: SessionDep, settings: SettingsDep
) -> Any:
    """`prompt` is raw text; otherwise as `/v1/chat/completions`, with `text` for `content`."""
    running = await _start(
        body, lambda tok: completion_prompt_ids(tok, body.prompt), "cmpl", inference, session, settings
    )
    return await _respond(body, running, _completion_choice, "text_completion")


@router.get("/v1/models", dependencies=[ApiKey], responses=_READ_ERRORS)
def list_models(inference: InferenceDep, session: SessionDep) -> ModelList:
    """What `model` can name: the configured model and every run's promoted checkpoint still on disk."""
    return ModelList(data=inference.cards(session))


@router.get("/v1/models/{model_id}", dependencies=[ApiKey], responses=_READ_ERRORS)
def retrieve_model(
    model_id: Annotated[str, Path(description="A `model` name: the configured one, or `run:<id>`.")],
    inference: InferenceDep,
    session: SessionDep,
) -> ServedModelCard:
    """One served model; 404 says what is served instead."""
    try:
        return inference.card(model_id, session)
    except ModelNotServed as exc:
        raise InferenceError(
            status.HTTP_404_NOT_FOUND, str(exc), param="model", code="model_not_found"
        ) from exc


@router.post(
    "/v1/inference/{request_id}/stop",
    dependencies=[ApiKey],
    responses={
        status.HTTP_401_UNAUTHORIZED: _error("Missing or wrong API key."),
        status.HTTP_404_NOT_FOUND: _error("No such request in flight."),
        status.HTTP_422_UNPROCESSABLE_CONTENT: _error("An unknown query parameter."),
    },
)
async def stop(
    request_id: Annotated[str, Path(description="The response `id` (chatcmpl-… or cmpl-…).")],
    inference: InferenceDep,
) -> StopResponse:
    """End the request's thought now; answers from what it has thought so far (the streaming request
    also receives it as its last choice, with `stopped: true`)."""
    running = inference.running(request_id)
    if running is None:
        raise InferenceError(status.HTTP_404_NOT_FOUND, f"no inference request {request_id} is in flight")
    running.job.request_stop()
    end = await running.done
    if isinstance(end, FailedEvent):
        raise InferenceError(status.HTTP_500_INTERNAL_SERVER_ERROR, end.error)
    assert isinstance(end, FinishedEvent)
    answer = next((a for a in end.answers if a.stopped), end.answers[-1])
    content, reasoning = _texts(running.served, answer)
    return StopResponse(
        id=request_id,
        stopped=answer.stopped,
        thinking_tokens=len(answer.thinking_ids),
        content=content,
        reasoning_content=reasoning,
        answer_empty=_answer_empty(running.served, answer),
    )


async def _start(
    body: AnytimeParams,
    prompt_of: Callable[[Any], list[int]],
    prefix: str,
    inference: InferenceService,
    session: SessionDep,
    settings: ApiSettings,
) -> RunningJob:
    try:
        path = inference.model_path(body.model, session)
    except ModelNotServed as exc:
        raise InferenceError(
            status.HTTP_404_NOT_FOUND, str(exc), param="model", code="model_not_found"
        ) from exc
    try:
        served = await inference.model(path)
    except ModelUnavailable as exc:
        raise InferenceError(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc), code="model_unavailable") from exc
    prompt = prompt_of(served.tokenizer)
    answer_max = body.summary_max_tokens or settings.inference_answer_max_tokens
    # Only a request that asks for an effort or an accuracy reads the model's evaluation.
    wants_curve = body.reasoning_effort is not None or body.min_accuracy is not None
    efforts = inference.efforts(body.model, session) if wants_curve else None
    budgets = _budgets(body, served, len(prompt), answer_max, settings, efforts)
    job_id = inference.new_job_id(prefix)
    sink, events, done = inference.bridge(job_id)
    job = AnytimeJob(
        job_id=job_id,
        prompt_ids=tuple(prompt),
        budgets=budgets,
        summary_max_tokens=answer_max,
        sampling=_sampling(body),
        segment_tokens=settings.inference_segment_tokens,
        facts=served.facts,
        sink=sink,
    )
    running = RunningJob(job, events, done, served)
    inference.run(served, running)
    return running


def _sampling(body: AnytimeParams) -> SamplingConfig:
    return SamplingConfig(temperature=body.temperature, top_p=1.0 if body.temperature == 0 else body.top_p)


def _budgets(
    body: AnytimeParams,
    served: ServedModel,
    prompt_len: int,
    answer_max: int,
    settings: ApiSettings,
    efforts: EffortMapping | None,
) -> tuple[int, ...]:
    """The budgets to answer at, checked against the room the model's context leaves for thinking."""
    inserted = len(served.facts.ellipsis_ids) + len(served.facts.delimiter_ids)
    room = served.context_length - prompt_len - inserted - answer_max
    context = (
        f"the model's context of {served.context_length} tokens holds the prompt ({prompt_len}), "
        f"the inserted ellipsis and delimiter ({inserted}) and the answer cap ({answer_max}, "
        "max_completion_tokens)"
    )
    try:
        return request_budgets(
            body, room, settings.inference_default_budget, settings.inference_max_budgets, context, efforts
        )
    except BudgetRefused as exc:
        chosen_by = {"budgets": body.budgets, "budget": body.budget, "min_accuracy": body.min_accuracy}
        param = next((name for name, value in chosen_by.items() if value is not None), None)
        raise InferenceError(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc), param=param) from exc


async def _respond(
    body: AnytimeParams,
    running: RunningJob,
    choice: Callable[[ServedModel, AnytimeAnswer, bool], dict[str, Any]],
    kind: str,
) -> Any:
    if body.stream:
        return StreamingResponse(
            _stream(body.model, running, choice, f"{kind}.chunk" if kind == "chat.completion" else kind),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    try:
        end = await running.done
    finally:
        if not running.done.done():  # the client went away
            running.job.cancel()
    if isinstance(end, FailedEvent):
        raise InferenceError(status.HTTP_500_INTERNAL_SERVER_ERROR, end.error)
    assert isinstance(end, FinishedEvent)
    return JSONResponse(
        {
            "id": running.job.job_id,
            "object": kind,
            "created": int(time.time()),
            "model": body.model,
            "choices": [choice(running.served, a, False) for a in end.answers],
            "usage": _usage(end.usage, running.job.budgets).model_dump(),
        }
    )


async def _stream(
    model: str,
    running: RunningJob,
    choice: Callable[[ServedModel, AnytimeAnswer, bool], dict[str, Any]],
    kind: str,
) -> AsyncIterator[str]:
    head = {"id": running.job.job_id, "object": kind, "created": int(time.time()), "model": model}
    try:
        yield _sse({**head, "choices": []})
        while True:
            event = await running.events.get()
            if isinstance(event, AnswerEvent):
                yield _sse({**head, "choices": [choice(running.served, event.answer, True)]})
            elif isinstance(event, FinishedEvent):
                # Sent with or without `stream_options.include_usage` (OpenAI sends it only when asked):
                # the thought's length and budget are what a client of a thinking budget reads.
                usage = _usage(event.usage, running.job.budgets).model_dump()
                yield _sse({**head, "choices": [], "usage": usage})
                yield "data: [DONE]\n\n"
                return
            else:
                error = ErrorObject(message=event.error, type="server_error", param=None, code=None)
                yield _sse({"error": error.model_dump()})
                return
    finally:
        if not running.done.done():  # the client went away: stop spending tokens on it
            running.job.cancel()


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data)}\n\n"


def _texts(served: ServedModel, answer: AnytimeAnswer) -> tuple[str, str]:
    """(answer text, thought text); the closing `</think>` is markup, not part of the thought. An answer
    with no text (the model ended it at once) is the forced delimiter's text, so `content` is never ""."""
    thinking = list(answer.thinking_ids)
    if thinking and thinking[-1] == served.facts.think_end_id:
        thinking.pop()
    decode = served.tokenizer.decode
    written = decode(list(answer.answer_ids), skip_special_tokens=True)
    content = written if written.strip() else _forced_text(served)
    return content, decode(thinking, skip_special_tokens=True)


def _answer_empty(served: ServedModel, answer: AnytimeAnswer) -> bool:
    return not served.tokenizer.decode(list(answer.answer_ids), skip_special_tokens=True).strip()


def _forced_text(served: ServedModel) -> str:
    """What the answer was forced with (the summary format's delimiter, `**Final Answer**`), as text."""
    return (
        served.tokenizer.decode(list(served.facts.delimiter_ids), skip_special_tokens=True).strip() or "..."
    )


def _fields(served: ServedModel, answer: AnytimeAnswer) -> dict[str, Any]:
    return {
        "index": answer.index,
        "finish_reason": "stop" if answer.finish == "stop" else "length",
        "budget": answer.budget,
        "thinking_tokens": len(answer.thinking_ids),
        "thought_cut": answer.inserted,
        "stopped": answer.stopped,
        "answer_empty": _answer_empty(served, answer),
    }


def _chat_choice(served: ServedModel, answer: AnytimeAnswer, streaming: bool) -> dict[str, Any]:
    content, reasoning = _texts(served, answer)
    message = AssistantMessage(content=content, reasoning_content=reasoning)
    if streaming:
        return {**_fields(served, answer), "delta": message.model_dump()}
    return ChatChoice(**_fields(served, answer), message=message).model_dump()


def _completion_choice(served: ServedModel, answer: AnytimeAnswer, streaming: bool) -> dict[str, Any]:
    content, reasoning = _texts(served, answer)
    return CompletionChoice(**_fields(served, answer), text=content, reasoning_content=reasoning).model_dump()


def _usage(usage: JobUsage, budgets: tuple[int, ...]) -> Usage:
    return Usage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.prompt_tokens + usage.completion_tokens,
        thinking_tokens=usage.thinking_tokens,
        answer_tokens=usage.answer_tokens,
        completion_tokens_details={"reasoning_tokens": usage.thinking_tokens},
        budget=budgets[-1],
    )
