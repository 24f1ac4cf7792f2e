"""An experiment of two tiny arms × two seeds through the real stack: REST → one run per arm × seed on the
same queues as any run → the report (JSON, Markdown, PNG) over the runs' stored evaluations and metrics."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from anytime.processes import free_port
from anytime_cli.stack import EmbeddedStack
from tests.conftest import anytime_cli

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TIMEOUT_S = 900


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    embedded = EmbeddedStack(
        tmp_path_factory.mktemp("exp-stack") / "home",
        api_port=free_port(),
        mlflow_port=free_port(),
        ui=False,
        data_roots=(tmp_path_factory.getbasetemp(),),
    )
    with embedded.running():
        yield embedded


def test_two_arms_by_two_seeds_run_paired_and_report(
    stack: EmbeddedStack, tiny_model_dir: Path, tmp_path: Path
) -> None:
    train, held_out = tmp_path / "train.jsonl", tmp_path / "eval.jsonl"
    anytime_cli("data", "synth", "--n", "20", "--seed", "5", "--out", str(train))
    anytime_cli("data", "synth", "--n", "6", "--seed", "6", "--out", str(held_out))
    spec = {
        "name": "tiny",
        "base": {
            "model": str(tiny_model_dir),
            "dataset": str(train),
            "eval_dataset": str(held_out),
            "eval_problems": 3,
            "eval_samples": 2,
            "b_max": 32,
            "group_size": 2,
            "summary_max_tokens": 8,
            "problems_per_step": 2,
            "steps": 1,
            "lr": 1e-4,
        },
        "arms": {"grpo": {"algorithm": "grpo"}, "brpo": {"algorithm": "brpo", "num_summaries": 2}},
        "seeds": [0, 1],
        "reference": "grpo",
    }
    with httpx.Client(base_url=stack.api_url, headers={"X-API-Key": stack.api_key()}, timeout=60) as client:
        created = client.post("/v1/experiments", json=spec)
        assert created.status_code == 201, created.text
        experiment = created.json()
        assert sorted((r["arm"], r["seed"]) for r in experiment["runs"]) == [
            ("brpo", 0), ("brpo", 1), ("grpo", 0), ("grpo", 1)
        ]  # fmt: skip
        deadline = time.monotonic() + TIMEOUT_S
        while experiment["status"] not in {"succeeded", "failed", "cancelled"}:
            assert time.monotonic() < deadline, experiment
            time.sleep(2)
            experiment = client.get(f"/v1/experiments/{experiment['id']}").json()
        assert experiment["status"] == "succeeded", [r.get("error") for r in experiment["runs"]]
        path = f"/v1/experiments/{experiment['id']}/report"
        report = client.get(path).json()
        markdown = client.get(path, params={"format": "md"})
        png = client.get(path, params={"format": "png"})
    assert markdown.status_code == 200 and "brpo" in markdown.text and "grpo" in markdown.text
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    assert set(report["arms"]) == {"grpo", "brpo"} and report["reference"] == "grpo"
    assert report["seeds"] == [0, 1] and report["excluded_runs"] == []
    assert report["budgets"] == [8, 16, 24, 32] and len(report["results"]) == 2
    assert len(report["comparisons"]) == 1  # brpo against the reference, paired over both seeds
