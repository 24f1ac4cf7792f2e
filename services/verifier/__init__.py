"""Verifier: answer extraction, the format rule and grading with math-verify under hard time limits.

Torch-free. `grade`/`grade_many`/`Verifier` are the Python API (`services.verifier.verifier`); the
`anytime verify` command and the Celery `verify` worker (`services.verifier.worker`) are built on them.
"""

from services.verifier.extraction import extract_answer, is_formatted
from services.verifier.grading import GroundTruth, Status, grade_answer
from services.verifier.verifier import Submission, Verdict, Verifier, VerifierStats, grade, grade_many

__all__ = [
    "GroundTruth",
    "Status",
    "Submission",
    "Verdict",
    "Verifier",
    "VerifierStats",
    "extract_answer",
    "grade",
    "grade_answer",
    "grade_many",
    "is_formatted",
]
