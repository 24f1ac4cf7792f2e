"""Synthetic tasks by name."""

from __future__ import annotations

from typing import Protocol

from anytime.problems import Problem
from anytime.synth.chain import DigitChainTask
from anytime.synth.split import Split


class SyntheticTask(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def whole_tokens(self) -> tuple[str, ...]:
        """Strings the tiny model's tokenizer should keep as single tokens."""
        ...

    def generate(self, n: int, seed: int, split: Split = "train") -> list[Problem]:
        """`n` problems of `split` (see `anytime.synth.split`): train draws may repeat, eval draws are
        distinct and refused (`SplitTooSmallError`) beyond `split_size("eval")`."""
        ...

    def split_size(self, split: Split) -> int:
        """How many distinct problems `split` holds."""
        ...


# `digit-chain-detours` is the task with headroom (the default for experiments): chains of 3 to 12 steps,
# each step followed by up to two re-check lines (a per-trace probability up to 1), so reference thoughts
# spread over 20-210 tokens (2 % / 27 % / 55 % / 78 % fit in 32 / 64 / 96 / 128): a thought that skips
# the detours answers within a smaller budget, and a cut thought's running digit is a partial result.
TASKS: dict[str, SyntheticTask] = {
    "digit-chain": DigitChainTask(),
    "digit-chain-detours": DigitChainTask(
        name="digit-chain-detours", min_steps=3, max_steps=12, max_recheck_prob=1.0, max_rechecks=2
    ),
}


def get_task(name: str) -> SyntheticTask:
    try:
        return TASKS[name]
    except KeyError:
        known = ", ".join(sorted(TASKS))
        raise ValueError(f"unknown synthetic task {name!r}; known tasks: {known}") from None
