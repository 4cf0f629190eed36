"""``conveyor watch``, ``serve`` and ``dashboard``: the commands that stay up."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from conveyor.core.units import RunState
from conveyor.errors import StepError, UsageError
from conveyor.interfaces.cli.app import (
    EXIT_FAILED_UNITS,
    alarm_rules,
    err,
    handled,
    out,
    port_option,
    split_list,
)
from conveyor.interfaces.cli.options import (
    AlarmsOpt,
    HostOpt,
    NotifyOpt,
    PipelineArg,
    StoreOpt,
    WorkersOpt,
)
from conveyor.observability.report import (
    run_header,
    step_table,
)

if TYPE_CHECKING:
    pass


@handled
def watch(
    pipeline: PipelineArg,
    input: Annotated[
        Path,
        typer.Option("--input", "-i", envvar="CONVEYOR_INPUT", help="The folder to watch."),
    ],
    store: StoreOpt = None,
    workers: WorkersOpt = None,
    new_only: Annotated[
        bool,
        typer.Option(
            "--new-only", envvar="CONVEYOR_NEW_ONLY", help="Skip the files already there."
        ),
    ] = False,
    alarms_file: AlarmsOpt = None,
    notify: NotifyOpt = None,
) -> None:
    """Process every file in a folder, then each new or changed file as it lands (a changed
    file is a new version of its item; only what changed is recomputed). Ctrl-C or SIGTERM
    stops watching, finishes the files accepted, and exits."""
    import signal
    import threading

    from conveyor.definition.loader import load_pipeline
    from conveyor.sources.watch import watch_folder
    from conveyor.store import open_store

    pipe, _ = load_pipeline(pipeline)
    if not input.is_dir():
        raise UsageError(f"--input {str(input)!r} is not a folder; watch needs a folder")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    rules = alarm_rules(pipe, alarms_file)
    notified = split_list(notify)
    with pipe.stream(store=store, workers=workers, alarms=rules, notify=notified) as stream:
        err.print(
            f"watching [bold]{escape(str(input))}[/] for run [bold]{stream.run_id}[/]; "
            f"Ctrl-C to stop"
        )
        count = watch_folder(
            stream,
            input,
            new_only=new_only,
            stop=stop,
            on_submit=lambda item_id: err.print(f"accepted {escape(item_id)}", highlight=False),
        )
        err.print(f"stopped watching after {count} file version(s); finishing them")
    ledger = open_store(store, create=False)
    run = ledger.get_run(stream.run_id)
    out.print(run_header(run))
    out.print(step_table(ledger.step_stats(run.id, run.steps)))
    if run.state is not RunState.COMPLETED:
        raise typer.Exit(EXIT_FAILED_UNITS)


@handled
def serve(
    pipeline: PipelineArg,
    host: HostOpt = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", envvar="CONVEYOR_PORT", help="Port.")] = 8000,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="CONVEYOR_TOKEN",
            help="Bearer token required on every request (needed beyond loopback).",
        ),
    ] = None,
    max_pending: Annotated[
        int,
        typer.Option(
            "--max-pending",
            envvar="CONVEYOR_MAX_PENDING",
            help="Accepted but unfinished items beyond which ingest answers 429.",
        ),
    ] = 1000,
    grace: Annotated[
        str,
        typer.Option(
            "--grace",
            envvar="CONVEYOR_GRACE",
            help="On SIGTERM, how long accepted items may take to finish before the server "
            "exits and leaves the rest to its next start (e.g. 30s).",
        ),
    ] = "30s",
    alarms_file: AlarmsOpt = None,
    notify: NotifyOpt = None,
    store: StoreOpt = None,
    workers: WorkersOpt = None,
) -> None:
    """Serve the pipeline over HTTP: POST /items (202 once durable), GET /items/{id}?wait=5s,
    POST /invoke (synchronous), POST /steps/{step}, the Lambda invocation path, /healthz,
    /readyz and /docs. SIGTERM drains: new items get 503 while the accepted ones finish (at
    most --grace), then the server exits 0."""
    from conveyor.core.durations import parse_duration
    from conveyor.definition.loader import load_pipeline
    from conveyor.interfaces.http.app import check_binding, create_app
    from conveyor.interfaces.http.server import serve as serve_app

    pipe, _ = load_pipeline(pipeline)
    check_binding(host, token)
    port_option("--port", port)
    if max_pending < 1:
        raise UsageError(f"--max-pending {max_pending}: must be at least 1")
    try:
        grace_seconds = parse_duration(grace)
    except ValueError as exc:
        raise UsageError(f"--grace {exc}") from None
    uploads = _uploads_folder(store)
    app_ = create_app(
        pipe, store=store, workers=workers, token=token, max_pending=max_pending, uploads=uploads,
        alarms=alarm_rules(pipe, alarms_file), notify=split_list(notify),
    )  # fmt: skip
    err.print(f"serving [bold]{escape(pipe.name)}[/] on http://{host}:{port} (docs at /docs)")
    state = serve_app(app_, host=host, port=port, grace=grace_seconds)
    if state.failure is not None:
        raise StepError(f"could not start: {state.failure}")
    if state.stream.finished:
        err.print("stopped: accepted items finished")
    else:
        err.print(
            f"stopped after the {grace} grace period; unfinished items stay in the ledger for "
            f"the next start"
        )


@handled
def dashboard(
    host: HostOpt = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", envvar="CONVEYOR_PORT", help="Port.")] = 8050,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="CONVEYOR_TOKEN",
            help="Bearer token the dashboard's API (and its redrive action) requires; needed "
            "beyond loopback. Open the page once as /dashboard#token=TOKEN.",
        ),
    ] = None,
    store: StoreOpt = None,
    workers: WorkersOpt = None,
) -> None:
    """Serve the web dashboard of the ledger: runs, per-step progress, throughput and latency
    charts, errors with tracebacks, the dead-letter queue with redrive, alarms; live."""
    import uvicorn

    from conveyor.interfaces.http.app import check_binding, create_dashboard_app
    from conveyor.store import open_store

    check_binding(host, token)
    port_option("--port", port)
    open_store(store, create=False).close()  # a missing or unusable ledger: say so now
    app_ = create_dashboard_app(store, token=token, workers=workers)
    shown = "localhost" if host in ("127.0.0.1", "::1") else host
    err.print(f"dashboard on http://{shown}:{port}/dashboard" + ("#token=…" if token else ""))
    uvicorn.run(app_, host=host, port=port, log_level="warning")


def _uploads_folder(store: str | None) -> Path:
    """Uploaded files live beside a SQLite ledger, else under .conveyor/uploads."""
    if store is None or ("://" in store and not store.startswith("sqlite:///")):
        return Path(".conveyor") / "uploads"
    return Path(store.removeprefix("sqlite:///")).parent / "uploads"
