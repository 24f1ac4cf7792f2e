"""The README's commands exist as written: every `anytime …` line names a real command with real options,
the recipes it names validate as run configs, and its links lead to files in the repository."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from anytime.run_config import RunConfig
from anytime.run_plan import RunPlan
from anytime_cli.main import app
from tests.conftest import REPO

README = REPO / "README.md"
_BLOCK = re.compile(r"```(?:bash|text)\n(.*?)```", re.S)
_INVOCATION = re.compile(r"(?:^|\$\(|&& )(?:\.venv/bin/)?anytime (?P<args>[^)#\n]*)")


def _invocations() -> list[str]:
    found = []
    for block in _BLOCK.findall(README.read_text()):
        for line in block.splitlines():
            found += [m.group("args").strip() for m in _INVOCATION.finditer(line.strip())]
    return found


def _resolve(args: list[str]) -> tuple[Any, list[Any], list[str]]:
    """The command an argument list names, the groups above it, and the words after it. (Typer vendors
    its own click, so groups are recognised by their `commands`.)"""
    command = typer.main.get_command(app)
    chain = [command]
    rest = list(args)
    while hasattr(command, "commands") and rest and not rest[0].startswith("-"):
        sub = command.commands.get(rest[0])
        assert sub is not None, f"`anytime {' '.join(args)}`: no command {rest[0]!r}"
        command, rest = sub, rest[1:]
        chain.append(command)
    return command, chain, rest


def _options(command: Any) -> set[str]:
    return {name for param in command.params for name in getattr(param, "opts", []) if name.startswith("-")}


def test_the_readme_shows_the_first_hour_commands() -> None:
    invoked = {" ".join(a.split()[:2]) for a in _invocations()}
    assert {"up --serve", "runs create", "runs watch", "runs show", "runs curve", "runs promote"} <= invoked


@pytest.mark.parametrize("invocation", sorted(set(_invocations())))
def test_every_readme_command_and_option_exists(invocation: str) -> None:
    words = [w for w in shlex.split(invocation.replace("[", " ").replace("]", " ")) if w not in {"…", "|"}]
    command, chain, rest = _resolve(words)
    known = set().union(*(_options(c) for c in chain)) | {"--help"}
    for word in rest:
        flag = word.split("=", 1)[0]
        if flag.startswith("--"):
            assert flag in known, f"`anytime {invocation}`: {command.name} has no option {flag}"


def test_recipes_the_readme_names_validate() -> None:
    named = set(re.findall(r"recipes/[\w.-]+\.yaml", README.read_text()))
    assert named, "the README names no recipe"
    for path in sorted(named):
        spec = yaml.safe_load((REPO / path).read_text())
        if "arms" in spec:  # an experiment recipe: every arm is a run config
            for overrides in spec["arms"].values():
                RunConfig.model_validate({**spec["base"], **overrides})
        else:
            RunConfig.model_validate(spec)


def test_the_tiny_recipes_are_a_paired_brpo_grpo_comparison() -> None:
    brpo, grpo = (RunConfig.model_validate(yaml.safe_load((REPO / f"recipes/tiny-{a}.yaml").read_text()))
                  for a in ("brpo", "grpo"))  # fmt: skip
    same = ("model", "dataset", "eval_dataset", "seed", "steps", "problems_per_step", "lr", "eval_seed",
            "eval_problems", "eval_samples", "eval_temperature", "b_max", "group_size")  # fmt: skip
    assert {f: brpo.flat()[f] for f in same} == {f: grpo.flat()[f] for f in same}
    assert RunPlan.from_config(brpo).prior.budgets == (32, 64, 96, 128)
    assert RunPlan.from_config(grpo).prior.budgets == (128,)


def test_readme_links_lead_to_files() -> None:
    for target in re.findall(r"\]\(((?!https?://|#)[^)\s]+)\)", README.read_text()):
        assert (REPO / target.split("#")[0]).exists(), f"README links to missing {target}"


def test_readme_points_at_nothing_outside_the_repository() -> None:
    text = README.read_text()
    assert "../shared" not in text and "DESIGN.md" not in text
    assert Path(REPO / "docs").is_dir()
