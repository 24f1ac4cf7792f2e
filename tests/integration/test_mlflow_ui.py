"""The pages a newcomer opens, rendered by a real browser: the MLflow UI (the embedded stack's server, on a
store holding two small runs logged as the run driver logs them) and the API's /docs page.

Headless Chromium from the system's packages (`apt-get install chromium`; `.ci/run` installs it where it
can); without one the tests skip and say so. The MLflow UI is a single-page app: `--dump-dom` returns the
DOM after the page's scripts ran (within a virtual time budget), retried a few times on a slow machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape
from pathlib import Path

import httpx
import pytest

from anytime.contracts.evaluation import EvalResult
from anytime.processes import free_port, spawn, stop, wait_ready
from anytime.run_config import RunConfig
from anytime.run_plan import RunPlan, resolved_params
from anytime.samples import RolloutSample, rollout_sample, table_rows
from anytime.tracking import START_VS_END, MlflowTracker, experiment_url, log_start_vs_end
from anytime.verdict import Status, VerdictRecord
from anytime_cli.stack import MLFLOW_JOB_EXECUTION, mlflow_server_argv
from tests.fixtures.synthetic import make_trajectory

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM = next((found for name in BROWSERS if (found := shutil.which(name))), None)
needs_browser = pytest.mark.skipif(
    CHROMIUM is None, reason=f"no headless browser ({', '.join(BROWSERS)}): apt-get install chromium"
)
RUNS = {"brpo-tiny": "brpo", "grpo-tiny": "grpo"}
TRAINING_METRICS = ("advantage/thinking/mean", "batch/num_trees", "reward/budget_64/mean")


def page_text(url: str, profile: Path, expect: tuple[str, ...], attempts: int = 3) -> str:
    """The rendered page's text (tags, scripts and styles stripped), once every `expect` is in it or after
    `attempts` loads; a fresh profile each time, as a newcomer's browser."""
    assert CHROMIUM is not None
    text = ""
    for attempt in range(attempts):
        argv = [
            CHROMIUM,
            "--headless",
            "--disable-gpu",
            "--no-sandbox",  # root in containers and CI
            "--no-first-run",
            f"--user-data-dir={profile / str(attempt)}",
            f"--virtual-time-budget={20_000 * (attempt + 1)}",
            "--dump-dom",
            url,
        ]
        dom = subprocess.run(argv, capture_output=True, text=True, timeout=180).stdout
        dom = re.sub(r"<(script|style)\b[^>]*>.*?</\1>", " ", dom, flags=re.DOTALL)
        text = unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom)))
        if all(word in text for word in expect):
            break
    return text


@dataclass
class TrackedStore:
    url: str
    experiment_id: str
    run_ids: dict[str, str]
    server_pid: int


def _evaluation(name: str, version: int, accuracy: list[float]) -> EvalResult:
    """What the eval task answers for a 2-budget grid (no model runs here)."""
    return EvalResult(
        run_id=name,
        policy_version=version,
        budgets=[32, 64],
        accuracy=accuracy,
        accuracy_ci_low=[a - 0.25 for a in accuracy],
        accuracy_ci_high=[a + 0.25 for a in accuracy],
        anytime_score=sum(accuracy) / 2,
        anytime_score_ci_low=0.0,
        anytime_score_ci_high=1.0,
        num_problems=4,
        num_samples=4,
        temperature=0.6,
        seed=0,
        per_problem={"a": accuracy},
        statuses={"correct": 6, "incorrect": 10},
        mean_thinking_length=40.0,
        closed_share=0.5,
    )


# The evaluation's metric names as the contract makes them (the anytime score, the accuracy at b_max and
# its band's low edge), so a renamed prefix is what the page is searched for.
EVALUATION_METRICS = tuple(
    m for m in _evaluation("x", 0, [0.0, 0.0]).metrics() if m.endswith(("anytime_score", "/budget_64"))
)


def _log_like_the_driver(tracker: MlflowTracker, name: str, algorithm: str) -> str:
    """What the driver sends MLflow for a two-step run evaluated before and after (no training here)."""
    config = RunConfig(
        name=name,
        model="tiny",
        dataset="train.jsonl",
        algorithm=algorithm,
        b_max=64,
        eval_dataset="eval.jsonl",
    )
    run = tracker.start_run(
        name, resolved_params(config, RunPlan.from_config(config)), {"algorithm": algorithm}
    )
    tracker.log_dict(run, config.model_dump(mode="json"), "config.json")
    evaluations = []
    for version, accuracy in ((0, [0.25, 0.5]), (2, [0.5, 0.75])):
        if version:
            tracker.log_metrics(run, {m: 0.1 * version for m in TRAINING_METRICS}, step=version)
            tracker.log_table(run, table_rows(_samples(name)), f"samples/step_{version - 1:06d}.json")
        evaluations.append(_evaluation(name, version, accuracy))
        tracker.log_metrics(run, evaluations[-1].metrics(), step=version)
        log_start_vs_end(tracker, run, evaluations, name)
    tracker.end_run(run, "FINISHED")
    return run


# A distinctive answer text, so the page is searched for the table's own rows.
ANSWER = "the answer is \\boxed{{{}}}"


def _samples(name: str) -> list[RolloutSample]:
    """Two traces of one problem as the learner returns them (a 2-budget grid, A = 1)."""
    out = []
    for trace in range(2):
        trajectory = make_trajectory(
            run_id=name, step=1, problem_id="p-alpha", trace_index=trace, prompt_ids=[1],
            thinking_ids=[10, 11, 12, 13], finish_reason="length", budgets=[2, 4], num_summaries=1,
            ellipsis_ids=[90], delimiter_ids=[91], summaries=[[[40 + trace]], [[50 + trace]]],
        )  # fmt: skip
        cuts = [
            cut.model_copy(
                update={
                    "summaries": [
                        s.model_copy(update={"text": ANSWER.format(f"{c}{trace}7")}) for s in cut.summaries
                    ]
                }
            )
            for c, cut in enumerate(trajectory.cuts)
        ]
        trajectory = trajectory.model_copy(update={"cuts": cuts})
        verdicts = {
            trajectory.summary_id(c, 0): VerdictRecord(
                status=Status.CORRECT if c else Status.INCORRECT,
                formatted=True,
                reward=float(c),
                extracted=f"{c}{trace}7",
            )
            for c in range(2)
        }
        out.append(
            rollout_sample(
                trajectory,
                verdicts,
                lambda ids: " ".join(f"w{i}" for i in ids),
                kind="train",
                thinking_advantages=[-0.5, 0.5],
                summary_advantages=[[-0.5], [0.5]],
            )
        )
    return out


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrackedStore]:
    """The stack's MLflow server (its argv and environment) on a store with two runs."""
    home = tmp_path_factory.mktemp("mlflow")
    store, artifacts = f"sqlite:///{home / 'mlflow.db'}", (home / "artifacts").as_uri()
    tracker = MlflowTracker(store, artifacts)
    run_ids = {name: _log_like_the_driver(tracker, name, algorithm) for name, algorithm in RUNS.items()}
    port = free_port()
    log = home / "mlflow.log"
    env = {**os.environ, MLFLOW_JOB_EXECUTION: "false"}
    with log.open("ab") as out:
        proc = spawn(mlflow_server_argv(store, artifacts, port), out, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, "mlflow", lambda: _answers(f"{url}/health"), 120, log, poll_s=0.2)
        yield TrackedStore(url, tracker.experiment_id, run_ids, proc.pid)
    finally:
        stop(proc, "mlflow", 20, group=True)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_the_stacks_mlflow_server_is_two_processes(tracked: TrackedStore) -> None:
    """One `mlflow server` and its one uvicorn worker: no job runner, no huey consumers (there were 10)."""
    listed = subprocess.run(
        ["ps", "-o", "args=", "-g", str(tracked.server_pid)], capture_output=True, text=True
    )
    processes = listed.stdout.splitlines()
    assert 1 <= len(processes) <= 2 and "mlflow" in processes[0], processes


@needs_browser
def test_the_experiment_link_opens_on_both_runs(tracked: TrackedStore, tmp_path: Path) -> None:
    url = experiment_url(tracked.url, tracked.experiment_id)
    text = page_text(url, tmp_path, tuple(RUNS))
    assert all(name in text for name in RUNS), text[:2000]
    assert "Run Name" in text, "not the runs table: " + text[:2000]


@needs_browser
def test_comparing_the_runs_shows_their_evaluation_and_resolved_params(
    tracked: TrackedStore, tmp_path: Path
) -> None:
    runs = urllib.parse.quote(json.dumps(list(tracked.run_ids.values())))
    experiments = urllib.parse.quote(json.dumps([tracked.experiment_id]))
    url = f"{tracked.url}/#/compare-runs?runs={runs}&experiments={experiments}"
    assert len(EVALUATION_METRICS) >= 3, EVALUATION_METRICS
    text = page_text(url, tmp_path, (*RUNS, *EVALUATION_METRICS))
    missing = [word for word in (*RUNS, *EVALUATION_METRICS, TRAINING_METRICS[0]) if word not in text]
    assert not missing, f"{missing} not on the compare page: {text[:3000]}"
    # GRPO's resolved values (S = 1, A = 1, the v2 baseline, grpo summaries), never "None".
    assert re.search(r"baseline v2 brpo|baseline brpo v2", text), text[:3000]
    assert re.search(r"summary_mode grpo brpo|summary_mode brpo grpo", text), text[:3000]


@needs_browser
def test_a_steps_samples_show_as_a_table_on_the_runs_page(tracked: TrackedStore, tmp_path: Path) -> None:
    """The run's Artifacts tab, opened at the step's samples table: its rows (problem, answers, verdicts)."""
    run = tracked.run_ids["brpo-tiny"]
    url = f"{tracked.url}/#/experiments/{tracked.experiment_id}/runs/{run}/artifacts/samples/step_000001.json"
    expect = ("View as table", "p-alpha", ANSWER.format("007"), "incorrect", "thinking_advantage")
    text = page_text(url, tmp_path, expect)
    missing = [word for word in expect if word not in text]
    assert not missing, f"{missing} not on the run's samples page: {text[:3000]}"


def test_each_run_has_its_start_vs_end_curve(tracked: TrackedStore) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracked.url)
    for run_id in tracked.run_ids.values():
        assert START_VS_END in {a.path for a in client.list_artifacts(run_id, "curves")}


@pytest.fixture
def api_url(tmp_path: Path) -> Iterator[str]:
    """The API in a thread (open reads on loopback: a browser sends no API key)."""
    import uvicorn

    from services.api.app import create_app
    from services.api.settings import ApiSettings

    settings = ApiSettings(
        ANYTIME_DATABASE_URL=f"sqlite:///{tmp_path / 'anytime.db'}",
        ANYTIME_REDIS_URL="redis://127.0.0.1:1/0",
        api_key="browser-test-key",
        open_reads=True,
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(RuntimeError):
            thread.join(30)


@needs_browser
def test_the_api_docs_page_loads(api_url: str, tmp_path: Path) -> None:
    """/docs is FastAPI's Swagger UI page; its script and style come from a CDN (cdn.jsdelivr.net), which an
    offline machine cannot reach, so what is checked is the page and the schema it loads, not the widgets."""
    page = httpx.get(f"{api_url}/docs", timeout=10)
    assert page.status_code == 200 and 'id="swagger-ui"' in page.text
    assert "url: '/openapi.json'" in page.text or '"url": "/openapi.json"' in page.text, page.text
    dom_text = page_text(f"{api_url}/docs", tmp_path / "docs", ("Anytime - docs",), attempts=1)
    assert "Anytime - docs" in dom_text, dom_text[:2000]
    schema = page_text(f"{api_url}/openapi.json", tmp_path / "schema", ("/v1/runs",), attempts=1)
    assert '"title":"Anytime"' in schema.replace(" ", "") and "/v1/runs" in schema, schema[:2000]
