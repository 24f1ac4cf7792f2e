"""The `openai` client against the inference endpoints on the tiny models, served by uvicorn in a thread.

The warm model is served by name; the random tiny model (it rarely closes its thought, so a stop always
lands mid-thought) is served as a run's promoted checkpoint.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import uvicorn
from alembic import command
from alembic.config import Config
from fastapi import FastAPI

from anytime.db import repository
from anytime.db.session import make_engine, make_session_factory, session_scope
from anytime.processes import free_port
from anytime.run_config import RunConfig
from anytime.synth import get_task
from services.api.app import create_app
from services.api.settings import ApiSettings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
KEY = "test-key"
SEGMENT = 8


@dataclass
class Served:
    app: FastAPI
    base_url: str
    client: openai.OpenAI
    run_id: str
    checkpoint_id: int

    def rounds(self, path: Path) -> int:
        return int(self.app.state.inference._models[str(path)].batcher.rounds)


@pytest.fixture(scope="module")
def served(
    warm_model_dir: Path, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    database = tmp_path_factory.mktemp("inference") / "anytime.db"
    url = f"sqlite:///{database}"
    config = Config(str(REPO / "alembic.ini"))
    config.set_main_option("script_location", str(REPO / "migrations"))
    config.set_main_option("sqlalchemy.url", url)
    command.upgrade(config, "head")
    engine = make_engine(url)
    with session_scope(make_session_factory(engine)) as session:
        run = repository.create_run(
            session,
            RunConfig.model_validate({"model": str(tiny_model_dir), "dataset": "d.jsonl", "b_max": 64}),
        )
        checkpoint = repository.record_checkpoint(session, run.id, 1, 0, str(tiny_model_dir))
        run_id, checkpoint_id = run.id, checkpoint.id
    engine.dispose()

    settings = ApiSettings(
        ANYTIME_DATABASE_URL=url,
        ANYTIME_REDIS_URL="redis://127.0.0.1:1/0",
        api_key=KEY,
        inference_model=str(warm_model_dir),
        inference_segment_tokens=SEGMENT,
        inference_batch_wait_ms=20,
    )
    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API did not start"
        time.sleep(0.05)
    base_url = f"http://127.0.0.1:{port}"
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=KEY, max_retries=0, timeout=120)
    try:
        yield Served(app, base_url, client, run_id, checkpoint_id)
    finally:
        server.should_exit = True
        thread.join(30)


def _problem(seed: int = 3) -> str:
    return get_task("digit-chain").generate(1, seed=seed)[0].problem


def _chat(served: Served, **extra: Any) -> Any:
    stream = extra.pop("stream", False)
    return served.client.chat.completions.create(
        model=extra.pop("model", "anytime"),
        messages=[{"role": "user", "content": _problem()}],
        temperature=0,
        stream=stream,
        extra_body=extra,
    )


def test_single_budget_caps_the_thought_and_splits_usage(served: Served) -> None:
    response = _chat(served, budget=12)
    (choice,) = response.choices
    extra = choice.model_extra or {}
    assert extra["budget"] == 12 and extra["thinking_tokens"] <= 12
    assert choice.message.content and "\\boxed{" in choice.message.content
    reasoning = choice.message.model_extra["reasoning_content"]  # type: ignore[index]
    assert reasoning and "</think>" not in reasoning
    usage = response.usage
    assert usage is not None and usage.completion_tokens_details is not None
    thinking, answer = usage.model_extra["thinking_tokens"], usage.model_extra["answer_tokens"]  # type: ignore[index]
    assert thinking == extra["thinking_tokens"] and usage.completion_tokens == thinking + answer
    assert usage.completion_tokens_details.reasoning_tokens == thinking


def test_no_budget_thinks_to_the_servers_default_budget(served: Served) -> None:
    (choice,) = _chat(served).choices
    extra = choice.model_extra or {}
    assert extra["budget"] == served.app.state.inference.settings.inference_default_budget
    assert extra["thought_cut"] is False  # the warm model closes its thought well before it
    assert "\\boxed{" in choice.message.content


def test_openai_parameters_cap_the_answer_and_pick_the_budget(served: Served) -> None:
    response = served.client.chat.completions.create(
        model="anytime",
        messages=[{"role": "user", "content": _problem()}],
        temperature=0,
        max_completion_tokens=4,
        reasoning_effort="low",
    )
    (choice,) = response.choices
    default = served.app.state.inference.settings.inference_default_budget
    assert choice.model_extra["budget"] == default // 4  # type: ignore[index]
    assert response.usage.model_extra["answer_tokens"] <= 4  # type: ignore[union-attr]
    assert "anytime" in [model.id for model in served.client.models.list()]


def test_unsupported_parameters_say_so_through_the_client(served: Served) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as error:
        served.client.chat.completions.create(
            model="anytime", messages=[{"role": "user", "content": _problem()}], seed=1
        )
    assert "`seed` is not supported by this server" in str(error.value) and error.value.param == "seed"


def test_several_budgets_come_from_one_thought(served: Served) -> None:
    budgets = [4, 8, 16, 1000]
    response = _chat(served, budgets=budgets)
    choices = sorted(response.choices, key=lambda c: c.index)
    assert [c.model_extra["budget"] for c in choices] == budgets  # type: ignore[index]
    thoughts = [c.message.model_extra["reasoning_content"] for c in choices]  # type: ignore[index]
    lengths = [c.model_extra["thinking_tokens"] for c in choices]  # type: ignore[index]
    assert lengths[:3] == [4, 8, 16] and lengths[3] > 16
    for shorter, longer in pairwise(thoughts):
        assert longer.startswith(shorter.rstrip())  # prefixes of one thought
    assert [c.model_extra["thought_cut"] for c in choices] == [True, True, True, False]  # type: ignore[index]
    assert response.usage.model_extra["thinking_tokens"] == lengths[3]  # type: ignore[union-attr]


def test_the_same_budget_alone_gives_the_same_greedy_answer(served: Served) -> None:
    several = {c.index: c for c in _chat(served, budgets=[8, 16]).choices}
    alone = _chat(served, budget=16).choices[0]
    assert alone.message.content == several[1].message.content


def test_stream_sends_one_event_per_budget_in_order(served: Served) -> None:
    budgets = [4, 8, 16]
    chunks = list(_chat(served, budgets=budgets, stream=True, stream_options={"include_usage": True}))
    assert len({c.id for c in chunks}) == 1
    answers = [choice for c in chunks for choice in c.choices]
    assert [a.model_extra["budget"] for a in answers] == budgets  # type: ignore[index]
    assert [a.index for a in answers] == [0, 1, 2]
    assert all("\\boxed{" in (a.delta.content or "") for a in answers)
    assert chunks[0].choices == [] and chunks[-1].usage is not None


def test_completions_take_raw_text(served: Served) -> None:
    response = served.client.completions.create(
        model="anytime", prompt=_problem(), temperature=0, extra_body={"budgets": [4, 8]}
    )
    assert [c.index for c in response.choices] == [0, 1]
    assert all(c.model_extra["reasoning_content"] is not None for c in response.choices)  # type: ignore[index]


def test_stop_ends_the_thought_and_answers_from_it(served: Served) -> None:
    model = f"run:{served.run_id}"
    promoted = httpx.post(
        f"{served.base_url}/v1/runs/{served.run_id}/promote",
        json={"checkpoint_id": served.checkpoint_id},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert promoted.status_code == 200, promoted.text
    stream = _chat(served, model=model, budgets=[1000], stream=True)
    opening = next(iter(stream))
    started = time.monotonic()
    stopped = httpx.post(
        f"{served.base_url}/v1/inference/{opening.id}/stop",
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=60,
    )
    assert stopped.status_code == 200, stopped.text
    body = stopped.json()
    assert body["stopped"] is True and body["thinking_tokens"] < 1000
    rest = [choice for chunk in stream for choice in chunk.choices]
    assert len(rest) == 1 and rest[0].model_extra["stopped"] is True  # type: ignore[index]
    assert rest[0].model_extra["budget"] is None and rest[0].delta.content == body["content"]  # type: ignore[index]
    assert time.monotonic() - started < 30


def test_stop_of_an_unknown_request_is_404(served: Served) -> None:
    response = httpx.post(
        f"{served.base_url}/v1/inference/chatcmpl-nothing/stop", headers={"Authorization": f"Bearer {KEY}"}
    )
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"budget": 0}, "greater than or equal to 1"),
        ({"budget": -5}, "greater than or equal to 1"),
        ({"budget": "64"}, "integer"),
        ({"budget": 1.5}, "integer"),
        ({"budget": 10**6}, "context"),
        ({"budgets": list(range(1, 18))}, "too many budgets"),
        ({"budgets": [8, 4]}, "increasing"),
        ({"budgets": [0, 4]}, "greater than or equal to 1"),
        ({"budget": 4, "budgets": [4]}, "either"),
        ({"budgte": 4}, "budgte"),
    ],
)
def test_bad_input_is_422_with_a_message(served: Served, extra: dict[str, Any], words: str) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as error:
        _chat(served, **extra)
    assert words in str(error.value)  # the client shows our message (OpenAI's error object)


def test_empty_messages_are_422(served: Served) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as error:
        served.client.chat.completions.create(model="anytime", messages=[], extra_body={"budget": 4})
    assert "messages" in str(error.value) and error.value.param == "messages"


def test_unknown_model_is_404_and_says_what_is_served(served: Served) -> None:
    with pytest.raises(openai.NotFoundError) as error:
        _chat(served, model="gpt-4", budget=4)
    assert "run:<run id>" in str(error.value)


def test_missing_key_is_401(served: Served) -> None:
    other = openai.OpenAI(base_url=f"{served.base_url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        other.chat.completions.create(model="anytime", messages=[{"role": "user", "content": "1"}])


def test_concurrent_requests_share_rounds(served: Served, warm_model_dir: Path) -> None:
    before = served.rounds(warm_model_dir)
    single = _chat(served, budget=32)
    alone = served.rounds(warm_model_dir) - before
    before = served.rounds(warm_model_dir)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: _chat(served, budget=32), range(4)))
    together = served.rounds(warm_model_dir) - before
    assert all(r.choices[0].message.content == single.choices[0].message.content for r in results)
    assert together < 2 * alone, f"4 concurrent requests took {together} rounds; one alone took {alone}"
