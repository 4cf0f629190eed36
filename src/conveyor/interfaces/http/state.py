"""What ``conveyor serve``'s app knows of itself (loading, ready, draining, why it stopped)
and how it takes items, handed to its routers as a FastAPI dependency."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request

from conveyor.errors import ConveyorError
from conveyor.interfaces.http.schemas import SafeJSONResponse, problem
from conveyor.scheduling.stream import Stream

MAX_BODY_BYTES = 10 * 1024 * 1024
#: Accepted-but-unfinished items beyond which ingest answers 429 (back-pressure).
MAX_PENDING = 1000


@dataclass(frozen=True)
class Intake:
    """How the app takes items: the largest body, how many may wait, where uploads go."""

    max_body: int = MAX_BODY_BYTES
    max_pending: int = MAX_PENDING
    uploads: Path = field(default_factory=lambda: Path(".conveyor") / "uploads")


@dataclass
class ServeState:
    """What the app knows of itself: loading, ready, draining, and why it stopped if it did."""

    stream: Stream
    intake: Intake = field(default_factory=Intake)
    ready: bool = False
    loading: bool = True
    draining: bool = False
    drain_deadline: float | None = None
    cold_start_seconds: float | None = None
    failure: str | None = None
    #: Called when the app cannot work (a resource failed to build): stops the server.
    on_fatal: Callable[[], None] | None = None

    def refusal(self) -> SafeJSONResponse | None:
        """The 503 answer while the app does not take items, else None."""
        if self.draining:
            return problem(503, "the server is shutting down", {"Retry-After": "5"})
        if self.failure is not None:
            return problem(503, f"the server failed to start: {self.failure}")
        if not self.ready:
            return problem(503, "the server is loading its resources", {"Retry-After": "1"})
        return None

    async def start(self) -> None:
        """Load the resources, then open the stream; on failure note why and stop."""
        started = time.perf_counter()
        try:
            await asyncio.to_thread(self.stream.load)  # warm start: models load once, up front
            self.stream.open()  # forks the workers: they inherit the loaded resources
        except ConveyorError as exc:
            self.failure, self.loading = str(exc), False
            if self.on_fatal is not None:
                self.on_fatal()
            return
        self.cold_start_seconds = time.perf_counter() - started
        self.loading, self.ready = False, True

    async def close(self) -> None:
        """Close the stream, finishing the accepted items until the drain deadline."""
        grace = None
        if self.drain_deadline is not None:
            grace = max(0.0, self.drain_deadline - time.monotonic())
        await asyncio.to_thread(self.stream.close, grace=grace)


async def serve_state(request: Request) -> ServeState:
    """The serving app's state (a dependency: async, so it costs no thread hop)."""
    state: ServeState = request.app.state.conveyor
    return state


#: A route parameter of this type receives the app's :class:`ServeState`.
State = Annotated[ServeState, Depends(serve_state)]
