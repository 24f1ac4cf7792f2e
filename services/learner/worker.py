"""The Celery worker of the `learn` queue: one learner step per task, a checkpoint per policy version.

    ANYTIME_REDIS_URL=redis://… celery -A services.learner.worker:app worker -P solo -Q learn -c 1

Why a Celery worker rather than a bespoke process fed through Redis: the control plane already sends
rollout and verify work through Celery by name, and gets acks_late re-delivery, results and failures the
same way; a learner step is one long task like them. The solo pool runs it on the worker's main thread, in
the process that holds the model (CUDA does not survive a fork), so the model and optimizer are loaded once
and kept between tasks (`LearnerHolder`).

The task `anytime.learn.step` takes `LearnRequest` (run, step, the policy version to produce, the run's
checkpoint root and initial model, the learner config). Idempotent by policy version: when a complete
checkpoint of that version exists the step was applied already, and the task returns the metrics recorded
in it without touching the model. Otherwise the holder brings the learner to version `policy_version - 1`
(kept in memory, or loaded from that checkpoint, or the initial model for version 0), runs the step on the
trajectories and verdicts in Redis, and saves the checkpoint atomically. A task that dies part-way is
re-delivered and redone from the last checkpoint; a learner whose update failed is dropped, never reused.

With `ANYTIME_LEARNER_WORLD_SIZE=N` (N > 1) the learner is data-parallel over N processes: this worker is
rank 0 and starts the other ranks as its children (`services.learner.group`); the task is the same.

The task's contract (`LEARN_TASK`, `LearnRequest`, `LearnResult`) is the core's `anytime.contracts.learn`.
"""

from __future__ import annotations

import gc
from collections import OrderedDict
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anytime.celery_app import celery_from_settings, lazy_app_attribute, task_arguments
from anytime.contracts.learn import LEARN_TASK, LearnRequest, LearnResult
from anytime.logging import configure_logging, get_logger
from anytime.trajectory_store import TrajectoryStore, WorkerStore
from services.learner.checkpoint import CheckpointError, CheckpointStore
from services.learner.settings import LearnerSettings

if TYPE_CHECKING:
    from celery import Celery

    from anytime.trajectory import Trajectory
    from services.learner.batch import Verdicts
    from services.learner.distributed import DataParallel
    from services.learner.group import LearnerGroup
    from services.learner.learner import Learner

logger = get_logger(__name__)


def checkpoint_store(request: LearnRequest) -> CheckpointStore:
    return CheckpointStore(request.checkpoint_root, request.config.keep_last, request.config.keep_every)


class LearnerHolder:
    """The process's learners, one per run (checkpoint root + config), kept between tasks.

    At most `settings.max_learners` stay loaded (least recently used dropped first): with two runs
    interleaving on one worker, each keeps its model and optimizer instead of reloading them from its
    checkpoint every step. A learner is replaced when a task needs another version of its run.

    In a data-parallel group every rank keeps such a holder (`parallel`: its place in the group), and rank
    0's also owns the group (`group`, started by the first `group_step`).
    """

    def __init__(self, settings: LearnerSettings, parallel: DataParallel | None = None) -> None:
        self.settings = settings
        self.parallel = parallel
        self.group: LearnerGroup | None = None
        self.learners: OrderedDict[tuple[str, str], Learner] = OrderedDict()

    def drop(self, key: tuple[str, str] | None = None) -> None:
        """Forget one run's learner (or all of them) and free its memory."""
        if key is None:
            self.learners.clear()
        else:
            self.learners.pop(key, None)
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    @staticmethod
    def key(request: LearnRequest) -> tuple[str, str]:
        return (str(request.checkpoint_root.resolve()), request.config.model_dump_json())

    def at_version(self, request: LearnRequest, checkpoints: CheckpointStore) -> Learner:
        """A learner holding version `policy_version - 1` of this run with this config."""
        from services.learner.learner import Learner

        key = self.key(request)
        base = request.policy_version - 1
        held = self.learners.get(key)
        if held is not None and held.policy_version == base and not held.broken:
            self.learners.move_to_end(key)
            return held
        self.drop(key)
        while len(self.learners) >= self.settings.max_learners:
            self.drop(next(iter(self.learners)))
        if self.settings.threads is not None:
            import torch

            torch.set_num_threads(self.settings.threads)
        device = self.settings.device
        if base == 0:
            learner = Learner.from_model_dir(
                request.model_dir, request.config, device, parallel=self.parallel
            )
        else:
            checkpoint = checkpoints.require(base, verify=self.settings.checkpoint_verify)
            learner = Learner.from_checkpoint(checkpoint, request.config, device, self.parallel)
        logger.info("learner loaded", run_id=request.run_id, policy_version=base, device=str(learner.device))
        self.learners[key] = learner
        return learner

    def group_step(
        self, request: LearnRequest, trajectories: list[Trajectory], verdicts: Verdicts
    ) -> tuple[Learner, dict[str, float]]:
        """Rank 0 of a data-parallel group: the step on every rank (the group started, or restarted after a
        failure, first); returns rank 0's learner and the metrics."""
        from services.learner.group import LearnerGroup, StepOrder

        if self.group is None or self.group.closed:
            self.drop()  # learners of an earlier group hold its dead process group
            self.group = LearnerGroup(self.settings)
            self.parallel = self.group.parallel
        return self.group.step(self, StepOrder(request, trajectories, verdicts))

    def close(self) -> None:
        """Drop the learners and stop the group's other ranks (if any)."""
        if self.group is not None:
            self.group.close(self)
        self.drop()


def run_learn_step(request: LearnRequest, holder: LearnerHolder, store: TrajectoryStore) -> LearnResult:
    """The task's work as a plain function: trajectories + verdicts in Redis → a new checkpoint."""
    log = logger.bind(run_id=request.run_id, step=request.step, policy_version=request.policy_version)
    checkpoints = checkpoint_store(request)
    done = checkpoints.get(request.policy_version, verify=holder.settings.checkpoint_verify)
    if done is not None:
        recorded = (done.manifest.get("run_id"), done.manifest.get("step"))
        if recorded != (request.run_id, request.step):
            raise CheckpointError(
                f"{done.path} holds policy version {request.policy_version} of (run, step) {recorded}, "
                f"not of {(request.run_id, request.step)}; give each run its own checkpoint root"
            )
        log.info("policy version exists; returning its recorded metrics", checkpoint=str(done.path))
        return _result(request, done.path, done.model_dir, applied=False, metrics=done.metrics)
    if holder.settings.world_size > 1:  # data-parallel: every rank trains, rank 0 saves
        trajectories = store.batch(request.run_id, request.step)
        verdicts = {t.id: store.verdicts(t.id) for t in trajectories}
        log.info("learner step started", trajectories=len(trajectories), world=holder.settings.world_size)
        learner, metrics = holder.group_step(request, trajectories, verdicts)
    else:
        learner = holder.at_version(request, checkpoints)
        trajectories = store.batch(request.run_id, request.step)
        verdicts = {t.id: store.verdicts(t.id) for t in trajectories}
        log.info("learner step started", trajectories=len(trajectories))
        try:
            metrics = learner.step(trajectories, verdicts)
        finally:
            if learner.broken:
                holder.drop(holder.key(request))
    checkpoint = learner.save(checkpoints, run_id=request.run_id, step=request.step, metrics=metrics)
    log.info(
        "learner step done",
        checkpoint=str(checkpoint.path),
        loss=metrics["loss/policy"],
        anytime_score=metrics.get("anytime/score"),
        seconds=round(metrics["perf/step_s"], 2),
    )
    return _result(request, checkpoint.path, checkpoint.model_dir, applied=True, metrics=metrics)


def _result(
    request: LearnRequest, path: Path, model_dir: Path, applied: bool, metrics: dict[str, float]
) -> LearnResult:
    return LearnResult(
        run_id=request.run_id,
        step=request.step,
        policy_version=request.policy_version,
        checkpoint=str(path),
        model_dir=str(model_dir),
        applied=applied,
        metrics=metrics,
    )


class _ProcessResources(WorkerStore):
    """What the worker process keeps between tasks, built on first use."""

    settings: LearnerSettings

    @cached_property
    def holder(self) -> LearnerHolder:
        return LearnerHolder(self.settings)


def create_app(settings: LearnerSettings) -> Celery:
    """The shared Celery app with the learn task registered."""
    app = celery_from_settings(settings, name="anytime-learner")
    resources = _ProcessResources(settings)

    @app.task(name=LEARN_TASK)
    def step(**request: Any) -> dict[str, Any]:
        parsed = task_arguments(LearnRequest, request, "learn request")
        return run_learn_step(parsed, resources.holder, resources.store).model_dump(mode="json")

    return app


@lru_cache(maxsize=1)
def default_app() -> Celery:
    """The app `celery -A services.learner.worker:app` runs, configured from the environment."""
    settings = LearnerSettings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)


__getattr__ = lazy_app_attribute(__name__, default_app)
