"""A database the API cannot use (a fresh SQLite file nobody migrated, a server that does not answer): /readyz
says so, and the routes that query it answer 503 saying what to do instead of a bare 500."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, inspect

from services.api.app import create_app
from services.api.settings import ApiSettings

REPO = Path(__file__).resolve().parents[3]
KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
MIGRATE = "alembic upgrade head"


def _client(database_url: str) -> TestClient:
    settings = ApiSettings(ANYTIME_DATABASE_URL=database_url, ANYTIME_REDIS_URL=None, api_key=KEY)
    return TestClient(create_app(settings), headers=AUTH)


@pytest.fixture
def unmigrated(tmp_path: Path) -> Iterator[tuple[TestClient, str]]:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    with _client(url) as client:
        yield client, url


def test_readyz_is_not_ready_until_the_schema_is_at_head(unmigrated: tuple[TestClient, str]) -> None:
    client, url = unmigrated
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert "database" in body["failed"]
    assert "SchemaNotMigrated" in body["checks"]["database"] and MIGRATE in body["checks"]["database"]
    assert "no revision" in body["detail"]
    config = Config(str(REPO / "alembic.ini"))
    config.set_main_option("script_location", str(REPO / "migrations"))
    config.set_main_option("sqlalchemy.url", url)
    command.upgrade(config, "head")
    assert client.get("/readyz").json()["checks"]["database"] == "ok"
    assert client.get("/v1/runs").status_code == 200


def test_rest_routes_are_503_with_the_command_to_run(unmigrated: tuple[TestClient, str]) -> None:
    client, url = unmigrated
    for path in ("/v1/runs", "/v1/runs/abc", "/v1/experiments"):
        response = client.get(path)
        assert response.status_code == 503, (path, response.text)
        assert "not migrated" in response.json()["detail"] and MIGRATE in response.json()["detail"]
    engine = create_engine(url)
    try:  # the API never migrates, not even on a failed query
        with engine.connect() as connection:
            assert inspect(connection).get_table_names() == []
    finally:
        engine.dispose()


def test_inference_routes_are_503_in_openais_shape(unmigrated: tuple[TestClient, str]) -> None:
    client, _ = unmigrated
    body = {"model": "run:abc", "messages": [{"role": "user", "content": "1 + 1?"}], "budget": 4}
    for response in (client.post("/v1/chat/completions", json=body), client.get("/v1/models")):
        assert response.status_code == 503
        error = response.json()["error"]
        assert "not migrated" in error["message"] and MIGRATE in error["message"]
        assert error["type"] == "server_error" and error["code"] == "database_unavailable"


def test_a_database_that_does_not_answer_is_503() -> None:
    with _client("postgresql+psycopg://anytime@127.0.0.1:1/anytime") as client:
        response = client.get("/v1/runs")
        assert response.status_code == 503 and "does not answer" in response.json()["detail"]
        assert client.get("/readyz").json()["failed"] == ["database", "redis"]
