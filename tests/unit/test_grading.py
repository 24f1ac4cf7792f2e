"""Grading with math-verify against string, number and list ground truths."""

from __future__ import annotations

import pytest

from services.verifier.grading import Status, grade_answer


@pytest.mark.parametrize(
    ("extracted", "truth", "status"),
    [
        ("7", "7", Status.CORRECT),
        ("7", 7, Status.CORRECT),
        ("\\frac{1}{2}", "0.5", Status.CORRECT),
        ("\\dfrac{3}{4}", "\\frac{3}{4}", Status.CORRECT),
        ("2\\sqrt{2}", "\\sqrt{8}", Status.CORRECT),
        ("-3", "\\boxed{-3}", Status.CORRECT),
        ("5", ["4", "5"], Status.CORRECT),
        ("6", "7", Status.INCORRECT),
        (None, "7", Status.UNPARSEABLE),
        ("   ", "7", Status.UNPARSEABLE),
    ],
)
def test_grade_answer(extracted: str | None, truth: object, status: Status) -> None:
    assert grade_answer(extracted, truth) is status  # type: ignore[arg-type]
