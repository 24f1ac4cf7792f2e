"""The Celery `rollout` worker against a real redis-server: real `celery worker -P solo -Q rollout` processes.

A worker killed mid-task (SIGKILL, no chance to clean up) leaves its message unacknowledged; Redis
re-delivers it after the visibility timeout to the next worker, which runs the task again; the step's
trajectories are then stored exactly once.
"""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from anytime.celery_app import make_celery
from anytime.contracts.rollout import GENERATE_TASK, RolloutConfig, RolloutJob
from anytime.synth import get_task
from anytime.trajectory_store import TrajectoryStore
from services.rollout.anytime_rollout import rollout
from services.rollout.jobs import EngineHolder, run_rollout_job
from services.rollout.settings import RolloutSettings
from tests.fixtures.servers import RedisServer
from tests.fixtures.workers import start_worker, stop_worker

pytestmark = pytest.mark.integration

VISIBILITY_TIMEOUT_S = 6
CONFIG = RolloutConfig(budgets=(16, 32, 48, 64), group_size=4, num_summaries=2, summary_max_tokens=16)


def _job(run_id: str, model_dir: Path, problems: int = 12) -> RolloutJob:
    return RolloutJob(
        run_id=run_id,
        step=0,
        policy_version=0,
        model_dir=model_dir,
        problems=get_task("digit-chain").generate(problems, seed=9),
        config=CONFIG,
        seed=3,
    )


@pytest.fixture
def store(redis_server: RedisServer) -> Iterator[TrajectoryStore]:
    import redis

    connection = redis.Redis.from_url(redis_server.url)
    yield TrajectoryStore(connection)
    connection.close()


def test_the_same_job_twice_stores_each_trajectory_once(warm_model_dir: Path, store: TrajectoryStore) -> None:
    job = _job(f"run-{uuid.uuid4().hex[:8]}", warm_model_dir, problems=3)
    holder = EngineHolder(RolloutSettings())
    first = run_rollout_job(job, holder, store)
    assert first["stored"] == 12 and len(first["trajectory_ids"]) == 12
    stored_json = {i: store.client.get(f"{store.prefix}:traj:{i}") for i in first["trajectory_ids"]}
    # A second run (a re-delivered task) samples again; the first trajectories stay, nothing is added.
    again = run_rollout_job(job.model_copy(update={"seed": 4}), holder, store)
    assert again["stored"] == 0 and again["trajectory_ids"] == first["trajectory_ids"]
    assert store.batch_ids(job.run_id, 0) == sorted(first["trajectory_ids"])
    assert {i: store.client.get(f"{store.prefix}:traj:{i}") for i in first["trajectory_ids"]} == stored_json
    # A partial first attempt (some trajectories stored before a crash) is completed, not duplicated.
    engine = holder.at_version(job.run_id, warm_model_dir, 0)
    partial = rollout(engine, job.problems, job.config, run_id="partial", step=0, seed=1)[:5]
    store.put_many(partial)
    rest = run_rollout_job(job.model_copy(update={"run_id": "partial"}), holder, store)
    assert rest["stored"] == 12 - 5 and len(store.batch_ids("partial", 0)) == 12


@contextmanager
def _worker(redis_url: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        "ANYTIME_VISIBILITY_TIMEOUT_S": str(VISIBILITY_TIMEOUT_S),
        "ANYTIME_ROLLOUT_ENGINE": "transformers",
    }
    proc = start_worker("services.rollout.worker:app", "rollout", ["-P", "solo"], redis_url, log, env)
    try:
        yield proc
    finally:
        stop_worker(proc)


def _wait_for(predicate: Any, timeout_s: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; worker log:\n{log.read_text()[-3000:]}")


def test_a_worker_killed_mid_task_is_replaced_and_nothing_is_stored_twice(
    warm_model_dir: Path, redis_server: RedisServer, store: TrajectoryStore, tmp_path: Path
) -> None:
    client = make_celery(
        redis_server.url, name="rollout-test-client", visibility_timeout_s=VISIBILITY_TIMEOUT_S
    )
    job = _job(f"run-{uuid.uuid4().hex[:8]}", warm_model_dir)
    log = tmp_path / "workers.log"
    result = client.send_task(GENERATE_TASK, kwargs=job.model_dump(mode="json"))
    with _worker(redis_server.url, log) as first:
        _wait_for(lambda: result.state == "STARTED", 120, "the first worker to start the task", log)
        first.send_signal(signal.SIGKILL)  # mid-task: the engine is loading or generating
        first.wait(timeout=10)
    assert result.state == "STARTED" and store.batch_ids(job.run_id, 0) == []
    with _worker(redis_server.url, log):
        outcome = result.get(timeout=180)
    assert outcome["stored"] == 48 and len(outcome["trajectory_ids"]) == 48
    assert store.batch_ids(job.run_id, 0) == sorted(outcome["trajectory_ids"])
    assert log.read_text().count(f"Task {GENERATE_TASK}[{result.id}] received") == 2
    client.close()


def test_a_bad_job_fails_the_task_with_the_field(
    warm_model_dir: Path, redis_server: RedisServer, tmp_path: Path
) -> None:
    client = make_celery(redis_server.url, name="rollout-test-client")
    bad = {**_job("r", warm_model_dir, problems=1).model_dump(mode="json"), "step": -2}
    log = tmp_path / "worker.log"
    with _worker(redis_server.url, log), pytest.raises(Exception, match="step"):
        client.send_task(GENERATE_TASK, kwargs=bad).get(timeout=120)
    client.close()
