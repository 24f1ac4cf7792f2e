"""Celery worker for the `control` queue: drives runs through rollout → verify → learn.

    celery -A services.control.worker:app worker -Q control -P threads -c 4

A thread pool: a driver spends its life waiting on other queues' tasks, so one process drives several runs.
The driver task is acknowledged late; if the worker dies, the run is re-delivered and continues from the
last step SQL committed (see `services.control.driver`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import redis
from celery import Celery

from anytime.celery_app import celery_from_settings, lazy_app_attribute, task_name
from anytime.db.session import make_engine, make_session_factory
from anytime.logging import configure_logging
from anytime.queues import Queue
from anytime.tracking import MlflowTracker, NullTracker, Tracker
from anytime.trajectory_store import TrajectoryStore
from services.control.driver import DriverDeps, RunDriver
from services.control.settings import ControlSettings

DRIVE_TASK = task_name(Queue.CONTROL, "drive")


def build_driver(settings: ControlSettings, celery: Celery) -> RunDriver:
    def run_task(name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        result = celery.send_task(name, kwargs=dict(kwargs))
        # Waiting inside a task is what a driver is for; it runs on its own queue and pool.
        return dict(result.get(timeout=settings.task_timeout_s, disable_sync_subtasks=False))

    tracker: Tracker = (
        MlflowTracker(settings.resolved_mlflow_uri, settings.resolved_artifact_root)
        if settings.tracking
        else NullTracker()
    )
    return RunDriver(
        DriverDeps(
            sessions=make_session_factory(make_engine(settings.resolved_database_url)),
            run_task=run_task,
            store=TrajectoryStore(redis.Redis.from_url(settings.broker_url())),
            tracker=tracker,
            runs_root=settings.resolved_runs_root,
        )
    )


def create_app(settings: ControlSettings) -> Celery:
    app = celery_from_settings(settings, name="anytime-control")
    drivers: list[RunDriver] = []  # built by the first task: the worker process owns it
    lock = threading.Lock()

    @app.task(name=DRIVE_TASK)
    def drive(run_id: str) -> str:
        with lock:
            if not drivers:
                drivers.append(build_driver(settings, app))
        return drivers[0].drive(run_id)

    return app


@lru_cache(maxsize=1)
def default_app() -> Celery:
    """The app `celery -A services.control.worker:app` runs, configured from the environment."""
    settings = ControlSettings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)


__getattr__ = lazy_app_attribute(__name__, default_app)
