"""Celery worker for the `rollout` queue: `celery -A services.rollout.worker worker -Q rollout -P solo`.

Solo pool: one task at a time on the worker's main thread, because the engine (a model and its KV cache,
on a GPU under vLLM) lives in this process and CUDA does not survive a fork. The engine is created by the
first task and kept for the life of the process; later tasks move it to the policy version they ask for.

Delivery is at-least-once (`acks_late`, `reject_on_worker_lost`): a worker killed mid-task leaves the
message unacknowledged and Redis re-delivers it after the visibility timeout. Re-running is harmless:
trajectory ids are stable and the store is write-once, and a finished task id is remembered so its
re-delivery returns the recorded result without generating again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import redis
from celery import Task

from anytime.celery_app import celery_from_settings, task_name
from anytime.logging import configure_logging, get_logger
from anytime.problems import Problem
from anytime.queues import Queue
from anytime.trajectory_store import TrajectoryStore
from services.rollout.anytime_rollout import RolloutConfig, rollout
from services.rollout.engine import Engine, StalePolicyError
from services.rollout.settings import RolloutSettings, make_engine

settings = RolloutSettings()
configure_logging(settings.log_level, settings.log_format)
app = celery_from_settings(settings, name="anytime-rollout")
logger = get_logger(__name__)

DONE_TTL_S = 7 * 24 * 3600


class EngineHolder:
    """The process's engine, created on first use and moved forward through policy versions."""

    def __init__(self, settings: RolloutSettings) -> None:
        self.settings = settings
        self.engine: Engine | None = None

    def at_version(self, model_dir: Path, policy_version: int) -> Engine:
        if self.engine is None:
            self.engine = make_engine(self.settings.engine, model_dir, self.settings, policy_version)
        elif policy_version > self.engine.policy_version:
            self.engine.load_weights(model_dir, policy_version)
        elif policy_version < self.engine.policy_version:
            raise StalePolicyError(
                f"asked for policy version {policy_version}, but version {self.engine.policy_version} is "
                "loaded; an older policy is refused rather than served under the wrong version"
            )
        return self.engine


def run_rollout_job(job: dict[str, Any], holder: EngineHolder, store: TrajectoryStore) -> dict[str, Any]:
    """The task's work as a plain function: job → trajectories in Redis → their ids."""
    config = RolloutConfig.model_validate(job["config"])
    problems = [Problem.model_validate(p) for p in job["problems"]]
    engine = holder.at_version(Path(job["model_dir"]), int(job["policy_version"]))
    log = logger.bind(run_id=job["run_id"], step=job["step"], policy_version=engine.policy_version)
    log.info("rollout started", problems=len(problems), group=config.group_size)
    trajectories = rollout(
        engine, problems, config, run_id=job["run_id"], step=int(job["step"]), seed=int(job.get("seed", 0))
    )
    stored = store.put_many(trajectories)
    log.info("rollout stored", trajectories=len(trajectories), new=stored)
    return {
        "run_id": job["run_id"],
        "step": job["step"],
        "policy_version": engine.policy_version,
        "trajectory_ids": [t.id for t in trajectories],
        "stored": stored,
    }


class RolloutTask(Task):  # type: ignore[misc]
    """Holds the per-process engine and Redis client (Celery creates one task instance per process)."""

    _holder: EngineHolder | None = None
    _redis: redis.Redis | None = None

    @property
    def holder(self) -> EngineHolder:
        if self._holder is None:
            self._holder = EngineHolder(settings)
        return self._holder

    @property
    def redis(self) -> redis.Redis:
        if self._redis is None:
            assert settings.redis_url is not None  # celery_from_settings refused to start without it
            self._redis = redis.Redis.from_url(settings.redis_url)
        return self._redis


@app.task(bind=True, base=RolloutTask, name=task_name(Queue.ROLLOUT, "generate"))
def generate(self: RolloutTask, job: dict[str, Any]) -> dict[str, Any]:
    done_key = f"anytime:rollout-done:{self.request.id}"
    recorded = self.redis.get(done_key)
    if recorded is not None:
        logger.info("rollout already done; returning the recorded result", task_id=self.request.id)
        return json.loads(recorded)  # type: ignore[no-any-return]
    result = run_rollout_job(job, self.holder, TrajectoryStore(self.redis))
    self.redis.set(done_key, json.dumps(result), ex=DONE_TTL_S)
    return result
