"""The API, the verifier and the CLI's argument parsing import without torch or vLLM; services import
the core and never each other; the core never imports a service; the modules a command names as a string
exist and keep the same rules; nothing imports itself in a circle."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from itertools import pairwise
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
    # The run driver and its worker wait on other queues, the embedded stack on its processes: no torch.
    "services.control.driver",
    "services.control.step_pipeline",
    "services.control.worker",
    "anytime_cli.stack",
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
# The source tree: the core, the CLI and the services. The CLI drives the services (it starts the embedded
# stack, runs rollouts and verifications in-process), so it may import them; it is outside the core.
PACKAGES = ("anytime", "anytime_cli", "services")
# The one room every service may import from another: the engines the rollout, eval and inference share.
SHARED_SERVICE_ROOMS = {"engines"}


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


_OURS = r"(?:anytime|anytime_cli|services)(?:\.\w+)*"
_OUR_MODULE = re.compile(_OURS)
_APP_SPEC = re.compile(rf"({_OURS}\.\w+):(\w+)")  # Celery's `-A module:app`, uvicorn's `module:factory`


@dataclass(frozen=True, order=True)
class Named:
    """A module of ours that a string names: `-m module` (`runs`), `module:attribute`, or an import."""

    line: int
    module: str
    attribute: str | None = None
    runs: bool = False


def _named_modules(path: Path) -> list[Named]:
    """Every module of ours a file names in a string, as commands name what they start: the argument after
    `-m` or `-A`, a `module:attribute` spec, or an import statement in a program for `python -c`
    (docstrings are prose, not commands)."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
    }
    found: set[Named] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.List | ast.Tuple | ast.Call):
            items = node.elts if isinstance(node, ast.List | ast.Tuple) else node.args
            for flag, value in pairwise(items):
                text = _text(value)
                if _text(flag) in ("-m", "-A") and text is not None and _OUR_MODULE.fullmatch(text):
                    found.add(Named(value.lineno, text, runs=_text(flag) == "-m"))
        if not isinstance(node, ast.Constant) or not isinstance(node.value, str) or id(node) in docstrings:
            continue
        text = node.value
        if spec := _APP_SPEC.fullmatch(text):
            found.add(Named(node.lineno, spec[1], spec[2]))
            continue
        for statement in re.split(r"[;\n]", text):  # `python -c` programs are written on one line
            if not re.match(rf"\s*(?:import|from)\s+{_OURS}\b", statement):
                continue
            try:
                program = ast.parse(statement.strip())
            except SyntaxError:
                continue  # prose that begins like an import
            for inner in program.body:
                if isinstance(inner, ast.Import):
                    found.update(Named(node.lineno, alias.name) for alias in inner.names)
                elif isinstance(inner, ast.ImportFrom) and inner.module:
                    found.add(Named(node.lineno, inner.module))
    return sorted(found)


def _text(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _references(path: Path) -> list[tuple[int, str]]:
    """What a file depends on: its imports, and the modules its strings name (the commands it starts)."""
    return _imports(path) + [(named.line, named.module) for named in _named_modules(path)]


def _is_under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_services_import_the_core_and_never_each_other() -> None:
    offences = []
    for module, path in _modules("services").items():
        own = module.split(".")[1] if module.count(".") else None
        for line, imported in _references(path):
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
        for path in _modules("anytime").values()
        for line, imported in _references(path)
        if _is_under(imported, "services") or _is_under(imported, "anytime_cli")
    ]
    assert not offences, "the core imports a service or the CLI:\n" + "\n".join(offences)


def test_services_never_import_the_cli() -> None:
    offences = [
        f"{path.relative_to(ROOT)}:{line} imports {imported}"
        for path in _modules("services").values()
        for line, imported in _references(path)
        if _is_under(imported, "anytime_cli")
    ]
    assert not offences, "a service imports the CLI:\n" + "\n".join(offences)


def test_every_module_a_command_names_exists() -> None:
    """`-m module` runs (a `__main__` block, or a package's `__main__.py`); `module:attribute` imports and
    has the attribute (a worker's lazy Celery `app` included); a `python -c` program's imports import."""
    modules = {name: path for package in PACKAGES for name, path in _modules(package).items()}
    named = {
        (found.module, found.attribute, found.runs): f"{path.relative_to(ROOT)}:{found.line}"
        for package in (*PACKAGES, "tests", "benchmarks")
        for path in _modules(package).values()
        for found in _named_modules(path)
    }
    assert ("services.learner.worker", "app", False) in named and ("anytime.tracking", None, True) in named
    missing = [f"{where}: {module} is no module here" for (module, _, _), where in named.items()
               if module not in modules]  # fmt: skip
    assert not missing, "\n".join(missing)
    not_runnable = [
        f"{where}: `-m {module}` would run nothing (no __main__ block)"
        for (module, _, runs), where in named.items()
        if runs and not _runs_as_main(modules[module])
    ]
    assert not not_runnable, "\n".join(not_runnable)
    code = (
        "import importlib, json, sys\n"
        "for module, attribute in json.loads(sys.argv[1]):\n"
        "    try:\n"
        "        loaded = importlib.import_module(module)\n"
        "        if attribute is not None:\n"
        "            getattr(loaded, attribute)\n"
        "    except Exception as err:\n"
        "        print(f'{module}:{attribute}: {type(err).__name__}: {err}')\n"
    )
    specs = sorted({(module, attribute) for module, attribute, _ in named}, key=str)
    # A worker's `app` reads its settings when it is built: any Redis address will do, none is dialled.
    env = {**os.environ, "ANYTIME_REDIS_URL": "redis://127.0.0.1:1/0"}
    result = subprocess.run(
        [sys.executable, "-c", code, json.dumps(specs)], capture_output=True, text=True, cwd=ROOT, env=env
    )
    assert result.returncode == 0 and result.stdout.strip() == "", result.stdout + result.stderr[-3000:]


def _runs_as_main(path: Path) -> bool:
    if path.name == "__init__.py":
        return (path.parent / "__main__.py").is_file()
    return re.search(r"""if __name__ == ["']__main__["']""", path.read_text()) is not None


def test_the_boundary_check_sees_imports_at_any_depth(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("import os\ndef f():\n    from services.rollout.jobs import EngineHolder\n")
    assert _imports(probe) == [(1, "os"), (3, "services.rollout.jobs")]


def test_the_boundary_check_sees_modules_named_in_commands(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "ARGV = [python, '-m', 'services.learner.group', '-m', 'mlflow']\n"
        "celery('-A', 'services.rollout.worker')\n"
        "APP = 'services.api.app:create_app'\n"
        "PROGRAM = f'import sys; f({x}); from anytime.verification.pool import main; main()'\n"
        "PROSE = 'services.api.app is the API; run_id tag anytime.run_id; file anytime.db'\n"
    )
    assert _named_modules(probe) == [
        Named(1, "services.learner.group", runs=True),
        Named(2, "services.rollout.worker"),
        Named(3, "services.api.app", "create_app"),
        Named(4, "anytime.verification.pool"),
    ]


# ------------------------------------------------------------------------------------------------ cycles


def _import_time_imports(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of ours that `module` imports when it is imported: its top-level imports, those under
    `if TYPE_CHECKING:` (a cycle there is one annotation away from a real one) and in class bodies; not
    those inside functions. `from package import name` counts the package, and `name` if it is a module."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    named: list[str] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                named.extend(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*parts, *([node.module] if node.module else [])])
                named.append(base)
                named.extend(f"{base}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.If | ast.Try | ast.With | ast.ClassDef):
                for block in ("body", "orelse", "finalbody"):
                    visit(getattr(node, block, []))
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)

    visit(ast.parse(path.read_text(), str(path)).body)
    found = set()
    for name in named:
        while name and name not in modules:  # `a.b.Name` → `a.b`; third-party names fall away
            name = name.rpartition(".")[0]
        if name and name != module:
            found.add(name)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (`a → b → … → a`) through every strongly connected group of more than one module."""
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def connect(node: str) -> None:  # Tarjan's algorithm
        order[node] = low[node] = len(order)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in order:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], order[target])
        if low[node] == order[node]:
            group = {stack.pop()}
            while node not in group:
                group.add(stack.pop())
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in order:
            connect(node)
    cycles = []
    for group in groups:
        start = min(group)
        paths = {start: [start]}
        frontier = [start]
        while frontier:  # breadth first, inside the group: the shortest way back to `start`
            node = frontier.pop(0)
            for target in sorted(graph[node] & group):
                if target == start:
                    cycles.append([*paths[node], start])
                    frontier = []
                    break
                if target not in paths:
                    paths[target] = [*paths[node], target]
                    frontier.append(target)
    return sorted(cycles)


def test_no_module_imports_itself_in_a_circle() -> None:
    modules = {name: path for package in PACKAGES for name, path in _modules(package).items()}
    graph = {module: _import_time_imports(module, path, modules) for module, path in modules.items()}
    cycles = [" → ".join(cycle) for cycle in _cycles(graph)]
    assert not cycles, (
        "import cycles (module-level and TYPE_CHECKING imports): move what both sides need into a module "
        "of its own that imports neither\n" + "\n".join(cycles)
    )


def test_the_cycle_check_sees_type_checking_and_relative_imports(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import B\n"
    )
    (tmp_path / "pkg" / "b.py").write_text("from . import a\ndef f():\n    import pkg.c\n")
    (tmp_path / "pkg" / "c.py").write_text("import pkg.b\n")
    modules = {"pkg": tmp_path / "pkg" / "__init__.py"} | {
        f"pkg.{name}": tmp_path / "pkg" / f"{name}.py" for name in "abc"
    }
    graph = {module: _import_time_imports(module, path, modules) for module, path in modules.items()}
    assert graph == {"pkg": set(), "pkg.a": {"pkg.b"}, "pkg.b": {"pkg", "pkg.a"}, "pkg.c": {"pkg.b"}}
    assert _cycles(graph) == [["pkg.a", "pkg.b", "pkg.a"]]
