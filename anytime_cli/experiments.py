"""`anytime experiment …`: paired arms × seeds of runs, their progress and their report (over REST).

An experiment file (YAML or JSON) is the body of `POST /v1/experiments`:

    name: brpo-vs-grpo
    base: {model: build/demo/tiny-sft, dataset: build/demo/train.jsonl, eval_dataset: build/demo/eval.jsonl}
    arms: {brpo: {algorithm: brpo}, grpo: {algorithm: grpo}}
    seeds: [0, 1, 2]
    reference: grpo          # optional; default: the first arm

Relative model and dataset paths in `base` and the arms are taken from the file's folder.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from anytime_cli.client import ApiClient, ApiOption, KeyOption
from anytime_cli.errors import CliError
from anytime_cli.files import check_writable, write_atomically
from anytime_cli.runs import TERMINAL, read_config

experiment_app = typer.Typer(
    help="Compare arms × seeds of runs, paired, with a report (through the REST API).", no_args_is_help=True
)
_PATH_FIELDS = ("model", "dataset", "eval_dataset")
_BAR_WIDTH = 24


def read_spec(path: Path) -> dict[str, Any]:
    """An experiment spec from YAML or JSON, with relative paths of `base` and the arms made absolute."""
    spec = read_config(path)
    arms = spec.get("arms")
    for part in [spec.get("base"), *(arms.values() if isinstance(arms, dict) else [])]:
        if not isinstance(part, dict):
            continue
        for key in _PATH_FIELDS:
            value = part.get(key)
            if isinstance(value, str) and not Path(value).is_absolute() and (path.parent / value).exists():
                part[key] = str((path.parent / value).resolve())
    return spec


@experiment_app.command("create")
def create(
    config: Annotated[Path, typer.Option(help="Experiment spec (YAML or JSON): name, base, arms, seeds.")],
    watch_it: Annotated[
        bool, typer.Option("--watch", help="Follow it until it ends, then print the report.")
    ] = False,
    interval: Annotated[float, typer.Option(min=0.2, help="Seconds between polls (--watch).")] = 5.0,
    api: ApiOption = None,
    api_key: KeyOption = None,
) -> None:
    """Create one run per arm × seed; prints the experiment's id."""
    client = ApiClient.from_settings(api, api_key)
    experiment = client.json("POST", "/v1/experiments", json=read_spec(config))
    typer.echo(experiment["id"])
    if watch_it:
        _watch(client, experiment["id"], interval)


@experiment_app.command("watch")
def watch(
    experiment_id: Annotated[str, typer.Argument(help="The experiment's id.")],
    interval: Annotated[float, typer.Option(min=0.2, help="Seconds between polls.")] = 5.0,
    api: ApiOption = None,
    api_key: KeyOption = None,
) -> None:
    """Follow an experiment: one progress bar per arm (steps done over its seeds), then the report's table.
    Exits 1 unless every run succeeded."""
    _watch(ApiClient.from_settings(api, api_key), experiment_id, interval)


def progress_lines(experiment: dict[str, Any]) -> list[str]:
    """One line per arm: a bar of the steps its runs committed over the steps they will take, and how many
    of its seeds are in each status."""
    width = max([len(arm) for arm in experiment["arms"]] + [4])
    lines = []
    for arm in experiment["arms"]:
        runs = [r for r in experiment["runs"] if r["arm"] == arm]
        done = sum(max(int(r["step"]) + 1, 0) for r in runs)
        total = sum(int(r["steps"]) for r in runs) or 1
        filled = round(_BAR_WIDTH * done / total)
        counts: dict[str, int] = {}
        for r in runs:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        seeds = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        bar = "#" * filled + "." * (_BAR_WIDTH - filled)
        lines.append(f"{arm:<{width}} [{bar}] {done:>5}/{total} steps  seeds: {seeds}")
    return lines


def _watch(client: ApiClient, experiment_id: str, interval: float) -> None:
    redraw = sys.stdout.isatty()
    shown: list[str] = []
    while True:
        experiment = client.json("GET", f"/v1/experiments/{experiment_id}")
        lines = progress_lines(experiment)
        if lines != shown:
            if redraw and shown:
                typer.echo(f"\x1b[{len(shown)}F\x1b[J", nl=False)  # back over the previous bars
            typer.echo("\n".join(lines))
            shown = lines
        if experiment["status"] in TERMINAL:
            break
        time.sleep(interval)
    typer.echo(f"experiment {experiment_id} {experiment['status']}")
    for run in experiment["runs"]:
        if run.get("error"):
            typer.echo(f"  {run['arm']} seed {run['seed']} ({run['run_id']}): {run['error']}")
    try:
        typer.echo(
            client.request("GET", f"/v1/experiments/{experiment_id}/report", params={"format": "md"}).text
        )
    except CliError as err:  # e.g. runs that cannot be compared: the status above still stands
        typer.echo(f"no report: {err}", err=True)
    if experiment["status"] != "succeeded":
        raise typer.Exit(1)


@experiment_app.command("report")
def report(
    experiment_id: Annotated[str, typer.Argument(help="The experiment's id.")],
    png: Annotated[Path | None, typer.Option(help="Also save the plot to this PNG file.")] = None,
    md: Annotated[Path | None, typer.Option(help="Also save the Markdown report to this file.")] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also save the report's numbers (JSON) to this file.")
    ] = None,
    reference: Annotated[
        str | None,
        typer.Option(help="Pair every arm against this arm instead of the experiment's reference."),
    ] = None,
    api: ApiOption = None,
    api_key: KeyOption = None,
) -> None:
    """Print the report (Markdown): per arm start and end accuracy at every budget and anytime score with
    95 % intervals, paired differences against the reference arm, variance ratios."""
    for target in (png, md, json_out):
        if target is not None:
            check_writable(target)
    client = ApiClient.from_settings(api, api_key)
    path = f"/v1/experiments/{experiment_id}/report"
    chosen = {} if reference is None else {"reference": reference}
    markdown = client.request("GET", path, params={"format": "md", **chosen}).text
    typer.echo(markdown)
    if md is not None:
        write_atomically(md, markdown.encode())
        typer.echo(f"report written to {md}")
    if png is not None:
        write_atomically(png, client.request("GET", path, params={"format": "png", **chosen}).content)
        typer.echo(f"plot written to {png}")
    if json_out is not None:
        write_atomically(json_out, client.request("GET", path, params=chosen).content)
        typer.echo(f"numbers written to {json_out}")


@experiment_app.command("list")
def list_experiments(
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
    api: ApiOption = None,
    api_key: KeyOption = None,
) -> None:
    """Experiments, newest first."""
    page = ApiClient.from_settings(api, api_key).json("GET", "/v1/experiments", params={"limit": limit})
    typer.echo(f"{'id':<18} {'status':<10} {'arms×seeds':>10} {'steps':>13}  name")
    for experiment in page["items"]:
        runs = experiment["runs"]
        done = sum(max(int(r["step"]) + 1, 0) for r in runs)
        total = sum(int(r["steps"]) for r in runs)
        shape = f"{len(experiment['arms'])}×{len(experiment['seeds'])}"
        typer.echo(
            f"{experiment['id']:<18} {experiment['status']:<10} {shape:>10} {f'{done}/{total}':>13}  "
            f"{experiment['name']}"
        )
    typer.echo(f"{len(page['items'])} of {page['total']} experiments")


@experiment_app.command("cancel")
def cancel(
    experiment_id: Annotated[str, typer.Argument(help="The experiment's id.")],
    api: ApiOption = None,
    api_key: KeyOption = None,
) -> None:
    """Cancel every run of the experiment that has not ended (running ones stop at their next task
    boundary)."""
    experiment = ApiClient.from_settings(api, api_key).json("POST", f"/v1/experiments/{experiment_id}/cancel")
    typer.echo(f"experiment {experiment_id}: {experiment['status']}")
    for line in progress_lines(experiment):
        typer.echo(line)


@experiment_app.command("resume")
def resume(
    experiment_id: Annotated[str, typer.Argument(help="The experiment's id.")],
    api: ApiOption = None,
    api_key: KeyOption = None,
) -> None:
    """Resume every failed or cancelled run of the experiment (and any left without a driver)."""
    experiment = ApiClient.from_settings(api, api_key).json("POST", f"/v1/experiments/{experiment_id}/resume")
    typer.echo(f"experiment {experiment_id}: {experiment['status']}")
