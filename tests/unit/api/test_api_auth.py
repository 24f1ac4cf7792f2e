"""Every call but /healthz and /readyz needs the API key, reads included; ANYTIME_API_OPEN_READS opens reads
on loopback only, and the placeholder key only works in development on loopback."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError
from starlette.routing import Route

from anytime_cli.client import ApiClient
from services.api.app import create_app
from services.api.deps import get_scheduler
from services.api.settings import ApiSettings
from tests.unit.api.test_api_routes import KEY, Api, RecordingScheduler, api, migrated_db

__all__ = ["api", "migrated_db"]  # fixtures this module uses

HEALTH = {"/healthz", "/readyz"}


def every_call(app: FastAPI) -> list[tuple[str, str, str]]:
    """(method, route path, a concrete path) for every route of the app, path parameters filled in."""
    calls = []
    for route in app.routes:
        assert isinstance(route, Route), f"{route!r}: cover this kind of route here"
        concrete = re.sub(r"\{[^}]+\}", "x0", route.path)
        calls += [(method, route.path, concrete) for method in sorted(route.methods or ())]
    return calls


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "wrong"}])
def test_every_route_but_health_is_401_without_the_key(api: Api, headers: dict[str, str]) -> None:
    calls = every_call(api.client.app)  # type: ignore[arg-type]
    paths = {path for _, path, _ in calls}
    assert {"/v1/runs", "/v1/runs/{run_id}/metrics", "/openapi.json", "/docs"} <= paths and paths >= HEALTH
    for method, path, concrete in calls:
        response = api.anonymous.request(method, concrete, headers=headers)
        if path in HEALTH:
            assert response.status_code in (200, 503), (method, path)
        else:
            assert response.status_code == 401, (method, path, response.status_code)
            assert response.headers["www-authenticate"] == "Bearer"


def test_with_the_key_no_route_is_401(api: Api) -> None:
    for method, path, concrete in every_call(api.client.app):  # type: ignore[arg-type]
        for headers in ({"Authorization": f"Bearer {KEY}"}, {"X-API-Key": KEY}):
            response = api.anonymous.request(method, concrete, headers=headers)
            assert response.status_code != 401, (method, path, response.text)


@pytest.fixture
def open_reads(migrated_db: Path, tmp_path: Path) -> Iterator[TestClient]:
    database = tmp_path / "anytime.db"
    shutil.copy(migrated_db, database)
    settings = ApiSettings(
        ANYTIME_DATABASE_URL=f"sqlite:///{database}",
        ANYTIME_REDIS_URL="redis://127.0.0.1:1/0",
        api_key=KEY,
        open_reads=True,
        host="localhost",
    )
    app = create_app(settings)
    app.dependency_overrides[get_scheduler] = RecordingScheduler
    with TestClient(app) as client:
        yield client


def test_open_reads_open_gets_only(open_reads: TestClient) -> None:
    calls = every_call(open_reads.app)  # type: ignore[arg-type]
    for method, path, concrete in calls:
        status = open_reads.request(method, concrete).status_code
        if method == "GET":
            assert status != 401, path
        elif path not in HEALTH:
            assert status == 401, (method, path)
    assert open_reads.get("/v1/runs").json()["total"] == 0
    assert open_reads.get("/openapi.json").status_code == 200


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "[::1]", "localhost", "LOCALHOST"])
def test_loopback_allows_the_placeholder_key_in_development_and_open_reads(host: str) -> None:
    settings = ApiSettings(host=host, open_reads=True)
    assert settings.api_key.get_secret_value() == "dev" and settings.loopback


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "api.example.org"])
def test_beyond_loopback_the_placeholder_key_and_open_reads_are_refused(host: str) -> None:
    with pytest.raises(ValidationError, match="ANYTIME_API_API_KEY must be set to a real secret when"):
        ApiSettings(host=host)
    with pytest.raises(ValidationError, match="ANYTIME_API_OPEN_READS=true opens every GET") as refused:
        ApiSettings(host=host, open_reads=True, api_key="s3cret-value")
    assert "s3cret" not in str(refused.value)  # a refused setting does not print the key
    assert ApiSettings(host=host, api_key="s3cret-value", environment="production").open_reads is False


def test_placeholder_keys_are_refused_outside_development_even_on_loopback() -> None:
    for key in ("dev", "changeme", ""):
        with pytest.raises(ValidationError, match="outside development"):
            ApiSettings(api_key=key, environment="production")


def test_the_cli_client_sends_the_key_on_reads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[tuple[str, str | None]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.headers.get("authorization")))
        return httpx.Response(200, json={"items": [], "total": 0})

    real_client = httpx.Client
    monkeypatch.setattr(
        httpx, "Client", lambda **kwargs: real_client(transport=httpx.MockTransport(answer), **kwargs)
    )
    ApiClient("http://api", "k1").json("GET", "/v1/runs")
    (tmp_path / "api-key").write_text("k2\n")  # what `anytime up` writes
    monkeypatch.setenv("ANYTIME_HOME", str(tmp_path))
    monkeypatch.delenv("ANYTIME_API_KEY", raising=False)
    ApiClient.from_settings().json("GET", "/v1/runs/abc/metrics")
    assert seen == [("GET", "Bearer k1"), ("GET", "Bearer k2")]
