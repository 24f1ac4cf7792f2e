"""Rollout samples: a trace's text split at its cuts, every answer at the budget it stands for, with the
verdict and the advantages given; hand-built trajectories, hand-computed expectations."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from anytime.samples import rollout_sample, sample_problem_ids, table_rows
from anytime.verdict import Status, VerdictRecord
from tests.fixtures.synthetic import make_trajectory

ELLIPSIS, DELIM, THINK_END = [90], [91], 92


def decode(ids: Sequence[int]) -> str:
    return "".join(f"<{i}>" for i in ids)


def _closed_trace():
    """6 thinking tokens ending in </think>, budgets 4, 8, 12, A = 2: cut 4 serves budget 4; the thought
    ended at 6, so budgets 8 and 12 share one cut at 6 (2 × 2 answers)."""
    return make_trajectory(
        run_id="r",
        step=3,
        problem_id="p7",
        trace_index=1,
        prompt_ids=[1, 2],
        thinking_ids=[10, 11, 12, 13, 14, THINK_END],
        finish_reason="think_end",
        budgets=[4, 8, 12],
        num_summaries=2,
        ellipsis_ids=ELLIPSIS,
        delimiter_ids=DELIM,
        summaries=[[[40], [41]], [[50], [51], [52], [53]]],
        policy_version=2,
    )


def _verdicts(trajectory, rewards: list[list[float]]) -> dict[str, VerdictRecord]:
    return {
        trajectory.summary_id(c, s): VerdictRecord(
            status=Status.CORRECT if r else Status.INCORRECT, formatted=True, reward=r, extracted=f"a{c}{s}"
        )
        for c, row in enumerate(rewards)
        for s, r in enumerate(row)
    }


def test_answers_stand_for_their_budgets_with_their_advantages() -> None:
    trajectory = _closed_trace()
    verdicts = _verdicts(trajectory, [[1.0, 0.0], [0.0, 1.0, 1.0, 0.0]])
    thinking = [0.5, -0.25, 0.125]  # per budget
    summary = [[0.1, -0.1], [0.2, -0.2], [0.3, -0.3]]  # per budget, per answer
    sample = rollout_sample(
        trajectory,
        verdicts,
        decode,
        kind="train",
        thinking_advantages=thinking,
        summary_advantages=summary,
    )
    assert (sample.step, sample.policy_version, sample.problem_id, sample.trace_index) == (3, 2, "p7", 1)
    assert (sample.prompt, sample.thinking_tokens, sample.finish_reason) == ("<1><2>", 6, "think_end")
    first, second = sample.cuts
    assert (first.cut, first.budgets, first.thinking) == (4, [4], "<10><11><12><13>")
    assert (second.cut, second.budgets, second.thinking) == (6, [8, 12], f"<14><{THINK_END}>")
    assert sample.thinking_rest == ""
    assert first.thinking_advantages == [0.5] and second.thinking_advantages == [-0.25, 0.125]
    # The collapsed cut's four answers: budget 8's two, then budget 12's two.
    got = [
        (a.budget, a.summary_index, a.text, a.extracted, a.status, a.reward, a.advantage)
        for a in second.answers
    ]
    assert got == [
        (8, 0, "", "a10", "incorrect", 0.0, 0.2),
        (8, 1, "", "a11", "correct", 1.0, -0.2),
        (12, 0, "", "a12", "correct", 1.0, 0.3),
        (12, 1, "", "a13", "incorrect", 0.0, -0.3),
    ]
    assert [(a.budget, a.advantage) for a in first.answers] == [(4, 0.1), (4, -0.1)]


def test_the_thinking_after_the_last_cut_is_kept_apart() -> None:
    trajectory = make_trajectory(
        run_id="r", step=0, problem_id="p", trace_index=0, prompt_ids=[1],
        thinking_ids=[10, 11, 12, 13, 14, 15, 16, 17, 18, 19], finish_reason="length", budgets=[4, 8],
        num_summaries=1, ellipsis_ids=ELLIPSIS, delimiter_ids=DELIM, summaries=[[[40]], [[41]]],
    )  # fmt: skip
    sample = rollout_sample(trajectory, _verdicts(trajectory, [[0.0], [1.0]]), decode, kind="eval", step=-1)
    assert [c.thinking for c in sample.cuts] == ["<10><11><12><13>", "<14><15><16><17>"]
    assert sample.thinking_rest == "<18><19>"
    assert sample.step == -1 and sample.kind == "eval"
    assert all(c.thinking_advantages is None for c in sample.cuts)
    assert [a.advantage for a in sample.answers] == [None, None]
    assert sample.cuts[0].inserted == decode(trajectory.cuts[0].inserted_ids)


def test_a_summary_without_a_verdict_is_refused() -> None:
    trajectory = _closed_trace()
    verdicts = _verdicts(trajectory, [[1.0, 0.0], [0.0, 1.0, 1.0]])  # the last one missing
    with pytest.raises(ValueError, match=r"r:3:p7:1:c1:s3 has no verdict"):
        rollout_sample(trajectory, verdicts, decode, kind="train")
    with pytest.raises(ValueError, match="both"):
        rollout_sample(trajectory, verdicts, decode, kind="train", thinking_advantages=[0.0] * 3)


def test_the_table_has_one_row_per_answer_with_the_thought_up_to_its_cut() -> None:
    trajectory = _closed_trace()
    sample = rollout_sample(trajectory, _verdicts(trajectory, [[1.0, 0.0], [0.0] * 4]), decode, kind="eval")
    columns = table_rows([sample, sample])
    assert all(len(values) == 12 for values in columns.values())  # 2 traces × (2 + 4) answers
    assert columns["budget"][:6] == [4, 4, 8, 8, 12, 12]
    assert columns["thinking"][0] == "<10><11><12><13>"
    assert columns["thinking"][5] == f"<10><11><12><13><14><{THINK_END}>"
    assert columns["verdict"][:2] == ["correct", "incorrect"]
    assert columns["thinking_advantage"][0] is None
    short = table_rows([sample], thought_chars=8)["thinking"]
    assert short[0] == "…<12><13>" and short[5] == f"…<14><{THINK_END}>"  # the end of the thought, marked


def test_the_shown_problems_are_the_first_distinct_ones_in_the_steps_order() -> None:
    assert sample_problem_ids(["c", "a", "c", "b"], 2) == ["c", "a"]
    assert sample_problem_ids(["c", "a"], 5) == ["c", "a"]
    assert sample_problem_ids(["c", "a"], 0) == []
