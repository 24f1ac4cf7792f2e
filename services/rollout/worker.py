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
from functools import cached_property, lru_cache
from typing import Any

from celery import Celery, Task

from anytime.celery_app import celery_from_settings, lazy_app_attribute, task_arguments
from anytime.contracts.evaluation import EVALUATE_TASK, EvalJob
from anytime.contracts.rollout import GENERATE_TASK, RolloutJob
from anytime.logging import configure_logging, get_logger
from anytime.settings import REDIS_KEY_PREFIX, RETENTION_S
from anytime.trajectory_store import WorkerStore
from anytime.verification.settings import VerifierSettings
from anytime.verification.verifier import Verifier
from services.rollout.jobs import EngineHolder, run_eval_job, run_rollout_job
from services.rollout.settings import RolloutSettings

logger = get_logger(__name__)


class _ProcessResources(WorkerStore):
    """What the worker process keeps between tasks: its engines (one holder for rollouts and one for
    evaluations, which may lag the rollouts' policy versions) and a verifier for evaluations."""

    settings: RolloutSettings

    @cached_property
    def engines(self) -> EngineHolder:
        return EngineHolder(self.settings)

    @cached_property
    def eval_engines(self) -> EngineHolder:
        return EngineHolder(self.settings)

    @cached_property
    def verifier(self) -> Verifier:
        return Verifier.from_settings(VerifierSettings())


def create_app(settings: RolloutSettings) -> Celery:
    app = celery_from_settings(settings, name="anytime-rollout")
    resources = _ProcessResources(settings)

    @app.task(bind=True, name=GENERATE_TASK)
    def generate(self: Task, **kwargs: Any) -> dict[str, Any]:
        job = task_arguments(RolloutJob, kwargs, "rollout job")
        done_key = f"{REDIS_KEY_PREFIX}:rollout-done:{self.request.id}"
        recorded = resources.redis.get(done_key)
        if recorded is not None:
            logger.info("rollout already done; returning the recorded result", task_id=self.request.id)
            return dict(json.loads(recorded))
        result = run_rollout_job(job, resources.engines, resources.store)
        resources.redis.set(done_key, json.dumps(result), ex=RETENTION_S)
        return result

    @app.task(name=EVALUATE_TASK)
    def evaluate(**kwargs: Any) -> dict[str, Any]:
        job = task_arguments(EvalJob, kwargs, "evaluation job")
        return run_eval_job(job, resources.eval_engines, resources.verifier.grade_many)

    return app


@lru_cache(maxsize=1)
def default_app() -> Celery:
    """The app `celery -A services.rollout.worker:app` runs, configured from the environment."""
    settings = RolloutSettings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)


__getattr__ = lazy_app_attribute(__name__, default_app)
