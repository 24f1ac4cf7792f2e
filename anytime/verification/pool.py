"""Grading in child processes with a hard wall-clock limit per item.

math-verify can run for minutes on one answer (exponent towers, thousands of nested braces, huge
expressions), sometimes inside C code that no signal interrupts, and its own timeouts use `signal.alarm`,
which only works on a main thread (Math-Verify #50, #55, #65). So every item is graded in a child process
(`anytime.verification.grader_process`), on that child's main thread, under two layers:

- soft: the child arms an interval timer for `SOFT_FRACTION × timeout`; its handler raises a
  `BaseException` that passes through math-verify's `except Exception` handlers, the child reports
  `timeout` and stays alive (no restart cost);
- hard (the guarantee): the parent waits at most `timeout` for the reply, then SIGKILLs the child, records
  `timeout` and starts a replacement. The other children keep grading meanwhile, so one hang never holds up
  the rest of the batch. A child that dies while grading gives that item `error`, never a silent 0.

Children are fresh interpreters started with `subprocess` (not `multiprocessing`, whose processes may not
be started from a Celery prefork process, a daemonic process), talk over two private pipes, ask Linux to
kill them when the thread that started them exits (so build the pool on a thread that lives as long as
it, e.g. the main thread), and ignore SIGINT so that Ctrl-C is handled once, by the parent. The parent
never imports math-verify.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from multiprocessing.connection import Connection, wait
from pathlib import Path

from anytime.verdict import Status

SOFT_FRACTION = 0.8
DEFAULT_START_TIMEOUT_S = 120.0  # a cold child imports sympy and math-verify (about 1 s on a quiet CPU)
STOP_GRACE_S = 2.0
# The child finds this package where the parent found it, whatever its working directory or install.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
_CHILD_MAIN = (
    f"import sys; sys.path.insert(0, {_PACKAGE_ROOT!r}); "
    "from anytime.verification.grader_process import main; main(sys.argv[1:])"
)


@dataclass(frozen=True)
class GradeJob:
    """A normalised answer against normalised ground-truth texts (see `anytime.verification.grading`)."""

    answer: str
    truths: tuple[str, ...]


@dataclass(frozen=True)
class GradeOutcome:
    status: Status
    message: str | None
    seconds: float = field(compare=False)


class GraderStartError(RuntimeError):
    """A grader child could not start: an installation problem, not a property of any answer."""


class _State(Enum):
    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"


@dataclass
class _Slot:
    process: subprocess.Popen[bytes]
    jobs: Connection  # parent → child
    results: Connection  # child → parent; EOF when the child dies
    state: _State
    deadline: float  # start deadline while STARTING, grading deadline while BUSY
    job_index: int = -1
    dispatched_at: float = 0.0


class GraderPool:
    """`workers` grader children; `run(jobs)` grades them all, each within `timeout_s` of wall clock.

    `soft_fraction=None` turns the soft layer off (then every timeout is a kill and a restart).
    """

    def __init__(
        self,
        workers: int,
        timeout_s: float,
        start_timeout_s: float = DEFAULT_START_TIMEOUT_S,
        soft_fraction: float | None = SOFT_FRACTION,
    ) -> None:
        if workers < 1:
            raise ValueError(f"a grader pool needs at least 1 worker; got {workers}")
        if timeout_s <= 0:
            raise ValueError(f"the timeout must be positive seconds; got {timeout_s}")
        self.workers = workers
        self.timeout_s = timeout_s
        self.start_timeout_s = start_timeout_s
        self.soft_timeout_s = 0.0 if soft_fraction is None else soft_fraction * timeout_s
        self.restarts = 0  # children replaced after a hard timeout or a crash
        self._slots: list[_Slot] = []
        try:
            for _ in range(workers):
                self._slots.append(self._start_child())
        except BaseException:
            self.close()
            raise

    # -- lifecycle ------------------------------------------------------------------------------------

    def _start_child(self) -> _Slot:
        job_read, job_write = os.pipe()
        result_read, result_write = os.pipe()
        try:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    _CHILD_MAIN,
                    str(job_read),
                    str(result_write),
                    str(os.getpid()),
                    repr(self.soft_timeout_s),
                ],
                stdin=subprocess.DEVNULL,
                pass_fds=(job_read, result_write),
            )
        except BaseException:
            for fd in (job_write, result_read):
                os.close(fd)
            raise
        finally:
            os.close(job_read)  # the child's ends: only the child holds them, so its death is an EOF here
            os.close(result_write)
        return _Slot(
            process,
            Connection(job_write, readable=False),
            Connection(result_read, writable=False),
            _State.STARTING,
            time.monotonic() + self.start_timeout_s,
        )

    @staticmethod
    def _stop(slot: _Slot) -> None:
        if slot.process.poll() is None:
            slot.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            slot.process.wait(STOP_GRACE_S)
        slot.jobs.close()
        slot.results.close()

    def _replace(self, index: int) -> None:
        self._stop(self._slots[index])
        self.restarts += 1
        self._slots[index] = self._start_child()

    def close(self) -> None:
        """Stop every child. They hold nothing worth a graceful exit (and sympy's teardown takes a second)."""
        for slot in self._slots:
            self._stop(slot)
        self._slots = []

    def __enter__(self) -> GraderPool:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def pids(self) -> list[int]:
        return [slot.process.pid for slot in self._slots]

    # -- grading --------------------------------------------------------------------------------------

    def run(self, jobs: Sequence[GradeJob]) -> list[GradeOutcome]:
        """Grade every job; outcomes in job order. Returns once each job has a verdict or timed out."""
        if not self._slots:
            raise RuntimeError("this grader pool is closed")
        outcomes: list[GradeOutcome | None] = [None] * len(jobs)
        pending = deque(range(len(jobs)))
        while pending or any(slot.state is _State.BUSY for slot in self._slots):
            for index, slot in enumerate(self._slots):
                if slot.state is _State.IDLE and pending:
                    self._dispatch(index, pending, jobs)
            self._wait_and_collect(outcomes)
        missing = [i for i, outcome in enumerate(outcomes) if outcome is None]
        if missing:
            raise RuntimeError(f"grader pool lost jobs {missing[:5]}; this is a bug")
        return [outcome for outcome in outcomes if outcome is not None]

    def _dispatch(self, index: int, pending: deque[int], jobs: Sequence[GradeJob]) -> None:
        slot = self._slots[index]
        job_index = pending.popleft()
        job = jobs[job_index]
        try:
            slot.jobs.send((job.answer, job.truths))
        except OSError:  # the idle child died on its own: not this job's fault, so it goes back in line
            pending.appendleft(job_index)
            self._replace(index)
            return
        slot.state = _State.BUSY
        slot.job_index = job_index
        slot.dispatched_at = time.monotonic()
        slot.deadline = slot.dispatched_at + self.timeout_s

    def _wait_and_collect(self, outcomes: list[GradeOutcome | None]) -> None:
        deadlines = [s.deadline for s in self._slots if s.state is not _State.IDLE]
        timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
        ready = wait([s.results for s in self._slots], timeout)
        for index, slot in enumerate(self._slots):
            if slot.results in ready:
                self._service(index, outcomes)
        now = time.monotonic()
        for index, slot in enumerate(self._slots):
            if slot.state is _State.BUSY and now >= slot.deadline:
                outcomes[slot.job_index] = GradeOutcome(
                    Status.TIMEOUT,
                    f"grading ran past the {self.timeout_s:g} s limit; its process was killed and replaced",
                    now - slot.dispatched_at,
                )
                self._replace(index)
            elif slot.state is _State.STARTING and now >= slot.deadline:
                raise GraderStartError(
                    f"a grader process did not start within {self.start_timeout_s:g} s; "
                    "is the machine overloaded?"
                )

    def _service(self, index: int, outcomes: list[GradeOutcome | None]) -> None:
        """Read what a child sent; a child that died gets its item an `error` and is replaced."""
        slot = self._slots[index]
        try:
            while slot.results.poll():
                message = slot.results.recv()
                if message[0] == "ready":
                    slot.state = _State.IDLE
                elif message[0] == "done" and slot.state is _State.BUSY:
                    _, status, note = message
                    seconds = time.monotonic() - slot.dispatched_at
                    outcomes[slot.job_index] = GradeOutcome(Status(status), note, seconds)
                    slot.state = _State.IDLE
            return
        except (EOFError, OSError):
            pass  # the pipe closed: the child is gone
        with contextlib.suppress(subprocess.TimeoutExpired):
            slot.process.wait(STOP_GRACE_S)
        code = slot.process.returncode
        if slot.state is _State.STARTING:
            raise GraderStartError(
                f"a grader process exited with code {code} while starting (its traceback is on stderr); "
                "is the verifier extra installed (pip install -e '.[verifier]')?"
            )
        if slot.state is _State.BUSY:
            outcomes[slot.job_index] = GradeOutcome(
                Status.ERROR,
                f"the grader process died with exit code {code} while grading; it was replaced",
                time.monotonic() - slot.dispatched_at,
            )
        self._replace(index)
