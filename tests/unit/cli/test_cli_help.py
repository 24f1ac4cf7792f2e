"""Every command's `--help` renders its texts as written (no markup eats "[env: …]"), `--version` and
`--verbose` work, and the library request logs stay off unless asked for."""

from __future__ import annotations

import logging
import re
from importlib.metadata import version
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from anytime.logging import CHATTY_LIBRARIES, configure_logging, get_logger
from anytime_cli.main import app
from tests.conftest import anytime_cli

runner = CliRunner()


def command_paths(command: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and group under `command` (typer's own click: groups have `commands`)."""
    paths = [prefix]
    for name, sub in getattr(command, "commands", {}).items():
        paths += command_paths(sub, (*prefix, name))
    return paths


COMMANDS = command_paths(typer.main.get_command(app))


def test_every_command_is_covered() -> None:
    names = {" ".join(path) for path in COMMANDS}
    assert {"runs show", "runs resume", "runs promote", "runs curve", "up", "experiment report"} <= names


@pytest.mark.parametrize("path", COMMANDS, ids=lambda path: " ".join(path) or "anytime")
def test_help_renders_every_text_as_written(path: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*path, "--help"], terminal_width=400)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: ")
    assert not re.search(r"\w \.$", result.output, re.MULTILINE), result.output  # "API address ." was eaten
    leaf: Any = typer.main.get_command(app)
    for name in path:
        leaf = leaf.commands[name]
    for param in leaf.params:
        text = getattr(param, "help", None)
        if text:
            assert " ".join(text.split()) in " ".join(result.output.split()), (param.name, result.output)


def test_the_api_options_name_their_environment_variables_and_defaults() -> None:
    result = anytime_cli("runs", "show", "--help")  # the real entry point, as a user runs it
    text = " ".join(result.stdout.split())
    assert "API address [env: ANYTIME_API_URL; default: http://127.0.0.1:8000]." in text
    assert "[env: ANYTIME_API_KEY; default: the key `anytime up` wrote to <ANYTIME_HOME>/api-key]" in text
    up = " ".join(anytime_cli("up", "--help").stdout.split())
    assert "State folder [env: ANYTIME_HOME; default: build]." in up and "[default: 8000;" in up


def test_version_comes_from_the_package_metadata() -> None:
    result = anytime_cli("--version")
    assert result.stdout.strip() == f"anytime {version('anytime')}"


def test_library_request_logs_are_off_unless_verbose() -> None:
    configure_logging("INFO")
    assert all(logging.getLogger(name).level == logging.WARNING for name in CHATTY_LIBRARIES)
    assert runner.invoke(app, ["--verbose", "runs", "show"]).exit_code == 2  # after the options' callback
    assert all(logging.getLogger(name).level == logging.NOTSET for name in CHATTY_LIBRARIES)  # the root's
    configure_logging("INFO")
    assert logging.getLogger("httpx").level == logging.WARNING


def test_the_client_does_not_log_each_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANYTIME_API_URL", "http://127.0.0.1:9")
    result = anytime_cli("runs", "list", check=False)
    assert "HTTP Request" not in result.stderr and result.returncode == 2


def test_log_lines_are_plain_text_off_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO")  # stderr is captured here, as it is redirected into a log file
    get_logger("anytime.test").warning("service exited", service="learn")
    err = capsys.readouterr().err
    assert "service exited" in err and "service=learn" in err and "\x1b[" not in err
