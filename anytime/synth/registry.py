"""Synthetic tasks by name."""

from __future__ import annotations

from typing import Protocol

from anytime.problems import Problem
from anytime.synth.chain import DigitChainTask


class SyntheticTask(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def whole_tokens(self) -> tuple[str, ...]:
        """Strings the tiny model's tokenizer should keep as single tokens."""
        ...

    def generate(self, n: int, seed: int) -> list[Problem]: ...


TASKS: dict[str, SyntheticTask] = {"digit-chain": DigitChainTask()}


def get_task(name: str) -> SyntheticTask:
    try:
        return TASKS[name]
    except KeyError:
        known = ", ".join(sorted(TASKS))
        raise ValueError(f"unknown synthetic task {name!r}; known tasks: {known}") from None
