"""Celery queue names: one queue per kind of work (docs/method.md §3.2)."""

from enum import StrEnum


class Queue(StrEnum):
    ROLLOUT = "rollout"
    VERIFY = "verify"
    LEARN = "learn"
    EVAL = "eval"
    # Runs are driven step by step (rollout → verify → learn → commit) by a task on this queue.
    CONTROL = "control"


def task_name(queue: Queue, action: str) -> str:
    """Tasks are named `anytime.<queue>.<action>` and routed to the queue in their name."""
    return f"anytime.{queue.value}.{action}"
