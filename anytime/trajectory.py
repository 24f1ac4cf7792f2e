"""The trajectory record: one thinking trace of one problem with every summary sampled from its cuts.

Written by the rollout, read by the verifier and the learner (docs/method.md §2.3, §3). Torch-free and
versioned: `schema_version` changes whenever a reader would misread an older record; readers refuse a
version they do not know instead of guessing.

Ids are stable: a trajectory is named by (run, step, problem, trace index), a summary by its trajectory,
cut index and sample index, so a task that runs twice names its output the same and stores it once.

Beside it, `anytime.verdict`: the verifier's record of one summary, stored by summary id.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from anytime.brpo.cuts import Cut, FinishReason

SCHEMA_VERSION = 1


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SummarySample(_Record):
    """One sampled summary: generated ids with one log-prob each, and the text the verifier grades."""

    ids: list[int]
    logprobs: list[float]
    text: str = Field(description="The generated summary ids, decoded.")
    response: str = Field(description="inserted + delimiter + summary, decoded: what the verifier grades.")
    finish_reason: Literal["eos", "length"]

    @model_validator(mode="after")
    def _one_logprob_per_token(self) -> SummarySample:
        if len(self.ids) != len(self.logprobs):
            raise ValueError(
                f"need one log-prob per generated id; got {len(self.logprobs)} for {len(self.ids)}"
            )
        if not all(math.isfinite(x) for x in self.logprobs):
            raise ValueError("log-probs must be finite")
        return self


class CutRecord(_Record):
    """One distinct cut `c = min(b_j, len(z))` and A summaries per budget it serves, in budget order."""

    budget_indices: list[int]
    budgets: list[int] = Field(description="The budgets (thinking tokens) this cut serves.")
    cut: int = Field(ge=0, description="Thinking tokens kept.")
    inserted_ids: list[int]
    delimiter_ids: list[int]
    summaries: list[SummarySample]


class Trajectory(_Record):
    schema_version: int = SCHEMA_VERSION
    id: str
    run_id: str
    step: int = Field(ge=0)
    policy_version: int = Field(ge=0)
    problem_id: str
    trace_index: int = Field(ge=0)
    answer: str | int | float | list[str | int | float] = Field(description="The ground truth.")
    budgets: list[int] = Field(description="The budget support b_1 < … < b_S of the rollout.")
    num_summaries: int = Field(ge=1, description="A: summaries per (trace, budget).")
    prompt_ids: list[int]
    thinking_ids: list[int]
    thinking_logprobs: list[float]
    finish_reason: FinishReason
    cuts: list[CutRecord]

    @model_validator(mode="after")
    def _consistent(self) -> Trajectory:
        if self.schema_version != SCHEMA_VERSION:
            raise ValueError(
                f"trajectory schema version {self.schema_version} is not {SCHEMA_VERSION}; "
                "upgrade the reader or re-run the rollout"
            )
        if len(self.thinking_ids) != len(self.thinking_logprobs):
            raise ValueError("need one log-prob per thinking id")
        served = sorted(i for cut in self.cuts for i in cut.budget_indices)
        if served != list(range(len(self.budgets))):
            raise ValueError(f"cuts must serve every budget index exactly once; got {served}")
        for cut in self.cuts:
            expected = len(cut.budget_indices) * self.num_summaries
            if len(cut.summaries) != expected:
                raise ValueError(f"cut at {cut.cut} needs {expected} summaries; got {len(cut.summaries)}")
        return self

    def summary_id(self, cut_index: int, sample_index: int) -> str:
        return summary_id(self.id, cut_index, sample_index)

    def prefix_ends_with(self, cut: CutRecord, token_id: int) -> bool:
        """True when the kept thinking `z[:cut]` ends with `token_id` (e.g. `</think>` or EOS)."""
        return cut.cut > 0 and self.thinking_ids[cut.cut - 1] == token_id


def cuts_of(trajectory: Trajectory) -> list[Cut]:
    """The core library's cuts from a trajectory's cut records."""
    return [
        Cut(
            cut=record.cut,
            budget_indices=tuple(record.budget_indices),
            inserted_ids=tuple(record.inserted_ids),
            delimiter_ids=tuple(record.delimiter_ids),
        )
        for record in trajectory.cuts
    ]


def trajectory_id(run_id: str, step: int, problem_id: str, trace_index: int) -> str:
    return f"{run_id}:{step}:{problem_id}:{trace_index}"


def summary_id(trajectory: str, cut_index: int, sample_index: int) -> str:
    return f"{trajectory}:c{cut_index}:s{sample_index}"
