"""Hard time limits: pathological answers return within timeout + 1 s, not correct; the pool survives."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest

from anytime.verification import Status, Submission, Verifier
from anytime.verification.pool import GradeJob, GraderPool

TIMEOUT_S = 1.5
CUT = "...\n\n...\n\n</think>\n\n**Final Answer**\n"
PATHOLOGICAL = {
    "exponent tower": "\\boxed{9^{9^{9^{9^{9^{9}}}}}}",
    "power tower of twos": "\\boxed{2^{2^{2^{2^{2^{2^{2}}}}}}}",
    "factorial of a huge number": "\\boxed{(10^{6})!}",
    "3000 nested braces": "\\boxed{" + "{" * 3000 + "1" + "}" * 3000 + "}",
    "400 KB expression": "\\boxed{" + "1+" * 200_000 + "1}",
    "unclosed boxes": "\\boxed{" * 50_000,
    "invalid unicode": "\\boxed{\ud800 1}",
}


@pytest.fixture(scope="module")
def verifier() -> Iterator[Verifier]:
    # No answer-length cap here, so the 400 KB expression really reaches a grader and must be timed out.
    with Verifier(timeout_s=TIMEOUT_S, workers=2, max_answer_chars=10**6) as shared:
        yield shared


def test_pathological_answers_return_in_time_and_the_pool_survives(verifier: Verifier) -> None:
    names = list(PATHOLOGICAL)
    started = time.perf_counter()
    verdicts = verifier.grade_many([Submission(CUT + PATHOLOGICAL[name], "1") for name in names])
    elapsed = time.perf_counter() - started
    for name, verdict in zip(names, verdicts, strict=True):
        assert verdict.status is not Status.CORRECT, name
        assert verdict.reward == 0 and verdict.message, name
        assert verdict.seconds <= TIMEOUT_S + 1.0, f"{name} took {verdict.seconds:.2f} s"
    statuses = {name: v.status for name, v in zip(names, verdicts, strict=True)}
    assert statuses["unclosed boxes"] is Status.UNPARSEABLE
    assert statuses["invalid unicode"] is Status.UNPARSEABLE
    assert statuses["3000 nested braces"] is Status.TIMEOUT
    assert statuses["400 KB expression"] is Status.TIMEOUT
    # Five answers reach the two graders: at most three rounds of one timeout each (plus start-up).
    assert elapsed <= 3 * (TIMEOUT_S + 1.0) + 5.0
    after = verifier.grade_many([Submission(CUT + "\\boxed{\\frac{2}{4}}", "0.5")])
    assert after[0].status is Status.CORRECT


def test_an_overlong_answer_is_unparseable_without_grading() -> None:
    with Verifier(timeout_s=TIMEOUT_S, workers=1) as verifier:
        verdict = verifier.grade(CUT + PATHOLOGICAL["400 KB expression"], "1")
        assert verdict.status is Status.UNPARSEABLE and "over the limit" in (verdict.message or "")
        assert verifier.stats.cache_misses == 0


def test_a_hang_is_killed_and_replaced_without_holding_up_the_batch() -> None:
    # The soft layer off: every hang must be stopped by killing its process.
    with GraderPool(workers=2, timeout_s=1.0, soft_fraction=None) as pool:
        pool.run([GradeJob("1", ("1",))])  # both children up
        jobs = [GradeJob("2^{2^{2^{2^{2^{2^{2}}}}}}", ("1",))] + [
            GradeJob(str(i), (str(i),)) for i in range(20)
        ]
        started = time.perf_counter()
        outcomes = pool.run(jobs)
        elapsed = time.perf_counter() - started
        assert outcomes[0].status is Status.TIMEOUT and "killed" in (outcomes[0].message or "")
        assert 1.0 <= outcomes[0].seconds <= 2.0
        assert all(o.status is Status.CORRECT for o in outcomes[1:])
        assert max(o.seconds for o in outcomes[1:]) < 1.0  # the other child graded them meanwhile
        assert elapsed <= 2.0
        assert pool.restarts == 1
        assert pool.run([GradeJob("3", ("3",))])[0].status is Status.CORRECT  # the replacement works


def test_a_grader_that_dies_mid_item_gives_error_and_is_replaced() -> None:
    with GraderPool(workers=1, timeout_s=30.0, soft_fraction=None) as pool:
        pool.run([GradeJob("1", ("1",))])
        pid = pool.pids[0]
        assert pid is not None
        threading.Timer(0.5, os.kill, (pid, signal.SIGKILL)).start()
        [outcome] = pool.run([GradeJob("9^{9^{9^{9^{9^{9}}}}}", ("1",))])
        assert outcome.status is Status.ERROR and "died" in (outcome.message or "")
        assert pool.restarts == 1 and pool.pids[0] != pid
        assert pool.run([GradeJob("2", ("2",))])[0].status is Status.CORRECT


def test_pool_refuses_bad_sizes() -> None:
    with pytest.raises(ValueError, match="at least 1 worker"):
        GraderPool(workers=0, timeout_s=1.0)
    with pytest.raises(ValueError, match="positive"):
        GraderPool(workers=1, timeout_s=0)
