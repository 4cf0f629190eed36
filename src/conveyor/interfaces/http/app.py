"""The HTTP app (FastAPI): ingest items into an open stream, read their results, invoke the
whole pipeline on one item synchronously (also in the AWS Lambda invocation shape), health.

Bound to loopback by default; bound elsewhere it requires a bearer token. Request bodies are
bounded. Every error answer is a :class:`Problem` (``{"detail": ...}``); no input, however
odd, makes the app answer 5xx, except a pipeline that does not finish in time (504)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeGuard

from fastapi import FastAPI, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from conveyor.core.durations import parse_duration
from conveyor.errors import ConveyorError, StepError, UsageError
from conveyor.interfaces.http.dashboard import PREFIX as DASHBOARD
from conveyor.interfaces.http.dashboard import dashboard_router, is_public
from conveyor.interfaces.http.schemas import (
    Accepted,
    Invoked,
    ItemStatus,
    LambdaError,
    Readiness,
    SafeJSONResponse,
    error_responses,
    problem,
)
from conveyor.interfaces.http.steps import add_step_routes
from conveyor.observability.metrics import CONTENT_TYPE, RunMetrics
from conveyor.scheduling.stream import RECHECK_SECONDS, Stream
from conveyor.sources.item import Item, ItemKind

if TYPE_CHECKING:
    from conveyor.definition.alarms import AlarmRule
    from conveyor.definition.pipeline import Pipeline

MAX_BODY_BYTES = 10 * 1024 * 1024
#: Accepted-but-unfinished items beyond which ingest answers 429 (back-pressure).
MAX_PENDING = 1000
INVOKE_TIMEOUT = 60.0
#: Item ids: path-like names at most, never climbing out of a folder ("..") or absolute.
_ID_PATTERN = r"(?!/)(?!(?:.*/)?\.\.?(?:/|$))[\w\u0300-\u036f.\-:/@+=]{1,512}"
_ITEM_ID = re.compile(_ID_PATTERN)
_ID_RULE = "1 to 512 letters, digits and . - _ : / @ + =, with no '.' or '..' path segment"


# the app's life ------------------------------------------------------------------------------
@dataclass
class ServeState:
    """What the app knows of itself: loading, ready, draining, and why it stopped if it did."""

    stream: Stream
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
    """The app for ``pipeline``. When it starts, its resources load (``/readyz`` answers 503
    meanwhile) and then its stream opens; when it stops, the stream closes, finishing the
    accepted items within the drain deadline. Uploaded files are kept under ``uploads``."""
    stream = Stream(
        pipeline, store=store, workers=workers, preload=True, alarms=alarms, notify=notify
    )
    state = ServeState(stream)
    metrics = RunMetrics(pipeline.name, store, lambda: stream.run_id or None, lambda: stream.live)
    upload_dir = uploads if uploads is not None else Path(".conveyor") / "uploads"

    async def start() -> None:
        started = time.perf_counter()
        try:
            await asyncio.to_thread(stream.load)  # warm start: models load once, up front
            stream.open()  # forks the workers: they inherit the loaded resources
        except ConveyorError as exc:
            state.failure, state.loading = str(exc), False
            if state.on_fatal is not None:
                state.on_fatal()
            return
        state.cold_start_seconds = time.perf_counter() - started
        state.loading, state.ready = False, True

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        starting = asyncio.create_task(start())
        try:
            yield
        finally:
            state.ready = False
            if not starting.done():
                starting.cancel()
            elif state.failure is None:
                grace = None
                if state.drain_deadline is not None:
                    grace = max(0.0, state.drain_deadline - time.monotonic())
                await asyncio.to_thread(stream.close, grace=grace)
            metrics.close()

    app = FastAPI(
        title=f"conveyor: {pipeline.name}",
        lifespan=lifespan,
        default_response_class=SafeJSONResponse,
    )
    app.state.conveyor = state

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        return problem(422, "; ".join(_describe(e) for e in exc.errors()))

    @app.exception_handler(HTTPException)
    async def refused(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 400:  # FastAPI could not parse the body (bytes that are not text)
            return problem(422, f"body is not valid JSON: {exc.detail}")
        return problem(exc.status_code, str(exc.detail), dict(exc.headers or {}))

    app.add_middleware(Guard, token=token, max_body=max_body, state=state)

    async def admit(request: Request) -> Any:
        """The item of an ingest request as a dict or a file :class:`Item`, or the answer
        refusing it (429 when too many items wait, 413, 422)."""
        if await asyncio.to_thread(stream.pending) >= max_pending:
            return problem(
                429,
                f"{max_pending} items are waiting to be processed; retry shortly",
                {"Retry-After": "1"},
            )
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            return await _uploaded_item(request, upload_dir, max_body)
        raw = await request.body()
        if len(raw) > max_body:
            return problem(413, f"request body over the limit of {max_body} bytes")
        try:
            value = json.loads(raw or b"null")
        except (ValueError, RecursionError) as exc:
            return problem(422, f"body is not valid JSON: {exc}")
        if not isinstance(value, dict):
            return problem(422, "body must be a JSON object (the item's fields)")
        if "id" in value and not _valid_id(value["id"]):
            return problem(422, f"field 'id' must be {_ID_RULE}")
        return value

    async def submit(value: dict[str, Any] | Item) -> str:
        item_id = value.id if isinstance(value, Item) else value.get("id")
        return await asyncio.to_thread(stream.submit, value, id=item_id)

    @app.post(
        "/items",
        status_code=202,
        response_model=Accepted,
        responses=error_responses(401, 413, 422, 429, 503),
        openapi_extra=_ITEM_BODY,
    )
    async def post_item(request: Request) -> Any:
        """Accept one item (a JSON object, or a multipart upload with a ``file`` part and an
        optional ``id``); answers 202 with its id once it is durably in the ledger."""
        value = await admit(request)
        if isinstance(value, Response):
            return value
        item_id = await submit(value)
        return SafeJSONResponse({"id": item_id, "run": stream.run_id}, status_code=202)

    @app.get(
        "/items/{item_id:path}",
        response_model=ItemStatus,
        response_model_exclude_none=True,
        responses=error_responses(401, 404, 422),
    )
    async def get_item(
        item_id: Annotated[str, PathParam(json_schema_extra={"pattern": f"^{_ID_PATTERN}$"})],
        wait: Annotated[str | None, Query(pattern=_WAIT_PATTERN)] = None,
    ) -> Any:
        """The item's state and per-step results; ``?wait=5s`` waits for it to finish."""
        if not _valid_id(item_id):
            return problem(422, f"item id must be {_ID_RULE}")
        try:
            seconds = 0.0 if wait is None else min(parse_duration(wait), INVOKE_TIMEOUT)
        except ValueError as exc:
            return problem(422, f"wait: {exc}")
        found, value = await _await_item(stream, item_id, seconds)
        if found == "missing":
            return problem(404, f"no item {item_id!r}")
        if found == "done":
            return {"id": item_id, "state": "done", "outputs": value}
        if found == "dead":
            return {"id": item_id, "state": "dead", "error": str(value)}
        return {"id": item_id, "state": "running"}

    async def run_one(request: Request) -> tuple[str, str, Any] | Any:
        value = await admit(request)
        if isinstance(value, Response):
            return value
        item_id = await submit(value)
        return (item_id, *await _await_item(stream, item_id, INVOKE_TIMEOUT))

    def not_finished(item_id: str) -> Any:
        detail = f"item {item_id!r} was not finished within {INVOKE_TIMEOUT:g}s"
        return problem(504, detail, id=item_id)

    @app.post(
        "/invoke",
        response_model=Invoked,
        responses=error_responses(401, 413, 422, 429, 503, 504),
        openapi_extra=_ITEM_BODY,
    )
    async def invoke(request: Request) -> Any:
        """Run the whole pipeline on one item and answer every step's output; a step that
        fails on it answers 422 naming the step."""
        ran = await run_one(request)
        if isinstance(ran, Response):
            return ran
        item_id, found, value = ran
        if found == "dead":
            return problem(
                422, str(value), id=item_id, step=value.step, error_type=value.error_type
            )
        if found != "done":
            return not_finished(item_id)
        return {"id": item_id, "outputs": value}

    @app.post(
        "/2015-03-31/functions/function/invocations",
        response_model=Invoked | LambdaError,
        responses=error_responses(401, 413, 422, 429, 503, 504),
        openapi_extra=_ITEM_BODY,
    )
    async def lambda_invoke(request: Request) -> Any:
        """``/invoke`` at the AWS Lambda runtime's invocation path, so Lambda clients work
        unchanged: a failed step answers 200 with ``errorMessage`` and the header
        ``X-Amz-Function-Error: Unhandled``, as Lambda does."""
        ran = await run_one(request)
        if isinstance(ran, Response):
            return ran
        item_id, found, value = ran
        if found == "dead":
            body = {"errorMessage": str(value), "errorType": value.error_type or "StepError"}
            return SafeJSONResponse(body, headers={"X-Amz-Function-Error": "Unhandled"})
        if found != "done":
            return not_finished(item_id)
        return {"id": item_id, "outputs": value}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
    async def readyz() -> Any:
        """Ready once the resources are loaded and the stream is open; 503 while loading,
        draining or failed."""
        body = Readiness(
            ready=state.ready and not state.draining,
            loading=state.loading,
            draining=state.draining,
            run=stream.run_id or None,
            cold_start_seconds=(
                None if state.cold_start_seconds is None else round(state.cold_start_seconds, 3)
            ),
            error=state.failure,
        )
        return SafeJSONResponse(body.model_dump(), status_code=200 if body.ready else 503)

    @app.get("/metrics", response_class=PlainTextResponse, responses=error_responses(401))
    async def metrics_text() -> Any:
        """The stream's Prometheus metrics (text format)."""
        body = await asyncio.to_thread(metrics.exposition)
        return PlainTextResponse(body, media_type=CONTENT_TYPE)

    add_step_routes(app, pipeline, stream.runtime)
    # The page's own API: not part of the pipeline's documented API (/docs, /openapi.json).
    app.include_router(
        dashboard_router(store, workers=workers), prefix=DASHBOARD, include_in_schema=False
    )
    return app


class Guard:
    """Checks every request before routing (a plain ASGI middleware: no per-request task or
    stream copying): the bearer token, the declared body size, and whether the app takes
    items now (POSTs get 503 while it loads, drains or failed)."""

    def __init__(self, app: ASGIApp, *, token: str | None, max_body: int, state: ServeState):
        self.app = app
        self.token = None if token is None else f"Bearer {token}".encode()
        self.max_body = max_body
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refused = self._refusal(scope)
            if refused is not None:
                await refused(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> Response | None:
        headers = Headers(scope=scope)
        # The dashboard's page and static files hold no data; its API calls carry the token.
        if self.token is not None and scope["path"] != "/healthz" and not is_public(scope["path"]):
            given = headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, self.token):
                return problem(401, "missing or wrong bearer token")
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            return problem(413, f"request body over the limit of {self.max_body} bytes")
        if scope["method"] == "POST":
            return self.state.refusal()
        return None


# helpers -------------------------------------------------------------------------------------
_ID_SCHEMA = {"type": "string", "pattern": f"^{_ID_PATTERN}$", "description": _ID_RULE}
_WAIT_PATTERN = r"^(\d+(\.\d+)?(ms|s|m|h|d))+$"
#: The request body of the ingest routes, for the OpenAPI document: any JSON object (the
#: item's fields, with an optional ``id``) or a file upload.
_ITEM_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"id": _ID_SCHEMA},
                    "additionalProperties": True,
                }
            },
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "id": _ID_SCHEMA,
                    },
                    "required": ["file"],
                    "additionalProperties": False,
                }
            },
        },
    }
}


async def _uploaded_item(request: Request, folder: Path, max_body: int) -> Any:
    """Keep an uploaded file durably (written, synced, renamed into place) and return it as a
    file item, so steps read it as they read files of a batch run."""
    try:
        form = await request.form(max_files=1, max_fields=8, max_part_size=max_body)
    except Exception as exc:  # the multipart parser's errors have no common base
        return problem(422, f"the upload could not be read: {exc}")
    unknown = sorted(set(form.keys()) - {"file", "id"})
    if unknown:
        return problem(422, f"unknown form fields {unknown}: send 'file' and optionally 'id'")
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        return problem(422, "field 'file': a multipart upload needs a 'file' part")
    name = Path(upload.filename or "upload").name
    name = "upload" if name in ("", ".", "..") else name  # never a path out of its folder
    item_id = form.get("id", name)
    if not _valid_id(item_id):
        what = "field 'id'" if "id" in form else f"the file name {name!r} (the id without 'id')"
        return problem(422, f"{what} must be {_ID_RULE}")
    data = await upload.read()
    digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    target = folder / digest / name
    await asyncio.to_thread(_write_durably, target, data)
    return Item(item_id, ItemKind.FILE, path=target)


def _valid_id(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and _ITEM_ID.fullmatch(value) is not None


def _write_durably(target: Path, data: bytes) -> None:
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    # short and unique: the name itself may take all 255 bytes, and two uploads may race here
    partial = target.with_name(f".{os.urandom(8).hex()}.partial")
    with partial.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    partial.replace(target)


async def _await_item(stream: Stream, item_id: str, wait: float) -> tuple[str, Any]:
    """("done", outputs), ("dead", the StepError), ("missing", None) or, after ``wait`` seconds,
    ("running", None). Waits on the event loop for the stream's word that the item may have
    finished, so a long wait holds no thread and reads the ledger only when it may pay."""
    loop = asyncio.get_running_loop()
    woken = asyncio.Event()

    def wake() -> None:
        try:
            loop.call_soon_threadsafe(woken.set)
        except RuntimeError:
            pass  # the server's loop is gone: nobody waits any more

    deadline = time.monotonic() + wait
    try:
        cancel = await asyncio.to_thread(stream.watch, item_id, wake) if wait > 0 else None
    except UsageError:
        return "missing", None
    try:
        while True:
            woken.clear()  # a finish after this is either seen below or sets it again
            try:
                return "done", await asyncio.to_thread(stream.result, item_id, 0)
            except UsageError:
                return "missing", None
            except StepError as exc:
                return "dead", exc
            except TimeoutError:
                left = deadline - time.monotonic()
                if left <= 0:
                    return "running", None
            try:
                await asyncio.wait_for(woken.wait(), min(left, RECHECK_SECONDS))
            except TimeoutError:
                pass  # look at the ledger anyway: another coordinator may have finished it
    finally:
        if cancel is not None:
            cancel()


def _describe(error: Any) -> str:
    where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
    return f"field {where!r}: {error.get('msg', 'invalid')}" if where else error.get("msg", "")


def check_binding(host: str, token: str | None) -> None:
    """Refuse to serve beyond loopback without a token."""
    loopback = host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")
    if not loopback and not token:
        raise UsageError(
            f"--host {host}: serving beyond this machine needs --token (or CONVEYOR_TOKEN); "
            f"requests must then carry 'Authorization: Bearer TOKEN'"
        )
