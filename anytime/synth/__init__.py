"""Synthetic reasoning tasks with verifiable answers, for the tiny model and the embedded default."""

from anytime.synth.chain import DigitChainTask
from anytime.synth.registry import TASKS, SyntheticTask, get_task
from anytime.synth.split import HELD_OUT_RULE, SPLITS, Split, SplitTooSmallError, split_of

__all__ = [
    "HELD_OUT_RULE",
    "SPLITS",
    "TASKS",
    "DigitChainTask",
    "Split",
    "SplitTooSmallError",
    "SyntheticTask",
    "get_task",
    "split_of",
]
