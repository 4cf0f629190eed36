"""The JSON bodies of the HTTP API, for the OpenAPI document and the answers themselves."""

from __future__ import annotations

import json
import math
from typing import Any, Literal

from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel


class Problem(BaseModel):
    """An error answer: what went wrong, and for a failed step which step and exception."""

    detail: str
    id: str | None = None
    step: str | None = None
    error_type: str | None = None


class Accepted(BaseModel):
    """An item durably in the ledger."""

    id: str
    run: str


class ItemStatus(BaseModel):
    """An item's state; ``outputs`` once done (every step's output), ``error`` once dead."""

    id: str
    state: Literal["running", "done", "dead"]
    outputs: dict[str, Any] | None = None
    error: str | None = None


class Invoked(BaseModel):
    """Every step's output for one item run synchronously."""

    id: str
    outputs: dict[str, Any]


class LambdaError(BaseModel):
    """A failed invocation in AWS Lambda's shape (with the header ``X-Amz-Function-Error``)."""

    errorMessage: str  # Lambda's field names
    errorType: str


class Readiness(BaseModel):
    """Whether the app takes items: resources loaded, stream open, not draining."""

    ready: bool
    loading: bool = False
    draining: bool = False
    run: str | None = None
    cold_start_seconds: float | None = None
    error: str | None = None


class SafeJSONResponse(JSONResponse):
    """JSON that any step output can travel in: non-finite floats become null and text is
    ASCII-escaped (a lone surrogate from a client cannot break the encoder)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(
            _finite(jsonable_encoder(content, custom_encoder={bytes: _bytes_text})),
            ensure_ascii=True,
            allow_nan=False,
            separators=(",", ":"),
        ).encode("ascii")


def problem(
    status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> SafeJSONResponse:
    """An error answer with ``status`` (fields ``id``, ``step``, ``error_type`` as given)."""
    body = Problem(detail=detail, **extra).model_dump(exclude_none=True)
    return SafeJSONResponse(body, status_code=status, headers=headers)


class StepOutput(BaseModel):
    """One step's output for the inputs given."""

    step: str
    output: Any


def _bytes_text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by None (JSON has no such numbers)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route answering :class:`Problem` with these status codes."""
    return {code: {"model": Problem} for code in codes}
