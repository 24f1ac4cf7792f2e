"""`anytime science` (`make science`): the paper's ablations on the task with headroom.

1. the tiny reasoner warm-started on `digit-chain-detours` (cached in the work folder);
2. the embedded stack (its state in the work folder: a second `anytime science` with the same settings
   carries the same experiment on, where the first stopped);
3. one experiment over REST, every arm from the same warm start with one loss constant, paired over seeds
   (same problems, same evaluation samples): `grpo` (the reference), `grpo-linear` (dense rewards only),
   `grpo-decouple` (decoupled summaries only), `ar-uniform` (BRPO) and `ar-uniform-v2` (BRPO with the
   V2-only baseline), the paper's definitions (`anytime.brpo.config.PAPER_ARMS`, docs/method.md §5.4);
4. its report, printed and written next to the stack: `report.md`, `report.png`, `report.json`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import typer

from anytime.brpo.config import PAPER_ARMS
from anytime_cli.client import ApiClient
from anytime_cli.demo import DEMO_TASK, base_config, prepare_model
from anytime_cli.errors import CliError
from anytime_cli.up import stack_failure

SCIENCE_TASK = DEMO_TASK  # the task with headroom
TERMINAL = {"succeeded", "failed", "cancelled"}
REFERENCE = "grpo"
# The arms, in the order the report lists them: the reference, then one ingredient at a time, then BRPO
# and its baseline ablation. The paper's `grpo+linear` is named `grpo-linear` here (an arm's name becomes
# MLflow param keys, which take no `+`).
SCIENCE_ARMS: Mapping[str, Mapping[str, Any]] = {
    "grpo": PAPER_ARMS["grpo"],
    "grpo-linear": PAPER_ARMS["grpo+linear"],
    "grpo-decouple": PAPER_ARMS["grpo+decouple"],
    "ar-uniform": PAPER_ARMS["ar-uniform"],
    "ar-uniform-v2": {**PAPER_ARMS["ar-uniform"], "baseline": "v2"},
}
MARKER = "experiment.json"  # the work folder's experiment: its id and the spec it was made from


def experiment_spec(
    model: Path, train: Path, held_out: Path, steps: int, seeds: list[int], eval_problems: int
) -> dict[str, Any]:
    """`SCIENCE_ARMS` on the demo's base (`base_config`)."""
    base = base_config(model, train, held_out, steps, eval_problems)
    return {
        "name": "paper-ablations",
        "base": base,
        "arms": {arm: dict(fields) for arm, fields in SCIENCE_ARMS.items()},
        "seeds": seeds,
        "reference": REFERENCE,
    }


def carried_on(client: ApiClient, marker: Path, spec: dict[str, Any]) -> dict[str, Any] | None:
    """The work folder's experiment when it was made from this very spec (None: start a new one); its runs
    that failed or were cancelled are resumed, the rest carry on as the stack's drivers left them."""
    if not marker.is_file():
        return None
    stored = json.loads(marker.read_text())
    if stored.get("spec") != spec:
        typer.echo(f"    {marker} holds another experiment's settings: starting a new experiment")
        return None
    found = client.request("GET", f"/v1/experiments/{stored['id']}", allow=(404,))
    if found.status_code == 404:
        return None
    experiment: dict[str, Any] = found.json()
    if any(run["status"] in {"failed", "cancelled"} for run in experiment["runs"]):
        experiment = client.json("POST", f"/v1/experiments/{stored['id']}/resume")
    return experiment


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
        marker = workdir / MARKER
        experiment = carried_on(client, marker, spec)
        verb = "carried on"
        if experiment is None:
            experiment, verb = client.json("POST", "/v1/experiments", json=spec), "started"
            marker.write_text(json.dumps({"id": experiment["id"], "spec": spec}))
        typer.echo(
            f"5/6 experiment {experiment['id']} {verb}: arms {', '.join(spec['arms'])} x seeds {seeds}, "
            f"{run_steps} steps each (MLflow {stack.mlflow_url}; stopped, the same command carries it on)"
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
