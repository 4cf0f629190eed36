"""The one error shape of the HTTP app: every refusal, from any router, is a
:class:`~.schemas.Problem` (``{"detail": ...}``), including FastAPI's own (invalid
parameters, unknown routes, wrong methods)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from conveyor.interfaces.http.schemas import problem


def install_error_handlers(app: FastAPI) -> None:
    """Answer invalid requests (422) and FastAPI's refusals (404, 405, ...) as problems."""
    app.add_exception_handler(RequestValidationError, invalid)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, refused)  # type: ignore[arg-type]


async def invalid(request: Request, exc: RequestValidationError) -> Response:
    """422 naming each invalid field and why."""
    return problem(422, "; ".join(describe(e) for e in exc.errors()))


async def refused(request: Request, exc: HTTPException) -> Response:
    """FastAPI's own refusal, with its status, message and headers (``Allow`` on a 405)."""
    if exc.status_code == 400:  # FastAPI could not parse the body (bytes that are not text)
        return problem(422, f"body is not valid JSON: {exc.detail}")
    return problem(exc.status_code, str(exc.detail), dict(exc.headers or {}))


def describe(error: Any) -> str:
    """One validation error as ``field 'name': why`` (the body's fields by their own name)."""
    where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
    return f"field {where!r}: {error.get('msg', 'invalid')}" if where else error.get("msg", "")
