"""The rescuer: no run is `queued` or `running` with nothing driving it for more than about a minute.

Every control worker sweeps when it starts and then every `interval_s`: a `running` run whose driver lease
(`anytime.run_lease`) is gone lost its driver (killed, its worker stopped, Redis restarted), and a `queued`
run older than `queued_grace_s` with no lease lost its drive message (the broker died before keeping it, or
the API could not send it); both get a new drive message, at most once per `hold_s` per run (a key in
Redis), so sweeps of several control workers, or a slow queue, do not flood the control queue. A `running`
run whose driver is gone and whose cancel was asked is cancelled here and now.

Duplicate drive messages are harmless: a driver that finds the lease taken leaves.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from anytime.db import repository
from anytime.db.models import RunStatus, utcnow
from anytime.logging import get_logger
from anytime.run_lease import driver_alive
from anytime.settings import REDIS_KEY_PREFIX

if TYPE_CHECKING:
    import redis

logger = get_logger(__name__)


@dataclass
class RunRescuer:
    sessions: Callable[[], Session]
    client: redis.Redis
    schedule: Callable[[str], None]
    interval_s: float = 15.0
    queued_grace_s: float = 60.0
    hold_s: int = 60
    prefix: str = REDIS_KEY_PREFIX

    def sweep(self) -> list[str]:
        """Queue a drive for every run that needs one; the ids queued."""
        rescued: list[str] = []
        with self.sessions() as session:
            runs = repository.runs_to_drive(session)
            for run in runs:
                if driver_alive(self.client, run.id, self.prefix):
                    continue
                if run.status is RunStatus.QUEUED and utcnow() - run.created_at < timedelta(
                    seconds=self.queued_grace_s
                ):
                    continue
                if run.status is RunStatus.RUNNING and run.cancel_requested:
                    repository.set_status(session, run.id, RunStatus.CANCELLED)
                    session.commit()
                    logger.info("run cancelled: its driver was gone", run_id=run.id)
                    continue
                if not self.client.set(f"{self.prefix}:rescue:{run.id}", "1", nx=True, ex=self.hold_s):
                    continue  # rescued a moment ago; its drive message is on its way
                self.schedule(run.id)
                rescued.append(run.id)
                logger.warning(
                    "run had no live driver; queued it again",
                    run_id=run.id,
                    status=str(run.status),
                    step=run.step,
                )
        return rescued

    def run_forever(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.sweep()
            except Exception as err:  # Redis or the database away: the next sweep tries again
                logger.warning("rescue sweep failed", error=f"{type(err).__name__}: {err}")
            stop.wait(self.interval_s)

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run_forever, args=(stop,), name="run-rescuer", daemon=True)
        thread.start()
        return thread
