"""The web dashboard: a JSON API over the ledger under ``/dashboard/api`` and the single page
that draws it (``/dashboard``, ``/dashboard/runs/{run}``), served by ``conveyor dashboard``
and mounted in ``conveyor serve``'s app.

Every number is aggregated by the store's SQL (counts, percentiles, time buckets) and every
list is paged, so the pages stay fast on runs of hundreds of thousands of units. The page is
plain files shipped in the package (``static/dashboard/``): no CDN, no build step; it builds
its DOM with ``textContent`` only, and a strict Content-Security-Policy forbids inline script.
With a token set, every API call (reads included) needs ``Authorization: Bearer TOKEN``; the
page and its static files carry no ledger data and stay open."""

from __future__ import annotations

import hmac
import math
import threading
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from pydantic import BaseModel
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from conveyor.core.units import RunInfo, RunState
from conveyor.errors import ConveyorError, RunNotFound
from conveyor.interfaces.http.schemas import SafeJSONResponse, error_responses, problem
from conveyor.store import Store, open_store

PREFIX = "/dashboard"
#: The most rows one page of a list may ask for.
MAX_PAGE = 500
#: Input previews are cut to this many characters.
PREVIEW_CHARS = 4000
_STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
#: No inline script or style, nothing from elsewhere: injected markup could not run anyway.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
T = TypeVar("T")


class RedriveRequest(BaseModel):
    """Which dead units to re-queue: all of the run's, or those of one step and/or error
    signature (prefix)."""

    step: str | None = None
    error: str | None = None


class Ledger:
    """One store connection shared by the dashboard's request threads, one query at a time."""

    def __init__(self, location: str | None) -> None:
        self.location = location
        self._store: Store | None = None
        self._lock = threading.Lock()

    def read(self, fn: Callable[[Store], T]) -> T:
        """``fn(store)`` under the lock, opening the ledger on first use."""
        with self._lock:
            if self._store is None:
                self._store = open_store(self.location, create=False)
            return fn(self._store)

    def close(self) -> None:
        """Close the connection, if open."""
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None


class Redrives:
    """Redrives started from the page, each on a thread of its own, by run id."""

    def __init__(self, location: str | None, workers: int | None) -> None:
        self.location = location
        self.workers = workers
        self.jobs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def active(self, run_id: str) -> bool:
        """Whether a redrive of the run started here is still going."""
        with self._lock:
            return self.jobs.get(run_id, {}).get("state") == "running"

    def start(self, run: RunInfo, step: str | None, error: str | None) -> None:
        """Redrive ``run`` with the current code of its pipeline file, in the background."""
        job = {"state": "running", "step": step, "error": error, "started_at": time.time(),
               "message": None}  # fmt: skip
        with self._lock:
            self.jobs[run.id] = job
        thread = threading.Thread(
            target=self._run, args=(run, job), name=f"conveyor-redrive-{run.id}", daemon=True
        )
        thread.start()

    def _run(self, run: RunInfo, job: dict[str, Any]) -> None:
        from conveyor.definition.loader import load_pipeline
        from conveyor.interfaces.api import redrive_run

        try:
            pipe, _ = load_pipeline(str(run.pipeline_file))
            report = redrive_run(pipe, run.id, store=self.location, step=job["step"],
                                 error=job["error"], workers=self.workers)  # fmt: skip
            state, message = "finished", f"run {report.state.value}"
        except ConveyorError as exc:
            state, message = "failed", str(exc)
        except Exception as exc:  # a thread has nobody to raise to: show it on the page
            state, message = "failed", f"{type(exc).__name__}: {exc}"
        with self._lock:
            job.update(state=state, message=message, finished_at=time.time())


def dashboard_router(store: str | None, *, workers: int | None = None) -> APIRouter:
    """The dashboard's routes over the ledger at ``store`` (mount under ``/dashboard``);
    redrives started from it run with ``workers`` worker processes."""
    ledger = Ledger(store)
    redrives = Redrives(store, workers)
    router = APIRouter(default_response_class=SafeJSONResponse)
    static = resources.files("conveyor").joinpath("static", "dashboard")

    def page() -> Response:
        body = static.joinpath("index.html").read_bytes()
        return Response(body, media_type="text/html; charset=utf-8", headers=_page_headers())

    router.add_api_route("", page, methods=["GET"], include_in_schema=False)
    router.add_api_route("/", page, methods=["GET"], include_in_schema=False)
    router.add_api_route("/runs/{run_id}", page, methods=["GET"], include_in_schema=False)

    @router.get("/static/{name}", include_in_schema=False)
    def asset(name: str) -> Response:
        suffix = Path(name).suffix
        entry = static.joinpath(name)
        if suffix not in _STATIC_TYPES or "/" in name or not entry.is_file():
            return problem(404, f"no file {name!r}")
        return Response(entry.read_bytes(), media_type=_STATIC_TYPES[suffix],
                        headers={"Cache-Control": "no-cache", **_page_headers()})  # fmt: skip

    def find(store_: Store, run_id: str) -> RunInfo:
        return store_.get_run(run_id)

    def run_or_404(run_id: str) -> RunInfo | Response:
        try:
            return ledger.read(lambda s: find(s, run_id))
        except RunNotFound as exc:
            return problem(404, str(exc))

    @router.get("/api/runs", responses=error_responses(401, 422))
    def runs(limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50) -> Any:
        """The most recent runs, newest first, each with its units by state."""

        def read(s: Store) -> list[dict[str, Any]]:
            found = s.list_runs(limit)
            counts = s.run_counts([r.id for r in found])
            return [{**_run_json(r), "counts": counts.get(r.id, {})} for r in found]

        return {"runs": ledger.read(read), "now": time.time()}

    @router.get("/api/runs/{run_id}", responses=error_responses(401, 404))
    def run_summary(run_id: str) -> Any:
        """A run with each step's units by state, p50/p95 duration and throughput."""
        run = run_or_404(run_id)
        if isinstance(run, Response):
            return run
        stats = ledger.read(lambda s: s.step_stats(run.id, run.steps))
        steps = [{"step": st.step, "total": st.total, "counts": st.counts, "p50": st.p50,
                  "p95": st.p95, "rate": st.rate} for st in stats]  # fmt: skip
        counts: dict[str, int] = {}
        for st in stats:
            for state, n in st.counts.items():
                counts[state] = counts.get(state, 0) + n
        with redrives._lock:
            job = dict(redrives.jobs.get(run.id, {})) or None
        return {**_run_json(run), "counts": counts, "steps_stats": steps, "redrive": job,
                "redrivable": bool(run.pipeline_file and run.options.get("input")),
                "now": time.time()}  # fmt: skip

    @router.get("/api/runs/{run_id}/throughput", responses=error_responses(401, 404, 422))
    def throughput(run_id: str, buckets: Annotated[int, Query(ge=2, le=MAX_PAGE)] = 60) -> Any:
        """Units finished per step (done and dead) in ``buckets`` equal slices of the run's
        time so far, counted by the database."""
        run = run_or_404(run_id)
        if isinstance(run, Response):
            return run
        start, end = run.created_at, run.finished_at or time.time()
        if run.state is RunState.RUNNING or end <= start:
            end = max(time.time(), start + 1.0)
        # buckets of at least a second: finer ones only show how units were packed into tasks
        buckets = max(2, min(buckets, math.ceil(end - start)))
        rows = ledger.read(lambda s: s.throughput(run.id, start, end, buckets))
        series: dict[str, dict[str, list[int]]] = {
            step: {"done": [0] * buckets, "dead": [0] * buckets} for step in run.steps
        }
        for step, bucket, done, dead in rows:
            line = series.setdefault(step, {"done": [0] * buckets, "dead": [0] * buckets})
            line["done"][max(0, bucket)] += done
            line["dead"][max(0, bucket)] += dead
        return {"start": start, "end": end, "width": (end - start) / buckets, "steps": series}

    @router.get("/api/runs/{run_id}/errors", responses=error_responses(401, 404, 422))
    def errors(
        run_id: str,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        samples: Annotated[int, Query(ge=0, le=20)] = 3,
    ) -> Any:
        """Dead units grouped by error signature, largest group first."""
        run = run_or_404(run_id)
        if isinstance(run, Response):
            return run
        return {"groups": ledger.read(lambda s: s.error_groups(run.id, limit, samples))}

    @router.get("/api/runs/{run_id}/dead", responses=error_responses(401, 404, 422))
    def dead(
        run_id: str,
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        step: str | None = None,
        error: str | None = None,
    ) -> Any:
        """One page of the dead-letter queue (of ``step``, with error signature ``error``)."""
        run = run_or_404(run_id)
        if isinstance(run, Response):
            return run
        found = ledger.read(
            lambda s: s.dead_units(
                run.id, step=step or None, signature=error or None, limit=limit + 1,
                offset=offset,
            )
        )  # fmt: skip
        return {"offset": offset, "limit": limit, "more": len(found) > limit,
                "units": found[:limit]}  # fmt: skip

    @router.get("/api/units/{unit_id}", responses=error_responses(401, 404, 422))
    def unit(unit_id: int) -> Any:
        """One unit: its state, error and traceback, every attempt, and a preview of its
        item's input."""
        detail = ledger.read(lambda s: s.unit_detail(unit_id))
        if detail is None:
            return problem(404, f"no unit {unit_id} in the ledger")
        body: dict[str, Any] = {k: v for k, v in detail.items() if k != "payload"}
        body["input"] = _preview(detail["kind"], detail["item"], detail["payload"])
        return body

    @router.get("/api/runs/{run_id}/alarms", responses=error_responses(401, 404))
    def alarms(run_id: str) -> Any:
        """The run's alarms: firing or resolved, their value, threshold and message."""
        run = run_or_404(run_id)
        if isinstance(run, Response):
            return run
        return {"alarms": ledger.read(lambda s: s.alarms(run.id))}

    @router.post(
        "/api/runs/{run_id}/redrive",
        status_code=202,
        responses=error_responses(401, 404, 409, 422),
    )
    def redrive(run_id: str, body: RedriveRequest | None = None) -> Any:
        """Re-queue the run's dead units (of ``step``, with error ``error``) and the units they
        skipped with the pipeline file's current code, and run them in the background: 202
        at once; the run page shows it progress."""
        from conveyor.interfaces.api import coordinator_alive

        wanted = body or RedriveRequest()
        run = run_or_404(run_id)
        if isinstance(run, Response):
            return run
        if not run.pipeline_file or not run.options.get("input"):
            detail = f"run {run.id} was started from Python, not from a pipeline file"
            return problem(422, f"{detail}; redrive it with conveyor.interfaces.api.redrive_run")
        if not Path(run.pipeline_file).is_file():
            return problem(422, f"the run's pipeline file {run.pipeline_file} no longer exists")
        if redrives.active(run.id) or (run.state is RunState.RUNNING and coordinator_alive(run)):
            return problem(409, f"run {run.id} is still running; redrive it once it finished")
        step, error = wanted.step or None, wanted.error or None
        if not ledger.read(lambda s: s.dead_units(run.id, step=step, signature=error, limit=1)):
            return problem(409, f"run {run.id} has no dead units to redrive"
                                + (f" of step {step!r}" if step else "")
                                + (f" with error {error!r}" if error else ""))  # fmt: skip
        redrives.start(run, step, error)
        return SafeJSONResponse({"run": run.id, "step": step, "error": error,
                                 "state": "running"}, status_code=202)  # fmt: skip

    return router


def create_dashboard_app(
    store: str | None, *, token: str | None = None, workers: int | None = None
) -> FastAPI:
    """The app of ``conveyor dashboard``: the dashboard at ``/dashboard`` (``/`` redirects
    there), its API behind ``token`` when one is given."""
    app = FastAPI(title="conveyor dashboard", default_response_class=SafeJSONResponse)
    install_handlers(app)
    app.include_router(dashboard_router(store, workers=workers), prefix=PREFIX)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse(PREFIX)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.add_middleware(TokenGuard, token=token)
    return app


def install_handlers(app: FastAPI) -> None:
    """Answer invalid parameters with the API's usual 422 problem body."""

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        parts = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "query"))
            parts.append(f"{where}: {e.get('msg', 'invalid')}" if where else e.get("msg", ""))
        return problem(422, "; ".join(parts))


def is_public(path: str) -> bool:
    """Whether ``path`` is the dashboard's page or one of its static files: they hold no
    ledger data, so a browser may load them before it has the token (its API calls send it)."""
    if not path.startswith(PREFIX) or path.startswith(f"{PREFIX}/api/"):
        return False
    rest = path[len(PREFIX) :]
    return rest in ("", "/") or rest.startswith(("/static/", "/runs/"))


class TokenGuard:
    """A plain ASGI middleware: with a token, every request but the page, its static files and
    ``/healthz`` needs ``Authorization: Bearer TOKEN``."""

    def __init__(self, app: ASGIApp, *, token: str | None) -> None:
        self.app = app
        self.token = None if token is None else f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.token is not None:
            path = scope["path"]
            if path not in ("/", "/healthz") and not is_public(path):
                given = Headers(scope=scope).get("authorization", "").encode()
                if not hmac.compare_digest(given, self.token):
                    await problem(401, "missing or wrong bearer token")(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def _page_headers() -> dict[str, str]:
    return {"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer"}  # fmt: skip


def _run_json(run: RunInfo) -> dict[str, Any]:
    return {
        "id": run.id, "pipeline": run.pipeline, "source": run.source, "state": run.state.value,
        "steps": list(run.steps), "created_at": run.created_at, "finished_at": run.finished_at,
        "message": run.message, "heartbeat_at": run.heartbeat_at,
        "executor": run.options.get("executor"), "workers": run.options.get("workers"),
    }  # fmt: skip


def _cut(text: str, limit: int = PREVIEW_CHARS) -> tuple[str, bool]:
    return (text, False) if len(text) <= limit else (text[:limit], True)


def _preview(kind: str, item_id: str, payload: bytes) -> dict[str, Any]:
    """What the page shows of an item's input: a file's path and its first characters, or a
    record's fields as ``repr`` text, cut short; never markup, always text."""
    from conveyor.sources.readers import rebuild_item

    try:
        item = rebuild_item(kind, item_id, bytes(payload))
    except Exception as exc:  # an input that cannot be rebuilt is still worth showing
        return {"kind": kind, "error": f"cannot rebuild the input: {type(exc).__name__}: {exc}"}
    if kind == "file":
        path = Path(str(item.path))
        try:
            with path.open("rb") as fh:
                head = fh.read(PREVIEW_CHARS + 1).decode("utf-8", "replace")
        except OSError as exc:
            return {"kind": kind, "path": str(path), "error": f"cannot read: {exc.strerror}"}
        text, cut = _cut(head)
        return {"kind": kind, "path": str(path), "text": text, "truncated": cut}
    fields = {}
    for name, value in list(item.fields.items())[:100]:
        fields[str(name)] = _cut(repr(value), 1000)[0]
    return {"kind": kind, "fields": fields, "truncated": len(item.fields) > 100}
