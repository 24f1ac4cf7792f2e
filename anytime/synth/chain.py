"""`digit-chain`: apply a chain of one-digit operations, keeping only the last digit after each step.

Why this task: every step is a small lookup a tiny model learns in minutes, yet the answer needs all
steps in order, so the thinking is genuinely multi-step. It is built for anytime behaviour:

- thinking length varies across problems (3 to `max_ops` operations) and across traces of one problem
  (each step is re-checked with a per-trace probability, a detour that costs tokens and adds nothing);
- a partial thought carries partial information: after k steps the running digit is known, so an
  answer forced from a cut trace has only the remaining steps left to do "in its head", and a trace
  that skips re-checks reaches the answer within a smaller budget. Thinking efficiently pays off.

Steps carry letter labels, so finding the next operation is a lookup by a unique key (a pattern tiny
transformers learn quickly) rather than a search by position; a re-check repeats the step it checks.

Problem text:  "Digit chain: start at 7. Steps: A +3, B *4, C -5. Keep only the last digit after each step."
Trace:         "A: 7 + 3 -> 0\ncheck 7 + 3 -> 0\nB: 0 * 4 -> 0\nC: 0 - 5 -> 5\nso the result is 5"
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from anytime.problems import Problem

LABELS = "ABCDEFGHIJKLMNOP"


def apply_op(value: int, op: str, operand: int) -> int:
    """One step: the last digit of `value op operand`."""
    if op == "+":
        return (value + operand) % 10
    if op == "-":
        return (value - operand) % 10
    if op == "*":
        return (value * operand) % 10
    raise ValueError(f"unknown operation {op!r}; expected one of + - *")


@dataclass(frozen=True)
class DigitChainTask:
    name: str = "digit-chain"
    min_ops: int = 3
    max_ops: int = 8
    max_recheck_prob: float = 0.6

    def __post_init__(self) -> None:
        if not 1 <= self.min_ops <= self.max_ops <= len(LABELS):
            raise ValueError(f"need 1 <= min_ops <= max_ops <= {len(LABELS)}; got min_ops={self.min_ops}, max_ops={self.max_ops}")
        if not 0.0 <= self.max_recheck_prob <= 1.0:
            raise ValueError(f"max_recheck_prob must be in [0, 1]; got {self.max_recheck_prob}")

    def sample(self, rng: random.Random, index: int) -> Problem:
        start = rng.randrange(10)
        ops = []
        for _ in range(rng.randint(self.min_ops, self.max_ops)):
            op = rng.choice("+-*")
            ops.append((op, rng.randint(2, 9) if op == "*" else rng.randint(1, 9)))
        steps = ", ".join(f"{label} {op}{operand}" for label, (op, operand) in zip(LABELS, ops, strict=False))
        problem = f"Digit chain: start at {start}. Steps: {steps}. Keep only the last digit after each step."
        trace, answer = self.solve(start, ops, rng, recheck_prob=rng.uniform(0.0, self.max_recheck_prob))
        return Problem(id=f"{self.name}-{index}", problem=problem, answer=str(answer), trace=trace)

    def solve(
        self, start: int, ops: list[tuple[str, int]], rng: random.Random, recheck_prob: float
    ) -> tuple[str, int]:
        """A worked trace; each step is re-checked (repeated) with probability `recheck_prob`."""
        lines = []
        value = start
        for label, (op, operand) in zip(LABELS, ops, strict=False):
            result = apply_op(value, op, operand)
            lines.append(f"{label}: {value} {op} {operand} -> {result}")
            if rng.random() < recheck_prob:
                lines.append(f"check {value} {op} {operand} -> {result}")
            value = result
        lines.append(f"so the result is {value}")
        return "\n".join(lines), value

    def generate(self, n: int, seed: int) -> list[Problem]:
        rng = random.Random(seed)
        return [self.sample(rng, index) for index in range(n)]
