"""Re-delivery in about a minute, never while the task runs: a live worker keeps its messages' leases fresh.

With Redis as the broker, a message a worker has taken but not acknowledged sits in kombu's `unacked`
hash, indexed by the time it was delivered (`unacked_index`, a sorted set). Any worker's event loop puts
back on its queue every message whose index time is older than the visibility timeout. That one number
used to do two jobs: short enough to re-run a dead worker's task soon, yet longer than the longest healthy
task (or the task runs twice at once). We split them: the visibility timeout is short (a minute by
default), and each worker process runs one `DeliveryLease` thread that moves the index time of every
message it holds to "now" every few seconds. A healthy task of any length is never re-delivered; a task
whose worker died (SIGKILL, OOM, lost machine) stops being refreshed and is re-delivered one visibility
timeout later, to the next live worker. When Redis itself goes away the lease forgets what it held (an
acknowledgement may have been lost with the connection), so after an outage a task may run a second
time; every task is idempotent.

Why not a library or Celery option: Celery's own answers (`task_time_limit`, a long visibility timeout)
bound a task's length or delay recovery by that length; kombu has no heartbeat for the Redis transport.
This is one `ZADD XX` per held message per interval, on kombu's documented key names.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from anytime.logging import get_logger

if TYPE_CHECKING:
    import redis

logger = get_logger(__name__)

UNACKED_INDEX_KEY = "unacked_index"  # kombu.transport.redis.Channel.unacked_index_key


class DeliveryLease:
    """Keeps the messages this process holds from being restored while it lives.

    `hold(tag)` when a message is received; the thread drops a tag by itself once kombu removed it from
    the index (acknowledged, or rejected and requeued), so nothing has to call `release`.
    """

    def __init__(self, client_factory: Any, interval_s: float, key: str = UNACKED_INDEX_KEY) -> None:
        self._client_factory = client_factory
        self._client: redis.Redis | None = None
        self.interval_s = interval_s
        self.key = key
        self._held: dict[str, int] = {}  # tag → consecutive refreshes that found it gone
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def held(self) -> list[str]:
        with self._lock:
            return list(self._held)

    def hold(self, tag: str) -> None:
        with self._lock:
            self._held[tag] = 0
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="delivery-lease", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def refresh(self) -> None:
        """Move every held message's index time to now; forget those that are no longer indexed."""
        tags = self.held
        if not tags:
            return
        if self._client is None:
            self._client = self._client_factory()
        assert self._client is not None
        now = time.time()
        pipe = self._client.pipeline(transaction=False)
        for tag in tags:
            pipe.zadd(self.key, {tag: now}, xx=True, ch=True)
        changed = pipe.execute()
        with self._lock:
            for tag, updated in zip(tags, changed, strict=True):
                if updated or tag not in self._held:
                    continue
                # Not indexed: acknowledged (or just restored). Twice in a row: it is gone for good.
                self._held[tag] += 1
                if self._held[tag] >= 2:
                    del self._held[tag]

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.refresh()
            except Exception as err:
                # Redis away: the consumer reconnects, and a message whose ack was lost on the old
                # connection must become visible again, so its tag is not kept fresh any more.
                self._client = None
                with self._lock:
                    dropped = len(self._held)
                    self._held.clear()
                logger.warning(
                    "delivery lease lost its broker; dropped its messages",
                    dropped=dropped,
                    error=f"{type(err).__name__}: {err}",
                )
            if not self.held:
                with self._lock:
                    if not self._held:
                        self._thread = None
                        return


def install(app: Any, interval_s: float) -> None:
    """Give every worker of `app` a delivery lease (the signal fires in the worker's consuming process)."""
    from celery import signals

    def client() -> redis.Redis:
        import redis as redis_lib

        return redis_lib.Redis.from_url(app.conf.broker_url, socket_timeout=5, socket_connect_timeout=5)

    lease = DeliveryLease(client, interval_s)
    app.anytime_delivery_lease = lease

    def on_received(sender: Any = None, request: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is not app or request is None:
            return
        tag = getattr(getattr(request, "message", None), "delivery_tag", None)
        if tag:
            lease.hold(str(tag))

    signals.task_received.connect(on_received, weak=False, dispatch_uid=f"anytime-delivery-lease-{id(app)}")
