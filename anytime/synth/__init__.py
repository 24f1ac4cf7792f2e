"""Synthetic reasoning tasks with verifiable answers, for the tiny model and the embedded default."""

from anytime.synth.chain import DigitChainTask
from anytime.synth.registry import TASKS, get_task

__all__ = ["TASKS", "DigitChainTask", "get_task"]
