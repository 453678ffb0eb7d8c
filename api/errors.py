"""One error shape for every failure the API answers.

``{"error": {"code": "E505", "message": "...", "field": "labels.x",
"problems": [...]}}``: the same code and sentence the command line prints.
Our exceptions map to statuses by class; FastAPI's validation errors become
the same shape with the field path spelled out; malformed JSON names the
line and column; anything unexpected is logged and answered 500 without
internals.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DatabaseError, OperationalError
from starlette.exceptions import HTTPException

from engine.errors import (
    ActionError,
    ConflictError,
    FactsError,
    IncidentPolicyError,
    InputError,
    NotFoundError,
    PolicyError,
    StoreError,
)

log = logging.getLogger(__name__)

STATUS = (
    (NotFoundError, 404),
    (ConflictError, 409),
    (ActionError, 409),
    (StoreError, 503),
    (InputError, 422),
    (PolicyError, 422),
    (FactsError, 422),
)


def body(
    code: str, message: str, field: str = "", problems: Sequence[Any] = ()
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if field:
        error["field"] = field
    if problems:
        error["problems"] = list(problems)
    return {"error": error}


def status_of(exc: IncidentPolicyError) -> int:
    return next((status for kind, status in STATUS if isinstance(exc, kind)), 400)


async def _ours(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, IncidentPolicyError)
    problems = [p.as_dict() for p in exc.problems] if len(exc.problems) > 1 else []
    content = body(exc.code, exc.message, exc.location.field, problems)
    return JSONResponse(content, status_code=status_of(exc))


def _field(location: Sequence[Any]) -> str:
    parts = [str(p) for p in location if p not in ("body", "query", "path")]
    text = ""
    for part in parts:
        text += f"[{part}]" if part.isdigit() else (f".{part}" if text else part)
    return text or "body"


def _problem(error: dict[str, Any]) -> dict[str, str]:
    """One FastAPI validation error as our code, field and sentence."""
    where = _field(error.get("loc", ()))
    kind = error.get("type")
    if kind == "string_unicode":
        # The parser refuses a lone surrogate, as alerts refuse it: E506.
        message = f"{where} holds an unpaired surrogate; send valid UTF-8 text"
        return {"code": "E506", "field": where, "message": message}
    if kind == "json_invalid":
        # FastAPI puts the character offset of the syntax error in the path.
        problem = error.get("ctx", {}).get("error", "syntax error")
        at = [p for p in error.get("loc", ()) if isinstance(p, int)]
        place = f" at character {at[0]}" if at else ""
        message = f"body is not valid JSON{place} ({problem}); send a JSON object"
        return {"code": "E520", "field": "body", "message": message}
    message = f"{where}: {error.get('msg', 'invalid value')}"
    return {"code": "E520", "field": where, "message": message}


def _whole_body_refused(request: Request, errors: Sequence[Any]) -> JSONResponse | None:
    """A body FastAPI could not read as JSON at all: say why in one sentence."""
    if len(errors) != 1 or tuple(errors[0].get("loc", ())) != ("body",):
        return None
    if errors[0].get("type") == "missing":
        message = "the request has no body; send a JSON object"
        return JSONResponse(body("E520", message, "body"), status_code=422)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        sent = f"as {media!r}" if media else "without a Content-Type"
        message = (
            f"the body is sent {sent}; this route reads JSON: send it with "
            f"Content-Type: application/json"
        )
        return JSONResponse(body("E415", message), status_code=415)
    return None


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    refused = _whole_body_refused(request, errors)
    if refused is not None:
        return refused
    problems = [_problem(e) for e in errors] or [_problem({})]
    first = problems[0]
    content = body(first["code"], first["message"], first["field"], problems)
    return JSONResponse(content, status_code=422)


# What Starlette says when it cannot decode the body at all (invalid UTF-8,
# nesting too deep, a number too long for the parser).
_UNPARSEABLE = "There was an error parsing the body"


def _http_message(request: Request, exc: HTTPException) -> str:
    """Starlette's own 404 and 405 say only "Not Found": name the route."""
    route = f"{request.method} {request.url.path}"
    if exc.status_code == 404 and exc.detail == "Not Found":
        return f"no such route: {route}; the routes are listed at /docs"
    if exc.status_code == 405 and exc.detail == "Method Not Allowed":
        allowed = (getattr(exc, "headers", None) or {}).get("Allow", "")
        hint = f"; this path answers {allowed}" if allowed else ""
        return f"{route} is not allowed{hint}"
    return str(exc.detail)


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400 and exc.detail == _UNPARSEABLE:
        message = (
            "body is not readable JSON (invalid UTF-8, nesting too deep, or a "
            "number too long); send a JSON object in UTF-8"
        )
        return JSONResponse(body("E520", message, "body"), status_code=422)
    code = f"E{exc.status_code}"
    return JSONResponse(
        body(code, _http_message(request, exc)),
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


async def _database(request: Request, exc: Exception) -> JSONResponse:
    log.error(
        "api.database_error",
        extra={"path": request.url.path, "error": type(exc).__name__},
    )
    return JSONResponse(
        body(
            "E700",
            "the database refused the request (read-only, full or gone); nothing "
            "was changed: fix the database and retry",
        ),
        status_code=503,
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("api.unexpected_error", extra={"path": request.url.path}, exc_info=exc)
    return JSONResponse(
        body("E999", "internal error; the service logged it and keeps running"),
        status_code=500,
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(IncidentPolicyError, _ours)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(OperationalError, _database)
    app.add_exception_handler(DatabaseError, _database)
    app.add_exception_handler(Exception, _unexpected)
