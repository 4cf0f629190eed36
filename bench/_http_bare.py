"""The bare FastAPI app that ``bench/http_api.py`` measures ``conveyor serve`` against: the
work of the benchmark's trivial step (``2 * x``) behind a pydantic body model, with nothing
else (no middleware, no ledger, no resources).

Two endpoints, the two ways FastAPI runs a handler: ``POST /double`` is a plain ``def``, run
on FastAPI's thread pool as Conveyor runs a step (``asyncio.to_thread``); ``POST
/double-async`` is an ``async def`` run on the event loop itself, the fastest FastAPI gets.

Served by ``python -m uvicorn _http_bare:app --app-dir bench/ --log-level warning`` with the
host and port of the Conveyor server it is compared with. After SIGTERM uvicorn shuts down
gracefully and then re-raises the signal, so the process ends killed by SIGTERM rather than
with status 0; the app prints :data:`SHUTDOWN_LINE` when its shutdown has completed, which
tells the benchmark that the stop was clean."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from pydantic import BaseModel

SHUTDOWN_LINE = "bare: shutdown complete"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Nothing to load; say when the shutdown is done."""
    yield
    print(SHUTDOWN_LINE, file=sys.stderr, flush=True)


app = FastAPI(title="bare", lifespan=lifespan)


class DoubleInput(BaseModel):
    """The body of both endpoints."""

    x: int


@app.post("/double")
def double(body: DoubleInput) -> dict[str, int]:
    """``2 * x``, on the thread pool."""
    return {"output": 2 * body.x}


@app.post("/double-async")
async def double_async(body: DoubleInput) -> dict[str, int]:
    """``2 * x``, on the event loop."""
    return {"output": 2 * body.x}
