"""FastAPI dependencies as typed aliases, so route signatures read as plain typed parameters.

Resources live on `app.state` (built in the app's lifespan); tests replace any of them with
`app.dependency_overrides`.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request, Security, status
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


def require_api_key(
    settings: SettingsDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    api_key: Annotated[str | None, Security(_api_key_header)],
) -> None:
    """Mutating calls carry the API key (ANYTIME_API_API_KEY) as a bearer token or an X-API-Key header."""
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

RunId = Annotated[str, Path(description="The run's id.")]


def get_run_or_404(run_id: RunId, session: SessionDep) -> Run:
    run = repository.get_run(session, run_id)
    if run is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"run {run_id} not found")
    return run


RunDep = Annotated[Run, Depends(get_run_or_404)]
