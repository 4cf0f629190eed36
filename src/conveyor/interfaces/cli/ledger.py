"""``conveyor status``, ``results``, ``runs`` and ``check``: what a run did, and what a pipeline
is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from conveyor.interfaces.cli.app import (
    err,
    handled,
    out,
    plural,
)
from conveyor.interfaces.cli.options import (
    JsonOpt,
    PipelineArg,
    RunArg,
    StoreOpt,
)
from conveyor.observability.report import (
    print_error_groups,
    run_header,
    runs_table,
    step_table,
)

if TYPE_CHECKING:
    pass


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


@handled
def runs(
    store: StoreOpt = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many runs.")] = 20,
) -> None:
    """List recent runs, newest first."""
    from conveyor.store import open_store

    out.print(runs_table(open_store(store, create=False).list_runs(limit)))


@handled
def check(
    pipeline: PipelineArg,
) -> None:
    """Validate a pipeline and show its steps in order with their inputs and options."""
    from conveyor.definition.loader import load_pipeline

    pipe, _ = load_pipeline(pipeline)
    graph = pipe.graph
    out.print(
        f"pipeline [bold]{escape(pipe.name)}[/]: {plural(len(graph.order), 'step')}, "
        f"{plural(len(pipe.resources), 'resource')}"
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
