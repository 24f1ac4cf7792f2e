"""One grader child process: `main([JOB_FD, RESULT_FD, PARENT_PID, SOFT_S])`, started by the pool.

Started by `anytime.verification.pool.GraderPool` with two pipe ends: it reads jobs `(answer, truths)` from
JOB_FD and writes `("ready", pid)` once, then `("done", status, message)` per job to RESULT_FD (pickled
frames of `multiprocessing.connection`). A `None` job or a closed pipe ends it. Grading runs on this
process's main thread, under an interval timer of SOFT_S seconds (0 = none) whose handler raises a
`BaseException`, which math-verify's `except Exception` handlers let through; the parent's kill is the
guarantee when the timer cannot interrupt (C code).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
from multiprocessing.connection import Connection

PR_SET_PDEATHSIG = 1
MESSAGE_CHARS = 300
Reply = tuple[str, str, str | None]


class _SoftDeadline(BaseException):
    """Raised by the interval timer; a BaseException so math-verify's handlers let it through."""


def _on_soft_deadline(_signum: int, _frame: object) -> None:
    raise _SoftDeadline


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this process when its parent dies, so a hang never outlives its verifier."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before the request above took effect
        os._exit(0)


def _describe(error: BaseException) -> str:
    # Never format an exception's arguments beyond a plain string: printing a huge sympy object can hang.
    first = error.args[0] if error.args else ""
    detail = first[:MESSAGE_CHARS] if isinstance(first, str) else ""
    return f"{type(error).__name__}: {detail}" if detail else type(error).__name__


def grade_job(answer: str, truths: tuple[str, ...], soft_timeout_s: float) -> Reply:
    """Grade one job on this (main) thread; every outcome is a status, never an exception."""
    from anytime.verdict import Status
    from anytime.verification.grading import GroundTruthError, grade_answer

    try:
        try:
            signal.setitimer(signal.ITIMER_REAL, soft_timeout_s)
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


def main(argv: list[str]) -> None:
    job_fd, result_fd, parent_pid, soft_timeout_s = int(argv[0]), int(argv[1]), int(argv[2]), float(argv[3])
    _die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    signal.signal(signal.SIGALRM, _on_soft_deadline)
    # math-verify warns once that its own timeouts are off: here the pool is the timeout.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    import math_verify  # noqa: F401  (before reporting ready, so the first job is timed fairly)

    jobs = Connection(job_fd, writable=False)
    results = Connection(result_fd, readable=False)
    results.send(("ready", os.getpid()))
    while True:
        try:
            job = jobs.recv()
        except EOFError:  # the parent closed its end
            return
        if job is None:
            return
        answer, truths = job
        results.send(grade_job(answer, truths, soft_timeout_s))


if __name__ == "__main__":
    main(sys.argv[1:])
