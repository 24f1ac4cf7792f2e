"""The parts that keep runs going, each on a real redis-server (and SQLite through the real schema):
delivery leases, driver leases, the rescuer, and the stack's supervisor."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from anytime.db import repository
from anytime.db.base import Base
from anytime.db.models import Run, RunStatus, utcnow
from anytime.db.session import make_engine, make_session_factory
from anytime.delivery_lease import DeliveryLease
from anytime.run_config import RunConfig
from anytime.run_lease import RunLease, driver_alive, lease_key
from anytime.tracking import NullTracker
from anytime.trajectory_store import TrajectoryStore
from anytime_cli.stack import EmbeddedStack, Service
from services.control.driver import DriverDeps, RunDriver
from services.control.rescue import RunRescuer

pytestmark = pytest.mark.integration


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'runs.db'}")
    Base.metadata.create_all(engine)
    yield make_session_factory(engine)
    engine.dispose()


def _run(sessions: sessionmaker[Session], *statuses: RunStatus, age_s: float = 0.0) -> str:
    with sessions() as session:
        run = repository.create_run(session, RunConfig(model="m", dataset="d"))
        run.created_at = utcnow() - timedelta(seconds=age_s)
        for status in statuses:
            repository.set_status(session, run.id, status)
        session.commit()
        return run.id


# ---------------------------------------------------------------------------------- delivery lease


def test_the_delivery_lease_keeps_held_messages_fresh_and_forgets_acknowledged_ones(
    redis_client: redis_lib.Redis,
) -> None:
    redis_client.zadd("unacked_index", {"held": 100.0, "other": 100.0})
    lease = DeliveryLease(lambda: redis_client, interval_s=3600)
    lease.hold("held")
    lease.hold("acked")  # never indexed (or acknowledged already)
    before = time.time()
    lease.refresh()
    assert redis_client.zscore("unacked_index", "held") >= before  # fresh: not restored for a while
    assert redis_client.zscore("unacked_index", "other") == 100.0  # not ours: left to be restored
    assert redis_client.zscore("unacked_index", "acked") is None  # XX: never added back
    assert set(lease.held) == {"held", "acked"}  # one miss may be a race with delivery
    lease.refresh()
    assert lease.held == ["held"]
    redis_client.zrem("unacked_index", "held")  # kombu acknowledged it
    lease.refresh()
    lease.refresh()
    assert lease.held == []
    lease.stop()


def test_a_message_whose_worker_died_is_restored_one_visibility_timeout_later(
    redis_server: object, celery_client: object
) -> None:
    """End to end through kombu: a worker takes a message and dies without acknowledging it. Held by a
    live lease it stays invisible; once nobody refreshes it, the broker's sweep puts it back on its queue."""
    from anytime.celery_app import make_celery

    url = redis_server.url  # type: ignore[attr-defined]
    app = make_celery(url, name="lease-test", visibility_timeout_s=6)
    client = redis_lib.Redis.from_url(url)
    client.delete("unacked", "unacked_index", "lease-test-queue")
    with app.connection_for_write() as connection:
        queue = connection.SimpleQueue("lease-test-queue")
        queue.put({"n": 1})
        message = queue.get(timeout=5)  # delivered, not acknowledged: a worker now "runs" it
        tag = str(message.delivery_tag)
        lease = DeliveryLease(lambda: client, interval_s=1)
        lease.hold(tag)
        time.sleep(9)  # longer than the visibility timeout: without the lease it would be restored
        channel = connection.default_channel
        channel.qos.restore_visible(num=10, interval=1)
        assert client.llen("lease-test-queue") == 0 and client.zscore("unacked_index", tag) is not None
        lease.stop()  # the worker dies: nobody refreshes it any more
        time.sleep(7)
        channel.qos.restore_visible(num=10, interval=1)
        assert client.llen("lease-test-queue") == 1  # back on its queue for the next worker
        queue.close()
    app.close()
    client.close()


# ------------------------------------------------------------------------------------ driver lease


def test_one_driver_holds_a_run_and_a_dead_drivers_lease_expires(redis_client: redis_lib.Redis) -> None:
    first, second = RunLease(redis_client, "r1", ttl_s=2), RunLease(redis_client, "r1", ttl_s=2)
    assert first.acquire() and not second.acquire()
    assert driver_alive(redis_client, "r1")
    time.sleep(2.5)  # the first driver died: nothing renewed its lease
    assert not driver_alive(redis_client, "r1")
    assert second.acquire()
    assert not first.renew() and first.lost.is_set()  # the first one, back from a pause, lets go
    second.release()
    assert not driver_alive(redis_client, "r1")


def test_a_kept_lease_outlives_its_ttl_and_is_taken_back_after_redis_lost_it(
    redis_client: redis_lib.Redis,
) -> None:
    lease = RunLease(redis_client, "r2", ttl_s=1)
    assert lease.acquire()
    with lease.kept():
        time.sleep(1.6)
        assert driver_alive(redis_client, "r2")
        redis_client.delete(lease_key("r2"))  # Redis restarted without it
        time.sleep(0.8)
        assert driver_alive(redis_client, "r2") and not lease.lost.is_set()
    assert not driver_alive(redis_client, "r2")  # released at the end


# ------------------------------------------------------------------------------------------ rescuer


def test_the_rescuer_queues_runs_without_a_driver_once_and_cancels_orphans(
    redis_client: redis_lib.Redis, sessions: sessionmaker[Session]
) -> None:
    orphan = _run(sessions, RunStatus.RUNNING)
    driven = _run(sessions, RunStatus.RUNNING)
    fresh = _run(sessions)  # its drive message is probably still on its way
    lost = _run(sessions, age_s=120)  # queued two minutes ago, never picked up
    ended = _run(sessions, RunStatus.RUNNING, RunStatus.SUCCEEDED)
    cancel = _run(sessions, RunStatus.RUNNING)
    with sessions() as session:
        repository.request_cancel(session, cancel)
        session.commit()
    assert RunLease(redis_client, driven).acquire()
    sent: list[str] = []
    rescuer = RunRescuer(sessions, redis_client, sent.append, queued_grace_s=60, hold_s=60)
    assert sorted(rescuer.sweep()) == sorted([orphan, lost])
    assert rescuer.sweep() == []  # rescued a moment ago: no second message
    assert sorted(sent) == sorted([orphan, lost])
    with sessions() as session:
        statuses = {run.id: run.status for run in session.query(Run)}
    assert statuses[cancel] is RunStatus.CANCELLED and statuses[ended] is RunStatus.SUCCEEDED
    assert statuses[fresh] is RunStatus.QUEUED and statuses[driven] is RunStatus.RUNNING


def test_the_rescuer_keeps_sweeping_through_an_outage(sessions: sessionmaker[Session]) -> None:
    dead = redis_lib.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    rescuer = RunRescuer(sessions, dead, lambda _: None, interval_s=0.05)
    stop = threading.Event()
    thread = rescuer.start(stop)
    _run(sessions, RunStatus.RUNNING)
    time.sleep(0.5)
    assert thread.is_alive()  # each failed sweep is logged, and the next one tries again
    stop.set()
    thread.join(timeout=5)


# ------------------------------------------------------------------------------------------ supervisor


def test_the_stack_starts_a_service_that_died_again_with_back_off(tmp_path: Path) -> None:
    stack = EmbeddedStack(tmp_path / "home", redis_port=1)
    sleeper = Service("sleeper", [sys.executable, "-c", "import time; time.sleep(600)"], lambda: True)
    stack._spawn(sleeper, {})
    stack.services.append(sleeper)
    try:
        assert stack.supervise() == []
        assert sleeper.proc is not None
        first = sleeper.proc.pid
        sleeper.proc.send_signal(signal.SIGKILL)
        sleeper.proc.wait()
        assert stack.supervise() == []  # waits its back-off (1 s) first
        time.sleep(1.1)
        assert stack.supervise() == ["sleeper"]
        assert sleeper.proc.pid != first and sleeper.proc.poll() is None and sleeper.restarts == 1
        sleeper.proc.send_signal(signal.SIGKILL)
        sleeper.proc.wait()
        stack.supervise()
        assert sleeper.backoff_s == 2.0  # dying again soon doubles it
    finally:
        stack.stop()


# ------------------------------------------------------------------------------------------- driver


def _driver(sessions: sessionmaker[Session], client: redis_lib.Redis, tmp_path: Path) -> RunDriver:
    def no_tasks(name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        raise AssertionError(f"no task should be sent ({name})")

    return RunDriver(DriverDeps(sessions, no_tasks, TrajectoryStore(client), NullTracker(), tmp_path))


def test_a_driver_that_fails_at_start_up_ends_the_run_failed_with_the_error(
    redis_client: redis_lib.Redis, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    run_id = _run(sessions)
    with sessions() as session:
        session.execute(update(Run).where(Run.id == run_id).values(config={"model": "", "dataset": "d"}))
        session.commit()
    assert _driver(sessions, redis_client, tmp_path).drive(run_id) == "failed"
    with sessions() as session:
        run = repository.require_run(session, run_id)
    assert run.status is RunStatus.FAILED and run.error is not None and "model" in run.error
    assert not driver_alive(redis_client, run_id)  # the lease went with it


def test_a_driver_leaves_a_run_another_driver_holds_and_ends_an_orphans_cancel(
    redis_client: redis_lib.Redis, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    held, orphan = _run(sessions, RunStatus.RUNNING), _run(sessions, RunStatus.RUNNING)
    assert RunLease(redis_client, held).acquire()
    with sessions() as session:
        repository.request_cancel(session, orphan)
        session.commit()
    driver = _driver(sessions, redis_client, tmp_path)
    assert driver.drive(held) == "skipped"
    assert driver.drive(orphan) == "cancelled"
