"""`/v1/runs`: create, list, read, cancel, resume. Mutating calls need the API key."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response, status
from sqlalchemy.orm import Session

from anytime.db import repository
from anytime.db.models import Run, RunStatus
from anytime.run_config import RunConfig
from services.api.deps import BAD_BODY, ApiKey, Offset, RunDep, SchedulerDep, SessionDep, SettingsDep
from services.api.run_inputs import require_run_inputs
from services.api.scheduler import RunScheduler, SchedulingError
from services.api.schemas import Page, RunOut

router = APIRouter(prefix="/v1/runs", tags=["runs"])

_CONFLICT: dict[int | str, dict[str, Any]] = {
    status.HTTP_409_CONFLICT: {"description": "The run's status does not allow this."}
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    status.HTTP_404_NOT_FOUND: {"description": "No run with this id."}
}
_UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    status.HTTP_401_UNAUTHORIZED: {"description": "Missing or wrong API key."}
}
_UNSCHEDULED: dict[int | str, dict[str, Any]] = {
    status.HTTP_503_SERVICE_UNAVAILABLE: {"description": "The broker did not take the run."}
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    dependencies=[ApiKey],
    responses={**BAD_BODY, **_UNAUTHORIZED, **_UNSCHEDULED},
)
def create_run(
    config: RunConfig,
    session: SessionDep,
    scheduler: SchedulerDep,
    settings: SettingsDep,
    response: Response,
) -> RunOut:
    """Store a queued run and hand it to the run driver. A bad config is 422 with one message per field:
    its model and datasets must lie under the data roots (ANYTIME_DATA_ROOTS), datasets must load and hold
    at least `problems_per_step` problems; nothing is stored then. Evaluation problems that are also in the
    training dataset are counted (`contamination`) and named in the run's `warnings`."""
    contamination = require_run_inputs(config, settings.resolved_data_roots, settings.allow_hub)
    run = repository.create_run(session, config, contamination)
    session.commit()
    _schedule(session, scheduler, run)
    response.headers["Location"] = f"/v1/runs/{run.id}"
    return RunOut.model_validate(run)


@router.get("")
def list_runs(
    session: SessionDep,
    status: Annotated[RunStatus | None, Query(description="Only runs with this status.")] = None,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Page[RunOut]:
    """Runs, newest first."""
    rows, total = repository.list_runs(session, status, offset, limit)
    return Page[RunOut](
        items=[RunOut.model_validate(r) for r in rows], total=total, offset=offset, limit=limit
    )


@router.get("/{run_id}", responses=_NOT_FOUND)
def get_run(run: RunDep) -> RunOut:
    return RunOut.model_validate(run)


@router.post(
    "/{run_id}/cancel", dependencies=[ApiKey], responses={**_UNAUTHORIZED, **_NOT_FOUND, **_CONFLICT}
)
def cancel_run(run: RunDep, session: SessionDep, scheduler: SchedulerDep) -> RunOut:
    """A queued run is cancelled at once; a running one stops at its next task boundary
    (`cancel_requested` until then), or at once when no live driver holds it. A finished run is 409."""
    cancelled = cancel_one(session, scheduler, run.id)
    session.commit()
    return RunOut.model_validate(cancelled)


@router.post(
    "/{run_id}/resume",
    dependencies=[ApiKey],
    responses={**_UNAUTHORIZED, **_NOT_FOUND, **_CONFLICT, **_UNSCHEDULED},
)
def resume_run(run: RunDep, session: SessionDep, scheduler: SchedulerDep) -> RunOut:
    """Queue a failed or cancelled run again, or send a new driver to a queued or running run that has
    none; it continues from its last committed step and checkpoint. 409 when a live driver holds it."""
    try:
        resumed = prepare_resume(session, scheduler, run)
    except DriverHoldsRun as err:
        raise HTTPException(status.HTTP_409_CONFLICT, str(err)) from None
    session.commit()
    _schedule(session, scheduler, resumed)
    return RunOut.model_validate(resumed)


def _schedule(session: Session, scheduler: RunScheduler, run: Run) -> None:
    """Send the committed run to the driver; if that fails the run is marked failed (resume retries it)."""
    try:
        send_to_driver(session, scheduler, [run])
    except NotScheduled as err:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"run {run.id} was stored but could not be scheduled, so it is marked failed: {err.error}; "
            "fix the broker, then POST /v1/runs/{id}/resume",
        ) from err


# ------------------------------------------- what cancel and resume do to one run (runs and experiments)


class DriverHoldsRun(Exception):
    """Resume refused: a live driver holds the run (or Redis cannot tell whether one does)."""


class NotScheduled(Exception):
    """The broker refused runs; they are marked failed (`run_ids`: those not sent)."""

    def __init__(self, run_ids: list[str], error: SchedulingError) -> None:
        super().__init__(f"{len(run_ids)} runs not scheduled: {error}")
        self.run_ids = run_ids
        self.error = error


def cancel_one(session: Session, scheduler: RunScheduler, run_id: str) -> Run:
    """Cancel a queued run now; mark a running one `cancel_requested`, or cancel it now when no live driver
    holds it. `InvalidTransition` for a finished run. The caller commits."""
    cancelled = repository.request_cancel(session, run_id)
    if cancelled.status is RunStatus.RUNNING and scheduler.driving(run_id) is False:
        cancelled = repository.set_status(session, run_id, RunStatus.CANCELLED)
    return cancelled


def prepare_resume(session: Session, scheduler: RunScheduler, run: Run) -> Run:
    """A failed or cancelled run queued again; a queued or running one as it is when no live driver holds
    it (`DriverHoldsRun` when one does); `InvalidTransition` for a succeeded run. The caller commits, then
    sends the run to the driver (`send_to_driver`)."""
    if run.status in (RunStatus.QUEUED, RunStatus.RUNNING):
        if scheduler.driving(run.id) is not False:
            raise DriverHoldsRun(
                f"run {run.id} is {run.status} and a live driver holds it (or Redis cannot tell): "
                "nothing to resume"
            )
        return run
    return repository.set_status(session, run.id, RunStatus.QUEUED)


def send_to_driver(session: Session, scheduler: RunScheduler, runs: Sequence[Run]) -> None:
    """Send committed runs to the driver in order. If the broker refuses one, it and those not yet sent are
    marked failed (resume retries them), that is committed, and `NotScheduled` is raised."""
    for index, run in enumerate(runs):
        try:
            scheduler.schedule(run.id)
        except SchedulingError as err:
            unsent = [r.id for r in runs[index:]]
            for run_id in unsent:
                repository.set_status(session, run_id, RunStatus.FAILED, error=f"not scheduled: {err}")
            session.commit()
            raise NotScheduled(unsent, err) from err
