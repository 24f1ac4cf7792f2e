"""The `openai` client against the inference endpoints on the tiny models, served by uvicorn in a thread.

The warm model is served by name; the random tiny model (it rarely closes its thought, so a stop always
lands mid-thought) is served as a run's promoted checkpoint. A second run serves the warm model as its
checkpoint with a real evaluation (the evaluate task's own code on the run plan's budgets and sampling,
graded by the verifier), so `reasoning_effort` is calibrated from a measured curve (run with -s to see it).
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

from anytime.contracts.evaluation import EvalJob, EvalResult
from anytime.db import repository
from anytime.db.session import make_engine, make_session_factory, session_scope
from anytime.processes import free_port
from anytime.run_config import RunConfig
from anytime.run_plan import RunPlan
from anytime.synth import get_task
from anytime.verification.verifier import Verifier
from services.api.app import create_app
from services.api.settings import ApiSettings
from services.engines.transformers_engine import TransformersEngine
from services.rollout.jobs import run_eval_job

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
    database_url: str

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
        yield Served(app, base_url, client, run_id, checkpoint_id, url)
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


# ------------------------------------------------------------------ efforts from a measured evaluation curve

# A run whose plan evaluates at 8 budgets up to b_max = 64 with its default sampling (k = 4, T = 0.6).
EVAL_CONFIG = {"dataset": "d.jsonl", "b_max": 64, "eval_num_budgets": 8}
EVAL_PROBLEMS = get_task("digit-chain").generate(12, seed=21)


@dataclass
class Evaluated:
    model: str
    result: EvalResult
    promotion: dict[str, Any]


@pytest.fixture(scope="module")
def evaluated(served: Served, warm_model_dir: Path) -> Evaluated:
    """The warm model as a run's checkpoint (policy version 1), evaluated as the run driver evaluates it
    (`run_eval_job` on the plan's eval budgets and sampling, the verifier grading), the row recorded as the
    driver records it, and the checkpoint promoted through `POST /v1/runs/{id}/promote`."""
    config = RunConfig.model_validate({**EVAL_CONFIG, "model": str(warm_model_dir)})
    plan = RunPlan.from_config(config)
    engine = TransformersEngine.from_model_dir(warm_model_dir)
    job = EvalJob(
        run_id="effort",
        policy_version=1,
        model_dir=warm_model_dir,
        problems=EVAL_PROBLEMS,
        budgets=list(plan.eval_budgets),
        summary_max_tokens=plan.summary_max_tokens,
        sampling=plan.eval_sampling,
    )
    with Verifier(workers=1) as verifier:
        result = EvalResult.model_validate(run_eval_job(job, _OneEngine(engine), verifier.grade_many))
    database = make_engine(served.database_url)
    with session_scope(make_session_factory(database)) as session:
        run = repository.create_run(session, config)
        repository.record_checkpoint(session, run.id, 1, 0, str(warm_model_dir))
        sampled = repository.SampledEvaluation.of(result)
        repository.record_evaluation(
            session, run.id, 1, 0, result.budgets, result.accuracy, result.anytime_score, sampled
        )
        run_id = run.id
    database.dispose()
    promoted = httpx.post(
        f"{served.base_url}/v1/runs/{run_id}/promote", headers={"Authorization": f"Bearer {KEY}"}
    )
    assert promoted.status_code == 200, promoted.text
    return Evaluated(f"run:{run_id}", result, promoted.json())


class _OneEngine:
    """The rollout worker's engine holder, reduced to one loaded engine."""

    def __init__(self, engine: TransformersEngine) -> None:
        self.engine = engine

    def at_version(self, run_id: str, model_dir: Path, policy_version: int) -> TransformersEngine:
        return self.engine


def test_effort_is_read_off_the_measured_curve(served: Served, evaluated: Evaluated) -> None:
    result = evaluated.result
    card = served.client.models.retrieve(evaluated.model)
    efforts = (card.model_extra or {})["reasoning_effort"]
    assert efforts == evaluated.promotion["reasoning_effort"]  # promotion shows what the card shows
    print(
        f"\n{evaluated.model}: n = {result.num_problems}, k = {result.num_samples}, T = {result.temperature}"
    )
    for b, a, lo, hi in zip(
        result.budgets, result.accuracy, result.accuracy_ci_low, result.accuracy_ci_high, strict=True
    ):
        print(f"  budget {b:>3}: accuracy {a:.4f} [{lo:.4f}, {hi:.4f}]")
    print(
        f"  {efforts['source']}: "
        + ", ".join(f"{e} = {efforts[e]['budget']}" for e in ("low", "medium", "high"))
    )
    print(f"  {efforts['note']}")
    assert [(p["budget"], p["accuracy"]) for p in efforts["curve"]] == list(
        zip(result.budgets, result.accuracy, strict=True)
    )
    best = max(result.accuracy)
    if best == 0.0:  # the curve says nothing: the default, and it says why
        assert efforts["source"] == "default" and "accuracy 0 at every budget" in efforts["note"]
        return
    assert efforts["source"] == "evaluation" and efforts["policy_version"] == 1
    tolerances = {"low": 0.10, "medium": 0.03, "high": 0.0}
    for effort, tolerance in tolerances.items():
        budget = efforts[effort]["budget"]
        at = dict(zip(result.budgets, result.accuracy, strict=True))
        # The definition on the measured numbers: reaches best × (1 - tolerance); no smaller budget does.
        assert at[budget] >= best * (1 - tolerance) - 1e-9
        assert all(a < best * (1 - tolerance) - 1e-9 for b, a in at.items() if b < budget)
        (choice,) = _chat(served, model=evaluated.model, reasoning_effort=effort).choices
        assert choice.model_extra["budget"] == budget  # type: ignore[index]
    assert efforts["high"]["accuracy"] == best
    (choice,) = _chat(served, model=evaluated.model, min_accuracy=best).choices
    assert choice.model_extra["budget"] == efforts["high"]["budget"]  # type: ignore[index]
    if best < 1.0:
        with pytest.raises(openai.UnprocessableEntityError) as error:
            _chat(served, model=evaluated.model, min_accuracy=min(1.0, best + 0.01))
        assert f"reaches at best {best} " in str(error.value) and error.value.param == "min_accuracy"


def test_the_configured_model_says_it_keeps_the_default(served: Served) -> None:
    efforts = served.client.models.retrieve("anytime").model_extra["reasoning_effort"]  # type: ignore[index]
    default = served.app.state.inference.settings.inference_default_budget
    assert efforts["source"] == "default" and "has no evaluation" in efforts["note"]
    assert [efforts[e]["budget"] for e in ("low", "medium", "high")] == [default // 4, default, 4 * default]


def test_usage_and_the_budget_reach_the_client_on_every_response(served: Served) -> None:
    response = _chat(served, budgets=[4, 8])
    assert response.usage is not None and response.usage.completion_tokens_details is not None
    assert (
        response.usage.completion_tokens_details.reasoning_tokens
        == response.usage.model_extra["thinking_tokens"]
    )  # type: ignore[index]
    assert response.usage.model_extra["budget"] == 8  # type: ignore[index]
    chunks = list(_chat(served, budget=8, stream=True))  # no stream_options: the usage chunk comes anyway
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None and last.usage.model_extra["budget"] == 8  # type: ignore[index]
    streamed = [c for chunk in chunks for c in chunk.choices]
    assert last.usage.completion_tokens_details.reasoning_tokens == streamed[0].model_extra["thinking_tokens"]  # type: ignore[union-attr,index]


def test_a_thought_cut_at_its_budget_still_answers(served: Served) -> None:
    model = f"run:{served.run_id}"  # the random tiny model: its thought rarely closes
    promoted = httpx.post(
        f"{served.base_url}/v1/runs/{served.run_id}/promote",
        json={"checkpoint_id": served.checkpoint_id},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert promoted.status_code == 200, promoted.text
    for budget in (1, 2, 8):
        response = served.client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": _problem()}],
            temperature=1.0,
            max_completion_tokens=1,
            extra_body={"budget": budget},
        )
        (choice,) = response.choices
        extra = choice.model_extra or {}
        assert extra["thought_cut"] is True and extra["thinking_tokens"] <= budget
        assert choice.message.content  # the answer forced after the cut (or after its EOS), never ""
        assert response.usage is not None and response.usage.model_extra["budget"] == budget  # type: ignore[index]
