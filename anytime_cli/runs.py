"""`anytime runs …`: create, list, show, watch, compare, read samples of, cancel, resume and promote runs
over REST."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from anytime.metric_names import reward_metric_budget
from anytime_cli.client import ApiClient, ApiOption, KeyOption
from anytime_cli.curves import (
    TERMINAL,
    curve_table,
    evaluation_line,
    overlay_png,
    phase,
    require_plotting,
    setting,
)
from anytime_cli.errors import CliError
from anytime_cli.files import check_writable, write_atomically

runs_app = typer.Typer(
    help="Create, watch and compare training runs (through the REST API).", no_args_is_help=True
)
RunId = Annotated[str, typer.Argument(help="The run's id (`anytime runs list` shows them).")]

__all__ = ["TERMINAL", "read_config", "runs_app"]


def read_config(path: Path) -> dict[str, Any]:
    """A run config from YAML or JSON; relative model/dataset paths are taken from the file's folder."""
    import yaml

    if not path.is_file():
        raise CliError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise CliError(f"{path} is not valid YAML: {' '.join(str(err).split())}") from None
    if not isinstance(raw, dict):
        raise CliError(f"{path} must hold a mapping of run settings (model, dataset, algorithm, …)")
    for key in ("model", "dataset", "eval_dataset"):
        value = raw.get(key)
        if isinstance(value, str) and not Path(value).is_absolute() and (path.parent / value).exists():
            raw[key] = str((path.parent / value).resolve())
    return raw


def last_step(client: ApiClient, run_id: str) -> dict[str, Any] | None:
    """The run's last committed step with its metrics, or None before the first."""
    path = f"/v1/runs/{run_id}/metrics"
    total = int(client.json("GET", path, params={"limit": 1})["total"])
    if total == 0:
        return None
    items: list[dict[str, Any]] = client.json("GET", path, params={"offset": total - 1, "limit": 1})["items"]
    return items[-1] if items else None


def evaluations(client: ApiClient, run_id: str) -> list[dict[str, Any]]:
    return list(client.json("GET", f"/v1/runs/{run_id}/curve").get("evaluations", []))


@runs_app.command("create")
def create(
    config: Annotated[Path, typer.Option(help="Run config (YAML or JSON).")],
    watch_run: Annotated[bool, typer.Option("--watch", help="Watch the run until it ends.")] = False,
    api: ApiOption = None,
    api_key: KeyOption = None,
) -> None:
    """Create a run from a config file; prints its id."""
    client = ApiClient.from_settings(api, api_key)
    run = client.json("POST", "/v1/runs", json=read_config(config))
    typer.echo(run["id"])
    for warning in run.get("warnings", []):
        typer.echo(f"warning: {warning}", err=True)
    if watch_run:
        follow(client, run["id"])


@runs_app.command("list")
def list_runs(
    status: Annotated[str | None, typer.Option(help="Only runs with this status.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    api: ApiOption = None,
    api_key: KeyOption = None,
) -> None:
    """Runs, newest first."""
    client = ApiClient.from_settings(api, api_key)
    params: dict[str, Any] = {"limit": limit, **({"status": status} if status else {})}
    page = client.json("GET", "/v1/runs", params=params)
    typer.echo(f"{'id':<18} {'status':<10} {'algorithm':<9} {'step':>9} {'version':>7}  name")
    for run in page["items"]:
        config = run.get("config", {})
        step = run.get("step")
        progress = f"{'-' if step is None or step < 0 else step + 1}/{setting(config, 'steps', '?')}"
        typer.echo(
            f"{run['id']:<18} {run['status']:<10} {setting(config, 'algorithm', '?'):<9} "
            f"{progress:>9} {run.get('policy_version', 0):>7}  {run.get('name') or ''}"
        )
    typer.echo(f"{len(page['items'])} of {page['total']} runs")


@runs_app.command("show")
def show(run_id: RunId, api: ApiOption = None, api_key: KeyOption = None) -> None:
    """One run: status, progress, error, promoted checkpoint, last evaluation, last metrics and its resolved
    config (every default filled in)."""
    client = ApiClient.from_settings(api, api_key)
    run = client.json("GET", f"/v1/runs/{run_id}")
    checkpoints = client.json("GET", f"/v1/runs/{run_id}/checkpoints").get("items", [])
    lines = describe_run(run, evaluations(client, run_id), checkpoints, last_step(client, run_id))
    typer.echo("\n".join(lines))


def describe_run(
    run: dict[str, Any],
    evaluated: list[dict[str, Any]],
    checkpoints: list[dict[str, Any]],
    step: dict[str, Any] | None,
) -> list[str]:
    """`anytime runs show`'s lines, from the API's run, curve, checkpoints and last step."""
    import yaml

    config = run.get("config", {})
    status = run["status"] + (" (cancel requested)" if run.get("cancel_requested") else "")
    now = phase(run, len(evaluated))
    times = [
        f"{what} {run[what + '_at']}" for what in ("created", "started", "finished") if run.get(what + "_at")
    ]
    lines = [
        f"run          {run['id']}" + (f"  {run['name']}" if run.get("name") else ""),
        f"status       {status}" + (f": {now}" if now != run["status"] else ""),
        f"progress     {int(run.get('step', -1)) + 1}/{setting(config, 'steps', '?')} steps, "
        f"policy version {run.get('policy_version')}",
        f"times        {', '.join(times)}",
    ]
    if run.get("error"):
        lines.append(f"error        {' '.join(str(run['error']).split())}")
    if run.get("mlflow_run_id"):
        lines.append(f"mlflow run   {run['mlflow_run_id']}")
    on_disk = [str(c["id"]) for c in checkpoints if c.get("exists", True)]
    lines.append(
        f"checkpoints  {len(checkpoints)} saved, {len(on_disk)} on disk"
        + (f" (ids {', '.join(on_disk)})" if on_disk else "")
    )
    promoted = next((c for c in checkpoints if c["id"] == run.get("promoted_checkpoint_id")), None)
    lines.append(
        f"promoted     checkpoint {promoted['id']} (policy version {promoted['policy_version']}, step "
        f'{promoted["step"]}) at {promoted["path"]}; served as model "run:{run["id"]}"'
        if promoted
        else f"promoted     none (choose one with `anytime runs promote {run['id']}`)"
    )
    if evaluated:
        lines.append(f"evaluation   {evaluation_line(evaluated[-1])}")
    if step is not None:
        lines.append(f"metrics      step {step['step'] + 1}, policy version {step['policy_version']}:")
        metrics = step.get("metrics", {})
        width = max((len(name) for name in metrics), default=0)
        lines += [f"  {name:<{width}}  {_number(value)}" for name, value in sorted(metrics.items())]
    # What the run runs with: the config as written, its unset fields filled in from the run's plan.
    resolved = run.get("resolved") or {}
    shown = {**config, **{k: v for k, v in resolved.items() if config.get(k) is None}}
    lines.append("config (resolved):" if resolved else "config (as written; this API does not resolve it):")
    lines += ["  " + line for line in yaml.safe_dump(shown, sort_keys=False).splitlines()]
    return lines


def _number(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def _budget_rewards(metrics: dict[str, Any]) -> str:
    parts = []
    for name, value in metrics.items():
        budget = reward_metric_budget(name)
        if budget is not None and value is not None:
            parts.append((budget, f"{budget}:{value:.2f}"))
    return " ".join(text for _, text in sorted(parts))


@runs_app.command("watch")
def watch(
    run_id: RunId,
    interval: Annotated[float, typer.Option(min=0.2, help="Seconds between polls.")] = 2.0,
    api: ApiOption = None,
    api_key: KeyOption = None,
) -> None:
    """Follow a run: one line per phase (warm-start evaluation, each step with its per-budget rewards, the
    final evaluation), then the final evaluation and the outcome. Exits 1 unless the run succeeded."""
    follow(ApiClient.from_settings(api, api_key), run_id, interval)


def follow(client: ApiClient, run_id: str, interval: float = 2.0) -> None:
    shown = ""
    while True:
        run = client.json("GET", f"/v1/runs/{run_id}")
        evaluated = evaluations(client, run_id)
        now = phase(run, len(evaluated))
        if now != shown and run["status"] not in TERMINAL:
            shown = now
            step = last_step(client, run_id) if int(run.get("step", -1)) >= 0 else None
            metrics = step.get("metrics", {}) if step else {}
            score = metrics.get("anytime/score")
            done = (
                f" (step {step['step'] + 1} rewards by budget [{_budget_rewards(metrics)}]"
                + (f", training anytime score {score:.3f}" if score is not None else "")
                + ")"
                if step
                else ""
            )
            typer.echo(f"{run_id}: {now}{done}")
        if run["status"] in TERMINAL:
            break
        time.sleep(interval)
    if evaluated:
        typer.echo(f"{run_id}: final evaluation, {evaluation_line(evaluated[-1])}")
    typer.echo(f"run {run_id} {run['status']}" + (f": {run['error']}" if run.get("error") else ""))
    if run["status"] != "succeeded":
        raise typer.Exit(1)


@runs_app.command("curve")
def curve(
    run_ids: Annotated[
        list[str],
        typer.Argument(
            metavar="RUN_ID...", help="One run's id, or several to compare (their curves overlaid)."
        ),
    ],
    png: Annotated[
        Path | None,
        typer.Option(
            help="Also save a plot: one run's every evaluation, or several runs' start and end curves with "
            "their 95 % intervals in one figure."
        ),
    ] = None,
    api: ApiOption = None,
    api_key: KeyOption = None,
) -> None:
    """Accuracy vs thinking budget at each evaluation of one or more runs."""
    if png is not None:
        check_writable(png)
        if len(run_ids) > 1:
            require_plotting()
    client = ApiClient.from_settings(api, api_key)
    curves: dict[str, dict[str, Any]] = {}
    for run_id in run_ids:
        data = client.json("GET", f"/v1/runs/{run_id}/curve")
        if len(run_ids) > 1:
            name = client.json("GET", f"/v1/runs/{run_id}").get("name") or run_id
            curves[name if name not in curves else f"{name} ({run_id})"] = data
            typer.echo(f"run {run_id}" + (f" ({name})" if name != run_id else ""))
        for line in curve_table(data):
            typer.echo(line)
    if png is None:
        return
    if len(run_ids) == 1:
        image = client.request("GET", f"/v1/runs/{run_ids[0]}/curve", params={"format": "png"}).content
    else:
        image = overlay_png(curves, "accuracy vs thinking budget: start and end of each run")
    write_atomically(png, image)
    typer.echo(f"plot written to {png}")


@runs_app.command("samples")
def samples(
    run_id: RunId,
    step: Annotated[
        int | None,
        typer.Option(
            help="The step (eval: the step the evaluation followed, -1 before the first) [default: "
            "the last one that has samples]."
        ),
    ] = None,
    problem: Annotated[str | None, typer.Option(help="Only this problem id.")] = None,
    evaluation: Annotated[
        bool, typer.Option("--eval", help="The evaluations' samples instead of the training steps'.")
    ] = False,
    limit: Annotated[int, typer.Option(min=1, max=200, help="Traces to show at most.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print the samples as JSON.")] = False,
    api: ApiOption = None,
    api_key: KeyOption = None,
) -> None:
    """A step's traces in full: the prompt, the thinking with its cuts, the inserted text, every answer with
    its extracted answer, verdict, reward and advantages."""
    import json

    from rich.console import Console

    from anytime_cli.samples import render

    client = ApiClient.from_settings(api, api_key)
    kind = "eval" if evaluation else "train"
    path = f"/v1/runs/{run_id}/samples"
    params: dict[str, Any] = {"kind": kind, "limit": limit, **({"problem": problem} if problem else {})}
    if step is None:  # the last step that has samples: the page ordered by step, read from its end
        total = int(client.json("GET", path, params={**params, "limit": 1})["total"])
        if total == 0:
            raise CliError(f"run {run_id} has no {kind} samples yet (they come with each committed step)")
        last = client.json("GET", path, params={**params, "offset": total - 1, "limit": 1})["items"]
        step = int(last[0]["step"])
    page = client.json("GET", path, params={**params, "step": step})
    if not page["items"]:
        raise CliError(f"run {run_id} has no {kind} samples at step {step}")
    if as_json:
        typer.echo(json.dumps(page["items"], indent=2))
        return
    console = Console(highlight=False)
    for panel in render(page["items"]):
        console.print(panel)
    shown = len(page["items"])
    console.print(f"{shown} of {page['total']} traces of {kind} step {step}")


@runs_app.command("cancel")
def cancel(run_id: RunId, api: ApiOption = None, api_key: KeyOption = None) -> None:
    """Stop a run at its next task boundary."""
    run = ApiClient.from_settings(api, api_key).json("POST", f"/v1/runs/{run_id}/cancel")
    pending = run.get("cancel_requested") and run["status"] == "running"
    typer.echo(f"run {run_id}: {run['status']}" + (" (stops at its next task boundary)" if pending else ""))


@runs_app.command("resume")
def resume(
    run_id: RunId,
    watch_run: Annotated[bool, typer.Option("--watch", help="Watch the run until it ends.")] = False,
    api: ApiOption = None,
    api_key: KeyOption = None,
) -> None:
    """Queue a failed or cancelled run again (or send a driver to one left without); it continues from its
    last committed step and checkpoint."""
    client = ApiClient.from_settings(api, api_key)
    run = client.json("POST", f"/v1/runs/{run_id}/resume")
    done = int(run.get("step", -1)) + 1
    steps = setting(run.get("config", {}), "steps", "?")
    typer.echo(f"run {run_id}: {run['status']}, continuing at step {done + 1}/{steps}")
    if watch_run:
        follow(client, run_id)


@runs_app.command("promote")
def promote(
    run_id: RunId,
    checkpoint: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Checkpoint id (`anytime runs show` lists them) [default: the best anytime score on the "
            "eval set among those still on disk].",
        ),
    ] = None,
    api: ApiOption = None,
    api_key: KeyOption = None,
) -> None:
    """Choose the checkpoint a run serves at inference (model "run:<id>")."""
    client = ApiClient.from_settings(api, api_key)
    body = {"json": {"checkpoint_id": checkpoint}} if checkpoint is not None else {}
    promoted = client.json("POST", f"/v1/runs/{run_id}/promote", **body)["checkpoint"]
    typer.echo(
        f"run {run_id} serves checkpoint {promoted['id']} (policy version {promoted['policy_version']}, step "
        f"{promoted['step']}) from {promoted['path']}\n"
        f'ask it with model "run:{run_id}" at {client.url}/v1/chat/completions'
    )
