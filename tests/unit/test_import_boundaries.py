"""The API, the verifier and the CLI's argument parsing import without torch or vLLM."""

from __future__ import annotations

import subprocess
import sys

import pytest

TORCH_FREE_MODULES = [
    "anytime",
    "anytime.settings",
    "anytime.logging",
    "anytime.queues",
    "anytime.problems",
    "anytime.summary_format",
    "anytime.synth",
    "anytime.brpo.cuts",
    "anytime.cli.main",
    "services.api.app",
    "services.api.settings",
    "services.verifier.extraction",
    "services.verifier.grading",
    "services.verifier.settings",
    "services.verifier.worker",
    # The run driver, its worker and the embedded stack wait on other queues: they never need torch.
    "services.control.driver",
    "services.control.worker",
    "services.control.stack",
    "anytime.cli.runs",
    "anytime.db.repository",
    "anytime.trajectory_store",
    "anytime.tracking",
    # Job definitions the driver imports from the torch workers' packages.
    "services.rollout.jobs",
    "services.learner.worker",
    "services.learner.config",
]


@pytest.mark.parametrize("module", TORCH_FREE_MODULES)
def test_module_leaves_torch_and_vllm_unimported(module: str) -> None:
    code = (
        f"import importlib, sys; importlib.import_module({module!r}); "
        "heavy = sorted(m for m in ('torch', 'vllm', 'transformers') if m in sys.modules); "
        "print(','.join(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"{module} imported {result.stdout.strip()}"


def test_cli_help_does_not_import_torch() -> None:
    code = (
        "import sys; sys.argv = ['anytime', '--help']\n"
        "from anytime.cli.main import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'FREE')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().endswith("FREE")
    assert "model" in result.stdout and "data" in result.stdout and "sft" in result.stdout
