"""REST API routes on a real SQLite file migrated by Alembic; the broker and Redis are overridden.

The API runs in a folder holding `models/tiny` (a config.json) and `data/train.jsonl` (8 problems), which is
also its only data root, so `CONFIG`'s relative paths pass the create-time input checks."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from anytime.contracts.verify import BudgetReward
from anytime.db import repository
from anytime.db.models import RunStatus
from anytime.db.session import session_scope
from anytime.run_config import RunConfig
from anytime.verdict import Status
from services.api.app import create_app
from services.api.deps import get_readiness, get_scheduler
from services.api.readiness import Readiness
from services.api.scheduler import SchedulingError
from services.api.settings import ApiSettings

REPO = Path(__file__).resolve().parents[3]
KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
CONFIG = {"model": "models/tiny", "dataset": "data/train.jsonl", "b_max": 64, "num_budgets": 4}


@dataclass
class RecordingScheduler:
    sent: list[str] = field(default_factory=list)
    fail: bool = False
    alive: bool | None = True  # what `driving` answers: a live driver holds every run

    def schedule(self, run_id: str) -> None:
        if self.fail:
            raise SchedulingError("broker down")
        self.sent.append(run_id)

    def driving(self, run_id: str) -> bool | None:
        return self.alive


@dataclass
class Api:
    client: TestClient  # sends the key
    anonymous: TestClient  # sends none
    scheduler: RecordingScheduler
    sessions: sessionmaker[Session]

    def create(self, **overrides: Any) -> dict[str, Any]:
        response = self.client.post("/v1/runs", json={**CONFIG, **overrides}, headers=AUTH)
        assert response.status_code == 201, response.text
        return response.json()

    def set_status(self, run_id: str, *statuses: RunStatus) -> None:
        with session_scope(self.sessions) as session:
            for status in statuses:
                repository.set_status(session, run_id, status)


@pytest.fixture(scope="module")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file at the head revision, migrated once and copied per test."""
    path = tmp_path_factory.mktemp("db") / "template.db"
    config = Config(str(REPO / "alembic.ini"))
    config.set_main_option("script_location", str(REPO / "migrations"))
    config.set_main_option("sqlalchemy.url", f"sqlite:///{path}")
    command.upgrade(config, "head")
    return path


def write_inputs(folder: Path, problems: int = 8) -> None:
    """`models/tiny` (a model folder: a config.json) and `data/train.jsonl` under `folder`."""
    (folder / "models" / "tiny").mkdir(parents=True)
    (folder / "models" / "tiny" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (folder / "data").mkdir()
    rows = [json.dumps({"problem": f"{i} + 1?", "answer": i + 1}) for i in range(problems)]
    (folder / "data" / "train.jsonl").write_text("\n".join(rows) + "\n")


@pytest.fixture
def api(migrated_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    database = tmp_path / "anytime.db"
    shutil.copy(migrated_db, database)
    write_inputs(tmp_path)
    monkeypatch.chdir(tmp_path)  # CONFIG's relative paths are taken from the API's working directory
    settings = ApiSettings(
        ANYTIME_DATABASE_URL=f"sqlite:///{database}",
        ANYTIME_REDIS_URL="redis://127.0.0.1:1/0",  # nothing listens: /readyz must say so
        ANYTIME_DATA_ROOTS=str(tmp_path),
        api_key=KEY,
        environment="development",
    )
    app = create_app(settings)
    scheduler = RecordingScheduler()
    app.dependency_overrides[get_scheduler] = lambda: scheduler
    with TestClient(app, headers=AUTH) as client:
        # The same app (its lifespan already ran) without the key.
        yield Api(client, TestClient(app), scheduler, app.state.session_factory)


# ------------------------------------------------------------------------------------------ health


def test_healthz_answers(api: Api) -> None:
    assert api.anonymous.get("/healthz").json()["status"] == "ok"


def test_readyz_names_the_dependency_that_is_down(api: Api) -> None:
    response = api.anonymous.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["failed"] == ["redis"] and body["checks"]["database"] == "ok"
    assert "redis" in body["detail"]

    def broken() -> None:
        raise RuntimeError("disk on fire")

    api.client.app.dependency_overrides[get_readiness] = lambda: Readiness(  # type: ignore[attr-defined]
        {"database": broken, "redis": lambda: None}
    )
    body = api.client.get("/readyz").json()
    assert body["failed"] == ["database"] and "disk on fire" in body["detail"]
    api.client.app.dependency_overrides[get_readiness] = lambda: Readiness(  # type: ignore[attr-defined]
        {"database": lambda: None, "redis": lambda: None}
    )
    assert api.client.get("/readyz").status_code == 200


def test_openapi_lists_every_route(api: Api) -> None:
    assert api.client.get("/docs").status_code == 200 and api.client.get("/redoc").status_code == 200
    paths = set(api.client.get("/openapi.json").json()["paths"])
    run = "/v1/runs/{run_id}"
    expected = {"/healthz", "/readyz", "/v1/runs", run}
    expected |= {
        f"{run}/{s}"
        for s in (
            "metrics",
            "budgets",
            "rewards",
            "samples",
            "curve",
            "cancel",
            "resume",
            "checkpoints",
            "promote",
        )
    }
    expected |= {"/v1/chat/completions", "/v1/completions", "/v1/inference/{request_id}/stop"}
    expected |= {"/v1/models", "/v1/models/{model_id}"}
    experiment = "/v1/experiments/{experiment_id}"
    expected |= {"/v1/experiments", experiment}
    expected |= {f"{experiment}/{s}" for s in ("cancel", "resume", "report")}
    assert paths == expected


# ------------------------------------------------------------------------------------------ create


def test_create_stores_a_queued_run_with_budgets_and_schedules_it(api: Api) -> None:
    response = api.anonymous.post("/v1/runs", json={**CONFIG, "name": "first"}, headers={"X-API-Key": KEY})
    assert response.status_code == 201
    run = response.json()
    assert response.headers["location"] == f"/v1/runs/{run['id']}"
    assert run["status"] == "queued" and run["name"] == "first" and run["step"] == -1
    assert run["config"]["group_size"] == 4  # defaults are filled in
    assert RunConfig.model_validate(run["config"]) == RunConfig.model_validate({**CONFIG, "name": "first"})
    assert api.scheduler.sent == [run["id"]]
    budgets = api.client.get(f"/v1/runs/{run['id']}/budgets").json()["items"]
    assert [b["tokens"] for b in budgets] == [16, 32, 48, 64]
    assert sum(b["probability"] for b in budgets) == pytest.approx(1.0)


def test_a_run_shows_what_its_config_resolves_to(api: Api) -> None:
    body = {**CONFIG, "learner": {"clip_high": 0.28, "mini_batches": 4}}
    run = api.anonymous.post("/v1/runs", json=body, headers={"X-API-Key": KEY}).json()
    resolved = api.client.get(f"/v1/runs/{run['id']}").json()["resolved"]
    assert (resolved["num_budgets"], resolved["num_summaries"], resolved["baseline"]) == (4, 4, "brpo")
    assert resolved["budgets"] == [16, 32, 48, 64] and resolved["probs"] == [0.25] * 4
    assert resolved["prior"] == "uniform" and resolved["eval_samples"] == 4
    assert resolved["loss_normalizer"] == 64 + 16 * run["config"]["summary_max_tokens"]
    assert resolved["learner"]["clip_high"] == 0.28 and resolved["learner"]["mini_batches"] == 4
    assert resolved["learner"]["weight_decay"] == 0.01  # unset: the paper's
    stored = api.client.get(f"/v1/runs/{run['id']}").json()
    # The plan stored at creation: what every job of the run is built from.
    assert stored["plan"]["prior"] == {"budgets": [16, 32, 48, 64], "probs": [0.25] * 4}
    assert stored["plan"]["learner"]["prior"] == stored["plan"]["prior"]
    assert stored["plan"]["rollout"]["budgets"] == [16, 32, 48, 64]
    bad = api.anonymous.post(
        "/v1/runs", json={**CONFIG, "learner": {"temperature": 1}}, headers={"X-API-Key": KEY}
    )
    assert bad.status_code == 422 and "not a learner knob: set rollout.temperature" in bad.text


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "wrong"}])
def test_mutating_calls_need_the_key(api: Api, headers: dict[str, str]) -> None:
    run = api.create()
    for method, path in [
        ("POST", "/v1/runs"),
        ("POST", f"/v1/runs/{run['id']}/cancel"),
        ("POST", f"/v1/runs/{run['id']}/resume"),
    ]:
        response = api.anonymous.request(method, path, json=CONFIG, headers=headers)
        assert response.status_code == 401, path
        assert "API key" in response.json()["detail"]
        assert response.headers["www-authenticate"] == "Bearer"
    assert api.scheduler.sent == [run["id"]]


def test_bad_config_is_422_with_one_message_per_field(api: Api) -> None:
    body = {**CONFIG, "group_size": 0, "algorithm": "ppo", "typo_field": 1}
    response = api.client.post("/v1/runs", json=body, headers=AUTH)
    assert response.status_code == 422
    fields = {tuple(error["loc"]): error["msg"] for error in response.json()["detail"]}
    # A flat field's error is located where the body wrote it (its section validates it).
    assert set(fields) == {("body", "group_size"), ("body", "algorithm"), ("body", "typo_field")}
    nested = {**CONFIG, "method": {"group_size": 0}}
    response = api.client.post("/v1/runs", json=nested, headers=AUTH)
    assert [e["loc"] for e in response.json()["detail"]] == [["body", "method", "group_size"]]
    response = api.client.post("/v1/runs", json={**CONFIG, "probs": [0.5, 0.2, 0.2, 0.2]}, headers=AUTH)
    assert response.status_code == 422
    assert "sum to 1" in response.json()["detail"][0]["msg"]
    assert api.client.post("/v1/runs", json={"dataset": "d"}, headers=AUTH).status_code == 422
    assert api.client.get("/v1/runs").json()["total"] == 0


def test_a_run_the_broker_refuses_is_503_and_marked_failed(api: Api) -> None:
    api.scheduler.fail = True
    response = api.client.post("/v1/runs", json=CONFIG, headers=AUTH)
    assert response.status_code == 503 and "broker down" in response.json()["detail"]
    (run,) = api.client.get("/v1/runs").json()["items"]
    assert run["status"] == "failed" and "broker down" in run["error"]
    api.scheduler.fail = False
    assert api.client.post(f"/v1/runs/{run['id']}/resume", headers=AUTH).json()["status"] == "queued"
    assert api.scheduler.sent == [run["id"]]


# ------------------------------------------------------------------------------------------ read


def test_list_is_paginated_newest_first_and_filters_by_status(api: Api) -> None:
    ids = [api.create(name=f"run {i}")["id"] for i in range(5)]
    api.set_status(ids[1], RunStatus.RUNNING)
    page = api.client.get("/v1/runs", params={"offset": 1, "limit": 2}).json()
    assert page["total"] == 5 and page["offset"] == 1 and page["limit"] == 2
    assert [r["id"] for r in page["items"]] == [ids[3], ids[2]]
    running = api.client.get("/v1/runs", params={"status": "running"}).json()
    assert running["total"] == 1 and running["items"][0]["id"] == ids[1]
    for params in ({"status": "sleeping"}, {"limit": 0}, {"offset": -1}, {"limit": 10_000}):
        assert api.client.get("/v1/runs", params=params).status_code == 422, params


def test_get_one_run_and_unknown_ids(api: Api) -> None:
    run = api.create()
    assert api.client.get(f"/v1/runs/{run['id']}").json() == run
    for suffix in ("", "/metrics", "/budgets", "/rewards", "/curve", "/checkpoints"):
        response = api.client.get(f"/v1/runs/missing{suffix}")
        assert response.status_code == 404 and "missing" in response.json()["detail"]
    for action in ("cancel", "resume"):
        assert api.client.post(f"/v1/runs/missing/{action}", headers=AUTH).status_code == 404


# ---------------------------------------------------------------------------------- cancel, resume


def test_cancel_a_queued_run_at_once_and_a_running_one_at_the_next_boundary(api: Api) -> None:
    queued, running = api.create()["id"], api.create()["id"]
    api.set_status(running, RunStatus.RUNNING)
    cancelled = api.client.post(f"/v1/runs/{queued}/cancel", headers=AUTH).json()
    assert cancelled["status"] == "cancelled" and cancelled["finished_at"] is not None
    pending = api.client.post(f"/v1/runs/{running}/cancel", headers=AUTH).json()
    assert pending["status"] == "running" and pending["cancel_requested"] is True
    assert api.client.post(f"/v1/runs/{running}/cancel", headers=AUTH).status_code == 200  # asking twice


@pytest.mark.parametrize("final", [RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED])
def test_cancelling_a_finished_run_is_409_with_its_status(api: Api, final: RunStatus) -> None:
    run_id = api.create()["id"]
    api.set_status(run_id, RunStatus.RUNNING, final)
    response = api.client.post(f"/v1/runs/{run_id}/cancel", headers=AUTH)
    assert response.status_code == 409 and f"is {final}" in response.json()["detail"]


def test_resume_queues_a_failed_or_cancelled_run_again(api: Api) -> None:
    run_id = api.create()["id"]
    with session_scope(api.sessions) as session:
        repository.set_status(session, run_id, RunStatus.RUNNING)
        repository.set_status(session, run_id, RunStatus.FAILED, error="OOM")
    resumed = api.client.post(f"/v1/runs/{run_id}/resume", headers=AUTH).json()
    assert resumed["status"] == "queued" and resumed["error"] is None and resumed["finished_at"] is None
    assert api.scheduler.sent == [run_id, run_id]


@pytest.mark.parametrize(
    "path",
    [[], [RunStatus.RUNNING], [RunStatus.RUNNING, RunStatus.SUCCEEDED]],
    ids=["queued", "running", "done"],
)
def test_resuming_a_live_or_succeeded_run_is_409(api: Api, path: list[RunStatus]) -> None:
    run_id = api.create()["id"]
    api.set_status(run_id, *path)
    response = api.client.post(f"/v1/runs/{run_id}/resume", headers=AUTH)
    current = path[-1] if path else RunStatus.QUEUED
    assert response.status_code == 409 and f"is {current}" in response.json()["detail"]
    assert api.scheduler.sent == [run_id]


def test_a_run_whose_driver_is_gone_is_cancelled_at_once_and_can_be_resumed(api: Api) -> None:
    api.scheduler.alive = False  # no lease in Redis: the driver died
    orphan, stuck, lost = api.create()["id"], api.create()["id"], api.create()["id"]
    api.set_status(orphan, RunStatus.RUNNING)
    api.set_status(stuck, RunStatus.RUNNING)
    cancelled = api.client.post(f"/v1/runs/{orphan}/cancel", headers=AUTH).json()
    assert cancelled["status"] == "cancelled" and cancelled["finished_at"] is not None
    resumed = api.client.post(f"/v1/runs/{stuck}/resume", headers=AUTH)
    assert resumed.status_code == 200 and resumed.json()["status"] == "running"
    assert api.client.post(f"/v1/runs/{lost}/resume", headers=AUTH).json()["status"] == "queued"
    assert api.scheduler.sent == [orphan, stuck, lost, stuck, lost]  # a new driver for each stuck run


def test_resume_is_409_when_redis_cannot_tell_whether_a_driver_lives(api: Api) -> None:
    api.scheduler.alive = None
    run_id = api.create()["id"]
    api.set_status(run_id, RunStatus.RUNNING)
    assert api.client.post(f"/v1/runs/{run_id}/resume", headers=AUTH).status_code == 409
    pending = api.client.post(f"/v1/runs/{run_id}/cancel", headers=AUTH).json()
    assert pending["status"] == "running" and pending["cancel_requested"] is True  # the rescuer ends it


# ---------------------------------------------------------------------------------------- results


def _record_two_steps(api: Api, run_id: str) -> None:
    with session_scope(api.sessions) as session:
        for step in range(2):
            repository.record_step(session, run_id, step, step + 1, {"loss": 0.5 - step, "reward/mean": step})
            repository.record_checkpoint(session, run_id, step + 1, step, f"/ckpt/v{step + 1}")
            repository.record_rewards(
                session,
                run_id,
                step,
                [
                    BudgetReward(
                        problem_id=f"p{p}",
                        trace_index=0,
                        budget_index=b,
                        summary_index=0,
                        cut=16 * (b + 1),
                        inserted_start=10,
                        inserted_end=12,
                        answer="7",
                        status=Status.CORRECT,
                        reward=float(b % 2),
                    )
                    for p in range(3)
                    for b in range(4)
                ],
            )
        # v0 as stored before sampled evaluation (no n, k or intervals); v2 sampled with intervals.
        repository.record_evaluation(session, run_id, 0, -1, [16, 32, 48, 64], [0.0, 0.1, 0.2, 0.3], 0.15)
        sampled = repository.SampledEvaluation(
            num_problems=3,
            num_samples=4,
            temperature=0.6,
            seed=0,
            accuracy_ci_low=[0.0, 0.25, 0.25, 0.5],
            accuracy_ci_high=[0.5, 0.5, 0.75, 0.75],
            anytime_score_ci_low=0.3,
            anytime_score_ci_high=0.6,
            per_problem={"p0": [0.0, 0.25, 0.5, 0.5], "p1": [0.25, 0.5, 0.5, 0.75], "p2": [0.5] * 4},
        )
        repository.record_evaluation(
            session, run_id, 2, 1, [16, 32, 48, 64], [0.25, 0.4, 0.5, 0.6], 0.4375, sampled
        )


def test_metrics_checkpoints_and_curve_json(api: Api) -> None:
    run_id = api.create()["id"]
    _record_two_steps(api, run_id)
    metrics = api.client.get(f"/v1/runs/{run_id}/metrics").json()
    assert [s["step"] for s in metrics["items"]] == [0, 1] and metrics["total"] == 2
    assert metrics["items"][1]["metrics"] == {"loss": -0.5, "reward/mean": 1.0}
    checkpoints = api.client.get(f"/v1/runs/{run_id}/checkpoints").json()["items"]
    assert [(c["policy_version"], c["path"]) for c in checkpoints] == [(1, "/ckpt/v1"), (2, "/ckpt/v2")]
    curve = api.client.get(f"/v1/runs/{run_id}/curve").json()
    assert [e["policy_version"] for e in curve["evaluations"]] == [0, 2]
    old, sampled = curve["evaluations"]
    assert sampled["accuracy"] == [0.25, 0.4, 0.5, 0.6] and sampled["budgets"] == [16, 32, 48, 64]
    assert (sampled["accuracy_ci_low"], sampled["accuracy_ci_high"]) == (
        [0, 0.25, 0.25, 0.5],
        [0.5, 0.5, 0.75, 0.75],
    )
    assert (sampled["anytime_score"], sampled["anytime_score_ci_low"], sampled["anytime_score_ci_high"]) == (
        0.4375,
        0.3,
        0.6,
    )
    assert (sampled["num_problems"], sampled["num_samples"], sampled["temperature"], sampled["seed"]) == (
        3,
        4,
        0.6,
        0,
    )
    assert "per_problem" not in sampled  # kept in SQL for paired comparisons; the curve stays small
    assert old["accuracy_ci_low"] is None and old["num_problems"] is None and old["anytime_score"] == 0.15


def test_rewards_are_paginated_and_filtered_by_step_and_budget(api: Api) -> None:
    run_id = api.create()["id"]
    _record_two_steps(api, run_id)
    url = f"/v1/runs/{run_id}/rewards"
    everything = api.client.get(url).json()
    assert everything["total"] == 24 and len(everything["items"]) == 24
    page = api.client.get(url, params={"step": 1, "budget_index": 2, "limit": 2, "offset": 1}).json()
    assert page["total"] == 3
    assert [(r["step"], r["problem_id"], r["budget_index"]) for r in page["items"]] == [
        (1, "p1", 2),
        (1, "p2", 2),
    ]
    assert page["items"][0] == {  # the REST names: `cut` is served as `cut_length`
        "step": 1,
        "problem_id": "p1",
        "trace_index": 0,
        "budget_index": 2,
        "summary_index": 0,
        "cut_length": 48,
        "inserted_start": 10,
        "inserted_end": 12,
        "answer": "7",
        "status": "correct",
        "reward": 0.0,
    }
    for params in ({"step": -1}, {"budget_index": "x"}, {"limit": 0}):
        assert api.client.get(url, params=params).status_code == 422
    misspelt = api.client.get(url, params={"step": 1, "budget": 0})
    assert misspelt.status_code == 422
    (error,) = misspelt.json()["detail"]
    assert error["loc"] == ["query", "budget"] and "budget_index" in error["msg"]


def test_curve_png_is_drawn_and_needs_an_evaluation(api: Api) -> None:
    empty = api.create()["id"]
    assert api.client.get(f"/v1/runs/{empty}/curve").json()["evaluations"] == []
    response = api.client.get(f"/v1/runs/{empty}/curve", params={"format": "png"})
    assert response.status_code == 404 and "no evaluation" in response.json()["detail"]
    run_id = api.create()["id"]
    _record_two_steps(api, run_id)
    response = api.client.get(f"/v1/runs/{run_id}/curve", params={"format": "png"})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.content.startswith(b"\x89PNG")
    assert api.client.get(f"/v1/runs/{run_id}/curve", params={"format": "svg"}).status_code == 422


def test_api_settings_read_the_shared_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """Subclass settings re-prefix inherited fields; the shared ones keep their ANYTIME_ names."""
    monkeypatch.setenv("ANYTIME_DATABASE_URL", "postgresql+psycopg://db/anytime")
    monkeypatch.setenv("ANYTIME_API_DATABASE_URL", "sqlite:///wrong.db")
    monkeypatch.setenv("ANYTIME_HOME", "/srv/anytime")
    settings = ApiSettings()
    assert settings.resolved_database_url == "postgresql+psycopg://db/anytime"
    assert settings.home == Path("/srv/anytime")


def test_celery_scheduler_sends_the_drive_task_by_name() -> None:
    from kombu.exceptions import OperationalError

    from anytime.contracts.drive import DRIVE_TASK
    from services.api.scheduler import CeleryRunScheduler

    sent: list[tuple[str, dict[str, Any]]] = []

    class Broker:
        fail = False

        def send_task(self, name: str, **options: Any) -> None:
            if self.fail:
                raise OperationalError("connection refused")
            sent.append((name, options["kwargs"]))

    broker = Broker()
    scheduler = CeleryRunScheduler(broker)  # type: ignore[arg-type]
    scheduler.schedule("abc")
    assert sent == [("anytime.control.drive", {"run_id": "abc"})] and DRIVE_TASK == "anytime.control.drive"
    broker.fail = True
    with pytest.raises(SchedulingError, match="connection refused"):
        scheduler.schedule("abc")


# ----------------------------------------------------------------------------------- bounded input


def test_every_integer_query_parameter_is_bounded(api: Api) -> None:
    """A number past SQL's integers is a 422, never a 500 (OverflowError) — for every route's every int."""
    from fastapi.dependencies.utils import get_flat_dependant
    from fastapi.routing import APIRoute

    run_id = api.create()["id"]
    checked = []
    for route in api.client.app.routes:  # type: ignore[attr-defined]
        if not isinstance(route, APIRoute):
            continue
        path = route.path.replace("{run_id}", run_id)
        for param in get_flat_dependant(route.dependant).query_params:
            if param.field_info.annotation not in (int, int | None):
                continue
            for method in route.methods:
                for huge in (24106861635125743616, 2**31):
                    response = api.client.request(method, path, params={param.alias: huge})
                    assert response.status_code == 422, (method, route.path, param.alias, response.text)
                    assert response.json()["detail"][0]["loc"] == ["query", param.alias]
                checked.append((route.path, param.alias))
    assert len(checked) == 13, checked  # offset, limit of 4 pages; rewards' step, budget_index; samples' step
    response = api.client.get("/v1/runs", params={"offset": 2**31 - 1})
    assert response.status_code == 200 and response.json()["items"] == []


def test_a_malformed_run_id_is_422_before_sql(api: Api) -> None:
    response = api.client.get("/v1/runs/a%00b")
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["path", "run_id"]
    assert api.client.get(f"/v1/runs/{'a' * 33}").status_code == 422


# --------------------------------------------------------------------- checkpoints after retention


def _run_with_checkpoint_folders(api: Api, tmp_path: Path) -> tuple[str, dict[int, int]]:
    """A run with checkpoints of versions 1..3 scored 0.9, 0.5, 0.7; version 1's folder was pruned."""
    run_id = api.create()["id"]
    ids = {}
    with session_scope(api.sessions) as session:
        for version, score in [(1, 0.9), (2, 0.5), (3, 0.7)]:
            folder = tmp_path / "runs" / run_id / f"policy-{version:06d}" / "model"
            if version != 1:
                folder.mkdir(parents=True)
            ids[version] = repository.record_checkpoint(session, run_id, version, version - 1, str(folder)).id
            repository.record_evaluation(session, run_id, version, version - 1, [64], [score], score)
    return run_id, ids


def test_checkpoints_say_whether_retention_deleted_them(api: Api, tmp_path: Path) -> None:
    run_id, _ = _run_with_checkpoint_folders(api, tmp_path)
    items = api.client.get(f"/v1/runs/{run_id}/checkpoints").json()["items"]
    assert [(c["policy_version"], c["exists"]) for c in items] == [(1, False), (2, True), (3, True)]


def test_promotion_refuses_a_pruned_checkpoint_and_best_skips_it(api: Api, tmp_path: Path) -> None:
    run_id, ids = _run_with_checkpoint_folders(api, tmp_path)
    gone = api.client.post(f"/v1/runs/{run_id}/promote", json={"checkpoint_id": ids[1]})
    assert gone.status_code == 409
    assert "no longer on disk" in gone.json()["detail"] and "exists=true" in gone.json()["detail"]
    assert api.client.get(f"/v1/runs/{run_id}").json()["promoted_checkpoint_id"] is None
    best = api.client.post(f"/v1/runs/{run_id}/promote")  # 0.9 is pruned: 0.7 (version 3) is the best left
    assert best.status_code == 200, best.text
    assert best.json()["checkpoint"]["id"] == ids[3] and best.json()["checkpoint"]["exists"] is True
    shutil.rmtree(tmp_path / "runs" / run_id / "policy-000002")
    shutil.rmtree(tmp_path / "runs" / run_id / "policy-000003")
    none_left = api.client.post(f"/v1/runs/{run_id}/promote")
    assert none_left.status_code == 409 and "no evaluated checkpoint on disk" in none_left.json()["detail"]


def test_inference_on_a_pruned_or_unloadable_checkpoint_says_so(api: Api, tmp_path: Path) -> None:
    run_id, ids = _run_with_checkpoint_folders(api, tmp_path)
    body = {"model": f"run:{run_id}", "prompt": "1 + 1 =", "budget": 8}
    api.client.post(f"/v1/runs/{run_id}/promote", json={"checkpoint_id": ids[2]})
    shutil.rmtree(tmp_path / "runs" / run_id / "policy-000002")  # retention, after the promotion
    response = api.client.post("/v1/completions", json=body)
    assert response.status_code == 404  # inference errors are OpenAI's error object
    message = response.json()["error"]["message"]
    assert "no longer on disk" in message and "promote another" in message

    def broken(path: str, _settings: ApiSettings) -> Any:
        raise OSError(f"{path}/model.safetensors is truncated")

    api.client.app.state.inference.loader = broken  # type: ignore[attr-defined]
    api.client.post(f"/v1/runs/{run_id}/promote", json={"checkpoint_id": ids[3]})
    response = api.client.post("/v1/completions", json=body)
    assert response.status_code == 503
    message = response.json()["error"]["message"]
    assert "could not be loaded" in message and "truncated" in message
    for model in ("run:a\x00b", "run:", "nope"):
        assert api.client.post("/v1/completions", json={**body, "model": model}).status_code == 404


def test_the_openapi_schema_states_what_the_server_accepts(api: Api) -> None:
    schema = api.client.get("/openapi.json").json()
    models = schema["components"]["schemas"]
    (probs,) = [s for s in models["BRPOConfig"]["properties"]["probs"]["anyOf"] if s["type"] == "array"]
    assert probs["minItems"] == 1
    for request in ("ChatCompletionRequest", "CompletionRequest"):
        (budgets,) = [s for s in models[request]["properties"]["budgets"]["anyOf"] if s["type"] == "array"]
        assert budgets["minItems"] == 1 and budgets["items"] == {"type": "integer", "minimum": 1}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            takes_body = "requestBody" in operation
            assert ("400" in operation["responses"]) == takes_body, (method, path)
            if path not in ("/healthz", "/readyz"):
                assert "401" in operation["responses"], (method, path)
    offset = next(p for p in schema["paths"]["/v1/runs"]["get"]["parameters"] if p["name"] == "offset")
    assert offset["schema"]["maximum"] == 2**31 - 1
