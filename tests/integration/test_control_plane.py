"""A run end to end through the real stack: REST → SQL → Celery (rollout, verify, learn, eval, control) →
Redis → MLflow, on the tiny model. BRPO on SQLite, GRPO on PostgreSQL; a cancel stops a run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from anytime.processes import free_port
from anytime_cli.stack import EmbeddedStack
from tests.conftest import anytime_cli
from tests.fixtures.servers import PostgresServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RUN_TIMEOUT_S = 420


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("e2e-data")
    train, held_out = folder / "train.jsonl", folder / "eval.jsonl"
    anytime_cli("data", "synth", "--n", "40", "--seed", "5", "--out", str(train))
    anytime_cli("data", "synth", "--n", "12", "--seed", "6", "--out", str(held_out))
    return train, held_out


def _config(model: Path, data: tuple[Path, Path], **overrides: Any) -> dict[str, Any]:
    train, held_out = data
    return {
        "model": str(model),
        "dataset": str(train),
        "eval_dataset": str(held_out),
        "eval_problems": 6,
        "b_max": 64,
        "group_size": 2,
        "num_summaries": 2,
        "summary_max_tokens": 16,
        "problems_per_step": 2,
        "steps": 2,
        "lr": 1e-4,
        **overrides,
    }


def _postgres_url(server: PostgresServer, name: str) -> str:
    from sqlalchemy import create_engine, text

    admin = create_engine(server.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        connection.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return server.url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmbeddedStack]:
    database = None
    if request.param == "postgresql":
        database = _postgres_url(request.getfixturevalue("postgres_server"), "anytime_e2e")
    # The models and datasets are pytest temporary folders: the API takes run inputs from there.
    embedded = EmbeddedStack(
        tmp_path_factory.mktemp("stack") / "home",
        api_port=free_port(),
        mlflow_port=free_port(),
        ui=False,
        database=database,
        data_roots=(tmp_path_factory.getbasetemp(),),
    )
    with embedded.running():
        yield embedded


def _client(stack: EmbeddedStack) -> httpx.Client:
    return httpx.Client(
        base_url=stack.api_url, headers={"Authorization": f"Bearer {stack.api_key()}"}, timeout=30
    )


def _wait(client: httpx.Client, run_id: str, stack: EmbeddedStack) -> dict[str, Any]:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        run = client.get(f"/v1/runs/{run_id}").json()
        if run["status"] in {"succeeded", "failed", "cancelled"}:
            return run
        time.sleep(1.0)
    logs = "\n".join(
        f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted((stack.home / "logs").glob("*.log"))
    )
    raise AssertionError(f"run {run_id} did not end in {RUN_TIMEOUT_S} s\n{logs}")


def test_a_two_step_run_succeeds_with_rewards_metrics_checkpoints_and_a_curve(
    stack: EmbeddedStack, warm_model_dir: Path, data: tuple[Path, Path]
) -> None:
    algorithm = "brpo" if stack.database is None else "grpo"
    config = _config(warm_model_dir, data, algorithm=algorithm, name=f"e2e {algorithm}")
    if algorithm == "grpo":
        config.pop("num_summaries")
    with _client(stack) as client:
        created = client.post("/v1/runs", json=config)
        assert created.status_code == 201, created.text
        run = _wait(client, created.json()["id"], stack)
        assert run["status"] == "succeeded", run["error"]
        assert (run["step"], run["policy_version"]) == (1, 2)
        run_id = run["id"]

        budgets = client.get(f"/v1/runs/{run_id}/budgets").json()["items"]
        s, a = (4, 2) if algorithm == "brpo" else (1, 1)
        assert [b["tokens"] for b in budgets] == ([16, 32, 48, 64] if algorithm == "brpo" else [64])
        rewards = client.get(f"/v1/runs/{run_id}/rewards", params={"limit": 500}).json()
        # steps × problems × G × S × A summaries, each with its verdict
        assert rewards["total"] == 2 * 2 * 2 * s * a
        assert {r["budget_index"] for r in rewards["items"]} == set(range(s))
        assert all(
            r["status"] in {"correct", "incorrect", "unparseable", "timeout", "error"}
            for r in rewards["items"]
        )
        first_budget = client.get(f"/v1/runs/{run_id}/rewards", params={"step": 1, "budget_index": 0}).json()
        assert first_budget["total"] == 2 * 2 * a

        metrics = client.get(f"/v1/runs/{run_id}/metrics").json()["items"]
        assert [m["step"] for m in metrics] == [0, 1] and [m["policy_version"] for m in metrics] == [1, 2]
        # The training-log anytime score is on the evaluation grid: logged only where every grid budget can be
        # scored (not for GRPO's one budget); the prior-weighted objective always is.
        assert "anytime/objective" in metrics[0]["metrics"] and "loss/policy" in metrics[0]["metrics"]
        assert "anytime/score_coverage" in metrics[0]["metrics"]
        checkpoints = client.get(f"/v1/runs/{run_id}/checkpoints").json()["items"]
        assert [c["policy_version"] for c in checkpoints] == [1, 2]
        assert all((Path(c["path"]) / "config.json").is_file() for c in checkpoints)
        # The end of the run promoted its best evaluated checkpoint (only v2 is evaluated and has one).
        assert run["promoted_checkpoint_id"] == next(c["id"] for c in checkpoints if c["policy_version"] == 2)

        curve = client.get(f"/v1/runs/{run_id}/curve").json()["evaluations"]
        assert [e["policy_version"] for e in curve] == [0, 2]
        assert curve[0]["budgets"] == [16, 32, 48, 64] and len(curve[0]["accuracy"]) == 4
        # Sampled as the authors do by default: 6 problems × 4 traces at 0.6, with intervals.
        assert (curve[0]["num_problems"], curve[0]["num_samples"], curve[0]["temperature"]) == (6, 4, 0.6)
        bands = zip(
            curve[0]["accuracy_ci_low"], curve[0]["accuracy"], curve[0]["accuracy_ci_high"], strict=True
        )
        assert all(lo <= acc <= hi for lo, acc, hi in bands)
        png = client.get(f"/v1/runs/{run_id}/curve", params={"format": "png"})
        assert png.headers["content-type"] == "image/png" and png.content.startswith(b"\x89PNG")

        # Every step kept its 2 problems' traces in full (both of its problems × G = 2), each answer with the
        # verdict the rewards table holds; every evaluation its first 2 problems' k = 4 traces.
        samples = client.get(f"/v1/runs/{run_id}/samples", params={"limit": 200}).json()
        assert samples["total"] == 2 * 2 * 2
        reward_of = {
            (r["step"], r["problem_id"], r["trace_index"], r["budget_index"], r["summary_index"]): r
            for r in rewards["items"]
        }
        for trace in samples["items"]:
            assert trace["prompt"] and len(trace["cuts"]) >= 1
            answers = [answer for cut in trace["cuts"] for answer in cut["answers"]]
            assert len(answers) == s * a
            for answer in answers:
                key = (trace["step"], trace["problem_id"], trace["trace_index"], answer["budget_index"])
                stored = reward_of[(*key, answer["summary_index"])]
                assert (answer["reward"], answer["status"]) == (stored["reward"], stored["status"])
                assert answer["advantage"] is not None
        evaluated = client.get(f"/v1/runs/{run_id}/samples", params={"kind": "eval", "limit": 200}).json()
        assert evaluated["total"] == 2 * 2 * 4
        assert sorted({(e["step"], e["policy_version"]) for e in evaluated["items"]}) == [(-1, 0), (1, 2)]

    from mlflow import MlflowClient

    tracked = MlflowClient(tracking_uri=stack.mlflow_uri).get_run(run["mlflow_run_id"])
    assert tracked.data.tags["algorithm"] == algorithm and tracked.info.status == "FINISHED"
    assert tracked.data.params["steps"] == "2"
    # GRPO's one training budget cannot score the evaluation grid: its training log has the objective only.
    logged = "anytime/score" if algorithm == "brpo" else "anytime/objective"
    history = MlflowClient(tracking_uri=stack.mlflow_uri).get_metric_history(run["mlflow_run_id"], logged)
    assert [m.step for m in history] == [1, 2]
    if algorithm == "grpo":
        assert "anytime/score" not in tracked.data.metrics
    assert {"Eval/accuracy/budget_64", "Eval/accuracy_ci_low/budget_64", "Eval/anytime_score_ci_high"} <= set(
        tracked.data.metrics
    )
    artifacts = {
        a.path for a in MlflowClient(tracking_uri=stack.mlflow_uri).list_artifacts(run["mlflow_run_id"])
    }
    assert {"config.json", "curves", "samples"} <= artifacts
    tables = {
        a.path
        for a in MlflowClient(tracking_uri=stack.mlflow_uri).list_artifacts(run["mlflow_run_id"], "samples")
    }
    assert tables == {
        f"samples/{name}.json" for name in ("step_000000", "step_000001", "eval_v000000", "eval_v000002")
    }


def test_cancel_stops_a_run_at_a_task_boundary(
    stack: EmbeddedStack, warm_model_dir: Path, data: tuple[Path, Path]
) -> None:
    if stack.database is not None:
        pytest.skip("once is enough (SQLite)")
    with _client(stack) as client:
        run_id = client.post(
            "/v1/runs", json=_config(warm_model_dir, data, steps=50, eval_dataset=None)
        ).json()["id"]
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while client.get(f"/v1/runs/{run_id}").json()["step"] < 0 and time.monotonic() < deadline:
            time.sleep(0.5)
        cancelled = client.post(f"/v1/runs/{run_id}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        run = _wait(client, run_id, stack)
        assert run["status"] == "cancelled" and run["step"] < 49
        again = client.post(f"/v1/runs/{run_id}/cancel")
        assert again.status_code == 409
