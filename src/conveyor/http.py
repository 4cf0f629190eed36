"""The HTTP app (FastAPI): ingest items into an open stream, read their results, invoke the
whole pipeline on one item synchronously (also in the AWS Lambda invocation shape), health.

Bound to loopback by default; bound elsewhere it requires a bearer token. Request bodies are
bounded."""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from conveyor.durations import parse_duration
from conveyor.errors import StepError, UsageError
from conveyor.steps_api import add_step_routes
from conveyor.stream import Stream
from conveyor.worker import Runtime

if TYPE_CHECKING:
    from conveyor.pipeline import Pipeline

MAX_BODY_BYTES = 10 * 1024 * 1024
#: Accepted-but-unfinished items beyond which ingest answers 429 (back-pressure).
MAX_PENDING = 1000
INVOKE_TIMEOUT = 60.0
_ITEM_ID = re.compile(r"^[\w.\-:/@+=]{1,512}$")


def create_app(
    pipeline: Pipeline,
    *,
    store: str | None = None,
    workers: int | None = None,
    token: str | None = None,
    max_body: int = MAX_BODY_BYTES,
    max_pending: int = MAX_PENDING,
) -> FastAPI:
    """The app for ``pipeline``: its stream opens when the app starts and closes (finishing the
    accepted items) when it stops."""
    stream = Stream(pipeline, store=store, workers=workers)
    state: dict[str, Any] = {"ready": False}
    runtime = Runtime(pipeline.graph, {n: r.fn for n, r in pipeline.resources.items()})

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stream.open()
        started = time.perf_counter()
        for name in pipeline.resources:  # warm start: models load once, before readiness
            await asyncio.to_thread(runtime.resource, name)
        state["cold_start_seconds"] = time.perf_counter() - started
        state["ready"] = True
        try:
            yield
        finally:
            state["ready"] = False
            await asyncio.to_thread(stream.close)

    app = FastAPI(title=f"conveyor: {pipeline.name}", lifespan=lifespan)

    @app.middleware("http")
    async def guard(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if token is not None and request.url.path not in ("/healthz",):
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return JSONResponse({"detail": "missing or wrong bearer token"}, status_code=401)
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > max_body):
            return JSONResponse(
                {"detail": f"request body over the limit of {max_body} bytes"}, status_code=413
            )
        return await call_next(request)

    async def body_object(request: Request) -> dict[str, Any] | JSONResponse:
        if await asyncio.to_thread(stream.pending) >= max_pending:
            return JSONResponse(
                {"detail": f"{max_pending} items are waiting to be processed; retry shortly"},
                status_code=429,
                headers={"Retry-After": "1"},
            )
        raw = await request.body()
        if len(raw) > max_body:
            return JSONResponse({"detail": "request body too large"}, status_code=413)
        try:
            value = json.loads(raw or b"null")
        except ValueError as exc:
            return JSONResponse({"detail": f"body is not valid JSON: {exc}"}, status_code=422)
        if not isinstance(value, dict):
            return JSONResponse({"detail": "body must be a JSON object"}, status_code=422)
        item_id = value.get("id")
        if item_id is not None and (not isinstance(item_id, str) or not _ITEM_ID.match(item_id)):
            return JSONResponse(
                {"detail": "field 'id' must be a string of letters, digits and . - _ : / @ + ="},
                status_code=422,
            )
        return value

    @app.post("/items", status_code=202)
    async def post_item(request: Request) -> Any:
        """Accept one item; answers 202 with its id once it is durably in the ledger."""
        value = await body_object(request)
        if isinstance(value, JSONResponse):
            return value
        item_id = await asyncio.to_thread(stream.submit, value, id=value.get("id"))
        return JSONResponse({"id": item_id, "run": stream.run_id}, status_code=202)

    @app.get("/items/{item_id:path}")
    async def get_item(item_id: str, wait: str | None = None) -> Any:
        """The item's state and per-step results; ``?wait=5s`` waits for it to finish."""
        if not _ITEM_ID.match(item_id):
            return JSONResponse({"detail": "invalid item id"}, status_code=422)
        try:
            seconds = 0.0 if wait is None else min(parse_duration(wait), INVOKE_TIMEOUT)
        except ValueError as exc:
            return JSONResponse({"detail": f"wait: {exc}"}, status_code=422)
        return await _item_state(stream, item_id, seconds)

    async def invoke(request: Request) -> Any:
        value = await body_object(request)
        if isinstance(value, JSONResponse):
            return value
        item_id = await asyncio.to_thread(stream.submit, value, id=value.get("id"))
        state, found = await _await_item(stream, item_id, INVOKE_TIMEOUT)
        if state == "dead":
            return JSONResponse({"id": item_id, "error": found}, status_code=500)
        if state != "done":
            message = f"item {item_id!r} was not finished within {INVOKE_TIMEOUT:g}s"
            return JSONResponse({"id": item_id, "error": message}, status_code=504)
        return {"id": item_id, "outputs": found}

    app.post("/invoke")(invoke)
    # The AWS Lambda runtime interface's invocation path: Lambda clients work unchanged.
    app.post("/2015-03-31/functions/function/invocations")(invoke)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Any:
        """The stream is open and its workers are started."""
        if not state["ready"]:
            return JSONResponse({"ready": False}, status_code=503)
        return {
            "ready": True,
            "run": stream.run_id,
            "cold_start_seconds": round(state["cold_start_seconds"], 3),
        }

    add_step_routes(app, pipeline, runtime)
    return app


async def _item_state(stream: Stream, item_id: str, wait: float) -> Any:
    state, found = await _await_item(stream, item_id, wait)
    if state == "missing":
        return JSONResponse({"detail": f"no item {item_id!r}"}, status_code=404)
    if state == "done":
        return {"id": item_id, "state": "done", "outputs": found}
    if state == "dead":
        return {"id": item_id, "state": "dead", "error": found}
    return {"id": item_id, "state": "running"}


async def _await_item(stream: Stream, item_id: str, wait: float) -> tuple[str, Any]:
    """("done", outputs), ("dead", error), ("missing", None) or, after ``wait`` seconds,
    ("running", None). Waits on the event loop, so a long wait holds no thread."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return "done", await asyncio.to_thread(stream.result, item_id, 0)
        except UsageError:
            return "missing", None
        except StepError as exc:
            return "dead", str(exc)
        except TimeoutError:
            if time.monotonic() >= deadline:
                return "running", None
        await asyncio.sleep(0.005)


def check_binding(host: str, token: str | None) -> None:
    """Refuse to serve beyond loopback without a token."""
    loopback = host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")
    if not loopback and not token:
        raise UsageError(
            f"--host {host}: serving beyond this machine needs --token (or CONVEYOR_TOKEN); "
            f"requests must then carry 'Authorization: Bearer TOKEN'"
        )
