"""The ``conveyor`` command.

Exit codes: 0 the run completed; 1 it completed with failed units; 2 bad usage, a bad pipeline
definition or unusable input (nothing ran); 3 the ledger could not be used; 130 interrupted.
Every option can also be set with an environment variable ``CONVEYOR_<OPTION>``, e.g.
``CONVEYOR_STORE=/data/ledger.db``."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from conveyor.core.units import RunState
from conveyor.errors import ConveyorError, StepError, UsageError
from conveyor.observability.report import (
    print_error_groups,
    run_header,
    seconds,
    step_table,
)

if TYPE_CHECKING:
    from conveyor.core.units import RunInfo, RunReport
    from conveyor.definition.alarms import AlarmRule
    from conveyor.definition.pipeline import Pipeline
    from conveyor.store import Store

EXIT_OK, EXIT_FAILED_UNITS, EXIT_USAGE, EXIT_STORE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

app = typer.Typer(
    name="conveyor",
    help="Run machine-learning pipelines of plain Python functions over a batch, in parallel, "
    "durably; see what happened; export the results.",
    epilog="Exit codes: 0 completed, 1 completed with failed units, 2 bad usage / pipeline / "
    "input, 3 ledger unusable, 130 interrupted. Every option reads CONVEYOR_<OPTION> too.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)
for _console in (out, err):
    if not _console.is_terminal and "COLUMNS" not in os.environ:
        _console.width = 120  # logs and pipes: Rich would assume 80 columns and cut tables

F = TypeVar("F", bound=Callable[..., Any])


@app.callback()
def _global_options(
    log_format: Annotated[
        str,
        typer.Option(
            "--log-format",
            envvar="CONVEYOR_LOG_FORMAT",
            help="How events (runs, failed units, lost workers, alarms) are logged to stderr: "
            "text or json (one object per line).",
        ),
    ] = "text",
    log_level: Annotated[
        str | None,
        typer.Option(
            "--log-level",
            envvar="CONVEYOR_LOG_LEVEL",
            help="debug, info, warning or error [default: warning for text, info for json].",
        ),
    ] = None,
) -> None:
    """Options that come before the command: conveyor --log-format json run ..."""
    from conveyor.core.logs import configure

    try:
        configure(log_format, log_level)
    except ValueError as exc:
        err.print(f"[red]error:[/] --log-format/--log-level: {escape(str(exc))}")
        raise typer.Exit(EXIT_USAGE) from None


StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store",
        envvar="CONVEYOR_STORE",
        help="Ledger: a SQLite file path [default: .conveyor/conveyor.db] or a "
        "postgresql://USER@HOST/DB URL.",
    ),
]
AlarmsOpt = Annotated[
    str | None,
    typer.Option(
        "--alarms",
        envvar="CONVEYOR_ALARMS",
        help="A YAML file of alarm rules to evaluate as the run goes (beside the pipeline's).",
    ),
]
NotifyOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--notify",
        envvar="CONVEYOR_NOTIFY",
        help="Webhook URL to POST events to (run finished, failure rate, dead units, alarms).",
    ),
]
PipelineArg = Annotated[str, typer.Argument(help="The pipeline file (FILE.py or FILE.py:NAME).")]
RunArg = Annotated[str | None, typer.Argument(help="Run id or prefix (default: latest).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        "--workers",
        "-w",
        envvar="CONVEYOR_WORKERS",
        help="Worker processes (default: one per core); 0 runs inline.",
    ),
]
ExecutorOpt = Annotated[
    str | None,
    typer.Option(
        "--executor",
        envvar="CONVEYOR_EXECUTOR",
        help="Where process steps run: local (a process pool on this machine) or ray "
        "[default: local; resume: as the run was started].",
    ),
]
RayAddressOpt = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        envvar="CONVEYOR_RAY_ADDRESS",
        help="With --executor ray: the cluster to use (auto, HOST:PORT or ray://HOST:PORT); "
        "without it a local Ray is started for the run.",
    ),
]
ProgressOpt = Annotated[
    bool,
    typer.Option(
        "--progress/--no-progress", envvar="CONVEYOR_PROGRESS", help="Show live progress bars."
    ),
]


def handled(fn: F) -> F:
    """Turn Conveyor errors into one red line and their exit code; Ctrl-C into 130."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConveyorError as exc:
            err.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("[magenta]interrupted[/]: run the same command again to continue")
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper  # type: ignore[return-value]


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


@app.command()
@handled
def run(
    pipeline: PipelineArg,
    input: Annotated[
        str,
        typer.Option(
            "--input",
            "-i",
            envvar="CONVEYOR_INPUT",
            help="A folder or glob of files "
            "(one item per file) or a .jsonl/.csv/.parquet file (one item per row).",
        ),
    ],
    store: StoreOpt = None,
    workers: WorkersOpt = None,
    id_field: Annotated[
        str | None,
        typer.Option(
            "--id-field",
            envvar="CONVEYOR_ID_FIELD",
            help="Column holding each row's id (default: a content hash).",
        ),
    ] = None,
    group_by: Annotated[
        list[str] | None,
        typer.Option(
            "--group-by",
            envvar="CONVEYOR_GROUP_BY",
            help="Split a table into one item per group of these columns (a,b).",
        ),
    ] = None,
    buckets: Annotated[
        int | None,
        typer.Option(
            "--buckets",
            envvar="CONVEYOR_BUCKETS",
            help="Pack the groups into this many items (stable by group id).",
        ),
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only",
            envvar="CONVEYOR_ONLY",
            help="Run only these steps (a,b) and the steps they need.",
        ),
    ] = None,
    force: Annotated[
        list[str] | None,
        typer.Option(
            "--force",
            envvar="CONVEYOR_FORCE",
            help="Recompute these steps (a,b) even where their results are cached.",
        ),
    ] = None,
    lease: Annotated[
        str | None,
        typer.Option(
            "--lease",
            envvar="CONVEYOR_LEASE",
            help="Visibility timeout: how long a unit stays leased to a coordinator that stops "
            "renewing it before another may take it (default 5m).",
        ),
    ] = None,
    notify: NotifyOpt = None,
    notify_format: Annotated[
        str,
        typer.Option(
            "--notify-format", envvar="CONVEYOR_NOTIFY_FORMAT", help="json or slack (a text body)."
        ),
    ] = "json",
    new: Annotated[
        bool,
        typer.Option(
            "--new",
            envvar="CONVEYOR_NEW",
            help="Start a new run even if an unfinished run of the same command exists.",
        ),
    ] = False,
    alarms_file: AlarmsOpt = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            envvar="CONVEYOR_METRICS_PORT",
            help="Serve the run's Prometheus metrics on 127.0.0.1:PORT/metrics while it runs.",
        ),
    ] = None,
    executor: ExecutorOpt = None,
    ray_address: RayAddressOpt = None,
    progress: ProgressOpt = True,
) -> None:
    """Run PIPELINE over every item of --input; finished units are never recomputed, and an
    unfinished run of the same command (interrupted, or its coordinator killed) continues."""
    from conveyor.definition.loader import load_pipeline
    from conveyor.interfaces.api import run_pipeline
    from conveyor.observability.progress import RichProgress

    pipe, path = load_pipeline(pipeline)
    hooks = [RichProgress(err)] if progress else []
    report = run_pipeline(
        pipe,
        input,
        store=store,
        workers=workers,
        only=_split(only),
        force=_split(force),
        hooks=hooks,
        pipeline_file=str(path),
        id_field=id_field,
        group_by=_split(group_by),
        buckets=buckets,
        new=new,
        notify=_split(notify),
        notify_format=notify_format,
        lease=lease,
        metrics_port=_port("--metrics-port", metrics_port),
        executor=executor or "local",
        ray_address=ray_address,
        alarms=_alarm_rules(pipe, alarms_file),
    )
    _finish(report)


def _finish(report: RunReport) -> None:
    """Print a finished run's summary and exit with its code."""
    style = "green" if report.state is RunState.COMPLETED else "yellow"
    out.print(
        f"run [bold]{report.run_id}[/] [{style}]{report.state.value}[/] in "
        f"{seconds(report.seconds)}: {report.items} items"
    )
    out.print(step_table(report.stats))
    if report.duplicates:
        err.print(
            f"[yellow]{report.duplicates} item(s) repeated an id seen before and were ignored[/]"
        )
    print_error_groups(err, report.errors, report.failed)
    out.print(f"results: conveyor results {report.run_id} --format csv --out results.csv")
    if report.state is not RunState.COMPLETED:
        raise typer.Exit(EXIT_FAILED_UNITS)


@app.command()
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
    rules = _alarm_rules(pipe, alarms_file)
    with pipe.stream(store=store, workers=workers, alarms=rules, notify=_split(notify)) as stream:
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


@app.command()
@handled
def serve(
    pipeline: PipelineArg,
    host: Annotated[
        str, typer.Option("--host", envvar="CONVEYOR_HOST", help="Address to bind.")
    ] = "127.0.0.1",
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
    _port("--port", port)
    if max_pending < 1:
        raise UsageError(f"--max-pending {max_pending}: must be at least 1")
    try:
        grace_seconds = parse_duration(grace)
    except ValueError as exc:
        raise UsageError(f"--grace {exc}") from None
    uploads = _uploads_folder(store)
    app_ = create_app(
        pipe, store=store, workers=workers, token=token, max_pending=max_pending, uploads=uploads,
        alarms=_alarm_rules(pipe, alarms_file), notify=_split(notify),
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


@app.command()
@handled
def dashboard(
    host: Annotated[
        str, typer.Option("--host", envvar="CONVEYOR_HOST", help="Address to bind.")
    ] = "127.0.0.1",
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
    _port("--port", port)
    open_store(store, create=False).close()  # a missing or unusable ledger: say so now
    app_ = create_dashboard_app(store, token=token, workers=workers)
    shown = "localhost" if host in ("127.0.0.1", "::1") else host
    err.print(f"dashboard on http://{shown}:{port}/dashboard" + ("#token=…" if token else ""))
    uvicorn.run(app_, host=host, port=port, log_level="warning")


def _alarm_rules(pipe: Pipeline, path: str | None) -> list[AlarmRule]:
    """The rules of an --alarms file, checked against the pipeline's steps."""
    if path is None:
        return []
    from conveyor.definition.alarms import check_steps, load_rules, rules

    found = load_rules(path)
    rules([*pipe.alarms, *found], f"--alarms {path} with the pipeline's alarms")
    check_steps(found, pipe.steps)
    return found


def _port(flag: str, port: int | None) -> int | None:
    if port is not None and not 0 < port < 65536:
        raise UsageError(f"{flag} {port}: must be between 1 and 65535")
    return port


def _uploads_folder(store: str | None) -> Path:
    """Uploaded files live beside a SQLite ledger, else under .conveyor/uploads."""
    if store is None or ("://" in store and not store.startswith("sqlite:///")):
        return Path(".conveyor") / "uploads"
    return Path(store.removeprefix("sqlite:///")).parent / "uploads"


@app.command()
@handled
def resume(
    run_id: RunArg = None,
    store: StoreOpt = None,
    workers: WorkersOpt = None,
    executor: ExecutorOpt = None,
    ray_address: RayAddressOpt = None,
    progress: ProgressOpt = True,
) -> None:
    """Continue an interrupted run, or one whose coordinator died, from where it stopped (on
    the executor it was started with, unless --executor says otherwise)."""
    from conveyor.interfaces.api import run_pipeline
    from conveyor.observability.progress import RichProgress

    ledger, run, pipe, path = _stored_run(store, run_id, "pipe.run(..., resume=RUN)")
    options = run.options
    report = run_pipeline(
        pipe,
        options["input"],
        store=ledger,
        workers=workers,
        only=options.get("only") or [],
        force=options.get("force") or [],
        hooks=[RichProgress(err)] if progress else [],
        pipeline_file=str(path),
        id_field=options.get("id_field"),
        group_by=options.get("group_by") or [],
        buckets=options.get("buckets"),
        resume=run.id,
        executor=executor or options.get("executor") or "local",
        ray_address=ray_address or (options.get("ray_address") if executor is None else None),
    )
    _finish(report)


@app.command()
@handled
def worker(
    pipeline: PipelineArg,
    run_id: Annotated[
        str | None,
        typer.Option(
            "--run",
            envvar="CONVEYOR_RUN",
            help="The run to join (default: the latest running run of the pipeline).",
        ),
    ] = None,
    store: StoreOpt = None,
    workers: WorkersOpt = None,
    executor: ExecutorOpt = None,
    ray_address: RayAddressOpt = None,
) -> None:
    """Join a running run as one more coordinator: claim units from its queue in the shared
    ledger, run them on this machine's workers, until none is left. Start it beside 'conveyor
    run' (same pipeline code, same --store, e.g. PostgreSQL) on as many machines as you like."""
    from conveyor.definition.loader import load_pipeline
    from conveyor.interfaces.api import join_run

    pipe, _ = load_pipeline(pipeline)
    joined = join_run(pipe, run_id, store=store, workers=workers,
                      executor=executor or "local", ray_address=ray_address)  # fmt: skip
    ended = (
        "; its coordinator was gone, so this worker ended the run" if joined.finished_run else ""
    )
    out.print(
        f"worked on run {joined.run_id}: {_plural(joined.done, 'unit')} done here, "
        f"{joined.dead} dead{ended}"
    )


@app.command()
@handled
def redrive(
    run_id: RunArg = None,
    step: Annotated[str | None, typer.Option("--step", help="Only this step's units.")] = None,
    error: Annotated[
        str | None, typer.Option("--error", help="Only units with this error signature.")
    ] = None,
    store: StoreOpt = None,
    workers: WorkersOpt = None,
    progress: ProgressOpt = True,
) -> None:
    """Re-queue dead units (and the units they skipped) after a fix, and finish the run."""
    from conveyor.interfaces.api import redrive_run
    from conveyor.observability.progress import RichProgress

    ledger, run, pipe, _ = _stored_run(
        store, run_id, "conveyor.interfaces.api.redrive_run(pipe, RUN)"
    )
    report = redrive_run(
        pipe,
        run.id,
        store=ledger,
        step=step,
        error=error,
        workers=workers,
        hooks=[RichProgress(err)] if progress else [],
    )
    _finish(report)


def _stored_run(
    store: str | None, run_id: str | None, from_python: str
) -> tuple[Store, RunInfo, Pipeline, Path]:
    """The ledger, a run in it, and its pipeline loaded from the file the run was started with."""
    from conveyor.definition.loader import load_pipeline
    from conveyor.store import open_store

    ledger = open_store(store, create=False)
    run = ledger.get_run(run_id)
    if not run.pipeline_file or not run.options.get("input"):
        raise UsageError(
            f"run {run.id} was started from Python, not from a pipeline file and an input; "
            f"continue it from Python with {from_python}"
        )
    pipe, path = load_pipeline(run.pipeline_file)
    return ledger, run, pipe, path


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def main() -> None:
    """Entry point of the ``conveyor`` command."""
    sys.exit(app())


# The commands that read the ledger live in their own module and register on ``app``.
from conveyor.interfaces.cli import ledger as _ledger_commands  # noqa: E402, F401
