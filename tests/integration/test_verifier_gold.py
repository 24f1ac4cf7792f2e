"""Real answers: every gold answer of every set in ../shared/data/test against itself (boxed, as a model
would write it) is judged correct, and against another problem's (different) gold is judged not correct.

The data is read where it lies (never copied into the repository); the tests skip when it is absent.
Pairs of different golds that are the same value are listed with the reason, so a new one fails the test.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from anytime.verification import Status, Submission, Verdict, Verifier
from anytime.verification.grading import normalise_answer
from tests.conftest import REPO

pytestmark = pytest.mark.slow

DATA = REPO.parent / "shared" / "data" / "test"
CUT = "...\n\n...\n\n</think>\n\n**Final Answer**\n"
SETS = ["aime", "amc", "math", "minerva", "olympiad_bench"]

# (ground truth, another problem's gold) judged correct because they are the same value.
SAME_VALUE = {
    ("5", "x=5"): "math-verify reads an answer written as `x=5` as its value 5 (by design)",
}


def _problems(name: str) -> list[dict[str, Any]]:
    path = DATA / f"{name}.json"
    if not path.is_file():
        pytest.skip(f"{path} not found (the shared evaluation data sits next to the repository)")
    return json.loads(path.read_text())


def _answers(problem: dict[str, Any]) -> list[str]:
    gold = problem["answer"]
    return [str(a) for a in gold] if isinstance(gold, list) else [str(gold)]


def _boxed(answer: str) -> str:
    return CUT + "\\boxed{" + answer.strip().strip("$") + "}"


@pytest.fixture(scope="module")
def verifier() -> Iterator[Verifier]:
    with Verifier(timeout_s=10, workers=2) as shared:
        yield shared


def gold_against_itself(verifier: Verifier, name: str) -> tuple[int, list[tuple[str, Verdict]]]:
    """(answers graded, [(answer, verdict) of each one not judged correct])."""
    problems = _problems(name)
    pairs = [(answer, problem["answer"]) for problem in problems for answer in _answers(problem)]
    verdicts = verifier.grade_many([Submission(_boxed(a), truth) for a, truth in pairs])
    return len(pairs), [
        (a, v) for (a, _), v in zip(pairs, verdicts, strict=True) if v.status is not Status.CORRECT
    ]


def gold_against_another(verifier: Verifier, name: str) -> tuple[int, list[tuple[str, str]]]:
    """Each problem's ground truth vs the next problem's first answer with a different normalised text:
    (pairs graded, [(truth, answer) of each pair judged correct])."""
    problems = _problems(name)
    pairs = []
    for index, problem in enumerate(problems):
        own = {normalise_answer(a) for a in _answers(problem)}
        for step in range(1, len(problems)):
            other = _answers(problems[(index + step) % len(problems)])[0]
            if normalise_answer(other) not in own:
                pairs.append((problem["answer"], other))
                break
    verdicts = verifier.grade_many([Submission(_boxed(other), truth) for truth, other in pairs])
    return len(pairs), [
        (str(t), o) for (t, o), v in zip(pairs, verdicts, strict=True) if v.status is Status.CORRECT
    ]


@pytest.mark.parametrize("name", SETS)
def test_gold_against_itself_is_correct(verifier: Verifier, name: str) -> None:
    graded, misses = gold_against_itself(verifier, name)
    share = 1 - len(misses) / graded
    print(f"{name}: {graded - len(misses)}/{graded} correct ({share:.2%}); misses {misses}")
    assert not [(a, v.status.value, v.message) for a, v in misses]


@pytest.mark.parametrize("name", SETS)
def test_gold_against_another_problems_gold_is_not_correct(verifier: Verifier, name: str) -> None:
    graded, judged_correct = gold_against_another(verifier, name)
    print(f"{name}: {graded - len(judged_correct)}/{graded} not correct; judged correct {judged_correct}")
    assert not [pair for pair in judged_correct if pair not in SAME_VALUE]
