"""Promotion: the best anytime score among evaluated checkpoints, or a given checkpoint, via the repository
and `POST /v1/runs/{id}/promote` (SQLite migrated by Alembic; no broker)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from anytime.db import repository
from anytime.db.session import make_engine, make_session_factory, session_scope
from anytime.run_config import RunConfig
from services.api.app import create_app
from services.api.deps import get_scheduler
from services.api.settings import ApiSettings
from tests.unit.api.test_api_routes import migrated_db

__all__ = ["migrated_db"]  # the fixture this module uses (one migration template for the API tests)

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
CONFIG = {"model": "models/tiny", "dataset": "data/train.jsonl", "b_max": 64, "num_budgets": 4}


@pytest.fixture
def database(migrated_db: Path, tmp_path: Path) -> str:
    path = tmp_path / "anytime.db"
    shutil.copy(migrated_db, path)
    return f"sqlite:///{path}"


@pytest.fixture
def sessions(database: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(database)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def client(database: str) -> Iterator[TestClient]:
    settings = ApiSettings(
        ANYTIME_DATABASE_URL=database, ANYTIME_REDIS_URL="redis://127.0.0.1:1/0", api_key=KEY
    )
    app = create_app(settings)
    app.dependency_overrides[get_scheduler] = lambda: None
    with TestClient(app) as test_client:
        yield test_client


def _run_with_checkpoints(
    sessions: sessionmaker[Session],
    scores: dict[int, float | None],
    checkpoints: tuple[int, ...] = (1, 2, 3),
    root: Path | None = None,
) -> tuple[str, dict[int, int]]:
    """A run with checkpoints of the given policy versions and evaluations {version: anytime score}; their
    folders are made when `root` is given (the promote route refuses a checkpoint whose folder is gone)."""
    with session_scope(sessions) as session:
        run = repository.create_run(session, RunConfig.model_validate(CONFIG))
        ids = {}
        for v in checkpoints:
            folder = (root or Path("/checkpoints")) / run.id / f"v{v}"
            if root is not None:
                folder.mkdir(parents=True)
            ids[v] = repository.record_checkpoint(session, run.id, v, v - 1, str(folder)).id
        for version, score in scores.items():
            accuracy = [score or 0.0] * 4
            repository.record_evaluation(
                session, run.id, version, version - 1, [16, 32, 48, 64], accuracy, score
            )
        return run.id, ids


def test_the_best_anytime_score_is_promoted(sessions: sessionmaker[Session]) -> None:
    run_id, ids = _run_with_checkpoints(sessions, {0: 0.9, 1: 0.2, 2: 0.6, 3: 0.6})
    with session_scope(sessions) as session:  # version 0 has no checkpoint; 2 and 3 tie: the later wins
        best = repository.promote_best_checkpoint(session, run_id)
        assert best is not None and best.id == ids[3]
    with session_scope(sessions) as session:
        assert repository.require_run(session, run_id).promoted_checkpoint_id == ids[3]


def test_nothing_is_promoted_without_an_evaluation(sessions: sessionmaker[Session]) -> None:
    run_id, _ = _run_with_checkpoints(sessions, {2: None})
    with session_scope(sessions) as session:
        assert repository.promote_best_checkpoint(session, run_id) is None
        assert repository.require_run(session, run_id).promoted_checkpoint_id is None


def test_promote_route_takes_a_checkpoint_or_the_best(
    client: TestClient, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    run_id, ids = _run_with_checkpoints(sessions, {1: 0.5, 2: 0.7}, root=tmp_path)
    given = client.post(f"/v1/runs/{run_id}/promote", json={"checkpoint_id": ids[1]}, headers=AUTH)
    assert given.status_code == 200, given.text
    assert given.json()["run"]["promoted_checkpoint_id"] == ids[1]
    assert given.json()["checkpoint"]["path"] == str(tmp_path / run_id / "v1")
    best = client.post(f"/v1/runs/{run_id}/promote", headers=AUTH)
    assert best.status_code == 200 and best.json()["checkpoint"]["id"] == ids[2]
    assert client.get(f"/v1/runs/{run_id}", headers=AUTH).json()["promoted_checkpoint_id"] == ids[2]


def test_promote_route_errors(client: TestClient, sessions: sessionmaker[Session]) -> None:
    run_id, _ = _run_with_checkpoints(sessions, {})
    other_id, other_ids = _run_with_checkpoints(sessions, {})
    assert client.post(f"/v1/runs/{run_id}/promote", json={"checkpoint_id": 1}).status_code == 401
    missing_run = client.post("/v1/runs/nope/promote", json={"checkpoint_id": 1}, headers=AUTH)
    assert missing_run.status_code == 404
    foreign = client.post(f"/v1/runs/{run_id}/promote", json={"checkpoint_id": other_ids[1]}, headers=AUTH)
    assert foreign.status_code == 404 and "no checkpoint" in foreign.json()["detail"]
    bad = client.post(f"/v1/runs/{run_id}/promote", json={"checkpoint_id": "one"}, headers=AUTH)
    assert bad.status_code == 422
    unevaluated = client.post(f"/v1/runs/{run_id}/promote", json={}, headers=AUTH)
    assert unevaluated.status_code == 409 and "no evaluated checkpoint" in unevaluated.json()["detail"]
    assert other_id != run_id
