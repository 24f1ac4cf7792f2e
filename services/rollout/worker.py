"""Celery worker for the `rollout` and `eval` queues.

    celery -A services.rollout.worker:app worker -Q rollout -P solo
    celery -A services.rollout.worker:app worker -Q eval -P solo   # evaluations never wait behind rollouts

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
from functools import lru_cache
from typing import Any

import redis
from celery import Celery, Task
from pydantic import ValidationError

from anytime.celery_app import celery_from_settings, lazy_app_attribute
from anytime.logging import configure_logging, get_logger
from anytime.trajectory_store import TrajectoryStore
from services.rollout.jobs import (
    EVALUATE_TASK,
    GENERATE_TASK,
    EngineHolder,
    EvalJob,
    RolloutJob,
    run_eval_job,
    run_rollout_job,
)
from services.rollout.settings import RolloutSettings
from services.verifier.settings import VerifierSettings
from services.verifier.verifier import Verifier

DONE_TTL_S = 7 * 24 * 3600
logger = get_logger(__name__)


class RolloutTask(Task):
    """Holds the per-process engines and Redis client (Celery creates one task instance per process)."""

    settings: RolloutSettings
    _holder: EngineHolder | None = None
    _redis: redis.Redis | None = None

    @property
    def holder(self) -> EngineHolder:
        if self._holder is None:
            self._holder = EngineHolder(self.settings)
        return self._holder

    @property
    def redis(self) -> redis.Redis:
        if self._redis is None:
            assert self.settings.redis_url is not None  # celery_from_settings refused to start without it
            self._redis = redis.Redis.from_url(self.settings.redis_url)
        return self._redis


class EvalTask(RolloutTask):
    """Its own engines (evaluations may lag the rollouts' versions) and one verifier per process."""

    _holder: EngineHolder | None = None
    _verifier: Verifier | None = None

    @property
    def verifier(self) -> Verifier:
        if self._verifier is None:
            self._verifier = Verifier.from_settings(VerifierSettings())
        return self._verifier


def create_app(settings: RolloutSettings) -> Celery:
    app = celery_from_settings(settings, name="anytime-rollout")

    @app.task(bind=True, base=RolloutTask, name=GENERATE_TASK, settings=settings)
    def generate(self: RolloutTask, **kwargs: Any) -> dict[str, Any]:
        try:
            job = RolloutJob.model_validate(kwargs)
        except ValidationError as err:  # fail before any work, with a reason that survives JSON
            raise ValueError(f"bad rollout job: {err}") from None
        done_key = f"anytime:rollout-done:{self.request.id}"
        recorded = self.redis.get(done_key)
        if recorded is not None:
            logger.info("rollout already done; returning the recorded result", task_id=self.request.id)
            return dict(json.loads(recorded))
        result = run_rollout_job(job, self.holder, TrajectoryStore(self.redis))
        self.redis.set(done_key, json.dumps(result), ex=DONE_TTL_S)
        return result

    @app.task(bind=True, base=EvalTask, name=EVALUATE_TASK, settings=settings)
    def evaluate(self: EvalTask, **kwargs: Any) -> dict[str, Any]:
        try:
            job = EvalJob.model_validate(kwargs)
        except ValidationError as err:
            raise ValueError(f"bad evaluation job: {err}") from None
        return run_eval_job(job, self.holder, self.verifier.grade_many)

    return app


@lru_cache(maxsize=1)
def default_app() -> Celery:
    """The app `celery -A services.rollout.worker:app` runs, configured from the environment."""
    settings = RolloutSettings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)


__getattr__ = lazy_app_attribute(__name__, default_app)
