"""One live driver per run: a short Redis lease, renewed by a thread while its driver lives.

The key `{prefix}:driver:{run id}` holds the driving process's token with a TTL of `DEFAULT_LEASE_TTL_S`
(30 s); a thread renews it every third of that. A driver that dies stops renewing and its lease is gone
within 30 s: the rescuer (`services.control.rescue`) then queues the run again, and a cancel in the API
cancels it at once. A second drive message for a live run (a resume, a re-delivery, a rescue) finds the
lease taken and leaves. A lease that expired while Redis was away is taken back by its holder if nobody
else took it; if somebody did, the holder learns it has `lost` the run and stops at its next task boundary.
Torch-free: the API reads `driver_alive` too.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

from anytime.logging import get_logger
from anytime.settings import REDIS_KEY_PREFIX

if TYPE_CHECKING:
    import redis

DEFAULT_LEASE_TTL_S = 30
logger = get_logger(__name__)


def lease_key(run_id: str, prefix: str = REDIS_KEY_PREFIX) -> str:
    return f"{prefix}:driver:{run_id}"


def driver_alive(client: redis.Redis, run_id: str, prefix: str = REDIS_KEY_PREFIX) -> bool:
    """Whether some driver holds the run's lease now."""
    return bool(client.exists(lease_key(run_id, prefix)))


class RunLease:
    def __init__(
        self,
        client: redis.Redis,
        run_id: str,
        ttl_s: int = DEFAULT_LEASE_TTL_S,
        prefix: str = REDIS_KEY_PREFIX,
    ) -> None:
        self.client, self.run_id, self.ttl_s = client, run_id, ttl_s
        self.key = lease_key(run_id, prefix)
        self.token = uuid.uuid4().hex
        self.lost = threading.Event()

    def _mine(self, value: bytes | str | None) -> bool:
        return value in (self.token, self.token.encode())

    def acquire(self) -> bool:
        return bool(self.client.set(self.key, self.token, nx=True, ex=self.ttl_s))

    def renew(self) -> bool:
        """Extend the lease, or take it back if it expired unclaimed; False (`lost`) if another holds it."""
        current = self.client.get(self.key)
        if self._mine(current):
            self.client.expire(self.key, self.ttl_s)
            return True
        if current is None and self.acquire():
            logger.warning("driver lease had expired; taken back", run_id=self.run_id)
            return True
        self.lost.set()
        return False

    def release(self) -> None:
        with contextlib.suppress(Exception):  # a lease left behind expires by itself
            if self._mine(self.client.get(self.key)):
                self.client.delete(self.key)

    @contextlib.contextmanager
    def kept(self) -> Iterator[RunLease]:
        """Renew the lease from a thread until the block ends, then release it."""
        done = threading.Event()

        def keep() -> None:
            while not done.wait(self.ttl_s / 3):
                try:
                    if not self.renew():
                        logger.warning("another driver took this run over", run_id=self.run_id)
                        return
                except Exception as err:  # Redis away: keep trying; the lease is taken back when it returns
                    logger.warning("driver lease not renewed", run_id=self.run_id, error=str(err))

        thread = threading.Thread(target=keep, name=f"lease-{self.run_id}", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            done.set()
            thread.join(timeout=5)
            self.release()
