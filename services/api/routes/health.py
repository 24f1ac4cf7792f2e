"""Liveness (`/healthz`: the process answers) and readiness (`/readyz`: the database answers at the
migrations' head revision, and Redis answers)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from anytime import __version__
from services.api.deps import ReadinessDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok", "version": __version__}


@router.get("/readyz", responses={503: {"description": "A dependency is down; `failed` names it."}})
def readyz(readiness: ReadinessDep) -> JSONResponse:
    """Readiness: the database answers and is migrated (its Alembic revision is the head), and Redis
    answers; 503 names the ones that do not and why (`alembic upgrade head` for a schema behind)."""
    checks = readiness.run()
    failed = sorted(name for name, outcome in checks.items() if outcome != "ok")
    body: dict[str, Any] = {"status": "ok" if not failed else "unavailable", "checks": checks}
    if failed:
        body["failed"] = failed
        body["detail"] = "not ready: " + "; ".join(f"{name} {checks[name]}" for name in failed)
    return JSONResponse(body, status_code=503 if failed else 200)
