"""OpenAI's error object on the inference routes, so OpenAI clients show our messages.

`{"error": {"message", "type", "param", "code"}}` is what the `openai` client reads: it puts `message` in
the exception text (`Error code: 422 - budget: …`) and `param`/`code` on the exception. FastAPI's
`{"detail": …}` shows there as a bare "Error code: 422". The rest of the API keeps `{"detail": …}`
(see `services/api/app.py`); only routes built with `OpenAIErrorRoute` speak this dialect, whatever raised
the error: the route, a dependency (the API key, unknown query parameters), body validation, or a
database that is not migrated.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from fastapi import HTTPException, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.api.inference.schemas import UNSUPPORTED_PARAMETERS
from services.api.readiness import database_unready_reason


class ErrorObject(BaseModel):
    message: str = Field(description="What went wrong and what to do.")
    type: str = Field(description="invalid_request_error, authentication_error or server_error.")
    param: str | None = Field(description="The request field at fault (`messages[0].content`), if one.")
    code: str | None = Field(
        description="unknown_parameter, unsupported_parameter, model_not_found, database_unavailable, …"
    )


class ErrorResponse(BaseModel):
    """OpenAI's error body."""

    error: ErrorObject


class InferenceError(HTTPException):
    """An HTTP error with OpenAI's `param` and `code`."""

    def __init__(
        self, status_code: int, message: str, *, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(status_code, message)
        self.param = param
        self.code = code


def error_type(status_code: int) -> str:
    if status_code == status.HTTP_401_UNAUTHORIZED:
        return "authentication_error"
    if status_code == status.HTTP_403_FORBIDDEN:
        return "permission_error"
    return "server_error" if status_code >= 500 else "invalid_request_error"


def error_response(
    status_code: int,
    message: str,
    param: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    error = ErrorObject(message=message, type=error_type(status_code), param=param, code=code)
    return JSONResponse(
        ErrorResponse(error=error).model_dump(), status_code=status_code, headers=dict(headers or {})
    )


def param_name(loc: Sequence[str | int]) -> str | None:
    """`("body", "messages", 0, "content")` → `messages[0].content`; the body itself → None."""
    name = ""
    for part in loc[1:]:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or None


def _message(error: Mapping[str, Any], body_fields: Sequence[str]) -> tuple[str, str | None]:
    """(message, code) of one pydantic error."""
    loc = tuple(error.get("loc", ()))
    name = param_name(loc)
    if error.get("type") == "extra_forbidden" and loc:
        field = str(loc[-1])
        if loc[0] == "body" and len(loc) == 2 and field in UNSUPPORTED_PARAMETERS:
            return f"`{field}` is not supported by this server: {UNSUPPORTED_PARAMETERS[field]}", (
                "unsupported_parameter"
            )
        if loc[0] == "query":
            return f"`{field}`: {error.get('msg')}", "unknown_parameter"
        where = "" if len(loc) == 2 else f" in `{param_name(loc[:-1])}`"
        takes = body_fields if len(loc) == 2 else ()
        close = difflib.get_close_matches(field, takes, n=1)
        hint = f"; did you mean `{close[0]}`?" if close else ""
        listing = f" (this endpoint takes {', '.join(takes)})" if takes else ""
        return f"unknown field `{field}`{where}{hint}{listing}", "unknown_parameter"
    ctx = error.get("ctx") or {}
    text = str(ctx["error"]) if error.get("type") == "value_error" and "error" in ctx else str(error["msg"])
    return (f"{name}: {text}" if name else text), None


def validation_error_response(exc: RequestValidationError, body_fields: Sequence[str]) -> JSONResponse:
    """One 422 for every problem pydantic found: the messages joined, `param` naming the first field."""
    errors = list(exc.errors())
    messages = [_message(error, body_fields) for error in errors]
    first = errors[0] if errors else {}
    return error_response(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        "; ".join(text for text, _ in messages) or "the request is not valid",
        param=param_name(tuple(first.get("loc", ()))),
        code=messages[0][1] if messages else None,
    )


class OpenAIErrorRoute(APIRoute):
    """A route whose errors are OpenAI's error object (`router = APIRouter(route_class=…)`)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        body_model = self.body_field.field_info.annotation if self.body_field is not None else None
        body_fields = (
            list(body_model.model_fields)
            if isinstance(body_model, type) and issubclass(body_model, BaseModel)
            else []
        )

        async def openai_errors(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                return validation_error_response(exc, body_fields)
            except StarletteHTTPException as exc:  # FastAPI's HTTPException and Starlette's (a bad body)
                return error_response(
                    exc.status_code,
                    str(exc.detail),
                    getattr(exc, "param", None),
                    getattr(exc, "code", None),
                    exc.headers,
                )
            except DBAPIError:
                reason = await run_in_threadpool(database_unready_reason, request.app.state.schema)
                if reason is None:  # the database is fine: a bug, let it be a 500
                    raise
                return error_response(
                    status.HTTP_503_SERVICE_UNAVAILABLE, reason, code="database_unavailable"
                )

        return openai_errors
