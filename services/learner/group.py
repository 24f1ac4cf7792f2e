"""The learn worker's data-parallel group: the Celery worker is rank 0, ranks 1…N-1 are its child processes.

With `ANYTIME_LEARNER_WORLD_SIZE=N` (N > 1) the worker starts N-1 followers (spawned, not forked: CUDA does
not survive a fork) the first time a task needs its learner, and they live as long as the group does. The
task's contract (`LearnRequest` → `LearnResult`) is unchanged; per task:

1. rank 0 reads the step's trajectories and verdicts from Redis and sends them with the request to every
   follower (a `StepOrder` over a queue: the followers need no Redis, and every rank trains on the same
   data);
2. every rank brings its learner to the request's version with the same `LearnerHolder` logic (kept in
   memory, or loaded from rank 0's checkpoint), then passes a ready barrier (a rank that could not load
   makes every rank refuse, instead of leaving the others waiting in a collective);
3. the data-parallel `Learner.step` (`distributed`); every follower reports its outcome;
4. rank 0 alone saves the checkpoint.

Failures: a refusal before the model is touched (missing verdicts, a version the learner cannot take)
happens alike on every rank and leaves the group as it is. Anything else — an update that broke, a
follower that died or reports otherwise than rank 0 — stops the group (followers by their handles) and
drops rank 0's learners; the next task starts a fresh group, loaded from the last checkpoint.
"""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from anytime.contracts.learn import LearnRequest
from anytime.logging import configure_logging, get_logger
from anytime.trajectory import Trajectory
from services.learner.batch import Verdicts
from services.learner.distributed import (
    DataParallel,
    GroupMismatchError,
    close_data_parallel,
    init_data_parallel,
)
from services.learner.holder import LearnerHolder, checkpoint_store
from services.learner.model_io import resolve_device
from services.learner.settings import LearnerSettings

if TYPE_CHECKING:
    from services.learner.learner import Learner

logger = get_logger(__name__)

LOOPBACK = "127.0.0.1"  # the group is one machine's processes
STOP_GRACE_S = 10.0


@dataclass(frozen=True)
class StepOrder:
    """What rank 0 sends every follower for one task."""

    request: LearnRequest
    trajectories: list[Trajectory]
    verdicts: Verdicts


Outcome = Literal["started", "trained", "refused", "broken"]


@dataclass(frozen=True)
class StepReport:
    """A rank's outcome of one order (`started`: the follower is up and about to join the group)."""

    rank: int
    step: int
    outcome: Outcome
    detail: str = ""


@dataclass
class RankOutcome:
    report: StepReport
    learner: Learner | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    error: Exception | None = None


class LearnerGroupError(RuntimeError):
    """The group failed (a follower died, broke or disagreed); it was stopped and will be started afresh."""


def train_order(holder: LearnerHolder, order: StepOrder, rank: int) -> RankOutcome:
    """Every rank's part of a task: its learner at the request's version, the ready barrier, the step.
    Errors are returned, classified: `broken` when the update failed part-way, `refused` before."""
    assert holder.parallel is not None, "a group rank's holder carries its DataParallel"
    request = order.request
    learner: Learner | None = None
    error: Exception | None = None
    try:
        learner = holder.at_version(request, checkpoint_store(request))
    except Exception as caught:
        error = caught
    try:
        holder.parallel.check_ready(error)
        assert learner is not None
        metrics = learner.step(order.trajectories, order.verdicts)
    except Exception as caught:
        broken = learner is not None and learner.broken is not None
        if broken:
            holder.drop(holder.key(request))
        detail = f"{type(caught).__name__}: {caught}"
        return RankOutcome(
            StepReport(rank, request.step, "broken" if broken else "refused", detail), error=caught
        )
    return RankOutcome(StepReport(rank, request.step, "trained"), learner, metrics)


class LearnerGroup:
    """Rank 0's handle on the followers: start them, send each task's order, read their reports, stop them."""

    def __init__(self, settings: LearnerSettings) -> None:
        self.settings = settings
        self.world_size = settings.world_size
        self.closed = False
        context = mp.get_context("spawn")
        timeout = timedelta(seconds=settings.group_timeout_s)
        store = dist.TCPStore(
            LOOPBACK, 0, self.world_size, is_master=True, timeout=timeout, wait_for_workers=False
        )
        self.reports: Any = context.Queue()
        self.commands: list[Any] = []
        self.processes: list[Any] = []
        for rank in range(1, self.world_size):
            commands = context.Queue()
            process = context.Process(
                target=follower_main,
                args=(rank, store.port, settings, commands, self.reports),
                name=f"anytime-learner-rank-{rank}",
                daemon=True,  # never outlives the worker
            )
            process.start()
            self.commands.append(commands)
            self.processes.append(process)
        try:
            self._collect(-1, "started")
            device_type = resolve_device(settings.device).type
            self.parallel: DataParallel = init_data_parallel(
                0, self.world_size, store, device_type=device_type, timeout_s=settings.group_timeout_s
            )
        except BaseException:
            self._stop_followers()
            raise
        logger.info("learner group started", world_size=self.world_size, pids=[p.pid for p in self.processes])

    def step(self, holder: LearnerHolder, order: StepOrder) -> tuple[Learner, dict[str, float]]:
        """One task on every rank; rank 0's learner (to save) and the step's metrics."""
        for commands in self.commands:
            commands.put(order)
        try:
            outcome = train_order(holder, order, rank=0)
            if outcome.report.outcome == "broken":  # the followers may wait in a collective: stop them
                raise LearnerGroupError(f"rank 0's update broke: {outcome.report.detail}") from outcome.error
            reports = self._collect(order.request.step, None)
            odd = [r for r in reports if r.outcome != outcome.report.outcome]
            if odd:
                raise LearnerGroupError(
                    f"rank 0 {outcome.report.outcome} step {order.request.step} but the followers reported "
                    f"{odd}; the learner group was stopped (the next task starts it from the last checkpoint)"
                )
        except BaseException:
            self.close(holder)
            raise
        if outcome.error is not None:  # refused alike on every rank: the group stays
            raise outcome.error
        assert outcome.learner is not None
        return outcome.learner, outcome.metrics

    def close(self, holder: LearnerHolder | None = None) -> None:
        """Stop the followers and leave the process group; `holder`'s learners go with it."""
        if self.closed:
            return
        self.closed = True
        if holder is not None:
            holder.drop()
            holder.parallel = None
        self._stop_followers()
        close_data_parallel()
        logger.info("learner group stopped", world_size=self.world_size)

    def _stop_followers(self) -> None:
        for commands in self.commands:
            commands.put(None)
        deadline = time.monotonic() + STOP_GRACE_S
        for process in self.processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():  # stuck in a collective: stopped by its handle
                process.terminate()
                process.join(STOP_GRACE_S)
        for channel in [*self.commands, self.reports]:
            channel.cancel_join_thread()  # nobody reads them any more
            channel.close()
        self.commands, self.reports = [], None  # their semaphores are freed with them

    def _collect(self, step: int, outcome: Outcome | None) -> list[StepReport]:
        """One report per follower for `step` (of `outcome`, when given), failing fast on a dead follower."""
        reports: list[StepReport] = []
        deadline = time.monotonic() + self.settings.group_timeout_s
        while len(reports) < len(self.processes):
            try:
                report: StepReport = self.reports.get(timeout=1.0)
            except queue.Empty:
                dead = [p.name for p in self.processes if not p.is_alive()]
                if dead or time.monotonic() > deadline:
                    reason = (
                        f"{dead} exited" if dead else f"no report within {self.settings.group_timeout_s}s"
                    )
                    raise LearnerGroupError(f"learner group: {reason}") from None
                continue
            if report.step != step or (outcome is not None and report.outcome != outcome):
                raise GroupMismatchError(f"learner group: expected a report of step {step}, got {report}")
            reports.append(report)
        return sorted(reports, key=lambda r: r.rank)


class RankZeroHolder(LearnerHolder):
    """Rank 0's holder: its learners, and the group it leads (started by the first `group_step`, and
    started afresh by the next one after a failure)."""

    def __init__(self, settings: LearnerSettings) -> None:
        super().__init__(settings)
        self.group: LearnerGroup | None = None

    def group_step(
        self, request: LearnRequest, trajectories: list[Trajectory], verdicts: Verdicts
    ) -> tuple[Learner, dict[str, float]]:
        """The step on every rank (the group started, or restarted after a failure, first); returns rank
        0's learner and the metrics."""
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


def follower_main(rank: int, port: int, settings: LearnerSettings, commands: Any, reports: Any) -> None:
    """A follower's life: join the group, then train every order rank 0 sends until told to stop (None)
    or until rank 0's process is gone."""
    configure_logging(settings.log_level, settings.log_format)
    log = logger.bind(rank=rank)
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    timeout = timedelta(seconds=settings.group_timeout_s)
    store = dist.TCPStore(LOOPBACK, port, settings.world_size, is_master=False, timeout=timeout)
    reports.put(StepReport(rank, -1, "started"))
    device_type = resolve_device(settings.device).type
    parallel = init_data_parallel(
        rank, settings.world_size, store, device_type=device_type, timeout_s=settings.group_timeout_s
    )
    holder = LearnerHolder(settings, parallel=parallel)
    parent = mp.parent_process()
    try:
        while True:
            try:
                order: StepOrder | None = commands.get(timeout=1.0)
            except queue.Empty:
                if parent is not None and not parent.is_alive():
                    log.warning("rank 0 is gone; leaving the learner group")
                    return
                continue
            if order is None:
                return
            outcome = train_order(holder, order, rank)
            log.info("learner rank step", step=order.request.step, outcome=outcome.report.outcome)
            reports.put(outcome.report)
    finally:
        close_data_parallel()
