"""`anytime runs …` and `anytime up`: drive the control plane from the terminal."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from anytime.cli.client import ApiClient
from anytime.cli.errors import CliError

runs_app = typer.Typer(
    help="Create, watch and compare training runs (through the REST API).", no_args_is_help=True
)

ApiOption = Annotated[str | None, typer.Option("--api", help="API address [default: ANYTIME_API_URL].")]
KeyOption = Annotated[str | None, typer.Option("--api-key", help="API key [default: ANYTIME_API_KEY].")]
TERMINAL = {"succeeded", "failed", "cancelled"}


def read_config(path: Path) -> dict[str, Any]:
    """A run config from YAML or JSON; relative model/dataset paths are taken from the file's folder."""
    import yaml

    if not path.is_file():
        raise CliError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise CliError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise CliError(f"{path} must hold a mapping of run settings (model, dataset, algorithm, …)")
    for key in ("model", "dataset", "eval_dataset"):
        value = raw.get(key)
        if isinstance(value, str) and not Path(value).is_absolute() and (path.parent / value).exists():
            raw[key] = str((path.parent / value).resolve())
    return raw


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
    if watch_run:
        watch(run["id"], api=api, api_key=api_key)


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
        progress = f"{'-' if step is None else step + 1}/{config.get('steps', '?')}"
        typer.echo(
            f"{run['id']:<18} {run['status']:<10} {config.get('algorithm', '?'):<9} "
            f"{progress:>9} {run.get('policy_version', 0):>7}  {run.get('name') or ''}"
        )
    typer.echo(f"{len(page['items'])} of {page['total']} runs")


def _budget_rewards(metrics: dict[str, Any]) -> str:
    parts = []
    for name, value in metrics.items():
        if name.startswith("reward/budget_") and name.endswith("/mean") and value is not None:
            budget = name.removeprefix("reward/budget_").removesuffix("/mean")
            parts.append((int(budget), f"{budget}:{value:.2f}"))
    return " ".join(text for _, text in sorted(parts))


@runs_app.command("watch")
def watch(
    run_id: Annotated[str, typer.Argument(help="The run's id.")],
    interval: Annotated[float, typer.Option(min=0.2, help="Seconds between polls.")] = 2.0,
    api: ApiOption = None,
    api_key: KeyOption = None,
) -> None:
    """Follow a run: a progress bar with the latest per-budget rewards, until it ends."""
    client = ApiClient.from_settings(api, api_key)
    run = client.json("GET", f"/v1/runs/{run_id}")
    steps = int(run["config"]["steps"])
    shown = -1
    with typer.progressbar(length=steps, label=f"{run_id} ({run['config']['algorithm']})") as bar:
        while True:
            run = client.json("GET", f"/v1/runs/{run_id}")
            done = 0 if run.get("step") is None else int(run["step"]) + 1
            if done > shown:
                bar.update(done - max(shown, 0))
                shown = done
                history = client.json("GET", f"/v1/runs/{run_id}/metrics").get("items", [])
                if history:
                    latest = history[-1]
                    metrics = latest.get("metrics", {})
                    score = metrics.get("anytime/score")
                    bar.label = (
                        f"{run_id} step {latest['step'] + 1}/{steps} reward by budget "
                        f"[{_budget_rewards(metrics)}] anytime {score:.3f}"
                        if score is not None
                        else bar.label
                    )
            if run["status"] in TERMINAL:
                break
            time.sleep(interval)
    typer.echo(f"run {run_id} {run['status']}" + (f": {run['error']}" if run.get("error") else ""))
    if run["status"] != "succeeded":
        raise typer.Exit(1)


def curve_table(curve: dict[str, Any]) -> list[str]:
    evaluations = curve.get("evaluations", [])
    if not evaluations:
        return ["no evaluations yet (set eval_dataset in the run config)"]
    budgets = evaluations[0]["budgets"]
    lines = [f"{'version':>7} " + " ".join(f"{b:>7}" for b in budgets) + "  anytime"]
    for ev in evaluations:
        cells = " ".join(f"{a:7.3f}" for a in ev["accuracy"])
        lines.append(f"{ev['policy_version']:>7} {cells}  {ev['anytime_score']:.3f}")
    return lines


@runs_app.command("curve")
def curve(
    run_id: Annotated[str, typer.Argument(help="The run's id.")],
    png: Annotated[Path | None, typer.Option(help="Also save the plot to this PNG file.")] = None,
    api: ApiOption = None,
    api_key: KeyOption = None,
) -> None:
    """Accuracy vs thinking budget at each evaluation of a run."""
    client = ApiClient.from_settings(api, api_key)
    for line in curve_table(client.json("GET", f"/v1/runs/{run_id}/curve")):
        typer.echo(line)
    if png is not None:
        data = client.request("GET", f"/v1/runs/{run_id}/curve", params={"format": "png"}).content
        png.write_bytes(data)
        typer.echo(f"plot written to {png}")


@runs_app.command("cancel")
def cancel(
    run_id: Annotated[str, typer.Argument(help="The run's id.")],
    api: ApiOption = None,
    api_key: KeyOption = None,
) -> None:
    """Stop a run at its next task boundary."""
    run = ApiClient.from_settings(api, api_key).json("POST", f"/v1/runs/{run_id}/cancel")
    typer.echo(f"run {run_id}: {run['status']}")


def run_up(home: Path, api_port: int, mlflow_port: int) -> None:
    from services.control.stack import EmbeddedStack, StackError

    stack = EmbeddedStack(home, api_port=api_port, mlflow_port=mlflow_port)
    stopping: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        stopping.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    typer.echo(f"starting the embedded stack in {stack.home} (logs in {stack.home / 'logs'}) …")
    try:
        stack.start()
    except StackError as err:
        raise CliError(f"the stack did not start: {err}") from None
    except KeyboardInterrupt:
        stack.stop()
        raise typer.Exit(130) from None
    typer.echo(
        f"API      {stack.api_url}  (docs {stack.api_url}/docs)\n"
        f"MLflow   {stack.mlflow_url}\n"
        f"Redis    {stack.redis_url}\n"
        f"API key  {stack.api_key_file}\n"
        "workers  rollout, eval, verify, learn, control\n"
        "A service that exits is started again. Ctrl-C stops everything; runs in flight continue at the "
        "next `anytime up`."
    )
    try:
        while True:
            for name in stack.supervise():
                typer.echo(f"{name} exited and was started again (log: {stack.home / 'logs' / name}.log)")
            time.sleep(1.0)
    except KeyboardInterrupt:
        typer.echo("stopping …")
    finally:
        stack.stop()
    typer.echo("stopped")
