"""Grading in child processes with a hard wall-clock limit per item.

math-verify can run for minutes on one answer (exponent towers, thousands of nested braces, huge
expressions), sometimes inside C code that no signal interrupts, and its own timeouts use `signal.alarm`,
which only works on a main thread (Math-Verify #50, #55, #65). So every item is graded in a child process,
on that child's main thread, under two layers:

- soft: the child arms an interval timer for `SOFT_FRACTION × timeout`; its handler raises a
  `BaseException` that passes through math-verify's `except Exception` handlers, the child reports
  `timeout` and stays alive (no restart cost);
- hard (the guarantee): the parent waits at most `timeout` for the reply, then SIGKILLs the child, records
  `timeout` and starts a replacement. The other children keep grading meanwhile, so one hang never holds up
  the rest of the batch. A child that dies while grading gives that item `error`, never a silent 0.

Children are started with the `spawn` method (no inherited locks or threads, safe inside a Celery prefork
process or a program with threads), ask Linux to kill them when their parent dies, and ignore SIGINT so
that Ctrl-C is handled once, by the parent. The parent never imports math-verify.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from services.verifier.grading import Status

SOFT_FRACTION = 0.8
DEFAULT_START_TIMEOUT_S = 120.0  # a cold child imports sympy and math-verify (about 1 s on a quiet CPU)
STOP_GRACE_S = 2.0
PR_SET_PDEATHSIG = 1
MESSAGE_CHARS = 300


@dataclass(frozen=True)
class GradeJob:
    """A normalised answer against normalised ground-truth texts (see `services.verifier.grading`)."""

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
    process: BaseProcess
    conn: Connection
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
        self.soft_timeout_s = None if soft_fraction is None else soft_fraction * timeout_s
        self.restarts = 0  # children replaced after a hard timeout or a crash
        self._context = multiprocessing.get_context("spawn")
        self._slots = [self._start_child() for _ in range(workers)]

    # -- lifecycle ------------------------------------------------------------------------------------

    def _start_child(self) -> _Slot:
        parent_conn, child_conn = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=_child_main,
            args=(child_conn, self.soft_timeout_s, os.getpid()),
            name="anytime-grader",
            daemon=True,
        )
        process.start()
        child_conn.close()
        return _Slot(process, parent_conn, _State.STARTING, time.monotonic() + self.start_timeout_s)

    def _replace(self, index: int) -> None:
        slot = self._slots[index]
        if slot.process.is_alive():
            slot.process.kill()
        slot.process.join(STOP_GRACE_S)
        slot.conn.close()
        self.restarts += 1
        self._slots[index] = self._start_child()

    def close(self) -> None:
        """Stop every child: idle ones are asked to exit, the rest (and stragglers) are killed."""
        for slot in self._slots:
            if slot.state is _State.IDLE:
                with contextlib.suppress(OSError):
                    slot.conn.send(None)
        deadline = time.monotonic() + STOP_GRACE_S
        for slot in self._slots:
            if slot.state is _State.IDLE:
                slot.process.join(max(0.0, deadline - time.monotonic()))
            if slot.process.is_alive():
                slot.process.kill()
            slot.process.join(STOP_GRACE_S)
            slot.conn.close()
        self._slots = []

    def __enter__(self) -> GraderPool:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def pids(self) -> list[int | None]:
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
            self._wait_and_collect(outcomes, pending)
        missing = [i for i, outcome in enumerate(outcomes) if outcome is None]
        if missing:
            raise RuntimeError(f"grader pool lost jobs {missing[:5]}; this is a bug")
        return [outcome for outcome in outcomes if outcome is not None]

    def _dispatch(self, index: int, pending: deque[int], jobs: Sequence[GradeJob]) -> None:
        slot = self._slots[index]
        job_index = pending.popleft()
        job = jobs[job_index]
        try:
            slot.conn.send((job.answer, job.truths))
        except OSError:  # the idle child died on its own: not this job's fault, so it goes back in line
            pending.appendleft(job_index)
            self._replace(index)
            return
        slot.state = _State.BUSY
        slot.job_index = job_index
        slot.dispatched_at = time.monotonic()
        slot.deadline = slot.dispatched_at + self.timeout_s

    def _wait_and_collect(self, outcomes: list[GradeOutcome | None], pending: deque[int]) -> None:
        deadlines = [s.deadline for s in self._slots if s.state is not _State.IDLE]
        timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
        handles: list[Any] = [s.conn for s in self._slots] + [s.process.sentinel for s in self._slots]
        ready = set(wait(handles, timeout))
        for index, slot in enumerate(self._slots):
            if slot.conn in ready or slot.process.sentinel in ready:
                self._service(index, outcomes, pending)
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

    def _service(self, index: int, outcomes: list[GradeOutcome | None], pending: deque[int]) -> None:
        """Read what a child sent; a child that died gets its item an `error` and is replaced."""
        slot = self._slots[index]
        try:
            while slot.conn.poll():
                message = slot.conn.recv()
                if message[0] == "ready":
                    slot.state = _State.IDLE
                elif message[0] == "done" and slot.state is _State.BUSY:
                    _, status, note = message
                    seconds = time.monotonic() - slot.dispatched_at
                    outcomes[slot.job_index] = GradeOutcome(Status(status), note, seconds)
                    slot.state = _State.IDLE
        except (EOFError, OSError):
            pass
        if slot.process.is_alive():
            return
        slot.process.join(STOP_GRACE_S)
        code = slot.process.exitcode
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


# -- the child --------------------------------------------------------------------------------------------


class _SoftDeadline(BaseException):
    """Raised by the child's interval timer; a BaseException so math-verify's handlers let it through."""


def _on_soft_deadline(_signum: int, _frame: object) -> None:
    raise _SoftDeadline


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before the request above took effect
        os._exit(0)


def _describe(error: BaseException) -> str:
    # Never format the exception's arguments beyond a plain string: printing a huge sympy object can hang.
    first = error.args[0] if error.args else ""
    detail = first[:MESSAGE_CHARS] if isinstance(first, str) else ""
    return f"{type(error).__name__}: {detail}" if detail else type(error).__name__


def _grade_one(
    answer: str, truths: tuple[str, ...], soft_timeout_s: float | None
) -> tuple[str, str, str | None]:
    from services.verifier.grading import GroundTruthError, grade_answer

    try:
        try:
            signal.setitimer(signal.ITIMER_REAL, soft_timeout_s or 0)
            status = grade_answer(answer, truths)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        return ("done", status.value, None)
    except _SoftDeadline:
        return ("done", Status.TIMEOUT.value, f"grading ran past the soft limit of {soft_timeout_s:g} s")
    except GroundTruthError as error:
        return ("done", Status.ERROR.value, _describe(error))
    except Exception as error:  # a math-verify/sympy bug on one input: counted as error, never as 0
        return ("done", Status.ERROR.value, f"grader raised {_describe(error)}")


def _child_main(conn: Connection, soft_timeout_s: float | None, parent_pid: int) -> None:
    _die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGALRM, _on_soft_deadline)
    # math-verify logs a warning when its own timeouts are off; here the pool is the timeout.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    import math_verify  # noqa: F401  (import before reporting ready: the first item is timed fairly)

    conn.send(("ready", os.getpid()))
    while True:
        try:
            job = conn.recv()
        except EOFError:  # the parent closed its end
            return
        if job is None:
            return
        answer, truths = job
        conn.send(_grade_one(answer, truths, soft_timeout_s))
