"""Faults are normal: under `anytime up` with its default settings (MLflow server included), kill the
driver, a rollout worker, the learn worker and redis-server mid-run, and stop the whole stack mid-run;
every run ends `succeeded` with exactly steps × problems × G × S × A reward rows, no duplicates, and
consecutive policy versions. The time from each fault until the run committed its next step is printed
(the README's reliability table comes from this output: `pytest tests/integration/test_chaos.py -s`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from anytime.processes import free_port
from tests.conftest import REPO, anytime_cli
from tests.fixtures.processes import descendants, running

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RUN_TIMEOUT_S = 600
READY_LINE = "Ctrl-C stops everything"


@dataclass
class Up:
    """One `anytime up` process and how to reach its API."""

    proc: subprocess.Popen[str]
    home: Path
    api: str
    output: list[str]

    def client(self) -> httpx.Client:
        key = (self.home / "api-key").read_text().strip()
        return httpx.Client(base_url=self.api, headers={"X-API-Key": key}, timeout=30)

    def pid_of(self, marker: str) -> int:
        """The main process of the service whose command line contains `marker` (its group leader)."""
        for pid in sorted(descendants(self.proc.pid)):
            try:
                argv = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if marker.encode() in b" ".join(argv) and os.getpgid(pid) == pid:
                return pid
        raise LookupError(f"no running service matches {marker!r}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            family = descendants(self.proc.pid)
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=120)
            time.sleep(0.5)
            assert not [pid for pid in family if running(pid)], "anytime up left processes behind"


def _start(home: Path, roots: Path, *options: str, env: dict[str, str] | None = None) -> Up:
    api_port, mlflow_port = free_port(), free_port()
    env = {**os.environ, "ANYTIME_HOME": str(home), "ANYTIME_DATA_ROOTS": str(roots), **(env or {})}
    proc = subprocess.Popen(
        [sys.executable, "-m", "anytime_cli.main", "up", "--api-port", str(api_port),
         "--mlflow-port", str(mlflow_port), "--home", str(home), *options],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    output: list[str] = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        output.append(line)
        if READY_LINE in line:
            # Keep draining its output so the pipe never fills.
            import threading

            threading.Thread(target=lambda: output.extend(proc.stdout or []), daemon=True).start()
            return Up(proc, home, f"http://127.0.0.1:{api_port}", output)
    proc.kill()
    raise AssertionError("anytime up did not start:\n" + "".join(output[-40:]))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("chaos")
    anytime_cli("data", "synth", "--n", "40", "--seed", "5", "--out", str(root / "train.jsonl"))
    anytime_cli("data", "synth", "--n", "8", "--seed", "6", "--out", str(root / "eval.jsonl"))
    return root


@pytest.fixture
def stack_home(workspace: Path, tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "home"


def _config(workspace: Path, model: Path, steps: int) -> dict[str, Any]:
    return {
        "model": str(model),
        "dataset": str(workspace / "train.jsonl"),
        "eval_dataset": str(workspace / "eval.jsonl"),
        "eval_problems": 4,
        "b_max": 64,
        "group_size": 2,
        "num_summaries": 2,
        "summary_max_tokens": 16,
        "problems_per_step": 2,
        "steps": steps,
        "lr": 1e-4,
    }


def _wait(client: httpx.Client, run_id: str, until: Any, timeout_s: float = RUN_TIMEOUT_S) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            run = client.get(f"/v1/runs/{run_id}").json()
        except httpx.HTTPError:  # the API restarting
            time.sleep(1)
            continue
        if until(run):
            return run
        if run.get("status") in ("failed", "cancelled"):
            raise AssertionError(f"run ended {run['status']}: {run.get('error')}")
        time.sleep(0.5)
    raise AssertionError(f"timed out; last seen {run}")


def _check_counts(client: httpx.Client, run_id: str, steps: int) -> int:
    """Exactly steps × problems × G × S × A reward rows, each once; policy versions 1..steps."""
    run = client.get(f"/v1/runs/{run_id}").json()
    config = run["config"]
    budgets = client.get(f"/v1/runs/{run_id}/budgets").json()["items"]
    rows: list[dict[str, Any]] = []
    while True:
        page = client.get(f"/v1/runs/{run_id}/rewards", params={"offset": len(rows), "limit": 500}).json()
        rows += page["items"]
        if len(rows) >= page["total"]:
            break
    expected = steps * config["problems_per_step"] * config["group_size"] * len(budgets) * 2
    keys = Counter(
        (r["step"], r["problem_id"], r["trace_index"], r["budget_index"], r["summary_index"]) for r in rows
    )
    assert len(rows) == expected, (len(rows), expected)
    assert max(keys.values()) == 1, "a reward row was counted twice"
    metrics = client.get(f"/v1/runs/{run_id}/metrics").json()["items"]
    assert [m["step"] for m in metrics] == list(range(steps))
    assert [m["policy_version"] for m in metrics] == list(range(1, steps + 1))
    assert run["policy_version"] == steps and run["status"] == "succeeded"
    return expected


def _recovery_s(client: httpx.Client, run_id: str, step_before: int, since: float) -> float:
    """Seconds from a fault until the run committed a step after `step_before`."""
    _wait(client, run_id, lambda r: r["step"] > step_before or r["status"] == "succeeded")
    return time.monotonic() - since


def test_killed_driver_workers_and_redis_do_not_stop_a_run(
    workspace: Path, stack_home: Path, tiny_model_dir: Path
) -> None:
    steps = 5
    up = _start(stack_home, workspace.parent)
    report: list[str] = []
    try:
        with up.client() as client:
            # Immediately after `up` answers, as a new user would: the MLflow store is already initialised.
            created = client.post("/v1/runs", json=_config(workspace, tiny_model_dir, steps))
            assert created.status_code == 201, created.text
            run_id = created.json()["id"]
            run = _wait(client, run_id, lambda r: r["step"] >= 0)
            for marker in ("control@", "rollout@", "learn@"):
                os.kill(up.pid_of(marker), signal.SIGKILL)
            killed_at = time.monotonic()
            took = _recovery_s(client, run_id, run["step"], killed_at)
            report.append(f"SIGKILL driver + rollout + learn workers at step {run['step']}: {took:.0f} s")
            run = _wait(client, run_id, lambda r: r["step"] >= 2)
            os.kill(up.pid_of("redis-server"), signal.SIGKILL)
            killed_at = time.monotonic()
            took = _recovery_s(client, run_id, run["step"], killed_at)
            report.append(f"SIGKILL redis-server at step {run['step']}: {took:.0f} s")
            _wait(client, run_id, lambda r: r["status"] == "succeeded")
            rows = _check_counts(client, run_id, steps)
            report.append(f"run succeeded: {rows} reward rows ({steps} steps x 2 x 2 x S x 2), no duplicates")
    finally:
        up.stop()
        print("\n".join(["", "chaos report:", *report]))
    log = "".join(up.output)
    assert "started again" in log, log[-3000:]


def test_a_stack_stopped_mid_run_finishes_the_run_when_started_again(
    workspace: Path, stack_home: Path, tiny_model_dir: Path
) -> None:
    steps = 4
    up = _start(stack_home, workspace.parent)
    try:
        with up.client() as client:
            created = client.post("/v1/runs", json=_config(workspace, tiny_model_dir, steps))
            assert created.status_code == 201, created.text
            run_id = created.json()["id"]
            run = _wait(client, run_id, lambda r: r["step"] >= 0)
    finally:
        up.stop()
    stopped_at = time.monotonic()
    up = _start(stack_home, workspace.parent)
    try:
        with up.client() as client:
            assert client.get(f"/v1/runs/{run_id}").json()["status"] == "running"  # left resumable
            took = _recovery_s(client, run_id, run["step"], stopped_at)
            _wait(client, run_id, lambda r: r["status"] == "succeeded")
            rows = _check_counts(client, run_id, steps)
    finally:
        up.stop()
    print(f"\nSIGTERM the stack at step {run['step']}, up again: next step {took:.0f} s later; {rows} rows")


def _rollouts_started(log: Path) -> list[str]:
    """The `rollout started` lines of a rollout worker's log."""
    return [line for line in log.read_text(errors="replace").splitlines() if "rollout started" in line]


def test_a_killed_rollout_worker_re_runs_only_its_shard_of_a_pipelined_run(
    workspace: Path, stack_home: Path, tiny_model_dir: Path
) -> None:
    """Two rollout workers share every step (shards sized from the live workers), the next step generates
    while the learner trains (max_staleness 1); one worker is SIGKILLed mid-shard: only that shard runs
    again, and the run ends with exact counts."""
    steps = 4
    # A short visibility timeout so the killed shard comes back quickly (longer than any tiny shard).
    up = _start(
        stack_home, workspace.parent, "--rollout-workers", "2", env={"ANYTIME_VISIBILITY_TIMEOUT_S": "20"}
    )
    logs = stack_home / "logs"
    try:
        with up.client() as client:
            config = {**_config(workspace, tiny_model_dir, steps), "problems_per_step": 4, "max_staleness": 1}
            created = client.post("/v1/runs", json=config)
            assert created.status_code == 201, created.text
            run_id = created.json()["id"]
            _wait(client, run_id, lambda r: r["step"] >= 0)
            # SIGKILL the second worker while it generates a shard (a start without its `rollout stored`).
            deadline = time.monotonic() + RUN_TIMEOUT_S
            victim = logs / "rollout-2.log"
            while time.monotonic() < deadline:
                text = victim.read_text(errors="replace")
                if text.count("rollout started") > text.count("rollout stored"):
                    os.kill(up.pid_of("rollout-2@"), signal.SIGKILL)
                    break
                time.sleep(0.02)
            else:
                raise AssertionError("the second rollout worker never started a shard")
            killed_at = time.monotonic()
            _wait(client, run_id, lambda r: r["status"] == "succeeded")
            took = time.monotonic() - killed_at
            rows = _check_counts(client, run_id, steps)
            metrics = client.get(f"/v1/runs/{run_id}/metrics").json()["items"]
    finally:
        up.stop()
    started = _rollouts_started(logs / "rollout.log") + _rollouts_started(logs / "rollout-2.log")
    shards = [int(m["metrics"]["pipeline/shards"]) for m in metrics]
    assert shards[0] == 2, shards  # sized from the live workers (later steps may count one while it restarts)
    # Each shard started once, and the killed one once more.
    assert len(started) == sum(shards) + 1, (shards, started)
    assert [m["metrics"]["pipeline/policy_lag"] for m in metrics] == [0.0] + [1.0] * (steps - 1)
    print(f"\nSIGKILL 1 of 2 rollout workers mid-shard, k 1: {took:.0f} s to the end, {rows} rows")
