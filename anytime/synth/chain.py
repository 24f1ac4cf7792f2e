"""`digit-chain`: apply one one-digit operation several times, keeping only the last digit each time.

Why this task: each step is a small table lookup a tiny model learns in minutes, yet the answer needs
every step in order, so the thinking is genuinely multi-step. It is built for anytime behaviour:

- thinking length varies across problems (`min_steps` to `max_steps` steps) and across traces of one
  problem (after each step a re-check line follows with a per-trace probability: a detour that costs
  tokens and adds nothing);
- a partial thought carries partial information: after k steps the running digit is known, so an
  answer forced from a cut trace has only the remaining steps left to do "in its head", and a trace
  that skips re-checks reaches the answer within a smaller budget. Thinking efficiently pays off.

Problem text:  "Digit chain: start at 7. Apply *3 four times, keeping only the last digit each time."
Trace:         "A: 7->1\ncheck: 1\nB: 1->3\nC: 3->9\nD: 9->7\nso the result is 7"

Why one operation per problem: the operation is then the only operation token in the prompt, so each
step reads it by what it is, not by where it is. Per-step operations need induction-style lookups
("the operand after label C"), which a 3M-parameter model does not learn reliably within its 10-minute
warm start (tried: 15-20 % accuracy after 450 steps).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from anytime.problems import Problem

LABELS = "ABCDEFGHIJKL"
COUNT_WORDS = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
)


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
    min_steps: int = 3
    max_steps: int = 8
    max_recheck_prob: float = 0.6
    max_rechecks: int = 1  # re-check lines a step may be followed by (each with the trace's probability)

    def __post_init__(self) -> None:
        if not 1 <= self.min_steps <= self.max_steps <= len(LABELS):
            raise ValueError(
                f"need 1 <= min_steps <= max_steps <= {len(LABELS)}; "
                f"got min_steps={self.min_steps}, max_steps={self.max_steps}"
            )
        if self.max_rechecks < 0:
            raise ValueError(f"max_rechecks must be >= 0; got {self.max_rechecks}")
        if not 0.0 <= self.max_recheck_prob <= 1.0:
            raise ValueError(f"max_recheck_prob must be in [0, 1]; got {self.max_recheck_prob}")

    @property
    def whole_tokens(self) -> tuple[str, ...]:
        """Strings the tokenizer keeps as one token: the operation with its operand ("+5", "*9")."""
        return tuple(f"{op}{d}" for op in "+-" for d in range(1, 10)) + tuple(f"*{d}" for d in range(2, 10))

    def sample(self, rng: random.Random, index: int) -> Problem:
        start = rng.randrange(10)
        op = rng.choice("+-*")
        operand = rng.randint(2, 9) if op == "*" else rng.randint(1, 9)
        steps = rng.randint(self.min_steps, self.max_steps)
        problem = (
            f"Digit chain: start at {start}. Apply {op}{operand} {COUNT_WORDS[steps]} times, "
            "keeping only the last digit each time."
        )
        recheck_prob = rng.uniform(0.0, self.max_recheck_prob)
        trace, answer = self.solve(start, [(op, operand)] * steps, rng, recheck_prob)
        return Problem(id=f"{self.name}-{index}", problem=problem, answer=str(answer), trace=trace)

    def solve(
        self, start: int, ops: list[tuple[str, int]], rng: random.Random, recheck_prob: float
    ) -> tuple[str, int]:
        """A worked trace; each step is followed by a re-check line with probability `recheck_prob`."""
        lines = []
        value = start
        for label, (op, operand) in zip(LABELS, ops, strict=False):
            result = apply_op(value, op, operand)
            lines.append(f"{label}: {value}->{result}")
            for _ in range(self.max_rechecks):
                if rng.random() < recheck_prob:
                    lines.append(f"check: {result}")
            value = result
        lines.append(f"so the result is {value}")
        return "\n".join(lines), value

    def generate(self, n: int, seed: int) -> list[Problem]:
        rng = random.Random(seed)
        return [self.sample(rng, index) for index in range(n)]
