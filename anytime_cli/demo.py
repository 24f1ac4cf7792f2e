"""`anytime demo` (`make demo`): the embedded default end to end on the CPU.

1. the tiny reasoner, synthetic data (`digit-chain-detours`, the task with headroom: the warm start is
   far from perfect at small budgets) and a supervised warm start (cached in the work folder);
2. the embedded stack (redis-server, Celery workers, API, MLflow) on free local ports;
3. a paired experiment over REST: a BRPO run (the paper's AR-uniform) and a GRPO run from the same warm
   start, on the same problems with the same seed, watched until they end;
4. their accuracy-vs-budget tables side by side, the paired difference BRPO − GRPO per budget with its
   interval (one training seed: the interval is over the held-out problems), whether the largest budget's
   accuracy fell from the warm start and why, a BRPO-vs-GRPO overlay PNG, where everything is and the
   commands to look again.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer

from anytime_cli.client import ApiClient
from anytime_cli.curves import TERMINAL, evaluation_line, overlay_png, phase, sampling
from anytime_cli.errors import CliError
from anytime_cli.files import write_atomically
from anytime_cli.runs import evaluations, last_step
from anytime_cli.up import export_line, mlflow_runs_page, stack_failure

WARM_START_BATCH = 32
TRAIN_PROBLEMS = 4000  # drawn with repeats from the train split
HELD_OUT_PROBLEMS = 200  # distinct problems of the eval split (which holds 326 / 517 of them)
WARM_START_LR = 1e-3
# The demo is seed 0 of `anytime science`'s `grpo` and `ar-uniform` arms: the same base, steps and held-out
# problems, so its numbers are that experiment's for seed 0.
RUN_STEPS = 10
EVAL_PROBLEMS = 64
# The task with headroom (the warm start scores about 0.66 over budgets 32..128, 0.4 at 32).
DEMO_TASK = "digit-chain-detours"


def prepare_model(
    workdir: Path, steps: int, seed: int, task_name: str = DEMO_TASK
) -> tuple[Path, Path, Path]:
    """The warm-started tiny model and its data on `task_name`; rebuilt only when the cache does not match."""
    import torch

    from anytime.problems import write_problems
    from anytime.synth import HELD_OUT_RULE, get_task
    from anytime.tinymodel.build import build_tiny_model
    from anytime_cli.commands import run_sft

    base, warm = workdir / "tiny-base", workdir / "tiny-sft"
    train, held_out = workdir / "train.jsonl", workdir / "eval.jsonl"
    marker = workdir / "warm-start.json"
    wanted: dict[str, Any] = {
        "seed": seed,
        "steps": steps,
        "batch": WARM_START_BATCH,
        "lr": WARM_START_LR,
        "split": HELD_OUT_RULE,  # a cache written before the split held overlapping train and eval files
    }
    if task_name != "digit-chain":
        wanted["task"] = task_name
    if marker.is_file() and json.loads(marker.read_text()) == wanted and (warm / "config.json").is_file():
        typer.echo(f"1-3/6 tiny reasoner, data and warm start: cached in {workdir}")
        return warm, train, held_out
    torch.manual_seed(seed)
    workdir.mkdir(parents=True, exist_ok=True)
    typer.echo("1/6 building the tiny reasoner")
    build_tiny_model(base, seed=seed)
    typer.echo(f"2/6 synthetic {task_name} data (train and held-out eval, from disjoint splits)")
    task = get_task(task_name)
    write_problems(task.generate(TRAIN_PROBLEMS, seed, split="train"), train)
    write_problems(task.generate(HELD_OUT_PROBLEMS, seed, split="eval"), held_out)
    typer.echo(f"3/6 supervised warm start ({steps} steps)")
    started = time.perf_counter()
    run_sft(base, train, warm, steps=steps, batch_size=WARM_START_BATCH, lr=WARM_START_LR, seed=seed)
    typer.echo(f"    warm start done in {time.perf_counter() - started:.0f} s")
    marker.write_text(json.dumps(wanted))
    return warm, train, held_out


def base_config(model: Path, train: Path, held_out: Path, steps: int, eval_problems: int) -> dict[str, Any]:
    """What every arm of the demo and of `anytime science` shares: the tiny preset's shape, sampled
    held-out evaluation (k = 4, T = 0.6, 4 budgets)."""
    return {
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


def demo_spec(model: Path, train: Path, held_out: Path, steps: int, seed: int) -> dict[str, Any]:
    """BRPO (AR-uniform) against GRPO, one seed, paired: the experiment the demo creates."""
    from anytime.brpo.config import PAPER_ARMS

    return {
        "name": "demo",
        "base": base_config(model, train, held_out, steps, EVAL_PROBLEMS),
        "arms": {"brpo": dict(PAPER_ARMS["ar-uniform"]), "grpo": dict(PAPER_ARMS["grpo"])},
        "seeds": [seed],
        "reference": "grpo",
    }


def _ci(estimate: dict[str, Any]) -> str:
    mean, low, high = estimate["mean"], estimate.get("low"), estimate.get("high")
    return f"{mean:+.3f}" + ("" if low is None or high is None else f" [{low:+.3f}, {high:+.3f}]")


def paired_lines(report: dict[str, Any]) -> list[str]:
    """The paired difference BRPO − GRPO at the end, per budget and in anytime score, from the report."""
    comparison = next((c for c in report.get("comparisons", []) if c["arm"] == "brpo"), None)
    if comparison is None:
        return ["no paired difference: a run did not finish with a start and an end evaluation"]
    end = comparison["end"]
    seeds = len(comparison["seeds"])
    where = (
        f"95 % t-interval over the {end['problems']} held-out problems: it covers other problems and "
        "evaluation samples, not another training seed (`make science` pairs 6 seeds)"
        if seeds == 1
        else f"95 % intervals over {seeds} seeds and the problems"
    )
    lines = [f"paired BRPO − GRPO at the end ({seeds} training seed{'s' if seeds > 1 else ''}; {where})"]
    lines.append(f"{'budget':>8}  Δ accuracy")
    for budget, estimate in zip(report["budgets"], end["accuracy"], strict=True):
        lines.append(f"{budget:>8}  {_ci(estimate)}")
    lines.append(f"{'anytime':>8}  {_ci(end['anytime_score'])}")
    return lines


def largest_budget_lines(report: dict[str, Any]) -> list[str]:
    """For each arm: did the accuracy at the largest budget fall from the warm start, and is that noise?"""
    lines = []
    budget = report["budgets"][-1] if report.get("budgets") else None
    for result in report.get("results", []):
        start, end, gain = result.get("start"), result.get("end"), result.get("gain")
        if budget is None or not (start and end and gain):
            continue
        before, after = start["accuracy"][-1]["mean"], end["accuracy"][-1]["mean"]
        change = gain["accuracy"][-1]
        said = f"{result['arm']} at budget {budget}: "
        if after >= before:
            lines.append(f"{said}held ({before:.3f} at the warm start, {after:.3f} at the end)")
            continue
        said += f"fell from {before:.3f} (warm start) to {after:.3f}"
        high = change.get("high")
        if high is None:
            lines.append(f"{said}: no interval to tell a fall from noise")
        elif high >= 0:
            lines.append(f"{said}: within noise, the gain's interval {_ci(change)} includes 0")
        else:
            lines.append(
                f"{said}: beyond noise ({_ci(change)}); the anytime objective weighs every budget, and "
                "training moved accuracy toward the smaller ones"
            )
    return lines


def side_by_side(curves: dict[str, dict[str, Any]]) -> list[str]:
    """Accuracy per budget: first (warm start) and last evaluation of each run, in columns."""
    columns: list[tuple[str, dict[int, float], float]] = []
    budgets: list[int] = []
    for name, curve in curves.items():
        evaluations = curve.get("evaluations", [])
        for label, ev in (("start", evaluations[0]), ("end", evaluations[-1])) if evaluations else ():
            budgets = ev["budgets"]
            columns.append(
                (
                    f"{name} {label} v{ev['policy_version']}",
                    dict(zip(ev["budgets"], ev["accuracy"], strict=True)),
                    ev["anytime_score"],
                )
            )
    width = max([len(c[0]) for c in columns] + [10])
    lines = [f"{'budget':>8} " + " ".join(f"{c[0]:>{width}}" for c in columns)]
    for b in budgets:
        lines.append(f"{b:>8} " + " ".join(f"{c[1].get(b, float('nan')):>{width}.3f}" for c in columns))
    lines.append(f"{'anytime':>8} " + " ".join(f"{c[2]:>{width}.3f}" for c in columns))
    return lines


def wait_for(client: ApiClient, run_ids: dict[str, str], poll_s: float = 5.0) -> dict[str, dict[str, Any]]:
    """Poll the runs until they end, with one line each time one enters a phase (the warm start's
    evaluation, each step with its training score, the final evaluation) and each evaluation's result."""
    shown: dict[str, tuple[str, int]] = {}
    while True:
        runs = {name: client.json("GET", f"/v1/runs/{rid}") for name, rid in run_ids.items()}
        for name, run in runs.items():
            evaluated = evaluations(client, run["id"])
            now = (phase(run, len(evaluated)), len(evaluated))
            if shown.get(name) == now:
                continue
            if evaluated and shown.get(name, ("", 0))[1] < len(evaluated):
                typer.echo(f"  {name}: evaluated {evaluation_line(evaluated[-1])}")
            shown[name] = now
            step = last_step(client, run["id"]) if int(run.get("step", -1)) >= 0 else None
            # GRPO's one budget cannot score the evaluation grid: it has no training anytime score.
            score = step["metrics"].get("anytime/score") if step else None
            trained = (
                f" (training anytime score {score:.3f} at step {step['step'] + 1})"
                if step is not None and score is not None
                else ""
            )
            typer.echo(f"  {name}: {now[0]}{trained}")
        if all(run["status"] in TERMINAL for run in runs.values()):
            return runs
        time.sleep(poll_s)


def overlay(curves: dict[str, dict[str, Any]], out: Path) -> str:
    """Draw BRPO's and GRPO's start and end curves (with their intervals) into `out`; what was done."""
    try:
        png = overlay_png(
            {name.upper(): curve for name, curve in curves.items()},
            "held-out accuracy vs thinking budget: BRPO vs GRPO, start and end",
        )
    except CliError as err:
        return f"no plot: {err}"
    write_atomically(out, png)
    return f"{out}  (BRPO and GRPO, start and end, 95 % intervals where sampled)"


def look_again(stack_home: Path, run_ids: dict[str, str], png: Path) -> list[str]:
    """Commands that bring the demo's runs back after its stack has stopped."""
    ids = " ".join(run_ids.values())
    return [
        "The demo's stack has stopped, so the addresses above are gone. To look again:",
        f"  anytime up --home {stack_home}            # API on :8000, MLflow UI on :5000; leave it running",
        f"  {export_line('http://127.0.0.1:8000', stack_home / 'api-key')}",
        *(f"  anytime runs show {rid}" for rid in run_ids.values()),
        f"  anytime runs curve {ids} --png {png}",
        *(
            f"  anytime runs samples {rid}          # what the last step thought and answered"
            for rid in run_ids.values()
        ),
        "  open the MLflow address it prints (the runs in the training view: compare them, eval metrics "
        "per budget, curves/start_vs_end.png, samples/step_<step>.json)",
    ]


def run_demo(workdir: Path, warm_steps: int, run_steps: int, seed: int) -> None:
    from anytime.processes import free_port
    from anytime_cli.stack import EmbeddedStack, StackError

    workdir = workdir.resolve()
    model, train, held_out = prepare_model(workdir, warm_steps, seed)
    stack = EmbeddedStack(
        workdir / "stack", api_port=free_port(), mlflow_port=free_port(), data_roots=(workdir,)
    )
    typer.echo(f"4/6 starting the embedded stack: redis, MLflow, workers, API (logs in {stack.home}/logs)")
    started = time.perf_counter()
    try:
        stack.start()
    except StackError as err:
        raise stack_failure(err, stack.home) from None
    try:
        up_s = time.perf_counter() - started
        mlflow_page = mlflow_runs_page(stack.mlflow_url, stack.mlflow_store_uri)
        typer.echo(f"    API {stack.api_url}, MLflow {mlflow_page} (up in {up_s:.0f} s)")
        client = ApiClient(stack.api_url, stack.api_key())
        spec = demo_spec(model, train, held_out, run_steps, seed)
        experiment = client.json("POST", "/v1/experiments", json=spec)
        typer.echo(
            f"5/6 experiment {experiment['id']} over REST: a BRPO run and a GRPO run, {run_steps} steps "
            f"each, paired (seed {seed}, the same problems)"
        )
        run_ids = {run["arm"]: run["run_id"] for run in experiment["runs"]}
        for name, rid in run_ids.items():
            typer.echo(f"    {name}: run {rid}")
        started = time.perf_counter()
        runs = wait_for(client, run_ids)
        typer.echo(f"    both runs ended in {time.perf_counter() - started:.0f} s")
        curves = {name: client.json("GET", f"/v1/runs/{rid}/curve") for name, rid in run_ids.items()}
        report = client.json("GET", f"/v1/experiments/{experiment['id']}/report")
    finally:
        stack.stop()
    start: dict[str, Any] = next((c["evaluations"][0] for c in curves.values() if c.get("evaluations")), {})
    how = ", ".join(
        part for part in (sampling(start), f"{start.get('num_problems')} problems" if start else "") if part
    )
    typer.echo(f"6/6 held-out accuracy vs thinking budget ({how}; start = the warm start)")
    for line in [*side_by_side(curves), "", *paired_lines(report), "", *largest_budget_lines(report), ""]:
        typer.echo(line)
    png = workdir / "brpo-vs-grpo.png"
    failed = {name: run.get("error") for name, run in runs.items() if run["status"] != "succeeded"}
    typer.echo(
        "\n".join(
            [
                f"plot     {overlay(curves, png)}",
                f"runs     {', '.join(f'{name} {rid}' for name, rid in run_ids.items())}",
                f"model    {model} (warm start), data {train} and {held_out}",
                f"state    {stack.home} (runs in anytime.db, MLflow in mlflow.db, logs in logs/)",
                *look_again(stack.home, run_ids, png),
            ]
        )
    )
    if failed:
        raise CliError(f"runs did not succeed: {failed}")
