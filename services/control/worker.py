"""Celery worker for the `control` queue: drives runs through rollout → verify → learn.

    celery -A services.control.worker:app worker -Q control -P threads -c 4

A thread pool: a driver spends its life waiting on other queues' tasks, so one process drives several runs.
The driver task is acknowledged late; if the worker dies, the run is re-delivered and continues from the
last step SQL committed (see `services.control.driver`). Each control worker also runs the rescuer
(`services.control.rescue`): runs left without a driver are queued again within about a minute. On
shutdown (SIGTERM) drivers let go of their runs at the next look-up; the runs stay resumable.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import redis
import tenacity
from celery import Celery, bootsteps, signals
from celery.exceptions import TimeoutError as CeleryTimeout

from anytime.celery_app import celery_from_settings, lazy_app_attribute, route_by_name, task_arguments
from anytime.contracts.drive import DRIVE_TASK, DriveRequest
from anytime.db.session import make_engine, make_session_factory
from anytime.logging import configure_logging, get_logger
from anytime.queues import Queue
from anytime.tracking import MlflowTracker, NullTracker, Tracker
from anytime.trajectory_store import TrajectoryStore
from services.control.driver import (
    DriverDeps,
    DriverStopped,
    RunDriver,
    TaskRunner,
    is_infrastructure_outage,
)
from services.control.rescue import RunRescuer
from services.control.settings import ControlSettings

logger = get_logger(__name__)


POLL_S = 2.0  # how often a waiting driver looks up from its task (shutdown, lost lease, Redis away)


class TaskFailed(RuntimeError):
    """A task the driver sent raised; the message names the task (the run ends failed with it)."""


def build_task_runner(settings: ControlSettings, celery: Celery, stopping: threading.Event) -> TaskRunner:
    """Send a task and wait for its result, looking up every `POLL_S`: a worker shutdown lets go of the
    run; Redis away is waited out (the task's message survives in Redis, append-only file on); a task that
    does not finish within `task_timeout_s` fails the run with the task's name."""
    retry_send = tenacity.retry(
        retry=tenacity.retry_if_exception(is_infrastructure_outage),
        wait=tenacity.wait_exponential(multiplier=0.5, max=10),
        stop=tenacity.stop_after_delay(settings.outage_wait_s),
        reraise=True,
    )

    @retry_send
    def send(name: str, kwargs: Mapping[str, Any]) -> Any:
        return celery.send_task(name, kwargs=dict(kwargs))

    def run_task(name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        result = send(name, kwargs)
        deadline = time.monotonic() + settings.task_timeout_s
        outage_since: float | None = None
        while True:
            if stopping.is_set():
                raise DriverStopped(f"the control worker is shutting down (while waiting on {name})")
            try:
                value = result.get(timeout=POLL_S, disable_sync_subtasks=False)
                return dict(value)
            except CeleryTimeout:
                outage_since = None
            except Exception as err:
                if not is_infrastructure_outage(err) or _state(result) == "FAILURE":
                    raise TaskFailed(f"task {name} failed: {type(err).__name__}: {err}") from err
                outage_since = outage_since or time.monotonic()
                if time.monotonic() - outage_since > settings.outage_wait_s:
                    raise
                logger.warning("waiting for Redis", task=name, error=f"{type(err).__name__}: {err}")
                time.sleep(POLL_S)
            if time.monotonic() > deadline:
                raise TaskFailed(
                    f"task {name} did not finish within {settings.task_timeout_s:.0f} s "
                    f"(is a worker consuming the {route_by_name(name) or 'its'} queue?)"
                )

    return run_task


class LiveWorkers:
    """How many workers consume a queue, asked of the workers themselves (Celery's `active_queues`
    broadcast) at most every `ttl_s`: what sizes a step's rollout shards when the run does not. Workers
    that join are counted within `ttl_s`; when nobody answers (or the broker is away) the last count
    stands, and never fewer than 1."""

    def __init__(self, celery: Celery, queue: Queue, ttl_s: float = 30.0, timeout_s: float = 1.0) -> None:
        self.celery = celery
        self.queue = queue
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._count = 1
        self._asked_at = -math.inf

    def __call__(self) -> int:
        with self._lock:
            if time.monotonic() - self._asked_at < self.ttl_s:
                return self._count
            self._asked_at = time.monotonic()
            try:
                replies = self.celery.control.inspect(timeout=self.timeout_s).active_queues() or {}
            except Exception as err:  # the count is a hint: a failed look-up keeps the last one
                logger.warning("could not count live workers", queue=self.queue.value, error=str(err))
                return self._count
            consuming = [
                name
                for name, queues in replies.items()
                if any(q.get("name") == self.queue.value for q in queues or [])
            ]
            self._count = max(1, len(consuming))
            return self._count


def _state(result: Any) -> str | None:
    try:
        return str(result.state)
    except Exception:  # the backend is away too
        return None


def build_driver(settings: ControlSettings, celery: Celery, stopping: threading.Event) -> RunDriver:
    tracker: Tracker = (
        MlflowTracker(settings.resolved_mlflow_uri, settings.resolved_artifact_root)
        if settings.tracking
        else NullTracker()
    )
    return RunDriver(
        DriverDeps(
            sessions=make_session_factory(make_engine(settings.resolved_database_url)),
            run_task=build_task_runner(settings, celery, stopping),
            store=TrajectoryStore(redis.Redis.from_url(settings.broker_url())),
            tracker=tracker,
            runs_root=settings.resolved_runs_root,
            stopping=stopping,
            rollout_workers=LiveWorkers(celery, Queue.ROLLOUT),
            poll_s=POLL_S,
        )
    )


def create_app(settings: ControlSettings) -> Celery:
    app = celery_from_settings(settings, name="anytime-control")
    drivers: list[RunDriver] = []  # built by the first task: the worker process owns it
    lock = threading.Lock()
    stopping = threading.Event()

    # Acknowledged on receipt: a driver's recovery is the rescuer's (a lease, not a re-delivered message),
    # and a control worker holding no unacknowledged message survives a broker restart cleanly.
    @app.task(name=DRIVE_TASK, acks_late=False, reject_on_worker_lost=False)
    def drive(**kwargs: Any) -> str:
        request = task_arguments(DriveRequest, kwargs, "drive request")
        with lock:
            if not drivers:
                drivers.append(build_driver(settings, app, stopping))
        return drivers[0].drive(request.run_id)

    def schedule(run_id: str) -> None:
        app.send_task(DRIVE_TASK, kwargs=DriveRequest(run_id=run_id).model_dump(), ignore_result=True)

    def on_ready(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is not app or not settings.rescue:
            return
        rescuer = RunRescuer(
            sessions=make_session_factory(make_engine(settings.resolved_database_url)),
            client=redis.Redis.from_url(settings.broker_url(), socket_timeout=5, socket_connect_timeout=5),
            schedule=schedule,
            interval_s=settings.rescue_interval_s,
        )
        rescuer.start(stopping)

    def on_shutdown(**_: Any) -> None:
        # Drivers let go of their runs at the next look-up (every POLL_S), leaving them resumable.
        stopping.set()

    class LetGoOnStop(bootsteps.StartStopStep):
        """Stops before the pool joins its threads (any shutdown, an unrecoverable error's included), so
        drivers let go of their runs instead of holding the worker open."""

        requires = ("celery.worker.components:Pool",)

        def stop(self, worker: Any) -> None:
            stopping.set()

        def shutdown(self, worker: Any) -> None:
            stopping.set()

    app.steps["worker"].add(LetGoOnStop)
    signals.worker_ready.connect(on_ready, weak=False, dispatch_uid=f"anytime-rescuer-{id(app)}")
    signals.worker_shutting_down.connect(on_shutdown, weak=False, dispatch_uid=f"anytime-stop-{id(app)}")
    return app


@lru_cache(maxsize=1)
def default_app() -> Celery:
    """The app `celery -A services.control.worker:app` runs, configured from the environment."""
    settings = ControlSettings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)


__getattr__ = lazy_app_attribute(__name__, default_app)
