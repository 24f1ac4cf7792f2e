"""`POST /v1/runs/{id}/promote`: choose the checkpoint a run serves (`model: "run:<id>"` at inference).

The answer shows what `reasoning_effort` will mean for it: read off the evaluation of the checkpoint's policy
version (`services.api.inference.effort`), as `GET /v1/models/run:<id>` shows it (computed on read, so a
later evaluation of the same policy is picked up without promoting again).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field

from anytime.db import repository
from services.api.deps import BAD_BODY, MAX_SQL_INT, ApiKey, RunDep, SessionDep, SettingsDep
from services.api.inference.schemas import ReasoningEffortCard
from services.api.inference.service import checkpoint_efforts
from services.api.schemas import JSON_INTEGER, CheckpointOut, RunOut

router = APIRouter(prefix="/v1/runs", tags=["runs"])


class PromoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    checkpoint_id: Annotated[int, Field(ge=1, le=MAX_SQL_INT), JSON_INTEGER] | None = Field(
        default=None, description="The checkpoint to serve; unset: the best anytime score on the eval set."
    )


class Promotion(BaseModel):
    run: RunOut
    checkpoint: CheckpointOut
    reasoning_effort: ReasoningEffortCard = Field(
        description="What each `reasoning_effort` thinks to for the promoted checkpoint, and where from."
    )


_RESPONSES: dict[int | str, dict[str, Any]] = {
    **BAD_BODY,
    status.HTTP_401_UNAUTHORIZED: {"description": "Missing or wrong API key."},
    status.HTTP_404_NOT_FOUND: {"description": "No such run, or no such checkpoint in it."},
    status.HTTP_409_CONFLICT: {
        "description": "The checkpoint's folder is gone (checkpoint retention deleted it), or none was given "
        "and no evaluated checkpoint is on disk."
    },
}


@router.post("/{run_id}/promote", dependencies=[ApiKey], responses=_RESPONSES)
def promote(
    run: RunDep,
    session: SessionDep,
    settings: SettingsDep,
    body: Annotated[PromoteRequest | None, Body()] = None,
) -> Promotion:
    """Serve the given checkpoint, or the best-scoring evaluated one still on disk, as the run's model."""
    checkpoint_id = body.checkpoint_id if body is not None else None
    on_disk = repository.checkpoint_on_disk
    if checkpoint_id is None:
        checkpoint = repository.promote_best_checkpoint(session, run.id, on_disk)
        if checkpoint is None:
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                f"run {run.id} has no evaluated checkpoint on disk to promote yet; wait for an evaluation "
                "or give a checkpoint_id",
            )
    else:
        try:
            checkpoint = repository.promote_checkpoint(session, run.id, checkpoint_id, on_disk)
        except repository.CheckpointNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
        except repository.CheckpointGone as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    session.commit()
    refreshed = repository.require_run(session, run.id)
    efforts = ReasoningEffortCard.of(checkpoint_efforts(session, run.id, checkpoint, settings))
    return Promotion(
        run=RunOut.model_validate(refreshed),
        checkpoint=CheckpointOut.of(checkpoint),
        reasoning_effort=efforts,
    )
