"""Sharded, streamed and pipelined steps: the shards of a step, the merge of their verify results, and the
order in which the driver sends its tasks (k = 0: today's on-policy step; k = 1: the next step's rollout
generates while the learner trains), against a recording task runner and a real SQLite database."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from sqlalchemy.orm import Session, sessionmaker

from anytime.contracts.learn import LEARN_TASK, LearnRequest, LearnResult
from anytime.contracts.rollout import GENERATE_TASK, RolloutJob, RolloutResult
from anytime.contracts.verify import GRADE_TASK, BudgetReward, VerifyRequest, VerifyResult
from anytime.db import repository
from anytime.db.models import Base
from anytime.db.session import make_engine, make_session_factory
from anytime.problems import Problem
from anytime.run_config import RunConfig
from anytime.run_plan import RunPlan
from anytime.tracking import NullTracker
from services.control.driver import DriverDeps, RunDriver
from services.control.step_pipeline import shard_problems, shard_seed


def _problems(n: int) -> list[Problem]:
    return [Problem(id=f"p{i}", problem="x", answer="1") for i in range(n)]


def test_shards_are_contiguous_whole_problems_of_balanced_sizes() -> None:
    shards = shard_problems(_problems(7), 3)
    assert [[p.id for p in s] for s in shards] == [["p0", "p1", "p2"], ["p3", "p4"], ["p5", "p6"]]
    assert [len(s) for s in shard_problems(_problems(2), 4)] == [1, 1]  # never an empty shard
    assert [len(s) for s in shard_problems(_problems(5), 1)] == [5]
    with pytest.raises(ValueError, match="shards must be >= 1"):
        shard_problems(_problems(3), 0)


def test_shard_zero_keeps_the_steps_seed_and_the_others_get_their_own() -> None:
    assert shard_seed(300_012, 0) == 300_012  # one shard is the unsharded step
    seeds = {shard_seed(300_012, i) for i in range(8)}
    assert len(seeds) == 8 and shard_seed(300_012, 3) == shard_seed(300_012, 3)


def _reward(problem: str, reward: float) -> BudgetReward:
    return BudgetReward(
        problem_id=problem,
        trace_index=0,
        budget_index=0,
        summary_index=0,
        cut=4,
        inserted_start=10,
        inserted_end=10,
        answer=None,
        status="correct" if reward else "incorrect",
        reward=reward,
    )


def test_merged_verify_results_add_up_and_weigh_the_cache_rate_by_what_was_graded() -> None:
    a = VerifyResult(
        trajectories=2, summaries=8, already_verified=0, graded=8, stored=8,
        statuses={"correct": 3, "incorrect": 5}, rewarded=3, cache_hit_rate=0.5, rewards=[_reward("p0", 1)],
    )  # fmt: skip
    b = VerifyResult(
        trajectories=1, summaries=4, already_verified=2, graded=2, stored=1,
        statuses={"incorrect": 1, "timeout": 1}, rewarded=0, cache_hit_rate=1.0, rewards=[_reward("p1", 0)],
    )  # fmt: skip
    merged = VerifyResult.merged([a, b])
    assert (merged.trajectories, merged.summaries, merged.already_verified) == (3, 12, 2)
    assert (merged.graded, merged.stored, merged.rewarded) == (10, 9, 3)
    assert merged.statuses == {"correct": 3, "incorrect": 6, "timeout": 1}
    assert merged.cache_hit_rate == 0.6  # (0.5·8 + 1.0·2) / 10
    assert [r.problem_id for r in merged.rewards] == ["p0", "p1"]  # the shards' order


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'runs.db'}")
    Base.metadata.create_all(engine)
    yield make_session_factory(engine)
    engine.dispose()


class RecordingTasks:
    """Answers rollout, verify and learn like the workers would, recording what was sent and in which
    order; `hold` makes one task wait for an event (to prove two tasks ran at the same time)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[str, int, int]] = []  # (task, step, policy version or shard size)
        self.rollouts: list[RolloutJob] = []
        self.verified_ids: list[list[str]] = []
        self.learning = threading.Event()
        self.hold: tuple[int, threading.Event] | None = None  # (step, event) a rollout waits for

    def __call__(self, name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        if name == GENERATE_TASK:
            job = RolloutJob.model_validate(kwargs)
            if self.hold is not None and self.hold[0] == job.step:
                assert self.hold[1].wait(10), f"step {job.step}'s rollout never overlapped the learner"
            with self.lock:
                self.rollouts.append(job)
                self.events.append(("rollout", job.step, job.policy_version))
            ids = [f"{job.run_id}:{job.step}:{p.id}:0" for p in job.problems]
            return RolloutResult(
                run_id=job.run_id, step=job.step, policy_version=job.policy_version,
                trajectory_ids=ids, stored=len(ids), think_end_id=5, eos_id=6,
            ).model_dump(mode="json")  # fmt: skip
        if name == GRADE_TASK:
            request = VerifyRequest.model_validate(kwargs)
            step = int(request.trajectory_ids[0].split(":")[1])
            with self.lock:
                self.verified_ids.append(list(request.trajectory_ids))
                self.events.append(("verify", step, len(request.trajectory_ids)))
            rewards = [_reward(i.split(":")[2], 1.0) for i in request.trajectory_ids]
            return VerifyResult(
                trajectories=len(rewards), summaries=len(rewards), already_verified=0, graded=len(rewards),
                stored=len(rewards), statuses={"correct": len(rewards)}, rewarded=len(rewards),
                cache_hit_rate=0.0, rewards=rewards,
            ).model_dump(mode="json")  # fmt: skip
        assert name == LEARN_TASK
        learn = LearnRequest.model_validate(kwargs)
        with self.lock:
            self.events.append(("learn", learn.step, learn.policy_version))
        self.learning.set()
        if self.hold is not None and self.hold[0] == learn.step + 1:
            self.hold[1].set()  # the next step's rollout may finish now: the learner is running
        return LearnResult(
            run_id=learn.run_id, step=learn.step, policy_version=learn.policy_version,
            checkpoint=f"/ckpt/{learn.policy_version}", model_dir=f"/ckpt/{learn.policy_version}/model",
            applied=True, metrics={"loss/policy": 0.0},
        ).model_dump(mode="json")  # fmt: skip


def _drive(
    sessions: sessionmaker[Session], tmp_path: Path, tasks: RecordingTasks, **config: Any
) -> tuple[str, dict[int, dict[str, float]]]:
    data = tmp_path / "train.jsonl"
    data.write_text(
        "".join(json.dumps({"id": f"p{i}", "problem": "x", "answer": "1"}) + "\n" for i in range(6))
    )
    run_config = RunConfig(model="m", dataset=str(data), problems_per_step=4, **config)
    with sessions() as session:
        run_id = repository.create_run(session, run_config).id
        session.commit()
    logged: dict[int, dict[str, float]] = {}

    class Tracker(NullTracker):
        def log_metrics(self, run: str | None, metrics: Mapping[str, float], step: int) -> None:
            logged[step] = dict(metrics)

    store = SimpleNamespace(delete_batch=lambda run, step: None)
    deps = DriverDeps(sessions, tasks, cast(Any, store), Tracker(), tmp_path, poll_s=0.05)
    driver = RunDriver(deps)
    driver._leases[run_id] = cast(Any, SimpleNamespace(lost=threading.Event()))  # as `drive` holds it
    driver._run_steps(run_id, run_config, RunPlan.from_config(run_config), None)
    return run_id, logged


def test_on_policy_steps_run_rollout_verify_learn_in_sequence_as_before(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    tasks = RecordingTasks()
    run_id, logged = _drive(sessions, tmp_path, tasks, steps=3, seed=7)
    assert tasks.events == [
        ("rollout", 0, 0), ("verify", 0, 4), ("learn", 0, 1),
        ("rollout", 1, 1), ("verify", 1, 4), ("learn", 1, 2),
        ("rollout", 2, 2), ("verify", 2, 4), ("learn", 2, 3),
    ]  # fmt: skip
    # One shard per step, exactly the job the unsharded driver sent: its problems, seed and version.
    train = _problems(6)
    config = RunConfig(model="m", dataset="d", problems_per_step=4, seed=7)
    for step, job in enumerate(tasks.rollouts):
        assert job.problems == RunDriver._problems_of_step(train, step, config)
        assert (job.seed, job.policy_version, job.accept_newer) == (7 * 100_003 + step, step, False)
    with sessions() as session:
        run = repository.require_run(session, run_id)
        assert (run.step, run.policy_version) == (2, 3)
        assert len(repository.list_checkpoints(session, run_id)) == 3
    assert logged[3]["pipeline/shards"] == 1 and logged[3]["pipeline/policy_lag"] == 0


def test_shards_are_verified_each_as_it_lands_and_recorded_once(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    tasks = RecordingTasks()
    run_id, logged = _drive(sessions, tmp_path, tasks, steps=2, rollout_shards=3)
    assert [len(job.problems) for job in tasks.rollouts] == [2, 1, 1, 2, 1, 1]
    # Each verify request is one shard's trajectories; together they are the step's, each once.
    assert sorted(len(ids) for ids in tasks.verified_ids) == [1, 1, 1, 1, 2, 2]
    step0 = sorted(i for ids in tasks.verified_ids for i in ids if ":0:" in i)
    assert step0 == sorted(f"{run_id}:0:{p.id}:0" for job in tasks.rollouts[:3] for p in job.problems)
    assert len({job.seed for job in tasks.rollouts[:3]}) == 3
    with sessions() as session:
        rows, total = repository.list_rewards(session, run_id)
    assert total == 8  # 4 problems × one reward row each, per step: every shard's rewards recorded once
    assert sorted((r.step, r.problem_id) for r in rows) == sorted(
        (job.step, p.id) for job in tasks.rollouts for p in job.problems
    )
    assert logged[1]["pipeline/shards"] == 3 and logged[1]["verify/graded"] == 4


def test_pipelined_steps_generate_the_next_step_while_the_learner_trains(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    tasks = RecordingTasks()
    tasks.hold = (1, threading.Event())  # step 1's rollout can only finish once learn(0) has started
    run_id, logged = _drive(sessions, tmp_path, tasks, steps=3, max_staleness=1)
    rollouts = [(job.step, job.policy_version) for job in tasks.rollouts]
    assert rollouts == [(0, 0), (1, 0), (2, 1)]  # each one version behind from step 1 on
    assert all(job.accept_newer for job in tasks.rollouts)
    learns = [e for e in tasks.events if e[0] == "learn"]
    assert learns == [("learn", 0, 1), ("learn", 1, 2), ("learn", 2, 3)]
    # Step 1's rollout was sent before learn(0) and finished after it started: they overlapped.
    assert tasks.events.index(("learn", 0, 1)) < tasks.events.index(("rollout", 1, 0))
    assert [logged[v]["pipeline/policy_lag"] for v in (1, 2, 3)] == [0, 1, 1]
    with sessions() as session:
        assert repository.require_run(session, run_id).policy_version == 3


def test_staleness_needs_the_rollouts_temperature_to_be_one() -> None:
    with pytest.raises(ValueError, match="max_staleness 1 needs temperature 1"):
        RunConfig(model="m", dataset="d", max_staleness=1, temperature=0.7)
    plan = RunPlan.from_config(RunConfig(model="m", dataset="d", max_staleness=2))
    assert plan.learner.max_staleness == 2 and plan.max_staleness == 2
