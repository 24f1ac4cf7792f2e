"""How the API hands a run to the workers: one Celery message to the run driver, sent by name.

The API never imports the driver (or torch): `send_task("anytime.control.drive", kwargs={"run_id": …})`
is routed to the `control` queue by the task's name. Routes depend on the `RunScheduler` protocol, so
unit tests replace the broker with a recorder.
"""

from __future__ import annotations

from typing import Any, Protocol

from celery import Celery

from anytime.contracts.drive import DRIVE_TASK, DriveRequest

# A broker that is down should fail a request within seconds, not hang it.
_SEND_RETRY_POLICY = {"max_retries": 2, "interval_start": 0.0, "interval_step": 0.5, "interval_max": 1.0}


class SchedulingError(RuntimeError):
    """The run could not be handed to the workers (the API answers 503 and marks the run failed)."""


class RunScheduler(Protocol):
    def schedule(self, run_id: str) -> None:
        """Queue the run for the driver; raise `SchedulingError` if it could not be queued."""

    def driving(self, run_id: str) -> bool | None:
        """Whether a live driver holds the run now (`anytime.run_lease`); None when that cannot be told."""


class CeleryRunScheduler:
    def __init__(self, celery: Celery) -> None:
        self.celery = celery
        self._redis: Any = None

    def driving(self, run_id: str) -> bool | None:
        import redis

        from anytime.run_lease import driver_alive

        try:
            if self._redis is None:
                self._redis = redis.Redis.from_url(
                    str(self.celery.conf.broker_url), socket_timeout=2, socket_connect_timeout=2
                )
            return driver_alive(self._redis, run_id)
        except redis.RedisError:
            return None

    def schedule(self, run_id: str) -> None:
        try:
            # Nobody waits on the driver's return value (progress is in SQL), and asking for it would make
            # the send also subscribe to the result backend.
            self.celery.send_task(
                DRIVE_TASK,
                kwargs=DriveRequest(run_id=run_id).model_dump(),
                ignore_result=True,
                retry=True,
                retry_policy=_SEND_RETRY_POLICY,
            )
        except Exception as err:  # kombu and redis raise many kinds; all mean "not queued"
            raise SchedulingError(f"the broker refused the run ({type(err).__name__}: {err})") from err

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()
        self.celery.close()


class NoBrokerScheduler:
    """What the API uses when no broker is configured: every run is refused with how to fix it."""

    def schedule(self, run_id: str) -> None:
        raise SchedulingError(
            "no broker configured: set ANYTIME_REDIS_URL (or REDIS_URL); `anytime up` sets it for the API"
        )

    def driving(self, run_id: str) -> bool | None:
        return None
