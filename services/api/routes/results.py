"""What a run produced: per-step metrics, its budgets, per-summary rewards, checkpoints."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from anytime.db import repository
from services.api.deps import MAX_SQL_INT, Offset, RunDep, SessionDep
from services.api.schemas import BudgetOut, CheckpointOut, Items, Page, RewardOut, StepOut

router = APIRouter(
    prefix="/v1/runs/{run_id}",
    tags=["results"],
    responses={status.HTTP_404_NOT_FOUND: {"description": "No run with this id."}},
)


@router.get("/metrics")
def get_metrics(
    run: RunDep,
    session: SessionDep,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> Page[StepOut]:
    """Each committed step's metrics, in step order."""
    rows, total = repository.list_steps(session, run.id, offset, limit)
    return Page[StepOut](
        items=[StepOut.model_validate(r) for r in rows], total=total, offset=offset, limit=limit
    )


@router.get("/budgets")
def get_budgets(run: RunDep, session: SessionDep) -> Items[BudgetOut]:
    """The run's budget support b_1 < … < b_S and its prior."""
    return Items[BudgetOut](
        items=[BudgetOut.model_validate(b) for b in repository.list_budgets(session, run.id)]
    )


@router.get("/rewards")
def get_rewards(
    run: RunDep,
    session: SessionDep,
    step: Annotated[int | None, Query(ge=0, le=MAX_SQL_INT, description="Only this step.")] = None,
    budget_index: Annotated[
        int | None, Query(ge=0, le=MAX_SQL_INT, description="Only this budget (0-based).")
    ] = None,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> Page[RewardOut]:
    """One row per graded summary, in (step, problem, trace, budget, summary) order."""
    rows, total = repository.list_rewards(session, run.id, step, budget_index, offset, limit)
    return Page[RewardOut](
        items=[RewardOut.model_validate(r) for r in rows], total=total, offset=offset, limit=limit
    )


@router.get("/checkpoints")
def get_checkpoints(run: RunDep, session: SessionDep) -> Items[CheckpointOut]:
    """Saved policies, oldest first; `exists` is false for those the learner's retention has deleted
    (they stay listed, but cannot be promoted or served)."""
    rows = repository.list_checkpoints(session, run.id)
    return Items[CheckpointOut](items=[CheckpointOut.of(c) for c in rows])
