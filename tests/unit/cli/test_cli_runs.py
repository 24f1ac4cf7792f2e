"""`anytime runs …` against the real API app (migrated SQLite, recording scheduler): show, watch, resume,
promote, the multi-run curve overlay; and every failure as one line on stderr with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from anytime.db import repository
from anytime.db.models import RunStatus
from anytime.db.session import session_scope
from anytime_cli import curves, runs
from anytime_cli.client import ApiClient, api_message
from anytime_cli.main import main
from anytime_cli.up import export_line
from tests.conftest import anytime_cli
from tests.unit.api.test_api_routes import Api, api, migrated_db

__all__ = ["api", "migrated_db"]  # fixtures this module uses

Cli = Callable[..., tuple[int, str, str]]
KEY_FILE = Path("/home/me/build/api-key")


@pytest.fixture
def cli(api: Api, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    """`cli(*args, key=True)`: the real `main` (its one-line errors and exit codes) in this process, its
    client talking to the test app with the API key, or with none (`key=False`)."""

    def run(*args: str, key: bool = True) -> tuple[int, str, str]:
        def client(url: str | None = None, api_key: str | None = None) -> ApiClient:
            made = ApiClient("http://testserver", "k" if key else None, key_file=KEY_FILE)
            made.http = cast(httpx.Client, api.client if key else api.anonymous)
            return made

        monkeypatch.setattr(ApiClient, "from_settings", staticmethod(client))
        monkeypatch.setattr(sys, "argv", ["anytime", *args])
        with pytest.raises(SystemExit) as done:
            main()
        out = capsys.readouterr()
        return int(done.value.code or 0), out.out, out.err

    return run


def one_line_error(code: int, err: str) -> str:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("anytime: error: "), (code, err)
    assert "Traceback" not in err
    return lines[0]


def evaluate(api: Api, run_id: str, version: int, accuracy: list[float], sampled: bool = True) -> None:
    with session_scope(api.sessions) as session:
        samples = (
            repository.SampledEvaluation(
                4, 4, 0.6, 0, [a - 0.1 for a in accuracy], [a + 0.1 for a in accuracy], 0.1, 0.9, {}
            )
            if sampled
            else None
        )
        repository.record_evaluation(
            session, run_id, version, version - 1, [16, 32, 48, 64], accuracy, sum(accuracy) / 4, samples
        )


def commit_step(api: Api, run_id: str, step: int, metrics: dict[str, float] | None = None) -> None:
    with session_scope(api.sessions) as session:
        repository.record_step(session, run_id, step, step + 1, metrics or {"reward/budget_16/mean": 0.25})
        repository.set_policy_version(session, run_id, step + 1, step)


def write_eval(folder: Path) -> None:
    rows = [json.dumps({"id": f"e{i}", "problem": f"{i} + 2?", "answer": i + 2}) for i in range(6)]
    (folder / "data" / "eval.jsonl").write_text("\n".join(rows) + "\n")


# ------------------------------------------------------------------------------------------ show


def test_show_gives_status_progress_promotion_evaluation_metrics_and_config(
    api: Api, cli: Cli, tmp_path: Path
) -> None:
    run_id = api.create(name="first", steps=4)["id"]
    api.set_status(run_id, RunStatus.RUNNING)
    commit_step(api, run_id, 0, {"anytime/score": 0.375, "reward/mean": 0.5})
    evaluate(api, run_id, 1, [0.2, 0.4, 0.6, 0.8])
    folder = tmp_path / "runs" / run_id / "policy-000001" / "model"
    folder.mkdir(parents=True)
    with session_scope(api.sessions) as session:
        checkpoint = repository.record_checkpoint(session, run_id, 1, 0, str(folder)).id
    promoted = api.client.post(f"/v1/runs/{run_id}/promote", json={"checkpoint_id": checkpoint})
    assert promoted.status_code == 200, promoted.text

    code, out, err = cli("runs", "show", run_id)
    assert code == 0, err
    assert f"run          {run_id}  first" in out
    assert "status       running: step 2/4" in out and "progress     1/4 steps, policy version 1" in out
    assert f"promoted     checkpoint {checkpoint} (policy version 1, step 0) at {folder}" in out
    assert f'model "run:{run_id}"' in out and f"checkpoints  1 saved, 1 on disk (ids {checkpoint})" in out
    assert "evaluation   version 1: accuracy by budget 16:0.200 32:0.400 48:0.600 64:0.800" in out
    assert "anytime 0.500 [0.100, 0.900] (k=4, T=0.6, 4 problems)" in out
    assert "metrics      step 1, policy version 1:" in out and "anytime/score  0.375" in out
    assert "config (resolved):" in out and "  b_max: 64" in out and "  steps: 4" in out
    # Fields the config left unset show what the run's plan resolved them to, not null.
    assert "  baseline: brpo" in out and "  summary_mode: brpo" in out and "loss_normalizer: null" not in out


def test_show_of_a_new_run_says_how_to_promote(api: Api, cli: Cli) -> None:
    run_id = api.create()["id"]
    code, out, _ = cli("runs", "show", run_id)
    assert code == 0 and "status       queued" in out and "progress     0/" in out
    assert f"promoted     none (choose one with `anytime runs promote {run_id}`)" in out
    assert "metrics" not in out and "evaluation " not in out


# ------------------------------------------------------------------------------------------ watch


def test_watch_announces_each_phase_and_the_final_evaluation_before_the_outcome(
    api: Api, cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_eval(tmp_path)
    run_id = api.create(steps=2, eval_dataset="data/eval.jsonl", eval_problems=4)["id"]

    def finish() -> None:
        evaluate(api, run_id, 2, [0.3, 0.4, 0.5, 0.6])
        api.set_status(run_id, RunStatus.SUCCEEDED)

    moves: Iterator[Callable[[], None]] = iter(
        [
            lambda: api.set_status(run_id, RunStatus.RUNNING),  # the warm start is being evaluated
            lambda: evaluate(api, run_id, 0, [0.1, 0.2, 0.3, 0.4]),  # step 1 begins
            lambda: commit_step(api, run_id, 0),
            lambda: commit_step(api, run_id, 1),  # the final evaluation begins
            finish,
        ]
    )
    monkeypatch.setattr(runs.time, "sleep", lambda _s: next(moves)())
    code, out, err = cli("runs", "watch", run_id)
    assert code == 0, err
    lines = out.splitlines()
    expected = [
        f"{run_id}: queued",
        f"{run_id}: evaluating the warm start…",
        f"{run_id}: step 1/2: rollouts, grading, update…",
        f"{run_id}: step 2/2: rollouts, grading, update… (step 1 rewards by budget [16:0.25])",
        f"{run_id}: final evaluation… (step 2 rewards by budget [16:0.25])",
    ]
    assert lines[: len(expected)] == expected
    assert lines[-2].startswith(f"{run_id}: final evaluation, version 2: accuracy by budget 16:0.300")
    assert lines[-1] == f"run {run_id} succeeded"


def test_phase_names_what_a_run_is_doing() -> None:
    run: dict[str, Any] = {"status": "running", "step": -1, "config": {"steps": 3, "eval_dataset": "e"}}
    assert curves.phase(run, 0) == "evaluating the warm start…"
    assert curves.phase(run, 1) == "step 1/3: rollouts, grading, update…"
    assert curves.phase({**run, "step": 2}, 1) == "final evaluation…"
    nested = {**run, "config": {"train": {"steps": 3}}}  # a sectioned config: no eval_dataset
    assert curves.phase(nested, 0) == "step 1/3: rollouts, grading, update…"
    assert curves.phase({**run, "status": "failed"}, 0) == "failed"


# ------------------------------------------------------------------------------------------ resume, promote


def test_resume_queues_a_failed_run_again_and_says_where_it_continues(api: Api, cli: Cli) -> None:
    run_id = api.create(steps=4)["id"]
    api.set_status(run_id, RunStatus.RUNNING)
    commit_step(api, run_id, 0)
    api.set_status(run_id, RunStatus.FAILED)
    code, out, err = cli("runs", "resume", run_id)
    assert code == 0, err
    assert out.strip() == f"run {run_id}: queued, continuing at step 2/4"
    assert api.scheduler.sent[-1] == run_id


def test_promote_a_given_checkpoint_or_the_best(api: Api, cli: Cli, tmp_path: Path) -> None:
    run_id = api.create()["id"]
    ids = {}
    with session_scope(api.sessions) as session:
        for version, score in [(1, 0.5), (2, 0.7)]:
            folder = tmp_path / "runs" / run_id / f"policy-{version:06d}" / "model"
            folder.mkdir(parents=True)
            ids[version] = repository.record_checkpoint(session, run_id, version, version - 1, str(folder)).id
            repository.record_evaluation(session, run_id, version, version - 1, [64], [score], score)
    code, out, _ = cli("runs", "promote", run_id, "--checkpoint", str(ids[1]))
    assert code == 0 and f"run {run_id} serves checkpoint {ids[1]} (policy version 1, step 0)" in out
    assert f'model "run:{run_id}" at http://testserver/v1/chat/completions' in out
    code, out, _ = cli("runs", "promote", run_id)
    assert code == 0 and f"serves checkpoint {ids[2]} (policy version 2" in out  # the best score
    assert api.client.get(f"/v1/runs/{run_id}").json()["promoted_checkpoint_id"] == ids[2]


# ------------------------------------------------------------------------------------------ curve


def test_curve_overlays_several_runs_in_one_png(api: Api, cli: Cli, tmp_path: Path) -> None:
    brpo, grpo = api.create(name="BRPO")["id"], api.create(name="GRPO")["id"]
    for run_id, end in ((brpo, 0.6), (grpo, 0.5)):
        evaluate(api, run_id, 0, [0.1, 0.2, 0.3, 0.4])
        evaluate(api, run_id, 3, [0.2, 0.3, 0.4, end])
    png = tmp_path / "both.png"
    code, out, err = cli("runs", "curve", brpo, grpo, "--png", str(png))
    assert code == 0, err
    assert f"run {brpo} (BRPO)" in out and f"run {grpo} (GRPO)" in out and out.count("version") == 2
    assert png.read_bytes().startswith(b"\x89PNG") and f"plot written to {png}" in out


def test_the_overlay_is_each_runs_start_and_end_with_its_intervals(api: Api) -> None:
    run_id = api.create()["id"]
    evaluate(api, run_id, 0, [0.1, 0.2, 0.3, 0.4])
    evaluate(api, run_id, 2, [0.2, 0.3, 0.4, 0.5], sampled=False)
    evaluate(api, run_id, 4, [0.3, 0.4, 0.5, 0.6])
    curve = api.client.get(f"/v1/runs/{run_id}/curve").json()
    start, end = curves.overlay_series({"BRPO": curve, "empty": {"evaluations": []}})
    assert start.label == "BRPO start v0 (k=4, T=0.6, 95 % CI)" and end.label.startswith("BRPO end v4")
    assert list(end.accuracy) == [0.3, 0.4, 0.5, 0.6]
    assert end.low is not None and [round(v, 3) for v in end.low] == [0.2, 0.3, 0.4, 0.5]


# ------------------------------------------------------------------------------------------ errors


def test_a_refused_key_says_where_the_key_comes_from(api: Api, cli: Cli) -> None:
    run_id = api.create()["id"]
    line = one_line_error(*cli("runs", "cancel", run_id, key=False)[::2])
    assert f"POST /v1/runs/{run_id}/cancel → 401" in line and "no API key was sent" in line
    assert "ANYTIME_API_KEY" in line and "/home/me/build/api-key" in line and "export line" in line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["runs", "show", "nope"], "GET /v1/runs/nope → 404: run nope not found"),
        (["runs", "promote", "{run}"], "→ 409: run {run} has no evaluated checkpoint on disk to promote yet"),
        (["runs", "promote", "{run}", "--checkpoint", "99"], "→ 404: "),
        (["runs", "cancel", "{run}"], "→ 409: "),
    ],
)
def test_the_apis_refusal_is_one_line_with_its_message(
    api: Api, cli: Cli, args: list[str], message: str
) -> None:
    run_id = api.create()["id"]
    api.set_status(run_id, RunStatus.RUNNING, RunStatus.SUCCEEDED)
    line = one_line_error(*cli(*[a.format(run=run_id) for a in args])[::2])
    assert message.format(run=run_id) in line


def test_a_bad_run_config_shows_the_apis_field_messages(api: Api, cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("model: models/tiny\ndataset: data/train.jsonl\nb_max: 0\n")
    line = one_line_error(*cli("runs", "create", "--config", str(config))[::2])
    assert "POST /v1/runs → 422: b_max:" in line


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"detail": "run x not found"}, "run x not found"),
        ({"error": {"message": "budget must be > 0", "type": "invalid_request_error"}}, "budget must be > 0"),
        ({"detail": [{"loc": ["body", "b_max"], "msg": "too small"}]}, "b_max: too small"),
    ],
)
def test_api_messages_come_from_fastapi_or_openai_shaped_errors(body: dict[str, Any], message: str) -> None:
    assert api_message(httpx.Response(400, json=body)) == message
    page = httpx.Response(502, text="<html>\n bad gateway </html>")
    assert api_message(page) == "<html> bad gateway </html>"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["runs", "curve", "abc", "--png", "/missing/dir/x.png"], "folder /missing/dir does not exist"),
        (["runs", "curve", "a", "b", "--png", "/missing/dir/x.png"], "folder /missing/dir does not exist"),
        (["runs", "show", "abc"], "cannot reach the API at http://127.0.0.1:9"),
        (["runs", "promote", "abc", "--checkpoint", "0"], "Invalid value for '--checkpoint'"),
        (["runs", "create", "--config", "/no/such/run.yaml"], "config file /no/such/run.yaml does not exist"),
    ],
)
def test_local_failures_are_one_line_and_exit_2(
    args: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANYTIME_API_URL", "http://127.0.0.1:9")  # nothing listens
    result = anytime_cli(*args, check=False)
    assert message in one_line_error(result.returncode, result.stderr)


def test_the_export_line_of_anytime_up_pastes_into_a_shell(tmp_path: Path) -> None:
    key_file = tmp_path / "a home" / "api-key"
    key_file.parent.mkdir()
    key_file.write_text("s3cret\n")
    line = export_line("http://127.0.0.1:8123", key_file)
    assert "s3cret" not in line  # the key is read from its file, not shown
    shell = subprocess.run(
        ["bash", "-c", f'{line}; echo "$ANYTIME_API_URL $ANYTIME_API_KEY"'], capture_output=True, text=True
    )
    assert shell.stdout.strip() == "http://127.0.0.1:8123 s3cret"
