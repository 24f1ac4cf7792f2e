"""Grading an extracted answer against a ground truth with math-verify.

A ground truth may be a string (a boxed one is unwrapped), a number or a list of acceptable answers.
This is the in-process grader; hard wall-clock limits by process isolation belong to the verifier
worker, which calls this function inside its child processes.
"""

from __future__ import annotations

from enum import StrEnum

from math_verify import parse, verify

from services.verifier.extraction import last_boxed

GroundTruth = str | int | float | list[str | int | float]


class Status(StrEnum):
    CORRECT = "correct"
    INCORRECT = "incorrect"
    UNPARSEABLE = "unparseable"
    TIMEOUT = "timeout"
    ERROR = "error"


def _as_latex(value: str | int | float) -> str:
    text = str(value).strip()
    boxed = last_boxed(text) if "\\boxed" in text or "\\fbox" in text else None
    return f"${boxed if boxed is not None else text}$"


def grade_answer(extracted: str | None, ground_truth: GroundTruth) -> Status:
    """Correct when the extracted answer equals any acceptable ground truth (math-verify equivalence)."""
    if extracted is None or not extracted.strip():
        return Status.UNPARSEABLE
    answer = parse(f"${extracted}$", parsing_timeout=None)
    if not answer:
        return Status.UNPARSEABLE
    truths = ground_truth if isinstance(ground_truth, list) else [ground_truth]
    for truth in truths:
        gold = parse(_as_latex(truth), parsing_timeout=None)
        if gold and verify(gold, answer, timeout_seconds=None):
            return Status.CORRECT
    return Status.INCORRECT
