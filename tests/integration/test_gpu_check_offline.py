"""The GPU check installs what it needs from the wheel folder alone, as on a box without a package registry.

The box (Python 3.12, CUDA torch, transformers, numpy; no pydantic, pydantic-settings, structlog or
math-verify) can only install from `.whl/`, filled here by `benchmarks/gpu_wheels.sh`; a wheel missing
from it must show up here, not there. Cases: the install step (`gpu_check.sh --install-only`) into a fresh
venv without system site packages; the same with one wheel removed, which must be named; the folder
resolving for CPython 3.12 (pydantic-core is compiled per version); a source-only requirement failing the
download, named; and the whole CPU smoke in a venv that sees torch and transformers but none of the rest,
whose whole BRPO step (`benchmarks/gpu_step.py`) must print its split and exact counts; and that step's
grading, whose submissions it builds itself, giving the verify worker's verdicts (a real Redis).

Uses `.whl/` when present, else downloads it into a temporary folder (this needs a package registry).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.integration]

CHECK = REPO / "benchmarks" / "gpu_check.sh"
WHEELS_SCRIPT = REPO / "benchmarks" / "gpu_wheels.sh"
BOX_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
# What the box lacks (and what the check must not need): left out of its stand-in's site packages.
NOT_ON_THE_BOX = (
    "pydantic", "structlog", "dotenv", "python_dotenv", "typing_inspection", "annotated_types",
    "math_verify", "latex2sympy2_extended", "antlr4", "vllm", "celery", "kombu", "billiard", "redis",
    "anytime", "__editable__",
)  # fmt: skip
# The step's shape (benchmarks/gpu_step.py): problems, G, S, A.
PROBLEMS, G, S, A = 4, 4, 4, 2
NUMBER = r"([0-9][0-9,]*(?:\.[0-9]+)?)"


def run(
    command: list[str], env: dict[str, str] | None = None, timeout: float = 300, pip_settings: bool = True
) -> subprocess.CompletedProcess[str]:
    """`command` with os.environ plus `env`; without this machine's PIP_* settings if not `pip_settings`."""
    base = {k: v for k, v in os.environ.items() if pip_settings or not k.startswith("PIP_")}
    return subprocess.run(
        command, capture_output=True, text=True, env={**base, **(env or {})}, timeout=timeout
    )


def fresh_venv(path: Path) -> Path:
    """A venv without system site packages: nothing but pip and the standard library."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120)
    return path / "bin" / "python"


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's `.whl/`, or one downloaded now by `benchmarks/gpu_wheels.sh`."""
    if any((REPO / ".whl").glob("*.whl")):
        return REPO / ".whl"
    folder = tmp_path_factory.mktemp("wheels") / "whl"
    done = run(["bash", str(WHEELS_SCRIPT)], env={"GPU_CHECK_WHEELS": str(folder)})
    assert done.returncode == 0, f"gpu_wheels.sh failed (needs a package registry):\n{done.stderr}"
    return folder


def test_install_step_into_a_fresh_venv_uses_only_the_wheel_folder(wheels: Path, tmp_path: Path) -> None:
    python = fresh_venv(tmp_path / "venv")
    env = {"GPU_CHECK_VENV": str(tmp_path / "venv"), "GPU_CHECK_WHEELS": str(wheels)}
    done = run(["bash", str(CHECK), "--install-only"], env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "imports the check's torch-free modules" in done.stdout
    installed = run([str(python), "-m", "pip", "list", "--format=freeze"]).stdout.lower()
    assert "structlog==" in installed and "pydantic-settings==" in installed
    assert "math-verify==" in installed and "antlr4-python3-runtime==4.13.2" in installed
    assert "torch==" not in installed and "transformers==" not in installed


def test_a_missing_wheel_is_named(wheels: Path, tmp_path: Path) -> None:
    partial = tmp_path / "whl"
    shutil.copytree(wheels, partial)
    for wheel in partial.glob("structlog-*.whl"):
        wheel.unlink()
    fresh_venv(tmp_path / "venv")
    # A pip source outside the folder holding the removed wheel must be ignored, not used.
    env = {"GPU_CHECK_VENV": str(tmp_path / "venv"), "GPU_CHECK_WHEELS": str(partial),
           "PIP_FIND_LINKS": str(wheels)}  # fmt: skip
    done = run(["bash", str(CHECK), "--install-only"], env=env)
    assert done.returncode != 0
    assert "missing wheel: structlog" in done.stderr, done.stderr
    assert "make gpu-wheels" in done.stderr


def test_the_folder_resolves_for_the_box_python(wheels: Path, tmp_path: Path) -> None:
    """Every distribution in the folder, with its dependencies, from the folder alone, for CPython 3.12."""
    names = sorted({wheel.name.split("-")[0] for wheel in wheels.glob("*.whl")})
    platforms = [flag for platform in BOX_PLATFORMS for flag in ("--platform", platform)]
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--find-links", str(wheels),
               "--target", str(tmp_path / "target"), "--python-version", "3.12", "--implementation", "cp",
               "--only-binary=:all:", *platforms, *names]  # fmt: skip
    done = run(command, env={"PIP_CONFIG_FILE": os.devnull}, pip_settings=False)
    assert done.returncode == 0, done.stderr
    assert "Would install" in done.stdout


def test_a_source_only_requirement_fails_the_download_by_name(tmp_path: Path) -> None:
    sources = tmp_path / "sources"
    project = tmp_path / "sdistonly-1.0"
    project.mkdir(parents=True)
    (project / "pyproject.toml").write_text('[project]\nname = "sdistonly"\nversion = "1.0"\n')
    sources.mkdir()
    with tarfile.open(sources / "sdistonly-1.0.tar.gz", "w:gz") as archive:
        archive.add(project, arcname=project.name)
    env = {"GPU_CHECK_WHEELS": str(tmp_path / "whl"), "PIP_FIND_LINKS": str(sources)}
    done = run(["bash", str(WHEELS_SCRIPT), "sdistonly==1.0"], env=env)
    assert done.returncode != 0
    assert "no wheel for sdistonly==1.0" in done.stderr, done.stderr
    assert not (tmp_path / "whl").exists()


def box_site(path: Path) -> Path:
    """This interpreter's site packages as links, less what the box lacks: torch and transformers stay."""
    path.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if entry.name.startswith(NOT_ON_THE_BOX) or entry.suffix == ".pth":
            continue
        (path / entry.name).symlink_to(entry)
    return path


def repository_copy(path: Path) -> Path:
    """The source the check runs from, without `.venv/` or `.whl/`, as a clone copied to the box."""
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("anytime", "services", "tests", "benchmarks"):
        shutil.copytree(REPO / folder, path / folder, ignore=skip)
    return path


def test_cpu_smoke_installs_from_the_folder_and_runs(wheels: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    python = fresh_venv(tmp_path / "venv")
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(run([str(python), "-c", purelib]).stdout.strip())
    (site / "box.pth").write_text(f"{box_site(tmp_path / 'box-site')}\n")
    assert run([str(python), "-c", "import pydantic"]).returncode != 0
    # The box's own python3 lacks pydantic too: a stand-in that imports nothing keeps this one out.
    stub = tmp_path / "bin" / "python3"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\nexit 1\n")
    stub.chmod(0o755)
    repo = repository_copy(tmp_path / "repo")
    env = {"GPU_CHECK_VENV": str(tmp_path / "venv"), "GPU_CHECK_WHEELS": str(wheels),
           "GPU_CHECK_OUT": str(tmp_path / "out"), "PATH": f"{stub.parent}:{os.environ['PATH']}"}  # fmt: skip
    done = run(["bash", str(repo / "benchmarks" / "gpu_check.sh"), "--cpu-smoke"], env=env, timeout=400)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "installing what is missing" in done.stdout
    assert f"== python: {python}" in done.stdout
    for part in ("learner", "step", "packing"):
        assert re.search(rf"\| {part} benchmark +\| ok, ", done.stdout), done.stdout[-4000:]
        assert (tmp_path / "out" / f"{part}.json").exists()
    check_step(done.stdout, json.loads((tmp_path / "out" / "step.json").read_text()))


def numbers(pattern: str, text: str) -> list[float]:
    """The numbers `pattern` (NUMBER where each goes) finds in the one line of `text` it matches."""
    found = re.findall(pattern.replace("NUMBER", NUMBER), text)
    assert len(found) == 1, f"expected one line matching {pattern!r}; found {len(found)} in:\n{text[-4000:]}"
    groups = found[0] if isinstance(found[0], tuple) else (found[0],)
    return [float(group.replace(",", "")) for group in groups]


def check_step(stdout: str, figures: dict[str, object]) -> None:
    """The step's printed split and counts: every figure present and positive, the counts exact."""
    traces = PROBLEMS * G
    trajectories, requests, summaries, verdicts = numbers(
        r"counts: NUMBER trajectories, NUMBER summary requests \(distinct cuts\), NUMBER summaries, "
        r"NUMBER verdicts", stdout
    )  # fmt: skip
    assert (trajectories, summaries, verdicts) == (traces, traces * S * A, traces * S * A)
    assert traces <= requests <= traces * S  # one request per distinct cut: cuts collapse on short thoughts
    split = numbers(r"split: generate NUMBER s, grade NUMBER s, learn NUMBER s, total NUMBER s", stdout)
    generate, grade, learn, total = split
    assert generate > 0 and learn > 0 and grade >= 0 and total > 0  # grade prints 0.000 when quick
    assert abs(generate + grade + learn - total) < 0.01
    thinking, summary_tokens, tokens_per_s = numbers(
        r"generated: NUMBER thinking \+ NUMBER summary tokens, NUMBER tokens/s", stdout
    )
    assert thinking >= traces and summary_tokens >= traces * S * A and tokens_per_s > 0  # >= 1 token each
    learner = numbers(
        r"learner: NUMBER tree tokens .*update pass NUMBER s \(NUMBER tokens/s, MFU NUMBER%\)", stdout
    )
    assert all(value > 0 for value in learner), learner
    assert (
        numbers(r"verifier: NUMBER/NUMBER known answers correct, NUMBER graded by math-verify", stdout)[2] > 0
    )
    assert "peak GPU memory: not measured on the CPU" in stdout
    # The same figures in step.json, unrounded.
    assert figures["trajectories"] == traces and figures["summaries"] == figures["verdicts"] == traces * S * A
    statuses = figures["statuses"]
    assert isinstance(statuses, dict) and sum(statuses.values()) == traces * S * A
    for key in ("generate_s", "grade_s", "learn_s", "generated_tokens_per_s", "learner_update_mfu"):
        value = figures[key]
        assert isinstance(value, float) and value > 0, (key, value)
    assert figures["peak_memory_gib"] is None  # CPU: torch.cuda.max_memory_allocated is not read
    n = traces * S * A
    row = rf"\| step traj / requests / summ / verdicts +\| {traces} / {requests:.0f} / {n} / {n} +\|"
    assert re.search(row, stdout), stdout[-4000:]


def test_the_step_grades_as_the_verify_worker(redis_client: Any) -> None:
    """`benchmarks/gpu_step.py` builds the verify worker's submissions itself (the worker's module imports
    Celery, which the box lacks): the same trajectories get the same verdict for every summary both ways."""
    from types import SimpleNamespace

    from anytime.contracts.verify import VerifyRequest
    from anytime.trajectory import Trajectory
    from anytime.trajectory_store import TrajectoryStore
    from anytime.verification.verifier import Verifier
    from benchmarks.gpu_step import grade
    from services.verifier.worker import verify_trajectories
    from tests.fixtures.synthetic import StepShape, synthetic_step

    think_end, eos = 3, 4
    shape = StepShape(problems=2, group_size=3, budgets=(4, 8, 12), num_summaries=2, min_thinking=2)
    made, _ = synthetic_step(
        shape, vocab=range(10, 50), ellipsis_ids=(5,), delimiter_ids=(6, 7), think_end_id=think_end,
        eos_id=eos, seed=3,
    )  # fmt: skip
    # Responses of every kind: right, wrong, unparseable, unformatted (finish reasons vary the prefixes).
    responses = ["</think>\n\n**Final Answer**\n\\boxed{0}", "</think>\n\n**Final Answer**\n\\boxed{1}",
                 "no answer here", "\n\n**Final Answer**\n\\boxed{0}"]  # fmt: skip
    trajectories, number = [], 0
    for trajectory in made:
        record = trajectory.model_dump()
        for cut in record["cuts"]:
            for sample in cut["summaries"]:
                sample["response"] = responses[number % len(responses)]
                number += 1
        trajectories.append(Trajectory.model_validate(record))
    store = TrajectoryStore(redis_client)
    store.put_many(trajectories)
    request = VerifyRequest(trajectory_ids=[t.id for t in trajectories], think_end_id=think_end, eos_id=eos)
    with Verifier(timeout_s=5, workers=1) as verifier:
        report = verify_trajectories(store, verifier, request)
        ours, statuses = grade(verifier, trajectories, SimpleNamespace(think_end_id=think_end, eos_id=eos))
    assert {t.id: store.verdicts(t.id) for t in trajectories} == ours
    assert statuses == report.statuses and sum(statuses.values()) == report.summaries == number
    assert len(statuses) >= 3  # correct, incorrect and unparseable all occur
