"""`anytime up` starts every service, reports where they are, and leaves nothing behind on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from anytime.processes import free_port
from tests.conftest import REPO
from tests.fixtures.processes import descendants, running

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_up_serves_and_stops_cleanly(tmp_path: Path, tiny_model_dir: Path) -> None:
    api_port, mlflow_port = free_port(), free_port()
    home = tmp_path / "home"
    proc = subprocess.Popen(
        [sys.executable, "-m", "anytime_cli.main", "up", "--api-port", str(api_port),
         "--mlflow-port", str(mlflow_port), "--home", str(home), "--serve", str(tiny_model_dir)],
        cwd=REPO, env={**os.environ, "ANYTIME_HOME": str(home)}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Ctrl-C stops everything" in line:
                break
        output = "".join(lines)
        assert "Ctrl-C stops everything" in output, output[-3000:]
        assert f"http://127.0.0.1:{api_port}" in output and f"http://127.0.0.1:{mlflow_port}" in output
        assert str(home / "api-key") in output and (home / "api-key").stat().st_mode & 0o077 == 0
        assert httpx.get(f"http://127.0.0.1:{api_port}/readyz", timeout=5).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{mlflow_port}/health", timeout=5).status_code == 200
        key = (home / "api-key").read_text().strip()
        assert httpx.post(f"http://127.0.0.1:{api_port}/v1/runs", json={}, timeout=5).status_code == 401
        listed = httpx.get(f"http://127.0.0.1:{api_port}/v1/runs", headers={"X-API-Key": key}, timeout=5)
        assert listed.status_code == 200 and listed.json()["total"] == 0
        # The export line it prints, pasted into a shell elsewhere, points the CLI at it.
        (export,) = [line.strip() for line in lines if line.strip().startswith("export ANYTIME_API_URL=")]
        pasted = subprocess.run(
            ["bash", "-c", f"{export} && {sys.executable} -m anytime_cli.main runs list"],
            cwd=tmp_path, env={k: v for k, v in os.environ.items() if not k.startswith("ANYTIME_")},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert pasted.returncode == 0 and "0 of 0 runs" in pasted.stdout, pasted.stderr
        # `--serve` puts a model behind the OpenAI-compatible endpoint, with a thinking budget.
        assert f"serves   {tiny_model_dir}" in output
        answer = httpx.post(
            f"http://127.0.0.1:{api_port}/v1/chat/completions",
            headers={"X-API-Key": key},
            json={"model": "anytime", "messages": [{"role": "user", "content": "1+1"}], "budget": 8,
                  "max_tokens": 4},
            timeout=120,
        )  # fmt: skip
        assert answer.status_code == 200, answer.text
        assert answer.json()["usage"]["thinking_tokens"] <= 8
        family = descendants(proc.pid)
        assert len(family) >= 8  # redis, five workers, the API, MLflow (and their children)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=90)
        assert proc.returncode == 0, "".join(lines[-20:])
        time.sleep(0.5)
        assert not [pid for pid in family if running(pid)]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
