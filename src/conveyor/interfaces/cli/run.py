"""``conveyor run``, ``resume``, ``worker`` and ``redrive``: the commands that drive a run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from conveyor.core.units import RunState
from conveyor.interfaces.cli import model_sets
from conveyor.interfaces.cli.app import (
    EXIT_FAILED_UNITS,
    alarm_rules,
    err,
    handled,
    out,
    plural,
    port_option,
    split_list,
    stored_run,
)
from conveyor.interfaces.cli.options import (
    AlarmsOpt,
    ExecutorOpt,
    NotifyOpt,
    PipelineArg,
    ProgressOpt,
    RayAddressOpt,
    RunArg,
    StoreOpt,
    WorkersOpt,
)
from conveyor.observability.report import (
    print_error_groups,
    seconds,
    step_table,
)

if TYPE_CHECKING:
    from conveyor.core.units import RunReport


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
        only=split_list(only),
        force=split_list(force),
        hooks=hooks,
        pipeline_file=str(path),
        id_field=id_field,
        group_by=split_list(group_by),
        buckets=buckets,
        new=new,
        notify=split_list(notify),
        notify_format=notify_format,
        lease=lease,
        metrics_port=port_option("--metrics-port", metrics_port),
        executor=executor or "local",
        ray_address=ray_address,
        alarms=alarm_rules(pipe, alarms_file),
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
    from conveyor.interfaces.cli.train import resume_training
    from conveyor.observability.progress import RichProgress

    if resume_training(store, run_id, workers):
        return  # a study of 'conveyor train', continued as that command would
    ledger, run, pipe, path = stored_run(store, run_id, "pipe.run(..., resume=RUN)")
    if model_sets.is_group_training(run):  # conveyor train --group-by: the same training again
        return model_sets.resume(ledger, run, pipe, path, workers=workers, progress=progress)
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
        f"worked on run {joined.run_id}: {plural(joined.done, 'unit')} done here, "
        f"{joined.dead} dead{ended}"
    )


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

    ledger, run, pipe, _ = stored_run(
        store, run_id, "conveyor.interfaces.api.redrive_run(pipe, RUN)"
    )
    if model_sets.is_group_training(run):  # conveyor train --group-by: refit, new model set
        return model_sets.redrive(ledger, run, pipe, step=step, error=error, workers=workers,
                                  progress=progress)  # fmt: skip
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
