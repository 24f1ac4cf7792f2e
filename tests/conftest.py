"""Shared fixtures: real servers (tests/fixtures/servers.py) and the tiny model built with the CLI."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["tests.fixtures.servers"]

REPO = Path(__file__).resolve().parent.parent


def anytime_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the installed `anytime` command line as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "anytime_cli.main", *args],
        capture_output=True,
        text=True,
        check=check,
        cwd=REPO,
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    cuda = False
    if importlib.util.find_spec("torch") is not None:
        import torch

        cuda = torch.cuda.is_available()
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords and not cuda:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny reasoner with random weights, built once per session by `anytime model tiny`."""
    out = tmp_path_factory.mktemp("models") / "tiny"
    anytime_cli("model", "tiny", "--out", str(out), "--seed", "0")
    return out


@pytest.fixture(scope="session")
def warm_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model after a short warm start (a few dozen steps): prompt-dependent, trace-like output."""
    work = tmp_path_factory.mktemp("warm")
    data = work / "train.jsonl"
    anytime_cli("data", "synth", "--n", "300", "--seed", "1", "--out", str(data))
    out = work / "tiny-sft"
    anytime_cli(
        "sft", "--model", str(tiny_model_dir), "--data", str(data), "--out", str(out), "--steps", "30"
    )
    return out
