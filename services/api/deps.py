"""FastAPI dependencies as typed aliases, so route signatures read as plain typed parameters.

Resources live on `app.state` (built in the app's lifespan); tests replace any of them with
`app.dependency_overrides`.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Query, Request, Security, status
from fastapi.dependencies.utils import get_flat_dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from anytime.db import repository
from anytime.db.models import Run
from services.api.readiness import Readiness
from services.api.scheduler import RunScheduler
from services.api.settings import ApiSettings, get_api_settings

SettingsDep = Annotated[ApiSettings, Depends(get_api_settings)]

# SQL INTEGER (PostgreSQL's int4) holds ids, steps and indices: a larger number in a filter, an offset or a
# body would overflow the driver (a 500), so the API refuses it with a 422.
MAX_SQL_INT = 2**31 - 1
Offset = Annotated[int, Query(ge=0, le=MAX_SQL_INT, description="Rows to skip.")]
# FastAPI answers 400 when a body cannot be decoded at all (bytes that are not UTF-8); every route that
# takes a body says so in its `responses`.
BAD_BODY: dict[int | str, dict[str, Any]] = {
    status.HTTP_400_BAD_REQUEST: {"description": "The body could not be read as JSON text (not UTF-8)."}
}
# Run ids are 16 hex digits (`new_run_id`); anything that cannot be one is refused before it reaches SQL
# (PostgreSQL rejects a NUL in a string with an error, not "not found").
RUN_ID_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"


def reject_unknown_query(request: Request) -> None:
    """A query parameter the route does not take is 422, not silently ignored (a misspelt filter
    would otherwise return everything)."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    known = {param.alias for param in get_flat_dependant(route.dependant).query_params}
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        takes = ", ".join(sorted(known)) or "none"
        raise RequestValidationError(
            [
                {
                    "type": "extra_forbidden",
                    "loc": ("query", name),
                    "msg": f"unknown query parameter (this route takes: {takes})",
                    "input": request.query_params[name],
                }
                for name in unknown
            ]
        )


def get_session(request: Request) -> Iterator[Session]:
    """One session per request; routes that write commit it themselves."""
    with request.app.state.session_factory() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def get_scheduler(request: Request) -> RunScheduler:
    scheduler: RunScheduler = request.app.state.scheduler
    return scheduler


SchedulerDep = Annotated[RunScheduler, Depends(get_scheduler)]


def get_readiness(request: Request) -> Readiness:
    readiness: Readiness = request.app.state.readiness
    return readiness


ReadinessDep = Annotated[Readiness, Depends(get_readiness)]

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer KEY`")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="`X-API-Key: KEY`")


_READ_METHODS = frozenset({"GET", "HEAD"})


def require_api_key(
    request: Request,
    settings: SettingsDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    api_key: Annotated[str | None, Security(_api_key_header)],
) -> None:
    """Every call but health carries the API key (ANYTIME_API_API_KEY) as a bearer token or an X-API-Key
    header; with ANYTIME_API_OPEN_READS (loopback only, checked when the settings load) reads need none."""
    if settings.open_reads and request.method in _READ_METHODS:
        return
    given = api_key or (bearer.credentials if bearer is not None else None)
    challenge = {"WWW-Authenticate": "Bearer"}
    if not given:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "this call needs the API key: send `Authorization: Bearer KEY` or `X-API-Key: KEY`",
            headers=challenge,
        )
    expected = settings.api_key.get_secret_value()
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "the API key is not valid", headers=challenge)


ApiKey = Depends(require_api_key)

RunId = Annotated[str, Path(description="The run's id.", pattern=RUN_ID_PATTERN)]


def get_run_or_404(run_id: RunId, session: SessionDep) -> Run:
    run = repository.get_run(session, run_id)
    if run is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"run {run_id} not found")
    return run


RunDep = Annotated[Run, Depends(get_run_or_404)]
