"""`/v1/runs/{id}/samples`: what the model thought and answered, a few traces of every step in full.

Each step keeps the traces of `samples_per_step` problems (the learner's, with the advantages it gave) and
each evaluation those of `eval_sample_problems` (`anytime.samples`): the prompt, the thinking with its cuts,
each cut's inserted text, every answer with its extracted answer, verdict and reward. Paged; filtered by
kind, step and problem.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from anytime.db import samples as stored_samples
from anytime.samples import RolloutSample, SampleKind
from services.api.deps import MAX_SQL_INT, Offset, RunDep, SessionDep
from services.api.schemas import Page

router = APIRouter(
    prefix="/v1/runs/{run_id}",
    tags=["results"],
    responses={status.HTTP_404_NOT_FOUND: {"description": "No run with this id."}},
)


@router.get("/samples")
def get_samples(
    run: RunDep,
    session: SessionDep,
    kind: Annotated[
        SampleKind, Query(description="`train`: the steps' rollouts; `eval`: the evaluations'.")
    ] = "train",
    step: Annotated[
        int | None,
        Query(ge=-1, le=MAX_SQL_INT, description="Only this step (eval: the step it followed, -1 first)."),
    ] = None,
    problem: Annotated[
        str | None, Query(min_length=1, max_length=200, description="Only this problem id.")
    ] = None,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> Page[RolloutSample]:
    """One item per trace, in (step, problem, trace) order; its cuts in order, each with its answers."""
    rows, total = stored_samples.list_samples(session, run.id, kind, step, problem, offset, limit)
    return Page[RolloutSample](items=[row.sample() for row in rows], total=total, offset=offset, limit=limit)
