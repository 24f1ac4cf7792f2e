"""The demo's ending: the BRPO-vs-GRPO overlay PNG, the side-by-side table, and the commands to look again."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from anytime.db.models import RunStatus
from anytime_cli import demo
from anytime_cli.client import ApiClient
from tests.unit.api.test_api_routes import Api, api, migrated_db
from tests.unit.cli.test_cli_runs import commit_step, evaluate, write_eval

__all__ = ["api", "migrated_db"]  # fixtures this module uses


def evaluation(version: int, accuracy: list[float], sampled: bool = True) -> dict[str, Any]:
    spread = 0.05 if sampled else None
    return {
        "policy_version": version,
        "budgets": [32, 64, 96, 128],
        "accuracy": accuracy,
        "anytime_score": sum(accuracy) / 4,
        "accuracy_ci_low": [a - spread for a in accuracy] if spread else None,
        "accuracy_ci_high": [a + spread for a in accuracy] if spread else None,
        "num_samples": 4 if sampled else 1,
        "temperature": 0.6 if sampled else 0.0,
        "num_problems": 100,
    }


CURVES = {
    "brpo": {"evaluations": [evaluation(0, [0.1, 0.2, 0.3, 0.4]), evaluation(16, [0.2, 0.4, 0.5, 0.6])]},
    "grpo": {"evaluations": [evaluation(0, [0.1, 0.2, 0.3, 0.4]), evaluation(16, [0.1, 0.3, 0.5, 0.6])]},
}


def test_the_demo_ends_with_an_overlay_png(tmp_path: Path) -> None:
    said = demo.overlay(CURVES, tmp_path / "brpo-vs-grpo.png")
    assert said.startswith(str(tmp_path / "brpo-vs-grpo.png")) and "start and end" in said
    assert (tmp_path / "brpo-vs-grpo.png").read_bytes().startswith(b"\x89PNG")
    assert demo.overlay({"brpo": {"evaluations": []}}, tmp_path / "none.png").startswith("no plot: nothing")


def test_the_table_puts_start_and_end_side_by_side() -> None:
    header, *rows, score = demo.side_by_side(CURVES)
    assert " ".join(header.split()) == "budget brpo start v0 brpo end v16 grpo start v0 grpo end v16"
    assert rows[0].split() == ["32", "0.100", "0.200", "0.100", "0.100"]
    assert score.split()[0] == "anytime" and len(rows) == 4


def test_the_commands_to_look_again_bring_the_stopped_stack_back(tmp_path: Path) -> None:
    lines = demo.look_again(tmp_path / "stack", {"brpo": "r1", "grpo": "r2"}, tmp_path / "p.png")
    text = "\n".join(lines)
    assert f"anytime up --home {tmp_path / 'stack'}" in text
    assert (
        f'export ANYTIME_API_URL=http://127.0.0.1:8000 ANYTIME_API_KEY="$(cat {tmp_path}/stack/api-key)"'
        in text
    )
    assert "anytime runs show r1" in text and f"anytime runs curve r1 r2 --png {tmp_path / 'p.png'}" in text


@pytest.mark.parametrize("training_score", [0.25, None], ids=["brpo", "grpo-without-a-grid-score"])
def test_waiting_for_the_runs_announces_each_phase_and_evaluation(
    api: Api,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    training_score: float | None,
) -> None:
    write_eval(tmp_path)
    run_id = api.create(steps=1, eval_dataset="data/eval.jsonl", eval_problems=4)["id"]
    client = ApiClient("http://testserver", "k")
    client.http = cast(httpx.Client, api.client)

    def finish() -> None:
        evaluate(api, run_id, 1, [0.3, 0.4, 0.5, 0.6])
        api.set_status(run_id, RunStatus.SUCCEEDED)

    metrics = {"anytime/objective": 0.5} | ({"anytime/score": training_score} if training_score else {})
    moves: Iterator[Callable[[], None]] = iter(
        [
            lambda: api.set_status(run_id, RunStatus.RUNNING),
            lambda: evaluate(api, run_id, 0, [0.1, 0.2, 0.3, 0.4]),
            lambda: commit_step(api, run_id, 0, metrics),
            finish,
        ]
    )
    monkeypatch.setattr(demo.time, "sleep", lambda _s: next(moves)())
    runs = demo.wait_for(client, {"brpo": run_id})
    assert runs["brpo"]["status"] == "succeeded"
    trained = " (training anytime score 0.250 at step 1)" if training_score else ""
    assert capsys.readouterr().out.splitlines() == [
        "  brpo: queued",
        "  brpo: evaluating the warm start…",
        "  brpo: evaluated version 0: accuracy by budget 16:0.100 32:0.200 48:0.300 64:0.400, anytime 0.250 "
        "[0.100, 0.900] (k=4, T=0.6, 4 problems)",
        "  brpo: step 1/1: rollouts, grading, update…",
        f"  brpo: final evaluation…{trained}",
        "  brpo: evaluated version 1: accuracy by budget 16:0.300 32:0.400 48:0.500 64:0.600, anytime 0.450 "
        "[0.100, 0.900] (k=4, T=0.6, 4 problems)",
        f"  brpo: succeeded{trained}",
    ]
