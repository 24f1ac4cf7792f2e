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

The problem space is small (10 starts x 26 operations x the step counts: 1,560 problems for 3-8 steps),
so `generate` draws train and held-out problems from disjoint splits of it (`anytime.synth.split`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from anytime.problems import Problem
from anytime.synth.split import HELD_OUT_RULE, SPLITS, Split, SplitTooSmallError, split_of

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
class Chain:
    """One problem: start at `start`, apply `op``operand` `steps` times, keeping the last digit."""

    start: int
    op: str
    operand: int
    steps: int

    @property
    def text(self) -> str:
        return (
            f"Digit chain: start at {self.start}. Apply {self.op}{self.operand} {COUNT_WORDS[self.steps]} "
            "times, keeping only the last digit each time."
        )


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

    def problem_space(self) -> list[Chain]:
        """Every distinct problem this task can pose, in a fixed order."""
        return [
            Chain(start, op, operand, steps)
            for start in range(10)
            for op in "+-*"
            for operand in (range(2, 10) if op == "*" else range(1, 10))
            for steps in range(self.min_steps, self.max_steps + 1)
        ]

    def split_size(self, split: Split) -> int:
        """How many distinct problems `split` holds."""
        return sum(split_of(chain.text) == split for chain in self.problem_space())

    def draw(self, rng: random.Random) -> Chain:
        """One problem from the task's distribution (which may repeat a problem drawn before)."""
        start = rng.randrange(10)
        op = rng.choice("+-*")
        operand = rng.randint(2, 9) if op == "*" else rng.randint(1, 9)
        return Chain(start, op, operand, rng.randint(self.min_steps, self.max_steps))

    def pose(self, chain: Chain, rng: random.Random, problem_id: str) -> Problem:
        """The problem with its answer and a worked trace whose re-check probability `rng` draws."""
        recheck_prob = rng.uniform(0.0, self.max_recheck_prob)
        trace, answer = self.solve(chain.start, [(chain.op, chain.operand)] * chain.steps, rng, recheck_prob)
        return Problem(id=problem_id, problem=chain.text, answer=str(answer), trace=trace)

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

    def generate(self, n: int, seed: int, split: Split = "train") -> list[Problem]:
        """`n` problems of `split`, the same for the same seed.

        `"train"` draws from the task's distribution restricted to the train split, repeats allowed (the
        warm start and the RL pool draw more problems than the split holds); `"eval"` draws `n` distinct
        held-out problems, uniformly without replacement, and refuses more than the split holds.
        """
        rng = random.Random(seed)
        if split == "train":
            problems: list[Problem] = []
            while len(problems) < n:
                chain = self.draw(rng)
                if split_of(chain.text) == "train":
                    problems.append(self.pose(chain, rng, f"{self.name}-{len(problems)}"))
            return problems
        if split != "eval":
            raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        held_out = [chain for chain in self.problem_space() if split_of(chain.text) == "eval"]
        if n > len(held_out):
            raise SplitTooSmallError(
                f"{self.name}: asked for {n} distinct held-out problems, but its eval split holds only "
                f"{len(held_out)} ({HELD_OUT_RULE} over {len(self.problem_space())} problems); "
                f"ask for at most {len(held_out)}"
            )
        return [
            self.pose(chain, rng, f"{self.name}-eval-{i}") for i, chain in enumerate(rng.sample(held_out, n))
        ]
