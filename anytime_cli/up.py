"""`anytime up`: the whole platform on this machine until Ctrl-C, and how to talk to it."""

from __future__ import annotations

import shlex
import signal
import time
from pathlib import Path

import typer

from anytime_cli.errors import CliError


def export_line(api_url: str, key_file: Path) -> str:
    """A shell line that points the CLI (and any client) at this stack, ready to paste; the key is read
    from its file, so it does not land in the terminal's scroll-back."""
    return (
        f'export ANYTIME_API_URL={shlex.quote(api_url)} ANYTIME_API_KEY="$(cat {shlex.quote(str(key_file))})"'
    )


def stack_failure(err: Exception, home: Path) -> CliError:
    """A stack that did not start, on one line: the first line of the reason (its log tail stays in the
    log file) and where the logs are."""
    reason = str(err).strip().splitlines()[0] if str(err).strip() else "no reason given"
    return CliError(f"the stack did not start: {reason} (logs in {home / 'logs'})")


def mlflow_runs_page(mlflow_url: str, tracking_uri: str) -> str:
    """The MLflow UI's page of the platform's runs in its training view (MLflow 3 opens on its GenAI pages
    otherwise); the bare address when the experiment cannot be looked up."""
    try:
        from mlflow import MlflowClient

        from anytime.tracking import EXPERIMENT, experiment_url

        found = MlflowClient(tracking_uri=tracking_uri).get_experiment_by_name(EXPERIMENT)
    except Exception:  # a link is a convenience; the address still works
        return mlflow_url
    return experiment_url(mlflow_url, found.experiment_id) if found is not None else mlflow_url


def run_up(
    home: Path, api_port: int, mlflow_port: int, serve: Path | None = None, rollout_workers: int = 1
) -> None:
    from anytime_cli.stack import EmbeddedStack, StackError

    if serve is not None and not (serve / "config.json").is_file():
        raise CliError(f"--serve {serve}: not a model folder (no config.json), e.g. build/demo/tiny-sft")
    stack = EmbeddedStack(
        home, api_port=api_port, mlflow_port=mlflow_port, serve=serve, rollout_workers=rollout_workers
    )
    logs = stack.home / "logs"

    def on_signal(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    typer.echo(f"starting the embedded stack in {stack.home} (redis, MLflow, workers, API; logs in {logs}) …")
    try:
        stack.start()
    except StackError as err:
        raise stack_failure(err, stack.home) from None
    except KeyboardInterrupt:
        stack.stop()
        raise typer.Exit(130) from None
    rollouts = f"rollout ×{rollout_workers}" if rollout_workers > 1 else "rollout"
    typer.echo(
        f"API      {stack.api_url}  (OpenAPI schema at /openapi.json, with the key)\n"
        f"MLflow   {mlflow_runs_page(stack.mlflow_url, stack.mlflow_store_uri)}\n"
        f"Redis    {stack.redis_url}\n"
        f"API key  {stack.api_key_file}\n"
        f"logs     {logs}\n"
        f"workers  {rollouts}, eval, verify, learn, control\n"
        + (f'serves   {serve} as model "anytime" at {stack.api_url}/v1/chat/completions\n' if serve else "")
        + "In another terminal, point the CLI at this stack (paste):\n"
        f"  {export_line(stack.api_url, stack.api_key_file)}\n"
        "  anytime runs list\n"
        "A service that exits is started again. Ctrl-C stops everything; runs in flight continue at the "
        "next `anytime up`."
    )
    try:
        while True:
            for name in stack.supervise():
                typer.echo(f"{name} exited and was started again (log: {logs / name}.log)")
            time.sleep(1.0)
    except KeyboardInterrupt:
        typer.echo("stopping …")
    finally:
        stack.stop()
    typer.echo("stopped")
