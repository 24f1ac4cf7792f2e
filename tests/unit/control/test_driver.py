"""The run driver's pure parts: the rewards of a trajectory and its verdicts (the verify task's
`budget_rewards`, which the driver stores as they are), per-step problems."""

from __future__ import annotations

import pytest

from anytime.contracts.verify import budget_rewards
from anytime.problems import Problem
from anytime.run_config import RunConfig
from anytime.trajectory import CutRecord, SummarySample, Trajectory
from anytime.verdict import VerdictRecord
from services.control.driver import RunDriver


def _summary(text: str) -> SummarySample:
    return SummarySample(ids=[5], logprobs=[-0.1], text=text, response=text, finish_reason="eos")


def _trajectory() -> Trajectory:
    """Budgets (2, 4, 6), A = 2; a 3-token thought closed by </think>: cuts 2 (budget 0), 3 (budgets 1, 2)."""
    return Trajectory(
        id="r:0:p:1",
        run_id="r",
        step=0,
        policy_version=0,
        problem_id="p",
        trace_index=1,
        answer="4",
        budgets=[2, 4, 6],
        num_summaries=2,
        prompt_ids=[1, 2, 3, 4, 5],
        thinking_ids=[7, 8, 9],
        thinking_logprobs=[-0.1] * 3,
        finish_reason="think_end",
        cuts=[
            CutRecord(budget_indices=[0], budgets=[2], cut=2, inserted_ids=[11, 12], delimiter_ids=[13],
                      summaries=[_summary("a"), _summary("b")]),
            CutRecord(budget_indices=[1, 2], budgets=[4, 6], cut=3, inserted_ids=[], delimiter_ids=[13],
                      summaries=[_summary(x) for x in "cdef"]),
        ],
    )  # fmt: skip


def test_budget_rewards_map_collapsed_cuts_to_their_budgets() -> None:
    t = _trajectory()
    verdicts = {
        t.summary_id(c, i): VerdictRecord(
            status="correct" if r else "incorrect", formatted=True, reward=r, extracted=str(r)
        )
        for c, i, r in [(0, 0, 1), (0, 1, 0), (1, 0, 0), (1, 1, 1), (1, 2, 1), (1, 3, 1)]
    }
    rows = budget_rewards(t, verdicts)
    got = [(r.budget_index, r.summary_index, r.cut, r.inserted_start, r.inserted_end, r.reward) for r in rows]
    assert got == [
        (0, 0, 2, 7, 9, 1.0),  # inserted ids sit after prompt (5) + cut (2)
        (0, 1, 2, 7, 9, 0.0),
        (1, 0, 3, 8, 8, 0.0),  # the whole closed thought: nothing inserted
        (1, 1, 3, 8, 8, 1.0),
        (2, 0, 3, 8, 8, 1.0),  # the collapsed cut's second A-chunk serves budget 2
        (2, 1, 3, 8, 8, 1.0),
    ]
    assert {r.problem_id for r in rows} == {"p"} and {r.trace_index for r in rows} == {1}


def test_a_summary_without_a_verdict_refuses_the_commit() -> None:
    t = _trajectory()
    with pytest.raises(LookupError, match="has no verdict"):
        budget_rewards(t, {t.summary_id(0, 0): VerdictRecord(status="correct", formatted=True, reward=1)})


def test_each_step_samples_its_own_problems_reproducibly() -> None:
    train = [Problem(id=f"p{i}", problem="x", answer="1") for i in range(20)]
    config = RunConfig(model="m", dataset="d", problems_per_step=5, seed=3)
    first = RunDriver._problems_of_step(train, 0, config)
    assert [p.id for p in first] == [p.id for p in RunDriver._problems_of_step(train, 0, config)]
    assert [p.id for p in first] != [p.id for p in RunDriver._problems_of_step(train, 1, config)]
    assert len({p.id for p in first}) == 5
    assert len(RunDriver._problems_of_step(train[:3], 0, config)) == 3  # fewer problems than asked: all
