"""A rollout job as plain code: validated arguments, the process's engine at the right policy version,
trajectories into Redis. The Celery task (`services.rollout.worker`) is a thin binding of this.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from anytime.celery_app import task_name
from anytime.logging import get_logger
from anytime.problems import Problem
from anytime.queues import Queue
from anytime.trajectory_store import TrajectoryStore
from services.rollout.anytime_rollout import RolloutConfig, rollout
from services.rollout.engine import Engine, StalePolicyError
from services.rollout.settings import RolloutSettings, make_engine

logger = get_logger(__name__)

GENERATE_TASK = task_name(Queue.ROLLOUT, "generate")


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


class RolloutJob(BaseModel):
    """The task's keyword arguments: one step's rollout of a run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str = Field(min_length=1)
    step: int = Field(ge=0)
    policy_version: int = Field(ge=0, description="The policy to roll out; its weights are in model_dir.")
    model_dir: Path
    problems: list[Problem] = Field(min_length=1)
    config: RolloutConfig
    seed: int = 0


def run_rollout_job(job: RolloutJob, holder: EngineHolder, store: TrajectoryStore) -> dict[str, Any]:
    """The task's work as a plain function: job → trajectories in Redis → their ids."""
    engine = holder.at_version(job.model_dir, job.policy_version)
    log = logger.bind(run_id=job.run_id, step=job.step, policy_version=engine.policy_version)
    log.info("rollout started", problems=len(job.problems), group=job.config.group_size)
    trajectories = rollout(engine, job.problems, job.config, run_id=job.run_id, step=job.step, seed=job.seed)
    stored = store.put_many(trajectories)
    log.info("rollout stored", trajectories=len(trajectories), new=stored)
    return {
        "run_id": job.run_id,
        "step": job.step,
        "policy_version": engine.policy_version,
        "trajectory_ids": [t.id for t in trajectories],
        "stored": stored,
    }
