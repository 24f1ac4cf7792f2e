"""`anytime science`: the paper's ablations as one paired experiment, and carrying it on where it stopped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

import httpx

from anytime.brpo.config import PAPER_ARMS
from anytime.db.models import RunStatus
from anytime.run_config import RunConfig
from anytime_cli import science
from anytime_cli.client import ApiClient
from tests.unit.api.test_api_experiments import Api, api, migrated_db

__all__ = ["api", "migrated_db"]  # fixtures this module uses


def _spec(tmp_path: Path, seeds: list[int]) -> dict[str, object]:
    return science.experiment_spec(
        Path("models/tiny"), Path("data/train.jsonl"), Path("data/eval.jsonl"), 1, seeds, 4
    )


def test_the_arms_are_the_papers_definitions_from_one_base(tmp_path: Path) -> None:
    spec = _spec(tmp_path, [0, 1, 2, 3, 4, 5])
    arms = cast(dict[str, dict[str, object]], spec["arms"])
    assert list(arms) == ["grpo", "grpo-linear", "grpo-decouple", "ar-uniform", "ar-uniform-v2"]
    assert arms["grpo-linear"] == dict(PAPER_ARMS["grpo+linear"])
    assert arms["grpo-decouple"] == dict(PAPER_ARMS["grpo+decouple"])
    assert arms["ar-uniform-v2"] == {**PAPER_ARMS["ar-uniform"], "baseline": "v2"}
    assert spec["reference"] == "grpo"
    base = cast(dict[str, object], spec["base"])
    constants = {
        RunConfig.model_validate({**base, **arm}).method.resolved_loss_normalizer for arm in arms.values()
    }
    assert constants == {128 + 16 * 16}  # one loss constant for every arm


def test_a_second_run_carries_the_experiment_on(api: Api, tmp_path: Path) -> None:
    client = ApiClient("http://testserver", "k")
    client.http = cast(httpx.Client, api.client)
    marker = tmp_path / science.MARKER
    spec = _spec(tmp_path, [0])
    assert science.carried_on(client, marker, spec) is None  # nothing yet
    created = client.json("POST", "/v1/experiments", json=spec)
    marker.write_text(json.dumps({"id": created["id"], "spec": spec}))
    again = science.carried_on(client, marker, spec)
    assert again is not None and again["id"] == created["id"]
    # A run that failed (the machine went down) is resumed; the others are left to their drivers.
    first = created["runs"][0]["run_id"]
    api.set_status(first, RunStatus.RUNNING, RunStatus.FAILED)
    sent = len(api.scheduler.sent)
    resumed = science.carried_on(client, marker, spec)
    assert resumed is not None and resumed["id"] == created["id"]
    assert api.client.get(f"/v1/runs/{first}").json()["status"] == "queued"
    assert api.scheduler.sent[sent:] == [first]
    # Other settings: a new experiment; an id the database does not know: a new one too.
    assert science.carried_on(client, marker, _spec(tmp_path, [0, 1])) is None
    marker.write_text(json.dumps({"id": "0" * 16, "spec": spec}))
    assert science.carried_on(client, marker, spec) is None


def test_the_demo_is_seed_0_of_the_experiments_grpo_and_ar_uniform_arms(tmp_path: Path) -> None:
    from anytime_cli import demo

    paths = (tmp_path / "m", tmp_path / "t.jsonl", tmp_path / "e.jsonl")
    shown = demo.demo_spec(*paths, steps=demo.RUN_STEPS, seed=0)
    published = science.experiment_spec(*paths, demo.RUN_STEPS, [0, 1, 2, 3, 4, 5], demo.EVAL_PROBLEMS)
    assert shown["base"] == published["base"]
    arms = cast(dict[str, object], published["arms"])
    assert shown["arms"] == {"brpo": arms["ar-uniform"], "grpo": arms["grpo"]}
    assert shown["seeds"] == [0] and demo.DEMO_TASK == science.SCIENCE_TASK
