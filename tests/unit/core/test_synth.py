"""The digit-chain task: answers are right, traces vary, the CLI writes the shared data format."""

from __future__ import annotations

import json
import random
import re

import pytest

from anytime.problems import load_problems
from anytime.synth import DigitChainTask, get_task
from anytime.synth.chain import COUNT_WORDS, apply_op
from tests.conftest import anytime_cli


@pytest.mark.parametrize(
    ("value", "op", "operand", "expected"),
    [(7, "+", 3, 0), (2, "-", 5, 7), (4, "*", 8, 2), (0, "-", 1, 9), (9, "*", 9, 1)],
)
def test_apply_op_keeps_last_digit(value: int, op: str, operand: int, expected: int) -> None:
    assert apply_op(value, op, operand) == expected


def test_solve_hand_computed_chain() -> None:
    # 6 *3 three times: 6 -> 8 -> 4 -> 2; no re-checks at probability 0.
    trace, answer = DigitChainTask().solve(6, [("*", 3)] * 3, random.Random(0), recheck_prob=0.0)
    assert answer == 2
    assert trace == "A: 6->8\nB: 8->4\nC: 4->2\nso the result is 2"


def test_recheck_is_a_detour_that_keeps_the_answer() -> None:
    ops = [("+", 5), ("+", 5)]
    plain, a = DigitChainTask().solve(2, ops, random.Random(0), recheck_prob=0.0)
    checked, b = DigitChainTask().solve(2, ops, random.Random(0), recheck_prob=1.0)
    assert a == b == 2
    assert checked == "A: 2->7\ncheck: 7\nB: 7->2\ncheck: 2\nso the result is 2"
    assert len(checked) > len(plain)


def test_answers_match_the_problem_text() -> None:
    """Recompute every answer from the problem text alone, independently of the generator."""
    pattern = re.compile(r"Digit chain: start at (\d)\. Apply ([+*-])(\d) (\w+) times, keeping")
    for problem in get_task("digit-chain").generate(200, seed=3):
        match = pattern.match(problem.problem)
        assert match is not None, problem.problem
        value, op, operand = int(match.group(1)), match.group(2), int(match.group(3))
        for _ in range(COUNT_WORDS.index(match.group(4))):
            value = {"+": value + operand, "-": value - operand, "*": value * operand}[op] % 10
        assert problem.answer == str(value)
        assert problem.trace is not None and problem.trace.endswith(f"so the result is {value}")


def test_thinking_length_varies_across_problems_and_traces() -> None:
    problems = get_task("digit-chain").generate(300, seed=1)
    lines = [p.trace.count("\n") for p in problems if p.trace]
    assert min(lines) <= 4 and max(lines) >= 10
    assert any("check" in (p.trace or "") for p in problems)
    assert any("check" not in (p.trace or "") for p in problems)


def test_generation_is_deterministic_per_seed() -> None:
    task = get_task("digit-chain")
    assert task.generate(20, seed=5) == task.generate(20, seed=5)
    assert task.generate(20, seed=5) != task.generate(20, seed=6)


def test_invalid_task_config_says_how_to_fix() -> None:
    with pytest.raises(ValueError, match="min_steps <= max_steps"):
        DigitChainTask(min_steps=5, max_steps=2)
    with pytest.raises(ValueError, match=r"max_recheck_prob must be in \[0, 1\]"):
        DigitChainTask(max_recheck_prob=1.5)


def test_cli_writes_records_readable_as_problems(tmp_path) -> None:
    out = tmp_path / "synth.jsonl"
    result = anytime_cli(
        "data", "synth", "--task", "digit-chain", "--n", "7", "--seed", "2", "--out", str(out)
    )
    assert "7 digit-chain problems" in result.stdout
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 7 and set(rows[0]) == {"id", "problem", "answer", "trace"}
    assert [p.id for p in load_problems(out)] == [r["id"] for r in rows]


def test_two_rechecks_per_step_double_the_detour() -> None:
    twice = DigitChainTask(max_rechecks=2)
    checked, answer = twice.solve(2, [("+", 5)], random.Random(0), recheck_prob=1.0)
    assert answer == 7 and checked == "A: 2->7\ncheck: 7\ncheck: 7\nso the result is 7"


def test_the_detours_task_spreads_thinking_over_the_default_budgets() -> None:
    """Steps 3-12 with up to two re-checks each: from 4 lines to 37, answers still right."""
    pattern = re.compile(r"Apply ([+*-])(\d) (\w+) times")
    problems = get_task("digit-chain-detours").generate(400, seed=2)
    lines = []
    for problem in problems:
        match = pattern.search(problem.problem)
        assert match is not None and problem.trace is not None
        steps = COUNT_WORDS.index(match.group(3))
        assert 3 <= steps <= 12
        body = problem.trace.split("\n")
        checks = sum(line.startswith("check") for line in body)
        assert len(body) == steps + checks + 1 and checks <= 2 * steps
        lines.append(len(body))
    assert min(lines) <= 6 and max(lines) >= 30  # short and long thoughts both occur
