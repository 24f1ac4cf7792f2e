"""The Celery worker of the `learn` queue: one learner step per task, a checkpoint per policy version.

    ANYTIME_REDIS_URL=redis://… celery -A services.learner.worker:app worker -P solo -Q learn -c 1

Why a Celery worker rather than a bespoke process fed through Redis: the control plane already sends
rollout and verify work through Celery by name, and gets acks_late re-delivery, results and failures the
same way; a learner step is one long task like them. The solo pool runs it on the worker's main thread, in
the process that holds the model (CUDA does not survive a fork), so the model and optimizer are loaded once
and kept between tasks (`services.learner.holder`).

The task `anytime.learn.step` takes `LearnRequest` (run, step, the policy version to produce, the run's
checkpoint root and initial model, the learner config). Idempotent by policy version: when a complete
checkpoint of that version exists the step was applied already, and the task returns the metrics recorded
in it without touching the model. Otherwise the holder brings the learner to version `policy_version - 1`
(kept in memory, or loaded from that checkpoint, or the initial model for version 0), runs the step on the
trajectories and verdicts in Redis, and saves the checkpoint atomically, its manifest holding the step's
samples (the traces of the request's `sample_problems` with their advantages, `services.learner.samples`),
so a re-delivered task returns the same ones. A task that dies part-way is
re-delivered and redone from the last checkpoint; a learner whose update failed is dropped, never reused.

With `ANYTIME_LEARNER_WORLD_SIZE=N` (N > 1) the learner is data-parallel over N processes: this worker is
rank 0 and starts the other ranks as its children (`services.learner.group`); the task is the same.

The task's contract (`LEARN_TASK`, `LearnRequest`, `LearnResult`) is the core's `anytime.contracts.learn`.
"""

from __future__ import annotations

from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anytime.celery_app import celery_from_settings, lazy_app_attribute, task_arguments
from anytime.contracts.learn import LEARN_TASK, LearnRequest, LearnResult
from anytime.logging import configure_logging, get_logger
from anytime.samples import RolloutSample
from anytime.trajectory_store import TrajectoryStore, WorkerStore
from services.learner.checkpoint import CheckpointError
from services.learner.holder import LearnerHolder, checkpoint_store
from services.learner.settings import LearnerSettings

if TYPE_CHECKING:
    from celery import Celery

logger = get_logger(__name__)


def learner_holder(settings: LearnerSettings) -> LearnerHolder:
    """The process's holder: with `world_size` > 1, rank 0's, which leads the data-parallel group."""
    if settings.world_size > 1:
        from services.learner.group import RankZeroHolder  # torch at import: only for a group

        return RankZeroHolder(settings)
    return LearnerHolder(settings)


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
        samples = [RolloutSample.model_validate(s) for s in done.manifest.get("samples", [])]
        return _result(request, done.path, done.model_dir, False, done.metrics, samples)
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
    from services.learner.samples import step_samples  # torch at import: the worker starts without it

    samples = step_samples(trajectories, verdicts, request.sample_problems, request.config, learner.tokenizer)
    checkpoint = learner.save(
        checkpoints,
        run_id=request.run_id,
        step=request.step,
        metrics=metrics,
        samples=[s.model_dump(mode="json") for s in samples],
    )
    log.info(
        "learner step done",
        checkpoint=str(checkpoint.path),
        loss=metrics["loss/policy"],
        anytime_score=metrics.get("anytime/score"),
        seconds=round(metrics["perf/step_s"], 2),
    )
    return _result(request, checkpoint.path, checkpoint.model_dir, True, metrics, samples)


def _result(
    request: LearnRequest,
    path: Path,
    model_dir: Path,
    applied: bool,
    metrics: dict[str, float],
    samples: list[RolloutSample],
) -> LearnResult:
    return LearnResult(
        run_id=request.run_id,
        step=request.step,
        policy_version=request.policy_version,
        checkpoint=str(path),
        model_dir=str(model_dir),
        applied=applied,
        metrics=metrics,
        samples=samples,
    )


class _ProcessResources(WorkerStore):
    """What the worker process keeps between tasks, built on first use."""

    settings: LearnerSettings

    @cached_property
    def holder(self) -> LearnerHolder:
        return learner_holder(self.settings)


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
