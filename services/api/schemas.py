"""Response bodies, and JSON integers for request bodies. The request body of `POST /v1/runs` is
`anytime.run_config.RunConfig` itself."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from anytime.db import repository
from anytime.db.models import Checkpoint, RunStatus


def _json_number(value: Any) -> Any:
    if isinstance(value, str | bool):
        raise ValueError(f"expected a JSON integer, not {type(value).__name__} {value!r}")
    return value


# An integer as JSON means it: `3` or `3.0` (the same number to JSON Schema, so the OpenAPI's `integer`
# admits both), never `"3"`, `true` or `3.5`. Put it last: `Annotated[int, Field(ge=1), JSON_INTEGER]`
# (bounds after it would not reach the OpenAPI schema).
JSON_INTEGER = BeforeValidator(_json_number)
PositiveJsonInt = Annotated[int, Field(ge=1), JSON_INTEGER]


class _FromRow(BaseModel):
    model_config = ConfigDict(from_attributes=True)


Item = TypeVar("Item", bound=BaseModel)


class Page(BaseModel, Generic[Item]):
    items: list[Item]
    total: int = Field(description="Rows that match the filters (all pages).")
    offset: int
    limit: int


class Items(BaseModel, Generic[Item]):
    items: list[Item]


class RunOut(_FromRow):
    id: str
    name: str | None
    status: RunStatus
    error: str | None = Field(description="What went wrong (failed runs).")
    cancel_requested: bool = Field(
        description="A cancel is pending: the run stops at its next task boundary."
    )
    config: dict[str, Any] = Field(description="The validated RunConfig, with every default filled in.")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    mlflow_run_id: str | None
    policy_version: int = Field(description="The policy the workers serve now (0: the initial model).")
    step: int = Field(description="The last committed step (-1: none yet).")
    promoted_checkpoint_id: int | None


class BudgetOut(_FromRow):
    index: int
    tokens: int = Field(description="Thinking budget b_j in tokens.")
    probability: float = Field(description="Prior probability p_j.")


class StepOut(_FromRow):
    step: int
    policy_version: int
    metrics: dict[str, float | None]
    created_at: datetime


class RewardOut(_FromRow):
    step: int
    problem_id: str
    trace_index: int
    budget_index: int
    summary_index: int
    cut_length: int = Field(description="Thinking tokens kept for this budget.")
    inserted_start: int = Field(description="Start of the inserted tokens in the summary prompt's ids.")
    inserted_end: int = Field(description="End (exclusive) of the inserted tokens.")
    answer: str | None = Field(description="The extracted answer (none found: null).")
    status: str = Field(description="Verdict: correct, incorrect, unparseable, timeout or error.")
    reward: float


class CheckpointOut(BaseModel):
    id: int
    policy_version: int
    step: int
    path: str
    created_at: datetime
    exists: bool = Field(
        description="The folder is still on disk; false once the learner's checkpoint retention deleted it "
        "(such a checkpoint cannot be promoted or served)."
    )

    @classmethod
    def of(cls, row: Checkpoint) -> CheckpointOut:
        """The row, with whether its folder is still there (read now from the filesystem)."""
        return cls(
            id=row.id,
            policy_version=row.policy_version,
            step=row.step,
            path=row.path,
            created_at=row.created_at,
            exists=repository.checkpoint_on_disk(row.path),
        )


class EvaluationOut(_FromRow):
    policy_version: int
    step: int
    budgets: list[int] = Field(description="The evaluation grid (tokens).")
    accuracy: list[float] = Field(description="Accuracy at each budget of the grid.")
    anytime_score: float | None
    created_at: datetime


class CurveOut(BaseModel):
    run_id: str
    evaluations: list[EvaluationOut] = Field(description="Accuracy vs budget, one curve per evaluation.")
