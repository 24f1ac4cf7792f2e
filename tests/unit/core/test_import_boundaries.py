"""The API, the verifier and the CLI's argument parsing import without torch or vLLM; services import
the core and never each other; the core never imports a service."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

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
    "anytime.errors",
    "anytime.model_facts",
    "anytime.processes",
    # The engine seam and factory: the engines themselves are imported only when one is started.
    "services.engines.seam",
    "services.engines.factory",
    "services.engines.latency_engine",  # benchmarks start many of them: no torch in each
    "anytime_cli.main",
    "services.api.app",
    "services.api.settings",
    "anytime.verification.extraction",
    "anytime.verification.grading",
    "anytime.verification.settings",
    "services.verifier.worker",
    # The run driver, its worker and the embedded stack wait on other queues: they never need torch.
    "services.control.driver",
    "services.control.step_pipeline",
    "services.control.worker",
    "services.control.stack",
    "anytime_cli.runs",
    "anytime.db.repository",
    "anytime.trajectory_store",
    "anytime.tracking",
    # The contracts every side of a task imports, and the verification library the verify and eval tasks
    # share; the workers' task modules stay torch-free at import too (torch is loaded by the first task).
    "anytime.contracts.rollout",
    "anytime.contracts.evaluation",
    "anytime.contracts.verify",
    "anytime.contracts.learn",
    "anytime.contracts.drive",
    "anytime.verification",
    "services.rollout.jobs",
    "services.learner.worker",
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
        "from anytime_cli.main import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'FREE')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().endswith("FREE")
    assert "model" in result.stdout and "data" in result.stdout and "sft" in result.stdout


ROOT = Path(__file__).resolve().parents[3]
# The one room every service may import from another: the engines the rollout, eval and inference share.
SHARED_SERVICE_ROOMS = {"engines"}
# The CLI drives the services (it starts the embedded stack, runs rollouts and verifications in-process),
# so it may import them. It is moving out of the core (`anytime.cli`) to the top-level `anytime_cli`
# package; until that lands both names are exempt here.
CORE_MODULES_THAT_MAY_IMPORT_SERVICES = ("anytime.cli", "anytime_cli")


def _modules(package: str) -> dict[str, Path]:
    """Dotted module name → file, for every module under a top-level package of the repository."""
    found = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every absolute import in a file, at any depth (lazy imports in functions too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def _is_under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_services_import_the_core_and_never_each_other() -> None:
    offences = []
    for module, path in _modules("services").items():
        own = module.split(".")[1] if module.count(".") else None
        for line, imported in _imports(path):
            if not _is_under(imported, "services") or imported.count(".") == 0:
                continue
            room = imported.split(".")[1]
            if room != own and room not in SHARED_SERVICE_ROOMS:
                offences.append(f"{path.relative_to(ROOT)}:{line} imports {imported}")
    assert not offences, "a service imports another service (put the contract in anytime.contracts):\n" + (
        "\n".join(offences)
    )


def test_the_core_never_imports_a_service() -> None:
    offences = [
        f"{path.relative_to(ROOT)}:{line} imports {imported}"
        for module, path in _modules("anytime").items()
        if not any(_is_under(module, exempt) for exempt in CORE_MODULES_THAT_MAY_IMPORT_SERVICES)
        for line, imported in _imports(path)
        if _is_under(imported, "services")
    ]
    assert not offences, "the core imports a service:\n" + "\n".join(offences)


def test_the_boundary_check_sees_imports_at_any_depth(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("import os\ndef f():\n    from services.rollout.jobs import EngineHolder\n")
    assert _imports(probe) == [(1, "os"), (3, "services.rollout.jobs")]
