"""The Celery worker of the `verify` queue: grade every summary of a step's trajectories, write verdicts back.

Run it with the prefork pool (each task on a process's main thread):

    ANYTIME_REDIS_URL=redis://… celery -A services.verifier.worker:app worker -P prefork -Q verify -c 1

The task `anytime.verify.grade` takes trajectory ids (or `run_id` + `step`) and the two model facts the
trajectory record does not carry: `think_end_id` and `eos_id`. The sender (the orchestrator, which has the
tokenizer) passes them, so the verifier stays tokenizer-free and no token id is a literal here. For each
summary the format rule reads `thinking_closed` = the kept thinking prefix ends with `think_end_id` (the
inserted ellipsis, when there is one, is part of the summary's `response` and is counted there), and a
prefix that ends with `eos_id` scores 0 (docs/method.md §2.4).

Idempotent per summary id: summaries that already have a verdict are skipped, and verdicts are written
with HSETNX, so a task that runs twice (acks_late, a lost worker) grades nothing twice and overwrites
nothing. Each task process keeps one `Verifier` (its grader processes and verdict cache) for its lifetime;
a hung answer is killed by that verifier's hard per-item limit and never by Celery, whose time limits would
kill the whole task and, with acks_late, re-deliver it forever.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any

from anytime.celery_app import celery_from_settings, lazy_app_attribute, task_arguments
from anytime.contracts.verify import GRADE_TASK, BudgetReward, VerifyRequest, VerifyResult, budget_rewards
from anytime.logging import get_logger
from anytime.trajectory import Trajectory
from anytime.trajectory_store import TrajectoryStore, WorkerStore
from anytime.verdict import VerdictRecord
from anytime.verification.settings import VerifierSettings
from anytime.verification.verifier import Submission, Verifier

if TYPE_CHECKING:
    from celery import Celery

logger = get_logger(__name__)


def verify_trajectories(store: TrajectoryStore, verifier: Verifier, request: VerifyRequest) -> VerifyResult:
    """Grade every summary without a verdict yet, across all the trajectories at once, store the verdicts,
    and return the rewards per budget of every summary (what the driver records)."""
    ids: Sequence[str] = request.trajectory_ids
    if request.run_id is not None and request.step is not None:
        ids = store.batch_ids(request.run_id, request.step)
    owners: list[tuple[str, str]] = []  # (trajectory id, summary id) of each submission
    submissions: list[Submission] = []
    trajectories: list[Trajectory] = []
    recorded: dict[str, dict[str, VerdictRecord]] = {}  # trajectory id → summary id → verdict
    summaries = already = 0
    for trajectory_id in ids:
        trajectory = store.get(trajectory_id)
        trajectories.append(trajectory)
        done = recorded[trajectory_id] = store.verdicts(trajectory_id)
        for cut_index, cut in enumerate(trajectory.cuts):
            closed = trajectory.prefix_ends_with(cut, request.think_end_id)
            ended_in_eos = trajectory.prefix_ends_with(cut, request.eos_id)
            for sample_index, sample in enumerate(cut.summaries):
                summaries += 1
                sid = trajectory.summary_id(cut_index, sample_index)
                if sid in done:
                    already += 1
                    continue
                owners.append((trajectory_id, sid))
                submissions.append(Submission(sample.response, trajectory.answer, closed, ended_in_eos))
    hits_before = verifier.stats.cache_hits
    lookups_before = hits_before + verifier.stats.cache_misses
    verdicts = verifier.grade_many(submissions)
    by_trajectory: dict[str, dict[str, VerdictRecord]] = {}
    statuses: dict[str, int] = {}
    for (trajectory_id, sid), verdict in zip(owners, verdicts, strict=True):
        by_trajectory.setdefault(trajectory_id, {})[sid] = verdict.record()
        statuses[verdict.status.value] = statuses.get(verdict.status.value, 0) + 1
    stored = 0
    for trajectory_id, batch in by_trajectory.items():
        new = store.put_verdicts(trajectory_id, batch)
        stored += new
        # Another task raced us to some summaries: the verdicts that count are the ones in Redis.
        recorded[trajectory_id] = (
            {**recorded[trajectory_id], **batch} if new == len(batch) else store.verdicts(trajectory_id)
        )
    rewards: list[BudgetReward] = [r for t in trajectories for r in budget_rewards(t, recorded[t.id])]
    hits = verifier.stats.cache_hits - hits_before
    lookups = verifier.stats.cache_hits + verifier.stats.cache_misses - lookups_before
    return VerifyResult(
        trajectories=len(ids),
        summaries=summaries,
        already_verified=already,
        graded=len(verdicts),
        stored=stored,
        statuses=statuses,
        rewarded=sum(v.reward for v in verdicts),
        cache_hit_rate=round(hits / lookups, 4) if lookups else 0.0,
        rewards=rewards,
    )


class _ProcessResources(WorkerStore):
    """What one task process keeps between tasks, built on first use (after the prefork fork, not before)."""

    settings: VerifierSettings

    @cached_property
    def verifier(self) -> Verifier:
        return Verifier.from_settings(self.settings)

    def close(self, **_signal_kwargs: object) -> None:
        if "verifier" in self.__dict__:
            self.verifier.close()
        super().close()


def create_app(settings: VerifierSettings) -> Celery:
    """The shared Celery app with the verify task registered; resources live per task process."""
    from celery.signals import worker_process_shutdown

    app = celery_from_settings(settings)  # the shared broker, routing and visibility timeout
    resources = _ProcessResources(settings)
    worker_process_shutdown.connect(resources.close, weak=False)

    @app.task(name=GRADE_TASK)
    def grade(**request: Any) -> dict[str, Any]:
        parsed = task_arguments(VerifyRequest, request, "verify request")
        report = verify_trajectories(resources.store, resources.verifier, parsed)
        logger.info(
            "verified trajectories",
            run_id=parsed.run_id,
            step=parsed.step,
            **report.model_dump(exclude={"statuses", "rewards"}),
            statuses=report.statuses,
        )
        return report.model_dump(mode="json")

    return app


@lru_cache(maxsize=1)
def default_app() -> Celery:
    """The app `celery -A services.verifier.worker:app` runs, configured from the environment."""
    return create_app(VerifierSettings())


__getattr__ = lazy_app_attribute(__name__, default_app)
