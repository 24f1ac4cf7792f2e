"""`anytime science` (`make science`): the default experiment, BRPO vs GRPO on the task with headroom.

1. the tiny reasoner warm-started on `digit-chain-detours` (cached in the work folder);
2. the embedded stack;
3. one experiment over REST: arms `brpo`, `grpo` (the reference) and `brpo-v2` (BRPO with the V2-only
   baseline: the variance ablation), paired over seeds (same problems, same evaluation samples);
4. its report, printed and written next to the stack: `report.md`, `report.png`, `report.json`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer

from anytime_cli.client import ApiClient
from anytime_cli.demo import prepare_model
from anytime_cli.errors import CliError
from anytime_cli.up import stack_failure

SCIENCE_TASK = "digit-chain-detours"
TERMINAL = {"succeeded", "failed", "cancelled"}


def experiment_spec(
    model: Path, train: Path, held_out: Path, steps: int, seeds: list[int], eval_problems: int
) -> dict[str, Any]:
    """Three arms that differ only in the algorithm (and, for the ablation, the thinking baseline)."""
    base = {
        "model": str(model),
        "dataset": str(train),
        "eval_dataset": str(held_out),
        "eval_problems": eval_problems,
        "eval_num_budgets": 4,
        "eval_samples": 4,
        "eval_temperature": 0.6,
        "b_max": 128,
        "group_size": 4,
        "summary_max_tokens": 16,
        "problems_per_step": 8,
        "steps": steps,
        "lr": 1e-4,
        "temperature": 1.0,
    }
    return {
        "name": "brpo-vs-grpo",
        "base": base,
        "arms": {
            "grpo": {"algorithm": "grpo"},
            "brpo": {"algorithm": "brpo", "num_summaries": 2},
            "brpo-v2": {"algorithm": "brpo", "num_summaries": 2, "baseline": "v2"},
        },
        "seeds": seeds,
        "reference": "grpo",
    }


def _progress(experiment: dict[str, Any]) -> str:
    per_arm: dict[str, list[int]] = {}
    for run in experiment["runs"]:
        done = (run.get("step") if run.get("step") is not None else -1) + 1
        per_arm.setdefault(run["arm"], [0, 0])
        per_arm[run["arm"]][0] += done
        per_arm[run["arm"]][1] += run["steps"]
    return "  ".join(f"{arm} {done}/{total}" for arm, (done, total) in per_arm.items())


def run_science(workdir: Path, warm_steps: int, run_steps: int, seeds: list[int], eval_problems: int) -> None:
    from anytime.processes import free_port
    from anytime_cli.stack import EmbeddedStack, StackError

    workdir = workdir.resolve()
    model, train, held_out = prepare_model(workdir, warm_steps, seed=0, task_name=SCIENCE_TASK)
    stack = EmbeddedStack(
        workdir / "stack", api_port=free_port(), mlflow_port=free_port(), data_roots=(workdir,)
    )
    typer.echo(f"4/6 starting the embedded stack: redis, MLflow, workers, API (logs in {stack.home}/logs)")
    try:
        stack.start()
    except StackError as err:
        raise stack_failure(err, stack.home) from None
    started = time.perf_counter()
    try:
        client = ApiClient(stack.api_url, stack.api_key())
        spec = experiment_spec(model, train, held_out, run_steps, seeds, eval_problems)
        experiment = client.json("POST", "/v1/experiments", json=spec)
        typer.echo(
            f"5/6 experiment {experiment['id']}: arms {', '.join(spec['arms'])} x seeds {seeds}, "
            f"{run_steps} steps each (MLflow {stack.mlflow_url})"
        )
        shown = ""
        while experiment["status"] not in TERMINAL:
            time.sleep(10)
            stack.supervise()
            experiment = client.json("GET", f"/v1/experiments/{experiment['id']}")
            line = _progress(experiment)
            if line != shown:
                typer.echo(f"    [{time.perf_counter() - started:5.0f} s] {line}")
                shown = line
        path = f"/v1/experiments/{experiment['id']}/report"
        report = client.json("GET", path)
        markdown = client.request("GET", path, params={"format": "md"}).text
        png = client.request("GET", path, params={"format": "png"}).content
    finally:
        stack.stop()
    elapsed = time.perf_counter() - started
    (workdir / "report.json").write_text(json.dumps(report, indent=2))
    (workdir / "report.md").write_text(markdown)
    (workdir / "report.png").write_bytes(png)
    typer.echo(f"6/6 the report ({elapsed / 60:.1f} min for the experiment; status {experiment['status']})")
    typer.echo(markdown)
    typer.echo(f"written: {workdir / 'report.md'}, {workdir / 'report.png'}, {workdir / 'report.json'}")
    if experiment["status"] != "succeeded":
        failed = {r["run_id"]: r.get("error") for r in experiment["runs"] if r["status"] != "succeeded"}
        raise CliError(f"runs did not succeed: {failed}")
