"""The one HTTP app (FastAPI), composed of routers: items, steps, health, metrics and the
dashboard behind one guard (:mod:`.auth`) and one error shape (:mod:`.errors`).

``conveyor serve`` gets every router (:func:`create_app`); ``conveyor dashboard`` gets the
dashboard and ``/healthz`` (:func:`create_dashboard_app`), built by the same
:func:`build_app`. Bound to loopback by default; bound elsewhere it requires a bearer token.
Request bodies are bounded. Every error answer is a :class:`~.schemas.Problem`
(``{"detail": ...}``); no input, however odd, makes the app answer 5xx, except a pipeline
that does not finish in time (504)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import APIRouter, FastAPI, Response

from conveyor.interfaces.api import open_stream
from conveyor.interfaces.http import dashboard, health, items, metrics, models_dashboard
from conveyor.interfaces.http.auth import Guard, Public, check_binding
from conveyor.interfaces.http.errors import install_error_handlers
from conveyor.interfaces.http.schemas import SafeJSONResponse
from conveyor.interfaces.http.state import MAX_BODY_BYTES, MAX_PENDING, Intake, ServeState
from conveyor.interfaces.http.steps import step_router
from conveyor.observability.metrics import RunMetrics

if TYPE_CHECKING:
    from conveyor.definition.alarms import AlarmRule
    from conveyor.definition.pipeline import Pipeline

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_PENDING",
    "Part",
    "ServeState",
    "build_app",
    "check_binding",
    "create_app",
    "create_dashboard_app",
]

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


@dataclass(frozen=True)
class Part:
    """One router of the app and how it is mounted: under ``prefix``, in the OpenAPI document
    or not, and which of its paths are open without the token."""

    router: APIRouter
    prefix: str = ""
    documented: bool = True
    public: Public = field(default_factory=Public)


def build_app(
    title: str,
    parts: Sequence[Part],
    *,
    token: str | None,
    state: Mapping[str, object],
    lifespan: Lifespan | None = None,
    max_body: int | None = None,
    refuse_posts: Callable[[], Response | None] | None = None,
) -> FastAPI:
    """The app of ``parts``, in order, behind one :class:`~.auth.Guard` and one set of error
    handlers; ``state`` is what the routers' dependencies read (``app.state.NAME``)."""
    app = FastAPI(title=title, lifespan=lifespan, default_response_class=SafeJSONResponse)
    for name, value in state.items():
        setattr(app.state, name, value)
    install_error_handlers(app)
    public = Public()
    for part in parts:
        app.include_router(part.router, prefix=part.prefix, include_in_schema=part.documented)
        public |= part.public
    app.add_middleware(
        Guard, token=token, public=public, max_body=max_body, refuse_posts=refuse_posts
    )
    return app


def create_app(
    pipeline: Pipeline,
    *,
    store: str | None = None,
    workers: int | None = None,
    token: str | None = None,
    max_body: int = MAX_BODY_BYTES,
    max_pending: int = MAX_PENDING,
    uploads: Path | None = None,
    alarms: Sequence[AlarmRule] = (),
    notify: Sequence[str] = (),
) -> FastAPI:
    """The app of ``conveyor serve`` for ``pipeline``. When it starts, its resources load
    (``/readyz`` answers 503 meanwhile) and then its stream opens; when it stops, the stream
    closes, finishing the accepted items within the drain deadline. Uploaded files are kept
    under ``uploads``."""
    stream = open_stream(
        pipeline, store=store, workers=workers, preload=True, alarms=alarms, notify=notify
    )
    intake = Intake(max_body, max_pending, uploads) if uploads else Intake(max_body, max_pending)
    serving = ServeState(stream, intake)
    registry = RunMetrics(pipeline.name, store, lambda: stream.run_id or None, lambda: stream.live)
    board = dashboard.DashboardState(store, workers=workers)
    parts = [
        Part(items.router),
        Part(health.liveness, public=health.PUBLIC),
        Part(health.readiness),
        Part(metrics.router),
        Part(step_router(pipeline, stream.runtime)),
        # The page's own API: not part of the pipeline's documented API (/docs, /openapi.json).
        Part(dashboard.router, dashboard.PREFIX, documented=False, public=dashboard.PUBLIC),
        Part(
            models_dashboard.router,
            dashboard.PREFIX,
            documented=False,
            public=models_dashboard.PUBLIC,
        ),
    ]
    return build_app(
        f"conveyor: {pipeline.name}",
        parts,
        token=token,
        state={"conveyor": serving, "metrics": registry, "dashboard": board},
        lifespan=_serving(serving, closing=(registry.close, board.close)),
        max_body=max_body,
        refuse_posts=serving.refusal,
    )


def create_dashboard_app(
    store: str | None, *, token: str | None = None, workers: int | None = None
) -> FastAPI:
    """The app of ``conveyor dashboard``: the dashboard at ``/dashboard`` (``/`` redirects
    there), its API behind ``token`` when one is given."""
    board = dashboard.DashboardState(store, workers=workers)
    parts = [
        Part(dashboard.router, dashboard.PREFIX, public=dashboard.PUBLIC),
        Part(models_dashboard.router, dashboard.PREFIX, public=models_dashboard.PUBLIC),
        Part(dashboard.home, public=dashboard.HOME_PUBLIC),
        Part(health.liveness, documented=False, public=health.PUBLIC),
    ]
    return build_app(
        "conveyor dashboard",
        parts,
        token=token,
        state={"dashboard": board},
        lifespan=_closing(board.close),
    )


def _serving(state: ServeState, closing: Sequence[Callable[[], None]]) -> Lifespan:
    """Start the app's stream in the background (the server answers meanwhile) and close it,
    then ``closing``, when the server stops."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        starting = asyncio.create_task(state.start())
        try:
            yield
        finally:
            state.ready = False
            if not starting.done():
                starting.cancel()
            elif state.failure is None:
                await state.close()
            for close in closing:
                close()

    return lifespan


def _closing(close: Callable[[], None]) -> Lifespan:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            close()

    return lifespan
