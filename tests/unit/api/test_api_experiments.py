"""`/v1/experiments` on a real SQLite file migrated by Alembic, with the recording scheduler of
test_api_routes and a recording MLflow tracker: creation, bad specs, status, cancel/resume, the report."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from anytime.db import repository
from anytime.db.experiments import Experiment, ExperimentRun, experiment_status
from anytime.db.models import Run, RunStatus
from anytime.db.session import session_scope
from anytime.experiments import estimates
from anytime.run_config import RunConfig
from anytime.run_plan import RunPlan
from anytime.tracking import LazyMlflowTracker, NullTracker
from services.api.app import create_app
from services.api.deps import get_scheduler
from services.api.routes import experiments as routes
from services.api.routes.experiments import get_experiment_tracker
from services.api.settings import ApiSettings
from tests.unit.api.test_api_routes import AUTH, KEY, RecordingScheduler, migrated_db, write_inputs

__all__ = ["migrated_db"]  # a fixture this module uses

BASE = {
    "model": "models/tiny",
    "dataset": "data/train.jsonl",
    "eval_dataset": "data/eval.jsonl",
    "b_max": 64,
    "steps": 3,
    "problems_per_step": 4,
    "eval_problems": 4,
}
SPEC: dict[str, Any] = {
    "name": "brpo-vs-grpo",
    "base": BASE,
    "arms": {"brpo": {"algorithm": "brpo"}, "grpo": {"algorithm": "grpo"}},
    "seeds": [3, 7],
}


@dataclass
class RecordingTracker:
    """The MLflow tracker's calls, by name; `fail` makes every call raise (MLflow down)."""

    calls: list[tuple[str, Any]] = field(default_factory=list)
    fail: bool = False

    def _call(self, name: str, *args: Any) -> None:
        if self.fail:
            raise ConnectionError("MLflow is down")
        self.calls.append((name, args))

    def start_run(self, name: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> str | None:
        self._call("start_run", name, dict(params), dict(tags))
        return "parent-1"

    def log_metrics(self, run: str | None, metrics: Mapping[str, float], step: int) -> None:
        self._call("log_metrics", run, dict(metrics), step)

    def log_dict(self, run: str | None, data: Mapping[str, Any], artifact_file: str) -> None:
        self._call("log_dict", run, artifact_file)

    def log_png(self, run: str | None, png: bytes, artifact_file: str) -> None:
        self._call("log_png", run, artifact_file)

    def end_run(self, run: str | None, status: str) -> None:
        self._call("end_run", run, status)

    def named(self, name: str) -> list[Any]:
        return [args for called, args in self.calls if called == name]


@dataclass
class Api:
    client: TestClient
    scheduler: RecordingScheduler
    tracker: RecordingTracker
    sessions: sessionmaker[Session]

    def create(self, **changes: Any) -> dict[str, Any]:
        response = self.client.post("/v1/experiments", json={**SPEC, **changes})
        assert response.status_code == 201, response.text
        return response.json()

    def set_status(self, run_id: str, *statuses: RunStatus) -> None:
        with session_scope(self.sessions) as session:
            for status in statuses:
                repository.set_status(session, run_id, status)

    def count(self, model: type[Any]) -> int:
        with self.sessions() as session:
            return session.scalar(select(func.count()).select_from(model)) or 0


def write_eval(folder: Path, problems: int = 6) -> None:
    rows = [json.dumps({"id": f"e{i}", "problem": f"{i} + 2?", "answer": i + 2}) for i in range(problems)]
    (folder / "data" / "eval.jsonl").write_text("\n".join(rows) + "\n")


@pytest.fixture
def api(migrated_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    database = tmp_path / "anytime.db"
    shutil.copy(migrated_db, database)
    write_inputs(tmp_path)
    write_eval(tmp_path)
    monkeypatch.chdir(tmp_path)
    settings = ApiSettings(
        ANYTIME_DATABASE_URL=f"sqlite:///{database}",
        ANYTIME_REDIS_URL="redis://127.0.0.1:1/0",
        ANYTIME_DATA_ROOTS=str(tmp_path),
        api_key=KEY,
        environment="development",
    )
    app = create_app(settings)
    scheduler, tracker = RecordingScheduler(), RecordingTracker()
    app.dependency_overrides[get_scheduler] = lambda: scheduler
    app.dependency_overrides[get_experiment_tracker] = lambda: tracker
    with TestClient(app, headers=AUTH) as client:
        yield Api(client, scheduler, tracker, app.state.session_factory)


# ------------------------------------------------------------------------------------------ create


def test_create_makes_one_scheduled_run_per_arm_and_seed(api: Api) -> None:
    response = api.client.post("/v1/experiments", json=SPEC)
    assert response.status_code == 201, response.text
    experiment = response.json()
    assert response.headers["location"] == f"/v1/experiments/{experiment['id']}"
    assert experiment["status"] == "queued" and experiment["reference"] == "brpo"  # the first arm
    assert experiment["arms"] == ["brpo", "grpo"] and experiment["seeds"] == [3, 7]
    assert experiment["mlflow_run_id"] == "parent-1"
    runs = experiment["runs"]
    assert [(r["arm"], r["seed"]) for r in runs] == [("brpo", 3), ("brpo", 7), ("grpo", 3), ("grpo", 7)]
    assert sorted(api.scheduler.sent) == sorted(r["run_id"] for r in runs)
    # Scheduled seed by seed: the arms of a seed start together.
    by_id = {r["run_id"]: (r["arm"], r["seed"]) for r in runs}
    assert [by_id[i] for i in api.scheduler.sent] == [("brpo", 3), ("grpo", 3), ("brpo", 7), ("grpo", 7)]
    for r in runs:
        stored = api.client.get(f"/v1/runs/{r['run_id']}").json()
        assert stored["name"] == f"brpo-vs-grpo/{r['arm']}/seed{r['seed']}" and stored["status"] == "queued"
        expected = {**BASE, **SPEC["arms"][r["arm"]], "name": stored["name"]}
        expected |= {"seed": r["seed"], "eval_seed": r["seed"]}
        assert RunConfig.model_validate(stored["config"]) == RunConfig.model_validate(expected)
        assert r["steps"] == 3 and r["step"] == -1
    budgets = api.client.get(f"/v1/runs/{runs[2]['run_id']}/budgets").json()["items"]
    assert [b["tokens"] for b in budgets] == [64]  # grpo: one budget, through the same create_run


def test_every_run_of_an_experiment_stores_the_contamination_of_its_evaluation_set(
    api: Api, tmp_path: Path
) -> None:
    # Training: "0 + 1?" … "7 + 1?"; evaluation: two of them, a new one, and one past eval_problems.
    rows = ['{"problem": "3 + 1?", "answer": 4}', '{"problem": "9 + 1?", "answer": 10}',
            '{"problem": "0 + 1?", "answer": 1}', '{"problem": "5 + 1?", "answer": 6}']  # fmt: skip
    (tmp_path / "data" / "eval.jsonl").write_text("\n".join(rows) + "\n")
    experiment = api.create(base={**BASE, "eval_problems": 3})
    assert len(experiment["runs"]) == 4
    for r in experiment["runs"]:
        run = api.client.get(f"/v1/runs/{r['run_id']}").json()
        assert run["contamination"] == {"eval_problems": 3, "in_training": 2}, r
        assert run["warnings"] and "2 of the 3 evaluation problems" in run["warnings"][0]


def test_the_parent_mlflow_run_gets_resolved_params_and_the_spec(api: Api) -> None:
    experiment = api.create(reference="grpo")
    ((name, params, tags),) = api.tracker.named("start_run")
    assert name == "brpo-vs-grpo" and tags["anytime.experiment_id"] == experiment["id"]
    assert params["experiment.reference"] == "grpo" and params["experiment.seeds"] == [3, 7]
    assert params["arm"]["grpo"]["algorithm"] == "grpo" and params["arm"]["brpo"]["group_size"] == 4
    assert "seed" not in params["arm"]["brpo"]  # per run, not per arm
    assert api.tracker.named("log_dict") == [("parent-1", "spec.json")]


def test_an_experiment_is_created_when_mlflow_is_down(api: Api) -> None:
    api.tracker.fail = True
    experiment = api.create()
    assert experiment["mlflow_run_id"] is None and len(experiment["runs"]) == 4


def _detail(response: Any) -> dict[tuple[Any, ...], str]:
    assert response.status_code == 422, response.text
    return {tuple(e["loc"]): e["msg"] for e in response.json()["detail"]}


@pytest.mark.parametrize(
    ("changes", "loc", "words"),
    [
        (
            {"arms": {"brpo": {}, "grpo": {"algorithm": "grpo", "num_budgets": 4}}},
            ("arms", "grpo"),
            "one budget",
        ),
        ({"arms": {"brpo": {"group_size": 0}}}, ("arms", "brpo", "group_size"), "greater than or equal"),
        ({"arms": {"brpo": {"typo": 1}}}, ("arms", "brpo", "typo"), "not permitted"),
        ({"arms": {"a": {}, "b": {"dataset": "data/eval.jsonl"}}}, ("arms", "b", "dataset"), "same dataset"),
        ({"arms": {"a": {}, "b": {"eval_problems": 2}}}, ("arms", "b", "eval_problems"), "pairing"),
        ({"arms": {"a": {}, "b": {"eval_temperature": 0}}}, ("arms", "b", "eval_temperature"), "pairing"),
        ({"arms": {"a": {}, "b": {"problems_per_step": 2}}}, ("arms", "b", "problems_per_step"), "pairing"),
        ({"arms": {"a": {}, "b": {"b_max": 128}}}, ("arms", "b", "b_max"), "same budget grid"),
        ({"arms": {"a": {"seed": 1}}}, (), "seed"),
        ({"base": {**BASE, "eval_seed": 5}}, (), "eval_seed"),
        ({"base": {**BASE, "eval_dataset": None}}, ("base", "eval_dataset"), "set eval_dataset"),
        ({"arms": {"a": {"model": "/etc"}}}, ("arms", "a", "model"), "data roots"),
        ({"arms": {"a": {"problems_per_step": 99}}}, ("arms", "a", "problems_per_step"), "holds 8"),
        ({"seeds": []}, ("seeds",), "at least 1"),
        ({"seeds": [1, 1]}, (), "distinct"),
        ({"seeds": list(range(33))}, ("seeds",), "at most 32"),
        ({"arms": {f"a{i}": {} for i in range(17)}}, ("arms",), "at most 16"),
        ({"arms": {f"a{i}": {} for i in range(9)}, "seeds": list(range(32))}, (), "at most 256"),
        ({"reference": "ppo"}, (), "not an arm"),
        ({"arms": {"bad name": {}}}, ("arms", "bad name", "[key]"), "pattern"),
        ({"name": "a/b"}, ("name",), "pattern"),
        ({"seeds": ["3"]}, ("seeds", 0), "JSON integer"),
    ],
)
def test_a_bad_spec_is_422_naming_arm_and_field_and_stores_nothing(
    api: Api, changes: dict[str, Any], loc: tuple[Any, ...], words: str
) -> None:
    errors = _detail(api.client.post("/v1/experiments", json={**SPEC, **changes}))
    assert ("body", *loc) in errors, errors
    assert words in errors[("body", *loc)], errors
    assert api.count(Experiment) == api.count(ExperimentRun) == api.count(Run) == 0
    assert api.scheduler.sent == [] and api.tracker.calls == []


def test_experiments_refused_by_the_broker_are_503_and_their_runs_failed(api: Api) -> None:
    api.scheduler.fail = True
    response = api.client.post("/v1/experiments", json=SPEC)
    assert response.status_code == 503 and "4 of its 4 runs" in response.json()["detail"]
    (experiment,) = api.client.get("/v1/experiments").json()["items"]
    assert experiment["status"] == "failed"
    assert all(r["status"] == "failed" and "broker down" in r["error"] for r in experiment["runs"])
    api.scheduler.fail = False
    resumed = api.client.post(f"/v1/experiments/{experiment['id']}/resume").json()
    assert resumed["status"] == "queued" and len(api.scheduler.sent) == 4


# ------------------------------------------------------------------------------------------ read


def test_list_is_paginated_newest_first_and_unknown_ids_are_404(api: Api) -> None:
    ids = [api.create(name=f"exp {i}")["id"] for i in range(3)]
    page = api.client.get("/v1/experiments", params={"offset": 1, "limit": 1}).json()
    assert page["total"] == 3 and [e["id"] for e in page["items"]] == [ids[1]]
    assert len(page["items"][0]["runs"]) == 4
    assert api.client.get(f"/v1/experiments/{ids[0]}").json()["name"] == "exp 0"
    for method, suffix in [("GET", ""), ("GET", "/report"), ("POST", "/cancel"), ("POST", "/resume")]:
        response = api.client.request(method, f"/v1/experiments/missing{suffix}")
        assert response.status_code == 404 and "missing" in response.json()["detail"]
    assert api.client.get("/v1/experiments/a%00b").status_code == 422
    for params in ({"limit": 0}, {"limit": 101}, {"offset": -1}, {"offset": 2**31}, {"bogus": 1}):
        assert api.client.get("/v1/experiments", params=params).status_code == 422, params


def test_every_experiment_route_needs_the_key(api: Api) -> None:
    experiment_id = api.create()["id"]
    anonymous = TestClient(api.client.app)
    for method, path in [
        ("POST", "/v1/experiments"),
        ("GET", "/v1/experiments"),
        ("GET", f"/v1/experiments/{experiment_id}"),
        ("GET", f"/v1/experiments/{experiment_id}/report"),
        ("POST", f"/v1/experiments/{experiment_id}/cancel"),
        ("POST", f"/v1/experiments/{experiment_id}/resume"),
    ]:
        assert anonymous.request(method, path, json=SPEC).status_code == 401, path


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        (["queued", "queued"], "queued"),
        (["queued", "running"], "running"),
        (["succeeded", "queued"], "running"),
        (["cancelled", "running"], "running"),  # a cancel on its way
        (["succeeded", "succeeded"], "succeeded"),
        (["succeeded", "failed"], "failed"),
        (["failed", "cancelled"], "failed"),  # a failure is never hidden behind a cancel
        (["succeeded", "cancelled"], "cancelled"),
    ],
)
def test_the_status_follows_the_runs(statuses: list[str], expected: str) -> None:
    assert experiment_status(RunStatus(s) for s in statuses) == RunStatus(expected)


def test_the_status_is_read_from_the_runs(api: Api) -> None:
    experiment = api.create()
    first, *others = [r["run_id"] for r in experiment["runs"]]
    api.set_status(first, RunStatus.RUNNING)
    assert api.client.get(f"/v1/experiments/{experiment['id']}").json()["status"] == "running"
    api.set_status(first, RunStatus.SUCCEEDED)
    for run_id in others:
        api.set_status(run_id, RunStatus.RUNNING, RunStatus.SUCCEEDED)
    assert api.client.get(f"/v1/experiments/{experiment['id']}").json()["status"] == "succeeded"


# ---------------------------------------------------------------------------------- cancel, resume


def test_cancel_and_resume_apply_to_every_run(api: Api) -> None:
    experiment = api.create()
    path = f"/v1/experiments/{experiment['id']}"
    queued, running, done, failed = [r["run_id"] for r in experiment["runs"]]
    api.set_status(running, RunStatus.RUNNING)
    api.set_status(done, RunStatus.RUNNING, RunStatus.SUCCEEDED)
    api.set_status(failed, RunStatus.RUNNING, RunStatus.FAILED)
    cancelled = {r["run_id"]: r for r in api.client.post(f"{path}/cancel").json()["runs"]}
    assert cancelled[queued]["status"] == "cancelled"
    assert cancelled[running]["status"] == "running"  # a live driver stops it at its next task boundary
    assert cancelled[done]["status"] == "succeeded" and cancelled[failed]["status"] == "failed"
    assert api.client.get(f"/v1/runs/{running}").json()["cancel_requested"] is True
    api.set_status(running, RunStatus.CANCELLED)
    assert api.client.get(path).json()["status"] == "failed"
    response = api.client.post(f"{path}/cancel")
    assert response.status_code == 409 and "every run has ended" in response.json()["detail"]

    api.scheduler.sent.clear()
    resumed = {r["run_id"]: r["status"] for r in api.client.post(f"{path}/resume").json()["runs"]}
    assert resumed == {queued: "queued", running: "queued", done: "succeeded", failed: "queued"}
    assert sorted(api.scheduler.sent) == sorted([queued, running, failed])
    response = api.client.post(f"{path}/resume")  # each held by a live driver now, or succeeded
    assert response.status_code == 409 and "nothing to resume" in response.json()["detail"]


def test_driverless_runs_are_cancelled_at_once_and_resumed_with_a_new_driver(api: Api) -> None:
    api.scheduler.alive = False
    experiment = api.create(arms={"brpo": {}}, seeds=[1, 2])
    stuck, orphan = [r["run_id"] for r in experiment["runs"]]
    api.set_status(stuck, RunStatus.RUNNING)
    api.scheduler.sent.clear()
    resumed = api.client.post(f"/v1/experiments/{experiment['id']}/resume").json()
    assert api.scheduler.sent == [stuck, orphan]  # both had no driver: a new one each
    assert [r["status"] for r in resumed["runs"]] == ["running", "queued"]
    cancelled = api.client.post(f"/v1/experiments/{experiment['id']}/cancel").json()
    assert cancelled["status"] == "cancelled" and {r["status"] for r in cancelled["runs"]} == {"cancelled"}


# ------------------------------------------------------------------------------------------ report


def _record(api: Api, run_id: str, accuracy: list[list[float]]) -> None:
    with session_scope(api.sessions) as session:
        for step, values in enumerate(accuracy):
            version = step * 3
            per_problem = {f"e{i}": values for i in range(4)}
            sampled = repository.SampledEvaluation(4, 4, 0.6, 0, values, values, 0.0, 1.0, per_problem)
            repository.record_evaluation(
                session, run_id, version, version - 1, [16, 32, 48, 64], values, sum(values) / 4, sampled
            )
        for step in range(3):
            repository.record_step(
                session, run_id, step, step + 1, {"reward/mean": 0.1 * step, "bad": float("nan")}
            )


def test_the_report_reads_every_run_from_sql(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    experiment = api.create()
    for r in experiment["runs"]:
        api.set_status(r["run_id"], RunStatus.RUNNING, RunStatus.SUCCEEDED)
        better = 0.1 if r["arm"] == "brpo" else 0.0
        _record(api, r["run_id"], [[0.1, 0.2, 0.3, 0.4], [0.2 + better, 0.3 + better, 0.5, 0.6]])
    seen: dict[str, Any] = {}
    real = estimates.build_report

    def spy(arms: Any, reference: Any, runs: Any, **kwargs: Any) -> Any:
        seen.update(arms=arms, reference=reference, runs=runs)
        return real(arms, reference, runs, **kwargs)

    monkeypatch.setattr(routes, "build_report", spy)
    path = f"/v1/experiments/{experiment['id']}/report"
    response = api.client.get(path)
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert seen["arms"] == ["brpo", "grpo"] and seen["reference"] == "brpo"
    (record,) = [r for r in seen["runs"] if r.arm == "grpo" and r.seed == 7]
    assert record.status == "succeeded" and [e.policy_version for e in record.evaluations] == [0, 3]
    assert record.evaluations[1].accuracy == [0.2, 0.3, 0.5, 0.6]
    assert record.evaluations[1].per_problem == {f"e{i}": [0.2, 0.3, 0.5, 0.6] for i in range(4)}
    assert record.step_metrics[2] == (2, {"reward/mean": pytest.approx(0.2)})  # NaN (stored null) dropped
    assert api.tracker.named("log_png") == []  # JSON logs nothing to MLflow

    markdown = api.client.get(path, params={"format": "md"})
    assert markdown.status_code == 200 and markdown.headers["content-type"].startswith("text/markdown")
    assert "brpo" in markdown.text and "grpo" in markdown.text
    png = api.client.get(path, params={"format": "png"})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG")
    assert api.tracker.named("log_png") == [("parent-1", "report/accuracy_vs_budget.png")] * 2
    assert ("parent-1", "FINISHED") in api.tracker.named("end_run")
    assert api.client.get(path, params={"format": "pdf"}).status_code == 422

    api.tracker.fail = True  # MLflow down: the report is served anyway
    assert api.client.get(path, params={"format": "png"}).status_code == 200


def test_the_report_pairs_against_another_arm_when_asked(api: Api) -> None:
    experiment = api.create()
    for r in experiment["runs"]:
        api.set_status(r["run_id"], RunStatus.RUNNING, RunStatus.SUCCEEDED)
        better = 0.1 if r["arm"] == "brpo" else 0.0
        _record(api, r["run_id"], [[0.1, 0.2, 0.3, 0.4], [0.2 + better, 0.3 + better, 0.5, 0.6]])
    path = f"/v1/experiments/{experiment['id']}/report"
    report = api.client.get(path, params={"reference": "grpo"}).json()
    assert report["reference"] == "grpo"  # the experiment's own reference is brpo
    (comparison,) = report["comparisons"]
    assert comparison["arm"] == "brpo" and comparison["end"]["accuracy"][0]["mean"] == pytest.approx(0.1)
    api.client.get(path, params={"reference": "grpo", "format": "md"})
    assert api.tracker.named("log_png") == []  # the parent run keeps the experiment's own report
    refused = api.client.get(path, params={"reference": "nope"})
    assert refused.status_code == 422
    assert "one of the experiment's arms (brpo, grpo)" in refused.json()["detail"][0]["msg"]


def test_a_report_of_runs_that_cannot_be_compared_is_409(api: Api) -> None:
    experiment = api.create(seeds=[1])
    for r in experiment["runs"]:
        api.set_status(r["run_id"], RunStatus.RUNNING, RunStatus.SUCCEEDED)
        _record(api, r["run_id"], [[0.1, 0.2, 0.3, 0.4], [0.2, 0.3, 0.5, 0.6]])
    with session_scope(api.sessions) as session:  # one run evaluated on other problems than its pair
        row = repository.list_evaluations(session, experiment["runs"][1]["run_id"])[-1]
        row.per_problem = {"other": [0.0, 0.0, 0.0, 0.0]}
    response = api.client.get(f"/v1/experiments/{experiment['id']}/report")
    assert response.status_code == 409 and "same problems" in response.json()["detail"]


# ------------------------------------------------------------------------------------------ MLflow


def test_the_driver_makes_each_run_a_child_of_the_experiments_mlflow_run(api: Api, tmp_path: Path) -> None:
    from services.control.driver import DriverDeps, RunDriver

    experiment = api.create()
    lone = api.client.post("/v1/runs", json=BASE).json()
    driver = RunDriver(DriverDeps(api.sessions, lambda *_: {}, None, NullTracker(), tmp_path))  # type: ignore[arg-type]
    for run in experiment["runs"]:
        config = RunConfig.model_validate(api.client.get(f"/v1/runs/{run['run_id']}").json()["config"])
        tags = driver._tags(run["run_id"], config, RunPlan.from_config(config))
        assert tags["mlflow.parentRunId"] == "parent-1" and tags["anytime.run_id"] == run["run_id"]
    lone_config = RunConfig.model_validate(lone["config"])
    assert "mlflow.parentRunId" not in driver._tags(lone["id"], lone_config, RunPlan.from_config(lone_config))


def test_a_real_mlflow_store_shows_the_runs_as_children_of_the_experiment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API's lazy tracker against a SQLite MLflow store: the parent and a child tagged as the driver
    tags it, as MLflow's compare view finds them."""
    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)  # a new store's artifacts go to ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = LazyMlflowTracker(uri)
    parent = tracker.start_run("exp", {"arm": {"brpo": {"lr": 0.1}}}, {"anytime.kind": "experiment"})
    child = tracker.start_run("exp/brpo/seed0", {"lr": 0.1}, {"mlflow.parentRunId": str(parent)})
    tracker.log_png(parent, b"\x89PNG...", "report/accuracy_vs_budget.png")
    client = MlflowClient(tracking_uri=uri)
    found = client.search_runs(
        [client.get_run(str(parent)).info.experiment_id], f"tags.mlflow.parentRunId = '{parent}'"
    )
    assert [r.info.run_id for r in found] == [child]
    assert client.get_run(str(parent)).data.params["arm.brpo.lr"] == "0.1"
    assert [a.path for a in client.list_artifacts(str(parent), "report")] == ["report/accuracy_vs_budget.png"]
