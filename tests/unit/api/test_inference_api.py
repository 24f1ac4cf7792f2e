"""The inference routes as an OpenAI client sees them, on a scripted engine (no model, no torch): OpenAI's
error object with our message, the answer cap's two names, `reasoning_effort` and the default budget,
`/v1/models`, and refusals of unsupported parameters. The `openai` client talks to the ASGI app through
a mock transport; the database is SQLite migrated by Alembic (see test_api_routes).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from fastapi.testclient import TestClient

from anytime.db import repository
from anytime.db.session import session_scope
from anytime.run_config import RunConfig
from services.api.app import create_app
from services.api.deps import get_scheduler
from services.api.inference.budgets import BudgetRefused, effort_budget, request_budgets
from services.api.inference.engines import ServedModel
from services.api.inference.errors import param_name
from services.api.inference.rounds import RoundBatcher
from services.api.inference.schemas import ChatCompletionRequest
from services.api.inference.service import InferenceService
from services.api.settings import ApiSettings
from tests.unit.api.test_api_routes import AUTH, CONFIG, KEY, RecordingScheduler, migrated_db
from tests.unit.api.test_inference_job import FACTS, PROMPT, ScriptedEngine

__all__ = ["migrated_db"]  # a fixture this module uses

MODEL = "/models/scripted"
DEFAULT_BUDGET = 8
ANSWER_CAP = 16


class ScriptedTokenizer:
    """Every prompt is `PROMPT` (what `ScriptedEngine` counts its thought from); ids decode to numbers."""

    def apply_chat_template(self, messages: list[dict[str, str]], **_: Any) -> str:
        return " ".join(m["content"] for m in messages)

    def encode(self, text: str, **_: Any) -> list[int]:
        return list(PROMPT)

    def decode(self, ids: list[int], **_: Any) -> str:
        return " ".join(str(i) for i in ids)


class ServedEngine(ScriptedEngine):
    def close(self) -> None:
        """Nothing to free."""


@dataclass
class Served:
    http: TestClient
    client: openai.OpenAI
    engine: ServedEngine
    sessions: Any

    def answer_caps(self) -> set[int]:
        return {r.max_tokens for r in self.engine.seen if FACTS.think_end_id not in r.stop_ids}


def openai_client(http: TestClient, key: str = KEY) -> openai.OpenAI:
    """The `openai` client with its requests answered by the ASGI app."""

    def send(request: httpx2.Request) -> httpx2.Response:
        response = http.request(
            request.method,
            request.url.raw_path.decode(),
            headers=dict(request.headers),
            content=request.read(),
        )
        return httpx2.Response(response.status_code, headers=response.headers, content=response.content)

    return openai.OpenAI(
        base_url="http://api/v1",
        api_key=key,
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(send)),
    )


@pytest.fixture
def served(migrated_db: Path, tmp_path: Path) -> Iterator[Served]:
    database = tmp_path / "anytime.db"
    shutil.copy(migrated_db, database)
    settings = ApiSettings(
        ANYTIME_DATABASE_URL=f"sqlite:///{database}",
        ANYTIME_REDIS_URL="redis://127.0.0.1:1/0",
        api_key=KEY,
        inference_model=MODEL,
        inference_default_budget=DEFAULT_BUDGET,
        inference_answer_max_tokens=ANSWER_CAP,
    )
    engine = ServedEngine(thought_len=20, tokenizer=ScriptedTokenizer())

    def load(path: str, _settings: ApiSettings) -> ServedModel:
        return ServedModel(path, engine, RoundBatcher(engine, 0), context_length=4096)  # type: ignore[arg-type]

    app = create_app(settings.model_copy(update={"inference_model": None}))  # nothing to load at start
    app.dependency_overrides[get_scheduler] = RecordingScheduler
    with TestClient(app) as http:
        app.state.inference.close()
        app.state.inference = InferenceService(settings, loader=load)
        yield Served(http, openai_client(http), engine, app.state.session_factory)


def chat(served: Served, **extra: Any) -> Any:
    return served.client.chat.completions.create(
        model=extra.pop("model", "anytime"),
        messages=[{"role": "user", "content": "1 + 1?"}],
        temperature=0,
        **{
            k: extra.pop(k) for k in ("max_completion_tokens", "max_tokens", "reasoning_effort") if k in extra
        },
        extra_body=extra,
    )


# ------------------------------------------------------------------------------------ error object


def test_a_bad_budget_reaches_the_client_as_our_message(served: Served) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as error:
        chat(served, budget=0)
    assert "budget: Input should be greater than or equal to 1" in str(error.value)
    assert error.value.param == "budget" and error.value.type == "invalid_request_error"
    body = served.http.post("/v1/chat/completions", json={"model": "anytime"}, headers=AUTH).json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["param"] == "messages" and "messages: Field required" in body["error"]["message"]


def test_a_nested_error_names_its_field() -> None:
    assert param_name(("body", "messages", 0, "content")) == "messages[0].content"
    assert param_name(("body",)) is None and param_name(("query", "x")) == "x"


def test_an_unknown_model_is_404_and_says_what_is_served(served: Served) -> None:
    with pytest.raises(openai.NotFoundError) as error:
        chat(served, model="gpt-4", budget=4)
    assert "'gpt-4' is not served here" in str(error.value) and '"anytime"' in str(error.value)
    assert error.value.code == "model_not_found" and error.value.param == "model"


def test_a_wrong_key_is_401_with_our_message(served: Served) -> None:
    with pytest.raises(openai.AuthenticationError) as error:
        openai_client(served.http, key="wrong").models.list()
    assert "the API key is not valid" in str(error.value) and error.value.type == "authentication_error"


def test_an_unknown_query_parameter_is_named(served: Served) -> None:
    response = served.http.get("/v1/models", params={"limit": 3}, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "limit" and "unknown query parameter" in response.text


def test_the_rest_api_keeps_fastapis_detail(served: Served) -> None:
    response = served.http.post("/v1/runs", json={**CONFIG, "group_size": 0}, headers=AUTH)
    assert response.status_code == 422 and "error" not in response.json()
    assert ["body", "group_size"] in [error["loc"] for error in response.json()["detail"]]


def test_the_openapi_schema_states_the_error_object(served: Served) -> None:
    schema = served.http.get("/openapi.json", headers=AUTH).json()
    for path, method in [("/v1/chat/completions", "post"), ("/v1/models", "get")]:
        responses = schema["paths"][path][method]["responses"]
        for code in ("401", "404", "422", "503"):
            content = responses[code]["content"]["application/json"]["schema"]
            assert content == {"$ref": "#/components/schemas/ErrorResponse"}, (path, code)


# ---------------------------------------------------------------------------- unsupported parameters


@pytest.mark.parametrize(
    ("extra", "name"),
    [
        ({"seed": 1}, "seed"),
        ({"stop": ["\n"]}, "stop"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
    ],
)
def test_an_unsupported_parameter_says_so(served: Served, extra: dict[str, Any], name: str) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as error:
        chat(served, budget=4, **extra)
    assert f"`{name}` is not supported by this server" in str(error.value)
    assert "Extra inputs" not in str(error.value)
    assert error.value.param == name and error.value.code == "unsupported_parameter"


def test_several_thoughts_are_not_supported(served: Served) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as error:
        chat(served, budget=4, n=2)
    assert "`n` > 1 is not supported by this server" in str(error.value) and error.value.param == "n"


def test_a_misspelt_field_is_unknown_and_the_likely_one_is_named(served: Served) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as error:
        chat(served, budgte=4)
    assert "unknown field `budgte`; did you mean `budget`?" in str(error.value)
    assert error.value.param == "budgte" and error.value.code == "unknown_parameter"


def test_an_unsupported_parameter_sent_as_null_is_not_given(served: Served) -> None:
    (choice,) = chat(served, budget=4, stop=None, seed=None).choices
    assert choice.model_extra["budget"] == 4  # type: ignore[index]


# ------------------------------------------------------------------------------ answer cap and budgets


def test_both_names_of_the_answer_cap_cap_the_answer(served: Served) -> None:
    chat(served, budget=4)
    assert served.answer_caps() == {ANSWER_CAP}  # the server's default
    for given in (
        {"max_completion_tokens": 5},
        {"max_tokens": 5},
        {"max_tokens": 5, "max_completion_tokens": 5},
    ):
        served.engine.seen.clear()
        chat(served, budget=4, **given)
        assert served.answer_caps() == {5}, given


def test_two_different_answer_caps_are_refused(served: Served) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as error:
        chat(served, budget=4, max_tokens=5, max_completion_tokens=6)
    assert "`max_tokens` (5) and `max_completion_tokens` (6)" in str(error.value)
    assert error.value.param == "max_tokens"


def test_no_budget_thinks_to_the_servers_default(served: Served) -> None:
    (choice,) = chat(served).choices
    extra = choice.model_extra or {}
    assert extra["budget"] == DEFAULT_BUDGET and extra["thinking_tokens"] == DEFAULT_BUDGET
    assert extra["thought_cut"] is True  # the scripted thought is 21 tokens


@pytest.mark.parametrize(("effort", "budget"), [("low", 2), ("medium", 8), ("high", 32)])
def test_reasoning_effort_is_a_multiple_of_the_default_budget(
    served: Served, effort: str, budget: int
) -> None:
    (choice,) = chat(served, reasoning_effort=effort).choices
    extra = choice.model_extra or {}
    assert extra["budget"] == budget and extra["thinking_tokens"] == min(budget, 21)


def test_reasoning_effort_and_a_budget_are_refused_together(served: Served) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as error:
        chat(served, reasoning_effort="low", budget=4)
    assert "either `reasoning_effort` or `budget`/`budgets`" in str(error.value)


def test_request_budgets_lower_the_servers_choice_and_refuse_the_clients() -> None:
    def body(**fields: Any) -> ChatCompletionRequest:
        return ChatCompletionRequest.model_validate(
            {"model": "m", "messages": [{"role": "user", "content": "q"}], **fields}
        )

    assert request_budgets(body(), room=100, default_budget=64, max_budgets=4, context="c") == (64,)
    assert request_budgets(body(), room=40, default_budget=64, max_budgets=4, context="c") == (40,)
    assert request_budgets(body(reasoning_effort="high"), 100, 64, 4, "c") == (100,)
    assert request_budgets(body(budgets=[8, 16]), 100, 64, 4, "c") == (8, 16)
    with pytest.raises(BudgetRefused, match="budget 101 is above the model's context: c"):
        request_budgets(body(budget=101), 100, 64, 4, "c")
    with pytest.raises(BudgetRefused, match="too many budgets: 5; at most 4"):
        request_budgets(body(budgets=[1, 2, 3, 4, 5]), 100, 64, 4, "c")
    with pytest.raises(BudgetRefused, match="no room to think: c"):
        request_budgets(body(), 0, 64, 4, "c")
    assert [effort_budget(e, 10) for e in ("low", "medium", "high")] == [2, 10, 40]
    assert effort_budget("low", 1) == 1


# ------------------------------------------------------------------------------------------ models


def test_models_lists_the_configured_model_and_promoted_checkpoints(served: Served, tmp_path: Path) -> None:
    assert [m.id for m in served.client.models.list()] == ["anytime"]
    folder = tmp_path / "policy-000002"
    folder.mkdir()
    with session_scope(served.sessions) as session:
        run = repository.create_run(session, RunConfig.model_validate(CONFIG))
        gone = repository.create_run(session, RunConfig.model_validate(CONFIG))
        kept = repository.record_checkpoint(session, run.id, 2, 1, str(folder))
        pruned = repository.record_checkpoint(session, gone.id, 1, 0, str(tmp_path / "pruned"))
        repository.promote_checkpoint(session, run.id, kept.id)
        repository.promote_checkpoint(session, gone.id, pruned.id)
        run_id, gone_id = run.id, gone.id
    listed = served.http.get("/v1/models", headers=AUTH).json()
    assert listed["object"] == "list"
    assert [(m["id"], m["object"], m["owned_by"]) for m in listed["data"]] == [
        ("anytime", "model", "anytime"),
        (f"run:{run_id}", "model", "anytime"),
    ]
    card = served.client.models.retrieve(f"run:{run_id}")
    assert card.id == f"run:{run_id}" and card.created > 0 and card.model_extra["policy_version"] == 2  # type: ignore[index]
    assert served.client.models.retrieve("anytime").owned_by == "anytime"
    with pytest.raises(openai.NotFoundError) as error:
        served.client.models.retrieve(f"run:{gone_id}")
    assert "no longer on disk" in str(error.value)


def test_a_body_that_is_not_text_is_400_in_openais_shape(served: Served) -> None:
    response = served.http.post(
        "/v1/chat/completions", content=b"\xff\xfe{", headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status_code == 400 and "error parsing the body" in response.json()["error"]["message"]
