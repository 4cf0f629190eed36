"""The web dashboard: a JSON API over the ledger under ``/dashboard/api`` and the single page
that draws it (``/dashboard``, ``/dashboard/runs/{run}``): a router of the one HTTP app,
in ``conveyor dashboard``'s and in ``conveyor serve``'s.

Every number is aggregated by the store's SQL (counts, percentiles, time buckets) and every
list is paged, so the pages stay fast on runs of hundreds of thousands of units. The page is
plain files shipped in the package (``static/dashboard/``): no CDN, no build step; it builds
its DOM with ``textContent`` only, and a strict Content-Security-Policy forbids inline script.
With a token set, every API call (reads included) needs ``Authorization: Bearer TOKEN``; the
page and its static files carry no ledger data and stay open."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel

from conveyor.core.units import RunInfo, RunState
from conveyor.errors import ConveyorError, RunNotFound
from conveyor.interfaces.http.auth import Public
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
#: The page and its static files hold no ledger data: a browser may load them before it has
#: the token (its API calls send it).
PUBLIC = Public(frozenset({PREFIX, f"{PREFIX}/"}), (f"{PREFIX}/static/", f"{PREFIX}/runs/"))
#: ``conveyor dashboard``'s ``/``, a redirect to the page.
HOME_PUBLIC = Public(frozenset({"/"}))


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

    def job(self, run_id: str) -> dict[str, Any] | None:
        """A copy of the latest redrive of the run started here, if any."""
        with self._lock:
            return dict(self.jobs.get(run_id, {})) or None

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


class DashboardState:
    """What the dashboard's routes share: the ledger they read and the redrives they started."""

    def __init__(self, store: str | None, *, workers: int | None = None) -> None:
        self.ledger = Ledger(store)
        self.redrives = Redrives(store, workers)

    def close(self) -> None:
        """Close the ledger connection (redrives run on connections of their own)."""
        self.ledger.close()


async def dashboard_state(request: Request) -> DashboardState:
    """The app's :class:`DashboardState` (a dependency: async, so it costs no thread hop)."""
    state: DashboardState = request.app.state.dashboard
    return state


#: A route parameter of this type receives the app's :class:`DashboardState`.
Dash = Annotated[DashboardState, Depends(dashboard_state)]
_STATIC = resources.files("conveyor.interfaces.http").joinpath("static", "dashboard")

#: The dashboard's routes over the ledger (mounted under :data:`PREFIX`).
router = APIRouter(default_response_class=SafeJSONResponse)
#: ``/`` of ``conveyor dashboard``: the way to the page.
home = APIRouter()


@home.get("/", include_in_schema=False)
def root() -> RedirectResponse:
    """Redirect to the dashboard's page."""
    return RedirectResponse(PREFIX)


def page() -> Response:
    """The single page (every view of it: the page's script reads the path)."""
    body = _STATIC.joinpath("index.html").read_bytes()
    return Response(body, media_type="text/html; charset=utf-8", headers=_page_headers())


router.add_api_route("", page, methods=["GET"], include_in_schema=False)
router.add_api_route("/", page, methods=["GET"], include_in_schema=False)
router.add_api_route("/runs/{run_id}", page, methods=["GET"], include_in_schema=False)


@router.get("/static/{name}", include_in_schema=False)
def asset(name: str) -> Response:
    """One of the page's script, style and image files."""
    suffix = Path(name).suffix
    entry = _STATIC.joinpath(name)
    if suffix not in _STATIC_TYPES or "/" in name or not entry.is_file():
        return problem(404, f"no file {name!r}")
    return Response(entry.read_bytes(), media_type=_STATIC_TYPES[suffix],
                    headers={"Cache-Control": "no-cache", **_page_headers()})  # fmt: skip


def _run_or_404(dash: DashboardState, run_id: str) -> RunInfo | Response:
    try:
        return dash.ledger.read(lambda s: s.get_run(run_id))
    except RunNotFound as exc:
        return problem(404, str(exc))


@router.get("/api/runs", responses=error_responses(401, 422))
def runs(dash: Dash, limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50) -> Any:
    """The most recent runs, newest first, each with its units by state."""

    def read(s: Store) -> list[dict[str, Any]]:
        found = s.list_runs(limit)
        counts = s.run_counts([r.id for r in found])
        return [{**_run_json(r), "counts": counts.get(r.id, {})} for r in found]

    return {"runs": dash.ledger.read(read), "now": time.time()}


@router.get("/api/runs/{run_id}", responses=error_responses(401, 404))
def run_summary(dash: Dash, run_id: str) -> Any:
    """A run with each step's units by state, p50/p95 duration and throughput."""
    run = _run_or_404(dash, run_id)
    if isinstance(run, Response):
        return run
    stats = dash.ledger.read(lambda s: s.step_stats(run.id, run.steps))
    steps = [{"step": st.step, "total": st.total, "counts": st.counts, "p50": st.p50,
              "p95": st.p95, "rate": st.rate} for st in stats]  # fmt: skip
    counts: dict[str, int] = {}
    for st in stats:
        for state, n in st.counts.items():
            counts[state] = counts.get(state, 0) + n
    return {**_run_json(run), "counts": counts, "steps_stats": steps,
            "redrive": dash.redrives.job(run.id),
            "redrivable": bool(run.pipeline_file and run.options.get("input")),
            "now": time.time()}  # fmt: skip


@router.get("/api/runs/{run_id}/throughput", responses=error_responses(401, 404, 422))
def throughput(
    dash: Dash, run_id: str, buckets: Annotated[int, Query(ge=2, le=MAX_PAGE)] = 60
) -> Any:
    """Units finished per step (done and dead) in ``buckets`` equal slices of the run's
    time so far, counted by the database."""
    run = _run_or_404(dash, run_id)
    if isinstance(run, Response):
        return run
    start, end = run.created_at, run.finished_at or time.time()
    if run.state is RunState.RUNNING or end <= start:
        end = max(time.time(), start + 1.0)
    # buckets of at least a second: finer ones only show how units were packed into tasks
    buckets = max(2, min(buckets, math.ceil(end - start)))
    rows = dash.ledger.read(lambda s: s.throughput(run.id, start, end, buckets))
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
    dash: Dash,
    run_id: str,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    samples: Annotated[int, Query(ge=0, le=20)] = 3,
) -> Any:
    """Dead units grouped by error signature, largest group first."""
    run = _run_or_404(dash, run_id)
    if isinstance(run, Response):
        return run
    return {"groups": dash.ledger.read(lambda s: s.error_groups(run.id, limit, samples))}


@router.get("/api/runs/{run_id}/dead", responses=error_responses(401, 404, 422))
def dead(
    dash: Dash,
    run_id: str,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    step: str | None = None,
    error: str | None = None,
) -> Any:
    """One page of the dead-letter queue (of ``step``, with error signature ``error``)."""
    run = _run_or_404(dash, run_id)
    if isinstance(run, Response):
        return run
    found = dash.ledger.read(
        lambda s: s.dead_units(
            run.id, step=step or None, signature=error or None, limit=limit + 1, offset=offset
        )
    )
    return {"offset": offset, "limit": limit, "more": len(found) > limit,
            "units": found[:limit]}  # fmt: skip


@router.get("/api/units/{unit_id}", responses=error_responses(401, 404, 422))
def unit(dash: Dash, unit_id: int) -> Any:
    """One unit: its state, error and traceback, every attempt, and a preview of its
    item's input."""
    detail = dash.ledger.read(lambda s: s.unit_detail(unit_id))
    if detail is None:
        return problem(404, f"no unit {unit_id} in the ledger")
    body: dict[str, Any] = {k: v for k, v in detail.items() if k != "payload"}
    body["input"] = _preview(detail["kind"], detail["item"], detail["payload"])
    return body


@router.get("/api/runs/{run_id}/alarms", responses=error_responses(401, 404))
def alarms(dash: Dash, run_id: str) -> Any:
    """The run's alarms: firing or resolved, their value, threshold and message."""
    run = _run_or_404(dash, run_id)
    if isinstance(run, Response):
        return run
    return {"alarms": dash.ledger.read(lambda s: s.alarms(run.id))}


@router.post(
    "/api/runs/{run_id}/redrive",
    status_code=202,
    responses=error_responses(401, 404, 409, 422),
)
def redrive(dash: Dash, run_id: str, body: RedriveRequest | None = None) -> Any:
    """Re-queue the run's dead units (of ``step``, with error ``error``) and the units they
    skipped with the pipeline file's current code, and run them in the background: 202
    at once; the run page shows it progress."""
    from conveyor.interfaces.api import coordinator_alive

    wanted = body or RedriveRequest()
    run = _run_or_404(dash, run_id)
    if isinstance(run, Response):
        return run
    if not run.pipeline_file or not run.options.get("input"):
        detail = f"run {run.id} was started from Python, not from a pipeline file"
        return problem(422, f"{detail}; redrive it with conveyor.interfaces.api.redrive_run")
    if not Path(run.pipeline_file).is_file():
        return problem(422, f"the run's pipeline file {run.pipeline_file} no longer exists")
    running = run.state is RunState.RUNNING
    if dash.redrives.active(run.id) or (running and coordinator_alive(run)):
        return problem(409, f"run {run.id} is still running; redrive it once it finished")
    step, error = wanted.step or None, wanted.error or None
    if not dash.ledger.read(lambda s: s.dead_units(run.id, step=step, signature=error, limit=1)):
        return problem(409, f"run {run.id} has no dead units to redrive"
                            + (f" of step {step!r}" if step else "")
                            + (f" with error {error!r}" if error else ""))  # fmt: skip
    dash.redrives.start(run, step, error)
    return SafeJSONResponse({"run": run.id, "step": step, "error": error,
                             "state": "running"}, status_code=202)  # fmt: skip


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
    from conveyor.sources.names import escape_name
    from conveyor.sources.readers import rebuild_item

    try:
        item = rebuild_item(kind, item_id, bytes(payload))
    except Exception as exc:  # an input that cannot be rebuilt is still worth showing
        return {"kind": kind, "error": f"cannot rebuild the input: {type(exc).__name__}: {exc}"}
    if kind == "file":
        path = Path(str(item.path))
        shown = escape_name(path)  # JSON is text: a name that is not UTF-8 is escaped
        try:
            with path.open("rb") as fh:
                head = fh.read(PREVIEW_CHARS + 1).decode("utf-8", "replace")
        except OSError as exc:
            return {"kind": kind, "path": shown, "error": f"cannot read: {exc.strerror}"}
        text, cut = _cut(head)
        return {"kind": kind, "path": shown, "text": text, "truncated": cut}
    fields = {}
    for name, value in list(item.fields.items())[:100]:
        fields[str(name)] = _cut(repr(value), 1000)[0]
    return {"kind": kind, "fields": fields, "truncated": len(item.fields) > 100}
