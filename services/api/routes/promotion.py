"""`POST /v1/runs/{id}/promote`: choose the checkpoint a run serves (`model: "run:<id>"` at inference)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from anytime.db import repository
from services.api.deps import ApiKey, RunDep, SessionDep
from services.api.schemas import CheckpointOut, RunOut

router = APIRouter(prefix="/v1/runs", tags=["runs"])


class PromoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    checkpoint_id: StrictInt | None = Field(
        default=None, description="The checkpoint to serve; unset: the best anytime score on the eval set."
    )


class Promotion(BaseModel):
    run: RunOut
    checkpoint: CheckpointOut


_RESPONSES: dict[int | str, dict[str, Any]] = {
    status.HTTP_401_UNAUTHORIZED: {"description": "Missing or wrong API key."},
    status.HTTP_404_NOT_FOUND: {"description": "No such run, or no such checkpoint in it."},
    status.HTTP_409_CONFLICT: {"description": "No checkpoint given and none has been evaluated yet."},
}


@router.post("/{run_id}/promote", dependencies=[ApiKey], responses=_RESPONSES)
def promote(
    run: RunDep, session: SessionDep, body: Annotated[PromoteRequest | None, Body()] = None
) -> Promotion:
    """Serve the given checkpoint, or the best-scoring evaluated one, as the run's model."""
    checkpoint_id = body.checkpoint_id if body is not None else None
    if checkpoint_id is None:
        checkpoint = repository.promote_best_checkpoint(session, run.id)
        if checkpoint is None:
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                f"run {run.id} has no evaluated checkpoint to promote yet; wait for an evaluation or "
                "give a checkpoint_id",
            )
    else:
        try:
            checkpoint = repository.promote_checkpoint(session, run.id, checkpoint_id)
        except repository.CheckpointNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    session.commit()
    refreshed = repository.require_run(session, run.id)
    return Promotion(
        run=RunOut.model_validate(refreshed), checkpoint=CheckpointOut.model_validate(checkpoint)
    )
