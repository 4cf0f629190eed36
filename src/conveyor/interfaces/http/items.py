"""The item routes: ``POST /items`` (ingest into the open stream), ``GET /items/{id}`` (its
state and results, optionally waiting), ``POST /invoke`` (the whole pipeline on one item,
synchronously) and the same at the AWS Lambda runtime's invocation path."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import Annotated, Any, TypeGuard

from fastapi import APIRouter, Query, Request, Response
from fastapi import Path as PathParam

from conveyor.core.durations import parse_duration
from conveyor.errors import StepError, UsageError
from conveyor.interfaces.http.schemas import (
    Accepted,
    Invoked,
    ItemStatus,
    LambdaError,
    SafeJSONResponse,
    error_responses,
    problem,
)
from conveyor.interfaces.http.state import ServeState, State
from conveyor.scheduling.stream import RECHECK_SECONDS, Stream
from conveyor.sources.item import Item, ItemKind

INVOKE_TIMEOUT = 60.0
#: Item ids: path-like names at most, never climbing out of a folder ("..") or absolute.
_ID_PATTERN = r"(?!/)(?!(?:.*/)?\.\.?(?:/|$))[\w\u0300-\u036f.\-:/@+=]{1,512}"
_ITEM_ID = re.compile(_ID_PATTERN)
_ID_RULE = "1 to 512 letters, digits and . - _ : / @ + =, with no '.' or '..' path segment"
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

router = APIRouter(default_response_class=SafeJSONResponse)


@router.post(
    "/items",
    status_code=202,
    response_model=Accepted,
    responses=error_responses(401, 413, 422, 429, 503),
    openapi_extra=_ITEM_BODY,
)
async def post_item(state: State, request: Request) -> Any:
    """Accept one item (a JSON object, or a multipart upload with a ``file`` part and an
    optional ``id``); answers 202 with its id once it is durably in the ledger."""
    value = await _admit(state, request)
    if isinstance(value, Response):
        return value
    item_id = await _submit(state.stream, value)
    return SafeJSONResponse({"id": item_id, "run": state.stream.run_id}, status_code=202)


@router.get(
    "/items/{item_id:path}",
    response_model=ItemStatus,
    response_model_exclude_none=True,
    responses=error_responses(401, 404, 422),
)
async def get_item(
    state: State,
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
    found, value = await _await_item(state.stream, item_id, seconds)
    if found == "missing":
        return problem(404, f"no item {item_id!r}")
    if found == "done":
        return {"id": item_id, "state": "done", "outputs": value}
    if found == "dead":
        return {"id": item_id, "state": "dead", "error": str(value)}
    return {"id": item_id, "state": "running"}


@router.post(
    "/invoke",
    response_model=Invoked,
    responses=error_responses(401, 413, 422, 429, 503, 504),
    openapi_extra=_ITEM_BODY,
)
async def invoke(state: State, request: Request) -> Any:
    """Run the whole pipeline on one item and answer every step's output; a step that
    fails on it answers 422 naming the step."""
    ran = await _run_one(state, request)
    if isinstance(ran, Response):
        return ran
    item_id, found, value = ran
    if found == "dead":
        return problem(422, str(value), id=item_id, step=value.step, error_type=value.error_type)
    if found != "done":
        return _not_finished(item_id)
    return {"id": item_id, "outputs": value}


@router.post(
    "/2015-03-31/functions/function/invocations",
    response_model=Invoked | LambdaError,
    responses=error_responses(401, 413, 422, 429, 503, 504),
    openapi_extra=_ITEM_BODY,
)
async def lambda_invoke(state: State, request: Request) -> Any:
    """``/invoke`` at the AWS Lambda runtime's invocation path, so Lambda clients work
    unchanged: a failed step answers 200 with ``errorMessage`` and the header
    ``X-Amz-Function-Error: Unhandled``, as Lambda does."""
    ran = await _run_one(state, request)
    if isinstance(ran, Response):
        return ran
    item_id, found, value = ran
    if found == "dead":
        body = {"errorMessage": str(value), "errorType": value.error_type or "StepError"}
        return SafeJSONResponse(body, headers={"X-Amz-Function-Error": "Unhandled"})
    if found != "done":
        return _not_finished(item_id)
    return {"id": item_id, "outputs": value}


# helpers -------------------------------------------------------------------------------------
async def _admit(state: ServeState, request: Request) -> Any:
    """The item of an ingest request as a dict or a file :class:`Item`, or the answer
    refusing it (429 when too many items wait, 413, 422)."""
    intake = state.intake
    if await asyncio.to_thread(state.stream.pending) >= intake.max_pending:
        return problem(
            429,
            f"{intake.max_pending} items are waiting to be processed; retry shortly",
            {"Retry-After": "1"},
        )
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        return await _uploaded_item(request, intake.uploads, intake.max_body)
    raw = await request.body()
    if len(raw) > intake.max_body:
        return problem(413, f"request body over the limit of {intake.max_body} bytes")
    try:
        value = json.loads(raw or b"null")
    except (ValueError, RecursionError) as exc:
        return problem(422, f"body is not valid JSON: {exc}")
    if not isinstance(value, dict):
        return problem(422, "body must be a JSON object (the item's fields)")
    if "id" in value and not _valid_id(value["id"]):
        return problem(422, f"field 'id' must be {_ID_RULE}")
    return value


async def _submit(stream: Stream, value: dict[str, Any] | Item) -> str:
    item_id = value.id if isinstance(value, Item) else value.get("id")
    return await asyncio.to_thread(stream.submit, value, id=item_id)


async def _run_one(state: ServeState, request: Request) -> tuple[str, str, Any] | Any:
    value = await _admit(state, request)
    if isinstance(value, Response):
        return value
    item_id = await _submit(state.stream, value)
    return (item_id, *await _await_item(state.stream, item_id, INVOKE_TIMEOUT))


def _not_finished(item_id: str) -> Any:
    detail = f"item {item_id!r} was not finished within {INVOKE_TIMEOUT:g}s"
    return problem(504, detail, id=item_id)


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
