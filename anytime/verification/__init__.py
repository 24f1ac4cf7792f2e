"""Verification: answer extraction, the format rule and grading with math-verify under hard time limits.

Torch-free and in the core, because two services grade: the `verify` worker (`services.verifier.worker`,
training rewards) and the `eval` task (`services.rollout`, evaluation accuracy). `grade`/`grade_many`/
`Verifier` are the Python API (`anytime.verification.verifier`); the `anytime verify` command is built on
them too. math-verify is imported by the grader processes only (the `verifier` extra).
"""

from anytime.verdict import Status
from anytime.verification.extraction import extract_answer, is_formatted
from anytime.verification.grading import GroundTruth, grade_answer
from anytime.verification.verifier import Submission, Verdict, Verifier, VerifierStats, grade, grade_many

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
