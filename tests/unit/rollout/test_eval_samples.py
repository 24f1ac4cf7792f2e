"""An evaluation's samples: the traces of the asked problems, each answer's verdict the one the accuracy
counted (greedy: a collapsed cut's answers share its one graded verdict). On the latency-model engine."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import pytest

from anytime.contracts.evaluation import EvalSampling
from anytime.synth import get_task
from anytime.verdict import Status
from anytime.verification.verifier import Submission, Verdict
from services.rollout.anytime_eval import evaluate_anytime
from tests.unit.rollout.test_latency_engine import engine_of, facts, tokenizer

__all__ = ["facts", "tokenizer"]  # fixtures this module uses


def grade(submissions: Sequence[Submission]) -> list[Verdict]:
    """Correct for about half of the responses, decided by their text (no math-verify needed here)."""
    verdicts = []
    for submission in submissions:
        good = zlib.crc32(submission.response.encode()) % 2 == 0
        status = Status.CORRECT if good else Status.INCORRECT
        verdicts.append(Verdict(status, True, int(good), submission.response[-3:]))
    return verdicts


@pytest.mark.parametrize("sampling", [EvalSampling(), EvalSampling(num_samples=2, temperature=0.6, seed=4)])
def test_the_asked_problems_traces_come_back_with_the_verdicts_counted(
    tokenizer: Any, facts: Any, sampling: EvalSampling
) -> None:
    engine, _ = engine_of(tokenizer, facts)
    problems = get_task("digit-chain").generate(4, seed=2)
    asked = [problems[2].id, problems[0].id]
    result = evaluate_anytime(
        engine, problems, [8, 16, 24, 32], 12, grade, sampling=sampling, sample_problems=asked, step=5
    )
    k = sampling.num_samples
    assert [(s.problem_id, s.trace_index) for s in result.samples] == [
        (p, g) for p in asked for g in range(k)
    ]
    row = {p.id: n for n, p in enumerate(problems)}
    for sample in result.samples:
        assert (sample.kind, sample.step) == ("eval", 5)
        assert [a.budget for a in sample.answers] == [8, 16, 24, 32]  # A = 1: one answer per budget
        counted = result.correct[row[sample.problem_id]][sample.trace_index]
        assert [bool(a.reward) for a in sample.answers] == counted
        assert all(a.advantage is None for a in sample.answers)
        problem = " ".join(problems[row[sample.problem_id]].problem.split())
        assert problem in " ".join(sample.prompt.split())
    none = evaluate_anytime(engine, problems, [8, 16], 12, grade, sampling=sampling)
    assert none.samples == []
