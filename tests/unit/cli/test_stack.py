"""The embedded stack's configuration: its settings, read once, and the environment its services get."""

from __future__ import annotations

from pathlib import Path

import pytest

from anytime_cli.stack import MLFLOW_JOB_EXECUTION, REPO, EmbeddedStack, StackSettings, torch_threads

ENVIRONMENT = (
    "ANYTIME_DATABASE_URL",
    "ANYTIME_MLFLOW_TRACKING_URI",
    "ANYTIME_DATA_ROOTS",
    "ANYTIME_LEARNER_MAX_LEARNERS",
    MLFLOW_JOB_EXECUTION,
    "ANYTIME_TORCH_THREADS",
    "OMP_NUM_THREADS",
)


@pytest.fixture(autouse=True)
def _bare_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)


def test_unset_the_stack_keeps_its_state_in_home(tmp_path: Path) -> None:
    stack = EmbeddedStack(tmp_path, redis_port=6390, data_roots=(tmp_path / "inputs",))
    env = stack.env()
    assert env["ANYTIME_DATABASE_URL"] == f"sqlite:///{tmp_path / 'anytime.db'}"
    assert stack.mlflow_store_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert env["ANYTIME_MLFLOW_TRACKING_URI"] == stack.mlflow_url  # its own server owns the store
    assert env["ANYTIME_DATA_ROOTS"] == f"{tmp_path},{REPO / 'build'},{tmp_path / 'inputs'}"
    assert env["ANYTIME_LEARNER_MAX_LEARNERS"] == "2"
    assert env[MLFLOW_JOB_EXECUTION] == "false"
    assert env["ANYTIME_REDIS_URL"] == "redis://127.0.0.1:6390/0"
    assert env["ANYTIME_API_API_KEY"] == (tmp_path / "api-key").read_text().strip()
    assert "PATH" in env  # the rest of this process's environment passes through


def test_the_environment_overrides_the_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ANYTIME_DATABASE_URL", "postgresql://db/anytime")
    monkeypatch.setenv("ANYTIME_MLFLOW_TRACKING_URI", "http://mlflow:5000")
    monkeypatch.setenv("ANYTIME_DATA_ROOTS", "/data/inputs")
    monkeypatch.setenv("ANYTIME_LEARNER_MAX_LEARNERS", "3")
    monkeypatch.setenv(MLFLOW_JOB_EXECUTION, "true")
    stack = EmbeddedStack(tmp_path, redis_port=6390, data_roots=(tmp_path,))
    env = stack.env()
    assert env["ANYTIME_DATABASE_URL"] == "postgresql://db/anytime"
    assert env["ANYTIME_MLFLOW_TRACKING_URI"] == "http://mlflow:5000" == stack.mlflow_store_uri
    assert env["ANYTIME_DATA_ROOTS"] == f"/data/inputs,{tmp_path}"
    assert (env["ANYTIME_LEARNER_MAX_LEARNERS"], env[MLFLOW_JOB_EXECUTION]) == ("3", "true")
    explicit = EmbeddedStack(tmp_path, redis_port=6390, database="sqlite:///x.db")
    assert explicit.database_url == "sqlite:///x.db"  # the stack's own argument comes first


def test_settings_are_read_once_when_the_stack_is_made(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stack = EmbeddedStack(tmp_path, redis_port=6390)
    monkeypatch.setenv("ANYTIME_LEARNER_MAX_LEARNERS", "5")
    assert stack.env()["ANYTIME_LEARNER_MAX_LEARNERS"] == "2"
    later = EmbeddedStack(tmp_path, redis_port=6390, settings=StackSettings())
    assert later.env()["ANYTIME_LEARNER_MAX_LEARNERS"] == "5"


def test_torch_workers_share_the_cores_instead_of_each_taking_all() -> None:
    assert torch_threads(2, 3) == 1  # this box: rollout, eval and learn on 2 cores
    assert torch_threads(16, 3) == 5
    assert torch_threads(16, 4) == 4  # two rollout workers
    assert torch_threads(None, 3) == 1  # cpu_count unknown
    assert torch_threads(1, 0) == 1


def test_omp_threads_follow_the_settings_then_the_cores(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("anytime_cli.stack.os.cpu_count", lambda: 12)
    assert EmbeddedStack(tmp_path, redis_port=6390).env()["OMP_NUM_THREADS"] == "4"
    assert EmbeddedStack(tmp_path, redis_port=6390, rollout_workers=2).env()["OMP_NUM_THREADS"] == "3"
    monkeypatch.setenv("OMP_NUM_THREADS", "6")  # the user's own setting is handed on
    assert EmbeddedStack(tmp_path, redis_port=6390).env()["OMP_NUM_THREADS"] == "6"
    monkeypatch.setenv("ANYTIME_TORCH_THREADS", "2")  # the stack's setting comes first
    assert EmbeddedStack(tmp_path, redis_port=6390).env()["OMP_NUM_THREADS"] == "2"


def test_the_stack_starts_one_worker_per_queue_and_the_api(tmp_path: Path) -> None:
    stack = EmbeddedStack(tmp_path, redis_port=6390, rollout_workers=2)
    plan = {service.name: service.argv for service in stack._plan()}
    queues = ["rollout", "rollout-2", "eval", "verify", "learn", "control"]
    assert list(plan) == ["redis", "mlflow", *queues, "api"]
    assert plan["learn"][plan["learn"].index("-A") + 1] == "services.learner.worker:app"
    assert "services.api.app:create_app" in plan["api"]
