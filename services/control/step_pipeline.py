"""A step's experience, produced in shards and ahead of the learner (docs/method.md §3.3; issue "Scale out").

**Sharded rollouts.** A step's problems are split into shards of whole problem groups (a group's G traces
stay on one worker, so nothing about a group's records changes), each sent to the `rollout` queue as its own
task: N rollout workers (processes, or machines on the same Redis) share the step. Trajectory ids, policy
versions and write-once storage are the same as for one task; a worker killed mid-shard leaves only that
shard's message unacknowledged, so only that shard is re-run. Shard 0 keeps the step's seed, so one shard is
exactly the unsharded step.

**Streamed verification.** Each shard's summaries are sent to the `verify` queue as soon as the shard lands
(its trajectory ids), so grading runs while other shards still generate; the step is ready for the learner
when the last shard's verdicts exist. The shards' results merge into the step's one `VerifyResult`.

**Pipelined steps.** `launch` returns at once: the driver launches the next steps' rollouts (on the newest
policy it has, at most `max_staleness` versions behind the learner that will train on them) and then trains
the current step while they generate. Each shard's rollout → verify chain runs on a thread of the run's own
pool, through the same blocking `TaskRunner` the driver uses (so a worker shutdown, Redis away and the task
timeout are handled the same way); `collect` waits for a step's chains, looking up every `poll_s` so a
cancel or a lost lease is seen while waiting.

Why threads and not Celery canvas (chords/groups): a chord's callback is another Celery task whose failure
and re-delivery the driver would then have to follow by id; here every task is still one `run_task` call,
and what happens when one fails is the driver's ordinary error path.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from anytime.contracts.rollout import GENERATE_TASK, RolloutJob, RolloutResult
from anytime.contracts.verify import GRADE_TASK, VerifyRequest, VerifyResult
from anytime.logging import get_logger
from anytime.problems import Problem

logger = get_logger(__name__)

# What the driver's blocking task runner looks like (`services.control.driver.TaskRunner`).
RunTask = Callable[[str, Mapping[str, Any]], dict[str, Any]]


class StepAbandoned(Exception):
    """The run stopped (ended, cancelled, let go) while this shard was in flight; its result is not wanted."""


def shard_problems(problems: Sequence[Problem], shards: int) -> list[list[Problem]]:
    """`problems` in at most `shards` contiguous shards whose sizes differ by at most one (never empty)."""
    if shards < 1:
        raise ValueError(f"shards must be >= 1; got {shards}")
    count = min(shards, len(problems))
    size, extra = divmod(len(problems), count)
    out: list[list[Problem]] = []
    start = 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        out.append(list(problems[start:end]))
        start = end
    return out


def shard_seed(step_seed: int, shard: int) -> int:
    """The sampling seed of one shard: the step's own for shard 0 (one shard is the unsharded step), an
    independent stream for the others."""
    if shard == 0:
        return step_seed
    return zlib.crc32(f"{step_seed}:{shard}".encode())


@dataclass
class StepInFlight:
    """One step's shards, each a future of its (rollout, verify) results."""

    step: int
    policy_version: int
    shards: list[concurrent.futures.Future[tuple[RolloutResult, VerifyResult]]]
    launched_at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class ProducedStep:
    """A step's experience, verified: what the learner trains on and what SQL records."""

    step: int
    rollouts: list[RolloutResult]
    verified: VerifyResult
    waited_s: float  # how long the driver blocked on it (0 when it was ready before it was wanted)

    @property
    def policy_versions(self) -> list[int]:
        """The versions the shards were generated with (a pipelined step's lag behind the learner)."""
        return sorted({r.policy_version for r in self.rollouts})


class StepPipeline:
    """The run's in-flight steps; `close` abandons whatever is still in flight."""

    def __init__(self, run_task: RunTask, max_parallel: int, poll_s: float = 2.0) -> None:
        self.run_task = run_task
        self.poll_s = poll_s
        self.abandoned = threading.Event()
        self.pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, max_parallel), thread_name_prefix="anytime-shard"
        )

    def launch(self, jobs: Sequence[RolloutJob]) -> StepInFlight:
        """Send one step's shards; returns at once."""
        first = jobs[0]
        futures = [self.pool.submit(self._shard, job) for job in jobs]
        return StepInFlight(first.step, first.policy_version, futures)

    def _shard(self, job: RolloutJob) -> tuple[RolloutResult, VerifyResult]:
        if self.abandoned.is_set():
            raise StepAbandoned(f"step {job.step}")
        rollout = RolloutResult.model_validate(self.run_task(GENERATE_TASK, job.model_dump(mode="json")))
        if self.abandoned.is_set():  # no grading for a run that has stopped
            raise StepAbandoned(f"step {job.step}")
        grade = VerifyRequest(
            trajectory_ids=rollout.trajectory_ids, think_end_id=rollout.think_end_id, eos_id=rollout.eos_id
        )
        verified = VerifyResult.model_validate(
            self.run_task(GRADE_TASK, grade.model_dump(mode="json", exclude_defaults=True))
        )
        return rollout, verified

    def collect(self, flight: StepInFlight, check: Callable[[], None]) -> ProducedStep:
        """Wait for every shard of `flight` (calling `check` every `poll_s`: it raises to stop waiting);
        the first shard that failed raises its error."""
        began = time.monotonic()
        pending = set(flight.shards)
        while pending:
            done, pending = concurrent.futures.wait(
                pending, timeout=self.poll_s, return_when=concurrent.futures.FIRST_EXCEPTION
            )
            for future in done:
                error = future.exception()
                if error is not None:
                    raise error
            if pending:
                check()
        results = [future.result() for future in flight.shards]
        return ProducedStep(
            step=flight.step,
            rollouts=[rollout for rollout, _ in results],
            verified=VerifyResult.merged([verified for _, verified in results]),
            waited_s=time.monotonic() - began,
        )

    def close(self) -> None:
        """Abandon what is in flight: queued shards never start, running ones stop before grading (a task
        already sent finishes on its worker; its trajectories are write-once and harmless)."""
        self.abandoned.set()
        self.pool.shutdown(wait=False, cancel_futures=True)
