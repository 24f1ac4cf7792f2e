"""The Celery `verify` worker against a real redis-server: a real `celery worker -P prefork -Q verify`.

Trajectories go into Redis through the store, the task is sent by name (as the API sends it), and the
verdicts it writes back are read from Redis. The worker is this test module's child, stopped by its handle.
"""

from __future__ import annotations

import signal
import subprocess
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from anytime.contracts.verify import GRADE_TASK, BudgetReward, VerifyResult
from anytime.trajectory import CutRecord, SummarySample, Trajectory, trajectory_id
from anytime.trajectory_store import TrajectoryStore
from tests.fixtures.processes import descendants, running
from tests.fixtures.servers import RedisServer
from tests.fixtures.workers import start_worker, stop_worker

if TYPE_CHECKING:
    from celery import Celery

pytestmark = pytest.mark.integration

# Token ids of this test's made-up vocabulary; the sender passes them, as the orchestrator passes ModelFacts.
THINK_END, EOS, ELLIPSIS, DELIMITER = 3, 2, 7, 8
CUT = "...\n\n...\n\n</think>\n\n**Final Answer**\n"
WHOLE = "\n\n**Final Answer**\n"
TOWER = "\\boxed{2^{2^{2^{2^{2^{2^{2}}}}}}}"
RESULT_TIMEOUT_S = 120  # the worker's first task waits for it to start (seconds on a busy machine)


def _sample(response: str) -> SummarySample:
    return SummarySample(ids=[1], logprobs=[-0.5], text=response, response=response, finish_reason="eos")


def _trajectory(
    run_id: str, index: int, thinking: list[int], cuts: list[tuple[int, list[str]]]
) -> Trajectory:
    """Budgets (2, 8), A = 2; `cuts` = (the cut, the two summaries' responses) per budget."""
    records = [
        CutRecord(
            budget_indices=[position],
            budgets=[(2, 8)[position]],
            cut=cut,
            inserted_ids=[] if cut == len(thinking) and thinking[-1] == THINK_END else [ELLIPSIS],
            delimiter_ids=[DELIMITER],
            summaries=[_sample(r) for r in responses],
        )
        for position, (cut, responses) in enumerate(cuts)
    ]
    return Trajectory(
        id=trajectory_id(run_id, 0, f"p{index}", 0),
        run_id=run_id,
        step=0,
        policy_version=0,
        problem_id=f"p{index}",
        trace_index=0,
        answer="4",
        budgets=[2, 8],
        num_summaries=2,
        prompt_ids=[1],
        thinking_ids=thinking,
        thinking_logprobs=[-0.1] * len(thinking),
        finish_reason="think_end" if thinking[-1] == THINK_END else "eos",
        cuts=records,
    )


def _step(run_id: str) -> tuple[list[Trajectory], dict[str, tuple[str, int]]]:
    """Two trajectories and the (status, reward) expected for each of their eight summaries."""
    closed = _trajectory(
        run_id,
        0,
        [10, 11, 12, THINK_END],
        [
            (2, [CUT + "\\boxed{4}", CUT + "\\boxed{5}"]),
            (4, [WHOLE + "\\boxed{4}", WHOLE + "\\boxed{4}</think>"]),
        ],
    )
    ended_on_eos = _trajectory(
        run_id,
        1,
        [10, 11, EOS],
        [(2, [CUT + TOWER, CUT + "\\boxed{\\frac{8}{2}}"]), (3, [CUT + "\\boxed{4}"] * 2)],
    )
    expected = {
        closed.summary_id(0, 0): ("correct", 1),
        closed.summary_id(0, 1): ("incorrect", 0),
        closed.summary_id(1, 0): ("correct", 1),  # the prefix ends with </think>, nothing inserted
        closed.summary_id(1, 1): ("correct", 0),  # a second </think> in the summary breaks the format
        ended_on_eos.summary_id(0, 0): ("timeout", 0),
        ended_on_eos.summary_id(0, 1): ("correct", 1),
        ended_on_eos.summary_id(1, 0): ("correct", 0),  # prefix ended in EOS: 0 (docs/method.md §2.4)
        ended_on_eos.summary_id(1, 1): ("correct", 0),
    }
    return [closed, ended_on_eos], expected


@pytest.fixture(scope="module")
def worker(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[subprocess.Popen[bytes]]:
    log_path = tmp_path_factory.mktemp("verify-worker") / "worker.log"
    env = {"ANYTIME_VERIFIER_TIMEOUT_SECONDS": "2", "ANYTIME_VERIFIER_WORKERS": "1"}
    pool = ["-P", "prefork", "-c", "1"]
    proc = start_worker("services.verifier.worker:app", "verify", pool, redis_server.url, log_path, env)
    try:
        yield proc
    finally:
        stop_worker(proc, log_path)


@pytest.fixture(scope="module")
def client(celery_client: Celery) -> Celery:
    return celery_client


@pytest.fixture
def store(trajectory_store: TrajectoryStore) -> TrajectoryStore:
    return trajectory_store


def _verify(client: Celery, **request: Any) -> dict[str, Any]:
    payload = {"think_end_id": THINK_END, "eos_id": EOS, **request}
    result = client.send_task(GRADE_TASK, kwargs=payload)
    return result.get(timeout=RESULT_TIMEOUT_S)


def report_rewards(report: dict[str, Any]) -> list[BudgetReward]:
    return VerifyResult.model_validate(report).rewards


def test_worker_grades_every_summary_and_is_idempotent(
    worker: subprocess.Popen[bytes], client: Celery, store: TrajectoryStore
) -> None:
    trajectories, expected = _step(f"run-{uuid.uuid4().hex[:8]}")
    store.put_many(trajectories)
    ids = [t.id for t in trajectories]
    report = _verify(client, trajectory_ids=ids)
    assert report["summaries"] == 8 and report["graded"] == 8 and report["stored"] == 8
    assert report["statuses"] == {"correct": 6, "incorrect": 1, "timeout": 1} and report["rewarded"] == 3
    verdicts = {sid: v for t in trajectories for sid, v in store.verdicts(t.id).items()}
    assert {sid: (v.status, v.reward) for sid, v in verdicts.items()} == expected
    rows = [(r.problem_id, r.trace_index, r.budget_index, r.summary_index) for r in report_rewards(report)]
    assert len(rows) == 8 and len(set(rows)) == 8  # every summary's reward per budget, once

    again = _verify(client, trajectory_ids=ids)  # a re-delivered task grades nothing twice
    assert (again["graded"], again["stored"], again["already_verified"]) == (0, 0, 8)
    store.client.hdel(f"{store.prefix}:verdicts:{ids[0]}", trajectories[0].summary_id(1, 0))
    partial = _verify(client, trajectory_ids=ids)
    assert (partial["graded"], partial["stored"], partial["already_verified"]) == (1, 1, 7)
    assert store.verdicts(ids[0])[trajectories[0].summary_id(1, 0)].reward == 1
    assert len(report_rewards(partial)) == 8  # the rewards of verdicts graded earlier come back too


def test_worker_verifies_a_whole_step_by_run_and_step(
    worker: subprocess.Popen[bytes], client: Celery, store: TrajectoryStore
) -> None:
    run_id = f"run-{uuid.uuid4().hex[:8]}"
    trajectories, expected = _step(run_id)
    store.put_many(trajectories)
    report = _verify(client, run_id=run_id, step=0)
    assert report["trajectories"] == 2 and report["graded"] == 8
    assert report["cache_hit_rate"] == 1.0  # the same answers as the first test: all from the cache
    verdicts = {sid: v for t in trajectories for sid, v in store.verdicts(t.id).items()}
    assert {sid: (v.status, v.reward) for sid, v in verdicts.items()} == expected


def test_a_bad_request_fails_the_task_with_the_reason(
    worker: subprocess.Popen[bytes], client: Celery
) -> None:
    result = client.send_task(GRADE_TASK, kwargs={"trajectory_ids": ["x"], "think_end_id": THINK_END})
    with pytest.raises(Exception, match="eos_id"):
        result.get(timeout=RESULT_TIMEOUT_S)


def test_stopping_the_worker_leaves_no_grader_processes(worker: subprocess.Popen[bytes]) -> None:
    family = descendants(worker.pid)
    assert family, "the worker has its pool process and grader processes"
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=30)
    assert not [pid for pid in family if running(pid)]
