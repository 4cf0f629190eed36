"""Serving the HTTP app with uvicorn, with a graceful drain: on SIGTERM the app stops taking
items (503) while the accepted ones finish, for at most a grace period, then exits."""

from __future__ import annotations

import math
import signal
import threading
import time
from types import FrameType

import uvicorn
from fastapi import FastAPI

from conveyor.interfaces.http.state import ServeState

#: How often the drain looks at the number of unfinished items.
_DRAIN_POLL = 0.05


class DrainingServer(uvicorn.Server):
    """A uvicorn server whose first SIGTERM drains instead of stopping at once; a second
    SIGTERM, or Ctrl-C, stops it without waiting."""

    def __init__(self, config: uvicorn.Config, state: ServeState, grace: float) -> None:
        super().__init__(config)
        self.state = state
        self.grace = grace
        state.on_fatal = self.stop

    def stop(self) -> None:
        """Stop serving now (the app's shutdown still closes its stream)."""
        self.should_exit = True

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig != signal.SIGTERM:
            super().handle_exit(sig, frame)
        elif self.state.draining:
            self.stop()  # a second SIGTERM: no more waiting
        else:
            self.state.draining = True
            self.state.drain_deadline = time.monotonic() + self.grace
            threading.Thread(target=self._drain, name="conveyor-drain", daemon=True).start()

    def _drain(self) -> None:
        deadline = self.state.drain_deadline or 0.0
        stream = self.state.stream
        while time.monotonic() < deadline and not self.should_exit:
            if not self.state.ready or stream.pending() == 0:
                break
            time.sleep(_DRAIN_POLL)
        self.stop()


def serve(app: FastAPI, *, host: str, port: int, grace: float) -> ServeState:
    """Serve ``app`` (made by :func:`~.app.create_app`) until SIGTERM or Ctrl-C and
    return its final state: ``state.stream.finished`` tells whether every accepted item
    finished, ``state.failure`` why it could not start."""
    state: ServeState = app.state.conveyor
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=max(1, math.ceil(grace)),
    )
    DrainingServer(config, state, grace).run()
    return state
