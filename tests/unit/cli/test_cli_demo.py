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
    assert "anytime runs samples r2" in text
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


def _demo_report(grpo_end: dict[str, list[float]], brpo_shift: float) -> dict[str, Any]:
    """A real report (`build_report`) of a one-seed demo experiment on three problems and two budgets."""
    from anytime.experiments.estimates import build_report
    from anytime.experiments.records import EvaluationPoint, RunRecord

    start = {"a": [0.5, 1.0], "b": [0.25, 1.0], "c": [0.0, 0.75]}

    def point(version: int, step: int, rows: dict[str, list[float]]) -> EvaluationPoint:
        accuracy = [sum(v[j] for v in rows.values()) / len(rows) for j in range(2)]
        return EvaluationPoint(version, step, [64, 128], accuracy, sum(accuracy) / 2, rows)

    brpo_end = {p: [v + brpo_shift for v in values] for p, values in grpo_end.items()}
    runs = [
        RunRecord(arm, 0, f"{arm}-0", "succeeded", [point(0, -1, start), point(16, 15, end)], [])
        for arm, end in (("brpo", brpo_end), ("grpo", grpo_end))
    ]
    return build_report(["brpo", "grpo"], "grpo", runs).model_dump(mode="json")


def test_the_demo_prints_the_paired_difference_per_budget_with_its_one_seed_interval() -> None:
    report = _demo_report({"a": [0.5, 1.0], "b": [0.5, 0.75], "c": [0.25, 0.5]}, brpo_shift=0.1)
    header, columns, at64, at128, anytime = demo.paired_lines(report)
    assert "1 training seed" in header and "over the 3 held-out problems" in header
    assert "not another training seed" in header
    assert columns.split() == ["budget", "Δ", "accuracy"]
    # BRPO is GRPO + 0.1 on every problem: a zero-width interval at +0.100.
    assert at64.split() == ["64", "+0.100", "[+0.100,", "+0.100]"]
    assert at128.split()[:2] == ["128", "+0.100"] and anytime.split()[:2] == ["anytime", "+0.100"]
    assert demo.paired_lines({"comparisons": []}) == [
        "no paired difference: a run did not finish with a start and an end evaluation"
    ]


def test_the_demo_says_whether_the_largest_budget_fell_and_whether_that_is_noise() -> None:
    # GRPO at 128: 1.0, 1.0, 0.75 at the start; 1.0, 0.75, 0.5 at the end: per-problem gains 0, −0.25,
    # −0.25 (mean −1/6, sd 0.144, t(2) half-width 0.359: the interval includes 0). BRPO: +0.25 on top.
    report = _demo_report({"a": [0.5, 1.0], "b": [0.5, 0.75], "c": [0.25, 0.5]}, brpo_shift=0.25)
    brpo, grpo = demo.largest_budget_lines(report)
    assert brpo == "brpo at budget 128: held (0.917 at the warm start, 1.000 at the end)"
    assert grpo.startswith("grpo at budget 128: fell from 0.917 (warm start) to 0.750: within noise")
    # A fall on every problem alike is beyond noise.
    report = _demo_report({"a": [0.5, 0.75], "b": [0.5, 0.75], "c": [0.25, 0.5]}, brpo_shift=0.0)
    assert "beyond noise (-0.250 [-0.250, -0.250])" in demo.largest_budget_lines(report)[1]


def test_the_demo_pairs_brpo_with_grpo_on_the_task_with_headroom(tmp_path: Path) -> None:
    spec = demo.demo_spec(tmp_path / "m", tmp_path / "t.jsonl", tmp_path / "e.jsonl", steps=10, seed=3)
    assert spec["seeds"] == [3] and spec["reference"] == "grpo"
    assert spec["arms"]["brpo"]["prior"] == "uniform" and spec["arms"]["grpo"] == {"algorithm": "grpo"}
    assert spec["base"]["eval_samples"] == 4 and spec["base"]["steps"] == 10
    assert demo.DEMO_TASK == "digit-chain-detours"
