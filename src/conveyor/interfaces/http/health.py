"""``/healthz`` (the process is up; open without the token, for load balancers) and
``/readyz`` (``conveyor serve`` takes items: resources loaded, stream open, not draining)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from conveyor.interfaces.http.auth import Public
from conveyor.interfaces.http.schemas import Readiness, SafeJSONResponse
from conveyor.interfaces.http.state import State

#: What the guard lets through without the token.
PUBLIC = Public(frozenset({"/healthz"}))

liveness = APIRouter(default_response_class=SafeJSONResponse)
readiness = APIRouter(default_response_class=SafeJSONResponse)


@liveness.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@readiness.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(state: State) -> Any:
    """Ready once the resources are loaded and the stream is open; 503 while loading,
    draining or failed."""
    cold = state.cold_start_seconds
    body = Readiness(
        ready=state.ready and not state.draining,
        loading=state.loading,
        draining=state.draining,
        run=state.stream.run_id or None,
        cold_start_seconds=None if cold is None else round(cold, 3),
        error=state.failure,
    )
    return SafeJSONResponse(body.model_dump(), status_code=200 if body.ready else 503)
