"""The verifier's verdict on one summary: its status and the record the verify task stores by summary id.

Beside the trajectory record (`anytime.trajectory`): the rollout writes trajectories, the verifier their
verdicts, and the learner and the driver read both. Torch-free and free of the grading library, so a reader
needs neither math-verify nor the grader processes.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Status(StrEnum):
    """What grading found; every status is counted, none is folded into a 0 silently."""

    CORRECT = "correct"
    INCORRECT = "incorrect"
    UNPARSEABLE = "unparseable"
    TIMEOUT = "timeout"
    ERROR = "error"


class VerdictRecord(BaseModel):
    """What the verifier found for one summary (docs/method.md §2.4), stored by summary id.

    `reward` is 1 only for a correct, formatted answer whose thinking prefix did not end in EOS; a status
    other than `correct` carries a `message` saying why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: Status
    formatted: bool = Field(description="The format rule: exactly one `</think>`.")
    reward: float = Field(allow_inf_nan=False)
    extracted: str | None = Field(default=None, description="The answer found in the summary, if any.")
    message: str | None = None
