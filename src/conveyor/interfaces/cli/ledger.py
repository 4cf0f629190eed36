"""The ``conveyor`` commands that read the ledger: status, results, runs, check, the
dead-letter queue, errors and alarms (registered on :data:`conveyor.interfaces.cli.main.app`)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from conveyor.errors import UsageError
from conveyor.interfaces.cli.main import (
    JsonOpt,
    PipelineArg,
    RunArg,
    StoreOpt,
    _plural,
    app,
    err,
    handled,
    out,
)
from conveyor.observability.report import (
    errors_table,
    print_error_groups,
    run_header,
    runs_table,
    seconds,
    step_table,
)


@app.command()
@handled
def status(
    run_id: RunArg = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a run's per-step progress, failures and timings (running or finished)."""
    from conveyor.store import open_store

    ledger = open_store(store, create=False)
    run = ledger.get_run(run_id)
    stats = ledger.step_stats(run.id, run.steps)
    if as_json:
        print(
            json.dumps(
                {
                    "run": run.id,
                    "pipeline": run.pipeline,
                    "state": run.state.value,
                    "source": run.source,
                    "created_at": run.created_at,
                    "finished_at": run.finished_at,
                    "steps": [
                        {
                            "step": s.step,
                            "total": s.total,
                            "counts": s.counts,
                            "p50": s.p50,
                            "p95": s.p95,
                            "units_per_second": s.rate,
                        }
                        for s in stats
                    ],
                },
                indent=2,
            )
        )
        return
    out.print(run_header(run))
    if run.message:
        out.print(f"  {escape(run.message)}")
    out.print(step_table(stats))
    failed = sum(s.counts.get("dead", 0) for s in stats)
    print_error_groups(out, ledger.error_groups(run.id, limit=5), failed)


@app.command()
@handled
def results(
    run_id: RunArg = None,
    fmt: Annotated[
        str, typer.Option("--format", "-f", envvar="CONVEYOR_FORMAT", help="jsonl, csv or parquet.")
    ] = "jsonl",
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", envvar="CONVEYOR_OUT", help="Write to this file (default: stdout)."
        ),
    ] = None,
    store: StoreOpt = None,
) -> None:
    """Export a run's results: one row per item, its id then one column per step."""
    from conveyor.interfaces.export import export
    from conveyor.store import open_store

    ledger = open_store(store, create=False)
    run = ledger.get_run(run_id)
    count = export(ledger, run.id, run.steps, fmt, out_file)
    if out_file is not None:
        err.print(f"wrote {count} rows to {out_file}")


@app.command()
@handled
def runs(
    store: StoreOpt = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many runs.")] = 20,
) -> None:
    """List recent runs, newest first."""
    from conveyor.store import open_store

    out.print(runs_table(open_store(store, create=False).list_runs(limit)))


@app.command()
@handled
def check(
    pipeline: PipelineArg,
) -> None:
    """Validate a pipeline and show its steps in order with their inputs and options."""
    from conveyor.definition.loader import load_pipeline

    pipe, _ = load_pipeline(pipeline)
    graph = pipe.graph
    out.print(
        f"pipeline [bold]{escape(pipe.name)}[/]: {_plural(len(graph.order), 'step')}, "
        f"{_plural(len(pipe.resources), 'resource')}"
    )
    for name in graph.order:
        node = graph.nodes[name]
        inputs = (["item"] if node.uses_item else []) + list(node.upstream)
        options = node.step.options
        extras = [
            f"{k}={v}"
            for k, v in (
                ("retries", options.retries or None),
                ("timeout", options.timeout),
                ("batch_size", options.batch_size),
                ("concurrency", options.concurrency),
                ("cpus", options.cpus),
                ("gpus", options.gpus),
                ("memory", options.memory),
            )
            if v
        ]
        if options.executor != "process":
            extras.append(f"executor={options.executor}")
        uses = f" uses {', '.join(node.resources)}" if node.resources else ""
        out.print(
            f"  [bold]{name}[/]({', '.join(inputs)}){uses} "
            f"[dim]{' '.join(extras)} version {node.step.version}[/]"
        )


dlq = typer.Typer(
    help="The dead-letter queue: units that failed their last attempt.", no_args_is_help=True
)
app.add_typer(dlq, name="dlq")


@dlq.command("list")
@handled
def dlq_list(
    run_id: RunArg = None,
    step: Annotated[str | None, typer.Option("--step", help="Only this step.")] = None,
    error: Annotated[
        str | None, typer.Option("--error", help="Only this error signature (or a prefix).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many.")] = 100,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List a run's dead units with their error."""
    from conveyor.store import open_store

    ledger = open_store(store, create=False)
    run = ledger.get_run(run_id)
    units = ledger.dead_units(run.id, step=step, signature=error, limit=limit)
    if as_json:
        print(json.dumps(units, indent=2))
        return
    if not units:
        out.print(f"run {run.id}: the dead-letter queue is empty")
        return
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    for name in ("unit", "item", "step", "attempts", "signature", "error"):
        table.add_column(name, no_wrap=name != "error")
    for u in units:
        first = (u["error_message"] or "").strip().splitlines()
        table.add_row(
            str(u["unit"]), escape(u["item"]), u["step"], str(u["attempts"]),
            u["signature"] or "-", escape(f"{u['error_type']}: {first[0] if first else ''}"),
        )  # fmt: skip
    out.print(table)
    out.print(f"details: conveyor dlq show UNIT; re-queue after a fix: conveyor redrive {run.id}")


@dlq.command("show")
@handled
def dlq_show(
    unit: Annotated[int, typer.Argument(help="The unit id (from 'conveyor dlq list').")],
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one unit: its input, every attempt with its decision, and the full traceback."""
    from conveyor.sources.names import escape_name
    from conveyor.sources.readers import rebuild_item
    from conveyor.store import open_store

    ledger = open_store(store, create=False)
    detail = ledger.unit_detail(unit)
    if detail is None:
        raise UsageError(f"no unit {unit} in the ledger; 'conveyor dlq list' shows dead units")
    item = rebuild_item(detail["kind"], detail["item"], detail["payload"])
    shown: Any = escape_name(item.path) if detail["kind"] == "file" else {
        k: repr(v) for k, v in item.fields.items()
    }  # fmt: skip
    if as_json:
        body: dict[str, Any] = {k: v for k, v in detail.items() if k != "payload"}
        print(json.dumps({**body, "input": shown}, indent=2, default=str))
        return
    out.print(
        f"unit [bold]{detail['unit']}[/] of run {detail['run']}: step [bold]{detail['step']}[/] "
        f"on item [bold]{escape(detail['item'])}[/] is [red]{detail['state']}[/] after "
        f"{_plural(detail['attempts'], 'attempt')}"
    )
    out.print(f"input: {escape(str(shown))}")
    for a in detail["attempt_log"]:
        out.print(
            f"  attempt {a['attempt']}: {escape(str(a['error_type']))}: "
            f"{escape((a['error_message'] or '').strip()[:200])} "
            f"[dim]({seconds(a['duration'])}; {escape(a['decision'] or '')})[/]"
        )
    if detail["traceback"]:
        out.print(escape(detail["traceback"].rstrip()), soft_wrap=True)


@app.command()
@handled
def errors(
    run_id: RunArg = None,
    store: StoreOpt = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many groups.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Group a run's failures by step, exception type and message (numbers, ids and paths
    masked), with counts, first/last seen and sample items."""
    from conveyor.store import open_store

    ledger = open_store(store, create=False)
    run = ledger.get_run(run_id)
    groups = ledger.error_groups(run.id, limit=limit)
    if as_json:
        print(json.dumps({"run": run.id, "groups": groups}, indent=2))
        return
    if not groups:
        out.print(f"run {run.id}: no failures")
        return
    out.print(errors_table(groups))


@app.command()
@handled
def alarms(run_id: RunArg = None, store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """A run's alarms: which fired, which resolved, their last value and why."""
    from conveyor.store import open_store

    ledger = open_store(store, create=False)
    run = ledger.get_run(run_id)
    found = ledger.alarms(run.id)
    if as_json:
        print(json.dumps({"run": run.id, "alarms": found}, indent=2))
        return
    if not found:
        out.print(f"run {run.id}: no alarm has fired")
        return
    table = Table(box=box.SIMPLE_HEAD)
    for column in ("alarm", "state", "since", "message"):
        table.add_column(column)
    for alarm in found:
        style = "red" if alarm["state"] == "firing" else "green"
        since = datetime.fromtimestamp(alarm["changed_at"]).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(escape(alarm["name"]), f"[{style}]{alarm['state']}[/]", since,
                      escape(alarm["message"]))  # fmt: skip
    out.print(table)
