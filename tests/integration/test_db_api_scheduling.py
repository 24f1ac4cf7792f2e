"""The API on a migrated SQLite file with a real redis-server: a created run reaches the `control` queue
as `anytime.control.drive` with its id, and /readyz sees both dependencies."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import redis
from alembic import command
from alembic.config import Config
from fastapi.testclient import TestClient

from services.api.app import create_app
from services.api.settings import ApiSettings
from tests.fixtures.servers import RedisServer

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_created_run_is_queued_for_the_driver(
    tmp_path: Path, redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    url = f"sqlite:///{tmp_path / 'anytime.db'}"
    config = Config(str(REPO / "alembic.ini"))
    config.set_main_option("script_location", str(REPO / "migrations"))
    config.set_main_option("sqlalchemy.url", url)
    command.upgrade(config, "head")
    dataset = tmp_path / "d.jsonl"
    dataset.write_text('{"problem": "1 + 1?", "answer": 2}\n')
    settings = ApiSettings(
        ANYTIME_DATABASE_URL=url,
        ANYTIME_REDIS_URL=redis_server.url,
        ANYTIME_DATA_ROOTS=str(tmp_path),
        api_key="k",
    )
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").json()["checks"] == {"database": "ok", "redis": "ok"}
        body = {"model": "org/model", "dataset": str(dataset), "problems_per_step": 1}
        run = client.post("/v1/runs", json=body, headers={"X-API-Key": "k"})
        assert run.status_code == 201
    messages = [json.loads(m) for m in redis_client.lrange("control", 0, -1)]
    assert [m["headers"]["task"] for m in messages] == ["anytime.control.drive"]
    args, kwargs, _embed = json.loads(base64.b64decode(messages[0]["body"]))
    assert (args, kwargs) == ([], {"run_id": run.json()["id"]})
