"""`anytime experiment …` against the real API app (SQLite, recording scheduler, recording MLflow tracker),
and its bad input: one line on stderr, exit 2, no traceback, before the API is asked anything."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from anytime.db import repository
from anytime.db.models import RunStatus
from anytime.db.session import session_scope
from anytime_cli import experiments as cli
from anytime_cli.client import ApiClient
from anytime_cli.errors import CliError
from anytime_cli.main import app
from tests.conftest import anytime_cli
from tests.unit.api.test_api_experiments import Api, _record, api, migrated_db

__all__ = ["api", "migrated_db"]  # fixtures this module uses

runner = CliRunner()


@pytest.fixture
def cli_api(api: Api, monkeypatch: pytest.MonkeyPatch) -> Api:
    """The CLI's client talks to the test app (the TestClient is an httpx client that sends the key)."""

    def client(url: str | None = None, key: str | None = None) -> ApiClient:
        made = ApiClient("http://testserver", None)
        made.http = api.client
        return made

    monkeypatch.setattr(ApiClient, "from_settings", staticmethod(client))
    return api


def write_spec(folder: Path, **changes: Any) -> Path:
    """An experiment file in a folder of its own, with paths relative to it (as a user writes them)."""
    folder.mkdir(exist_ok=True)
    spec = {
        "name": "cli",
        "base": {
            "model": "../models/tiny",
            "dataset": "../data/train.jsonl",
            "eval_dataset": "../data/eval.jsonl",
            "b_max": 64,
            "steps": 2,
            "problems_per_step": 4,
            "eval_problems": 4,
        },
        "arms": {"brpo": {}, "grpo": {"algorithm": "grpo"}},
        "seeds": [0, 1],
        **changes,
    }
    path = folder / "exp.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _invoke(*args: str) -> Any:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def test_create_list_cancel(cli_api: Api, tmp_path: Path) -> None:
    created = _invoke("experiment", "create", "--config", str(write_spec(tmp_path / "specs")))
    experiment_id = created.output.strip()
    stored = cli_api.client.get(f"/v1/experiments/{experiment_id}").json()
    assert len(stored["runs"]) == 4
    assert stored["spec"]["base"]["model"] == str((tmp_path / "models" / "tiny").resolve())
    listed = _invoke("experiment", "list").output
    assert experiment_id in listed and "2×2" in listed and "0/8" in listed and "1 of 1" in listed
    cancelled = _invoke("experiment", "cancel", experiment_id).output
    assert f"experiment {experiment_id}: cancelled" in cancelled and cancelled.count("2 cancelled") == 2
    assert "queued" in _invoke("experiment", "resume", experiment_id).output


def test_create_and_watch_shows_each_arm_then_the_table(
    cli_api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    polls: list[int] = []

    def a_step_passes(_seconds: float) -> None:
        """Between polls the runs move on: all one step in, then all done with their evaluations."""
        polls.append(1)
        runs = cli_api.client.get("/v1/experiments").json()["items"][0]["runs"]
        with session_scope(cli_api.sessions) as session:
            for run in runs:
                if len(polls) == 1:
                    repository.set_status(session, run["run_id"], RunStatus.RUNNING)
                    repository.set_policy_version(session, run["run_id"], 1, 0)
                else:
                    repository.set_policy_version(session, run["run_id"], 2, 1)
                    repository.set_status(session, run["run_id"], RunStatus.SUCCEEDED)
        if len(polls) == 2:
            for run in runs:
                _record(cli_api, run["run_id"], [[0.1, 0.2, 0.3, 0.4], [0.3, 0.4, 0.5, 0.6]])

    monkeypatch.setattr(cli.time, "sleep", a_step_passes)
    result = _invoke("experiment", "create", "--config", str(write_spec(tmp_path / "specs")), "--watch")
    lines = result.output.splitlines()
    assert any(line.startswith("brpo ") and "0/4 steps" in line and "2 queued" in line for line in lines)
    assert any(line.startswith("grpo ") and "2/4 steps" in line and "2 running" in line for line in lines)
    assert any(line.startswith("grpo ") and "4/4 steps" in line and "2 succeeded" in line for line in lines)
    assert "succeeded" in result.output and "|" in result.output  # the report's Markdown table


def test_report_writes_markdown_and_png_atomically(cli_api: Api, tmp_path: Path) -> None:
    experiment_id = _invoke("experiment", "create", "--config", str(write_spec(tmp_path / "specs"))).output
    experiment_id = experiment_id.strip()
    for run in cli_api.client.get(f"/v1/experiments/{experiment_id}").json()["runs"]:
        cli_api.set_status(run["run_id"], RunStatus.RUNNING, RunStatus.SUCCEEDED)
        _record(cli_api, run["run_id"], [[0.1, 0.2, 0.3, 0.4], [0.3, 0.4, 0.5, 0.6]])
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.md").write_text("old")
    result = _invoke(
        *("experiment", "report", experiment_id, "--md", str(out / "report.md"), "--png", str(out / "r.png")),
        *("--json", str(out / "report.json")),
    )
    assert (out / "report.md").read_text() in result.output and "grpo" in (out / "report.md").read_text()
    assert (out / "r.png").read_bytes().startswith(b"\x89PNG")
    numbers = json.loads((out / "report.json").read_text())
    assert numbers == cli_api.client.get(f"/v1/experiments/{experiment_id}/report").json()
    assert sorted(p.name for p in out.iterdir()) == ["r.png", "report.json", "report.md"]  # no temporary file


def test_progress_lines_sum_steps_over_each_arms_seeds() -> None:
    experiment = {
        "arms": ["brpo", "grpo-linear"],
        "runs": [
            {"arm": "brpo", "step": 3, "steps": 4, "status": "running"},
            {"arm": "brpo", "step": -1, "steps": 4, "status": "queued"},
            {"arm": "grpo-linear", "step": 3, "steps": 4, "status": "succeeded"},
            {"arm": "grpo-linear", "step": 3, "steps": 4, "status": "succeeded"},
        ],
    }
    brpo, grpo = cli.progress_lines(experiment)
    assert brpo == f"brpo        [{'#' * 12}{'.' * 12}]     4/8 steps  seeds: 1 queued, 1 running"
    assert grpo.startswith(f"grpo-linear [{'#' * 24}]     8/8 steps") and "2 succeeded" in grpo


def test_an_atomic_write_into_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CliError, match="does not exist; create it first"):
        cli.write_atomically(tmp_path / "nope" / "r.png", b"x")
    with pytest.raises(CliError, match="it is a folder"):
        cli.write_atomically(tmp_path, b"x")


def test_an_atomic_write_leaves_the_mode_a_plain_write_would(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        cli.write_atomically(tmp_path / "new.md", b"x")
        (tmp_path / "kept.md").write_bytes(b"old")
        (tmp_path / "kept.md").chmod(0o640)
        cli.write_atomically(tmp_path / "kept.md", b"new")
    finally:
        os.umask(old)
    assert (tmp_path / "new.md").stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
    assert (tmp_path / "kept.md").stat().st_mode & 0o777 == 0o640 and (
        tmp_path / "kept.md"
    ).read_bytes() == b"new"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["experiment", "report", "abc", "--png", "/no/such/folder/r.png"],
            "folder /no/such/folder does not",
        ),
        (["experiment", "report", "abc", "--md", "/no/such/folder/r.md"], "does not exist; create it first"),
        (["experiment", "create", "--config", "/no/such/exp.yaml"], "does not exist"),
        (["experiment", "list"], "cannot reach the API"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    args: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANYTIME_API_URL", "http://127.0.0.1:9")  # nothing listens
    result = anytime_cli(*args, check=False)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("anytime: error:") and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
