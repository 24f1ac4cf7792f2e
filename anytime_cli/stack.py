"""The embedded stack (`anytime up`): every service of the platform as local processes, in the foreground.

redis-server (append-only file on: queues, unacknowledged tasks and trajectories survive a restart) →
database migrations and the MLflow store's schema (a one-shot step, as compose's `migrate` service: nothing
else creates tables) → the MLflow server (workers then track through it over HTTP, so one process owns the
store) → one Celery worker per queue (rollout, eval, verify, learn, control) → the API (uvicorn). Each
process runs in its own session with a parent-death signal, logs to `<home>/logs/<name>.log`, and is
stopped by its process group, in reverse order: nothing is left behind (`anytime.processes`, which the test
fixtures share).

Part of the CLI, not of a service: it names every service's entry point (by module, as a command line runs
them), which no service may do of another. Its configuration is `StackSettings`, read once; the children
get this process's environment with the stack's addresses, key and folders written over it.

Supervised: a service that exits while the stack runs is started again after a back-off (1 s, doubling to
`MAX_BACKOFF_S`; reset once it has stayed up a minute), and the restart is logged. Runs survive it: tasks
are re-delivered, drivers rescued (see `services.control.rescue`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from anytime.logging import get_logger
from anytime.processes import (
    ProcessStartError,
    celery_worker_argv,
    free_port,
    log_tail,
    redis_answers,
    redis_server_argv,
    spawn,
    stop,
    wait_ready,
)
from anytime.settings import CommonSettings, inherited_environment

REPO = Path(__file__).resolve().parents[1]
STOP_GRACE_S = 20.0
MAX_BACKOFF_S = 30.0
STABLE_AFTER_S = 60.0  # a service up this long is healthy again: its back-off starts over
logger = get_logger(__name__)


# MLflow's GenAI job runner (seven huey consumers, ~1.7 GB) serves no training run: the stack's MLflow
# server starts without it unless this variable says otherwise.
MLFLOW_JOB_EXECUTION = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"


class StackSettings(CommonSettings):
    """What `anytime up` reads from its environment, besides the shared settings (a database or MLflow
    store of one's own) and its command-line options."""

    model_config = SettingsConfigDict(env_prefix="ANYTIME_", extra="ignore", frozen=True)

    data_roots: str | None = Field(
        default=None,
        validation_alias=AliasChoices("ANYTIME_DATA_ROOTS"),
        description="The API's data roots, handed on as written (the API parses them); unset: home and "
        "the repository's build/ folder. The stack's own `data_roots` are added to them.",
    )
    learner_max_learners: int = Field(
        default=2,
        ge=1,
        validation_alias=AliasChoices("ANYTIME_LEARNER_MAX_LEARNERS"),
        description="The learn worker's loaded runs: the tiny model is small, so two runs' learners (the "
        "demo's BRPO and GRPO) stay loaded.",
    )
    mlflow_job_execution: bool = Field(
        default=False,
        validation_alias=AliasChoices(MLFLOW_JOB_EXECUTION),
        description="Start the MLflow server's GenAI job runner (no training run needs it).",
    )
    torch_threads: int | None = Field(
        default=None,
        ge=1,
        validation_alias=AliasChoices("ANYTIME_TORCH_THREADS", "OMP_NUM_THREADS"),
        description="Intra-op threads of each torch worker (rollout, eval, learn), handed on as "
        "OMP_NUM_THREADS (which it also reads). Unset: the cores divided among those workers.",
    )


# The workers that run torch side by side: rollout worker(s), eval, learn.
TORCH_WORKERS_BESIDE_ROLLOUT = 2


def torch_threads(cpus: int | None, torch_workers: int) -> int:
    """Threads per torch worker when the stack shares one machine among them: the cores divided among
    the workers, at least one. torch's default (every core in every process) oversubscribes a small box:
    on 2 cores a rollout beside a learner step ran 5x slower, both at 2 threads, than at 1 thread each
    (`benchmarks/worker_threads.py`)."""
    return max(1, (cpus or 1) // max(1, torch_workers))


def mlflow_server_workers(store_uri: str, cpus: int | None) -> int:
    """MLflow server processes: one on a SQLite store (one writer at a time; more would wait on its lock),
    else one per two cores, at most four (MLflow's own default is four whatever the machine)."""
    if store_uri.startswith("sqlite"):
        return 1
    return min(4, max(1, (cpus or 1) // 2))


def mlflow_server_argv(store_uri: str, artifact_root: str, port: int) -> list[str]:
    """The stack's MLflow server on loopback (its environment sets `MLFLOW_JOB_EXECUTION`)."""
    workers = mlflow_server_workers(store_uri, os.cpu_count())
    return [
        *(sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store_uri),
        *("--default-artifact-root", artifact_root, "--host", "127.0.0.1", "--port", str(port)),
        *("--workers", str(workers)),
    ]


class StackError(ProcessStartError):
    """A service did not come up; the message names it and ends with its log."""


@dataclass
class Service:
    name: str
    argv: list[str]
    ready: Callable[[], bool]
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    restarts: int = 0
    started_at: float = 0.0
    backoff_s: float = 0.0
    restart_at: float | None = None  # set while it waits to be started again


@dataclass
class EmbeddedStack:
    home: Path
    api_port: int = 8000
    mlflow_port: int = 5000
    redis_port: int | None = None
    ui: bool = True
    api: bool = True
    database: str | None = None  # a SQLAlchemy URL; unset: the settings' database, else SQLite in home
    serve: Path | None = None  # a model folder the API serves for inference as `model: "anytime"`
    data_roots: tuple[Path, ...] = ()  # folders run configs may name, besides home and the repo's build/
    rollout_workers: int = 1  # rollout worker processes (`rollout`, `rollout-2`, …): a step's shards
    settings: StackSettings = field(default_factory=StackSettings)
    services: list[Service] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.home = self.home.resolve()
        self.redis_port = self.redis_port or free_port()

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    @property
    def api_key_file(self) -> Path:
        return self.home / "api-key"

    @property
    def database_url(self) -> str:
        return self.database or self.settings.database_url or f"sqlite:///{self.home / 'anytime.db'}"

    @property
    def mlflow_store_uri(self) -> str:
        """The MLflow store: the server's backend (or, without the UI, what the workers write to)."""
        return self.settings.mlflow_tracking_uri or f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def mlflow_uri(self) -> str:
        """What the workers track to: the stack's MLflow server when it runs one, else the store itself."""
        if self.ui and not self.settings.mlflow_tracking_uri:
            return self.mlflow_url
        return self.mlflow_store_uri

    @property
    def artifact_root(self) -> str:
        return (self.home / "mlflow-artifacts").resolve().as_uri()

    def api_key(self) -> str:
        """The stack's API key: made once, kept in `<home>/api-key` (mode 600)."""
        if not self.api_key_file.exists():
            self.home.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.api_key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(32))
        return self.api_key_file.read_text().strip()

    def omp_threads(self) -> str:
        """OMP_NUM_THREADS for the services (see `torch_threads`)."""
        if self.settings.torch_threads is not None:
            return str(self.settings.torch_threads)
        return str(torch_threads(os.cpu_count(), self.rollout_workers + TORCH_WORKERS_BESIDE_ROLLOUT))

    def env(self) -> dict[str, str]:
        """The services' environment: this process's, with the stack's settings written over it."""
        return {
            **inherited_environment(),
            "ANYTIME_HOME": str(self.home),
            "ANYTIME_REDIS_URL": self.redis_url,
            "ANYTIME_DATABASE_URL": self.database_url,
            "ANYTIME_MLFLOW_TRACKING_URI": self.mlflow_uri,
            "ANYTIME_API_API_KEY": self.api_key(),
            "ANYTIME_API_HOST": "127.0.0.1",  # what uvicorn binds below
            "ANYTIME_DATA_ROOTS": ",".join(
                [self.settings.data_roots or f"{self.home},{REPO / 'build'}"]
                + [str(root.resolve()) for root in self.data_roots]
            ),
            "ANYTIME_LEARNER_MAX_LEARNERS": str(self.settings.learner_max_learners),
            "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": self.omp_threads(),
            MLFLOW_JOB_EXECUTION: str(self.settings.mlflow_job_execution).lower(),
            **({"ANYTIME_API_INFERENCE_MODEL": str(self.serve.resolve())} if self.serve else {}),
        }

    def _plan(self) -> list[Service]:
        py = sys.executable

        def worker(name: str, app: str, queue: str, pool: list[str]) -> Service:
            argv = celery_worker_argv(app, queue, pool, node=f"{name}@%h")
            return Service(name, argv, lambda: True)

        assert self.redis_port is not None  # set in __post_init__
        port = self.redis_port
        try:
            redis_argv = redis_server_argv(port, self.home / "redis", durable=True)
        except FileNotFoundError as err:
            raise StackError(str(err)) from None
        redis = Service("redis", redis_argv, lambda: False)
        redis.ready = lambda: redis.proc is not None and redis_answers(port, redis.proc.pid)
        services = [
            redis,
            *[
                worker(name, "services.rollout.worker:app", "rollout", ["-P", "solo"])
                for name in ["rollout", *[f"rollout-{i}" for i in range(2, self.rollout_workers + 1)]]
            ],
            worker("eval", "services.rollout.worker:app", "eval", ["-P", "solo"]),
            worker("verify", "services.verifier.worker:app", "verify", ["-P", "prefork", "-c", "1"]),
            worker("learn", "services.learner.worker:app", "learn", ["-P", "solo"]),
            worker("control", "services.control.worker:app", "control", ["-P", "threads", "-c", "4"]),
            Service(
                "api",
                [
                    py,
                    "-m",
                    "uvicorn",
                    "services.api.app:create_app",
                    "--factory",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.api_port),
                ],
                lambda: self._http_ok(f"{self.api_url}/readyz"),
            ),
        ]
        if not self.api:
            services = [s for s in services if s.name != "api"]
        if self.ui:
            services.insert(
                1,
                Service(
                    "mlflow",
                    mlflow_server_argv(self.mlflow_store_uri, self.artifact_root, self.mlflow_port),
                    lambda: self._http_ok(f"{self.mlflow_url}/health"),
                ),
            )
        return services

    @staticmethod
    def _http_ok(url: str) -> bool:
        try:
            return httpx.get(url, timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def _spawn(self, service: Service, env: dict[str, str]) -> None:
        logs = self.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        service.log = logs / f"{service.name}.log"
        with service.log.open("ab") as out:
            service.proc = spawn(service.argv, out, cwd=REPO, env=env)
        service.started_at = time.monotonic()

    def _wait(self, service: Service, timeout_s: float) -> None:
        assert service.proc is not None and service.log is not None
        try:
            wait_ready(service.proc, service.name, service.ready, timeout_s, service.log, poll_s=0.2)
        except ProcessStartError as err:
            raise StackError(str(err)) from None

    def migrate(self, env: dict[str, str]) -> None:
        """The one-shot step: SQL migrations, then the MLflow store's schema and experiment."""
        run = subprocess.run(
            [sys.executable, "-m", "alembic", "-c", str(REPO / "alembic.ini"), "upgrade", "head"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
        )
        if run.returncode != 0:
            raise StackError(f"database migrations failed:\n{run.stderr[-3000:]}")
        if self.mlflow_store_uri.startswith(("http://", "https://")):
            return  # somebody else's server owns its store
        init = subprocess.run(
            [sys.executable, "-m", "anytime.tracking", self.mlflow_store_uri, self.artifact_root],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
        )
        if init.returncode != 0:
            raise StackError(f"the MLflow store could not be initialised:\n{init.stderr[-3000:]}")

    def start(self, timeout_s: float = 180.0) -> None:
        (self.home / "redis").mkdir(parents=True, exist_ok=True)
        env = self.env()
        plan = self._plan()
        try:
            redis_service, *rest = plan
            self._spawn(redis_service, env)
            self.services.append(redis_service)
            self._wait(redis_service, 30)
            self.migrate(env)
            if rest and rest[0].name == "mlflow":  # the store's owner is up before anyone tracks
                mlflow_service, *rest = rest
                self._spawn(mlflow_service, env)
                self.services.append(mlflow_service)
                self._wait(mlflow_service, timeout_s)
            for service in rest:
                self._spawn(service, env)
                self.services.append(service)
            for service in rest:
                self._wait(service, timeout_s)
            self._wait_for_workers(timeout_s, [s.name for s in rest if s.argv[1:3] == ["-m", "celery"]])
        except BaseException:
            self.stop()
            raise

    def _wait_for_workers(self, timeout_s: float, names: list[str]) -> None:
        from anytime.celery_app import make_celery

        app = make_celery(self.redis_url, name="anytime-up")
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                self.check_alive()
                replies = app.control.ping(timeout=1.0) or []
                answered = {name.split("@")[0] for reply in replies for name in reply}
                if set(names) <= answered:
                    return
            raise StackError(
                f"workers not answering after {timeout_s:.0f} s: {sorted(set(names) - answered)}"
            )
        finally:
            app.close()

    def supervise(self) -> list[str]:
        """Start again every service that exited (after its back-off); the names started again."""
        now = time.monotonic()
        restarted = []
        env: dict[str, str] | None = None
        for service in self.services:
            proc = service.proc
            if proc is None or proc.poll() is None:
                if proc is not None and now - service.started_at > STABLE_AFTER_S:
                    service.backoff_s = 0.0
                continue
            if service.restart_at is None:
                service.backoff_s = min(MAX_BACKOFF_S, max(1.0, service.backoff_s * 2))
                service.restart_at = now + service.backoff_s
                logger.warning(
                    "service exited; starting it again",
                    service=service.name,
                    code=proc.returncode,
                    in_s=service.backoff_s,
                    log=str(service.log),
                )
            if now < service.restart_at:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # whatever it forked goes with it
            env = env or self.env()
            self._spawn(service, env)
            service.restarts += 1
            service.restart_at = None
            restarted.append(service.name)
            logger.info("service started again", service=service.name, restarts=service.restarts)
        return restarted

    def check_alive(self) -> None:
        for service in self.services:
            if service.proc is not None and service.proc.poll() is not None:
                assert service.log is not None
                raise StackError(
                    f"{service.name} exited with code {service.proc.returncode}:\n{log_tail(service.log)}"
                )

    def stop(self) -> None:
        """Stop every service, API and workers first, redis last; each by its whole process group."""
        for service in reversed(self.services):
            proc = service.proc
            if proc is None or proc.poll() is not None:
                continue
            stop(proc, service.name, STOP_GRACE_S, group=True)
        self.services.clear()

    @contextlib.contextmanager
    def running(self) -> Iterator[EmbeddedStack]:
        self.start()
        try:
            yield self
        finally:
            self.stop()
