"""The FastAPI application factory: `uvicorn services.api.app:create_app --factory`.

Heavy resources (the database engine, the Celery client, the Redis ping) are built in `lifespan`, never
at import. The API never migrates: run `make migrate` (alembic upgrade head) before starting it; until then
/readyz says so and the routes that query the database answer 503 with that command.

Every route but health needs the API key, the OpenAPI schema and its docs pages included: a router added
to `_KEYED_ROUTERS` is covered without a word in its module (ANYTIME_API_OPEN_READS opens reads on loopback).

Errors: the REST API keeps FastAPI's `{"detail": …}` (a string, or one entry per field for a 422), which its
own clients (`anytime` CLI, tests, scripts) read; the inference routes answer OpenAI's
`{"error": {"message", "type", "param", "code"}}` instead (`services.api.inference.errors`), because OpenAI
clients read only that shape. The handlers below serve the REST dialect; the inference router translates.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request, status
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.concurrency import run_in_threadpool

from anytime import __version__
from anytime.celery_app import celery_from_settings
from anytime.db.repository import InvalidTransition, RunNotFound
from anytime.db.session import make_engine, make_session_factory
from anytime.run_config import flat_location
from services.api.deps import ApiKey, reject_unknown_query
from services.api.inference.service import InferenceService
from services.api.readiness import Readiness, SchemaVersion, database_unready_reason, redis_check
from services.api.routes import curves, experiments, health, inference, promotion, results, runs, samples
from services.api.scheduler import CeleryRunScheduler, NoBrokerScheduler, RunScheduler
from services.api.settings import ApiSettings, get_api_settings


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    """The API; `settings` (default: from the environment) also serve the settings dependency."""
    resolved = settings or get_api_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(resolved.resolved_database_url)
        scheduler: RunScheduler = (
            CeleryRunScheduler(celery_from_settings(resolved, name="anytime-api"))
            if resolved.redis_url
            else NoBrokerScheduler()
        )
        ping_redis, close_redis = redis_check(resolved.redis_url, resolved.readiness_timeout_s)
        app.state.session_factory = make_session_factory(engine)
        app.state.scheduler = scheduler
        app.state.experiment_tracker = experiments.experiment_tracker(resolved)  # MLflow on first use
        app.state.schema = SchemaVersion.of(engine)
        app.state.readiness = Readiness({"database": app.state.schema.check, "redis": ping_redis})
        # Engines load lazily (torch only then): the configured model now, a run's checkpoint on first use.
        app.state.inference = InferenceService(resolved)
        try:
            await app.state.inference.start()
            yield
        finally:
            app.state.inference.close()
            close_redis()
            if isinstance(scheduler, CeleryRunScheduler):
                scheduler.close()
            engine.dispose()

    app = FastAPI(
        title="Anytime",
        version=__version__,
        description="Train and serve anytime reasoners. Every call but /healthz and /readyz needs the API "
        "key (`Authorization: Bearer KEY` or `X-API-Key: KEY`).",
        lifespan=lifespan,
        dependencies=[Depends(reject_unknown_query)],
        openapi_url=None,  # served below, behind the key
        docs_url=None,
        redoc_url=None,
    )
    if settings is not None:
        app.dependency_overrides[get_api_settings] = lambda: settings
    app.include_router(health.router)
    for module in _KEYED_ROUTERS:
        app.include_router(module.router, dependencies=[ApiKey], responses=_UNAUTHORIZED)
    _add_docs(app)
    app.add_exception_handler(RunNotFound, _not_found)
    app.add_exception_handler(InvalidTransition, _conflict)
    app.add_exception_handler(DBAPIError, _database_unready)
    app.add_exception_handler(RequestValidationError, _flat_body_errors)
    return app


async def _flat_body_errors(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422, with a run config's errors located where its body wrote the field (flat or in its
    section: `anytime.run_config.flat_location`)."""
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if request.method == "POST" and request.url.path.rstrip("/") == "/v1/runs":
        errors = [
            {**e, "loc": ("body", *flat_location(e["loc"][1:], exc.body))} if e["loc"][:1] == ("body",) else e
            for e in errors
        ]
    return await request_validation_exception_handler(request, RequestValidationError(errors, body=exc.body))


_KEYED_ROUTERS = (runs, experiments, promotion, results, samples, curves, inference)
_UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    status.HTTP_401_UNAUTHORIZED: {"description": "Missing or wrong API key."}
}


def _add_docs(app: FastAPI) -> None:
    """The OpenAPI schema, Swagger UI and ReDoc, behind the key like every other read."""

    @app.get("/openapi.json", include_in_schema=False, dependencies=[ApiKey])
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=[ApiKey])
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - docs")

    @app.get("/redoc", include_in_schema=False, dependencies=[ApiKey])
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title=f"{app.title} - ReDoc")


async def _not_found(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_404_NOT_FOUND)


async def _conflict(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_409_CONFLICT)


async def _database_unready(request: Request, exc: Exception) -> JSONResponse:
    """A query that failed on a database that is not migrated (or does not answer) is a 503 saying what to
    do; on a database at head it is a bug and stays a 500."""
    reason = await run_in_threadpool(database_unready_reason, request.app.state.schema)
    if reason is None:
        raise exc
    return JSONResponse({"detail": reason}, status_code=status.HTTP_503_SERVICE_UNAVAILABLE)
