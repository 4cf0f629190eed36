"""Tables a person reads: a run's per-step summary, the list of runs, its failures."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from conveyor.core.units import RunInfo, RunState, StepStats, UnitState
from conveyor.store.rows import ErrorGroup

_STATE_STYLE = {
    RunState.RUNNING: "cyan",
    RunState.COMPLETED: "green",
    RunState.COMPLETED_WITH_ERRORS: "yellow",
    RunState.FAILED: "red",
    RunState.INTERRUPTED: "magenta",
}


def seconds(value: float | None) -> str:
    """A duration for people: ``850µs``, ``12.3ms``, ``4.20s``, ``3m05s``."""
    if value is None:
        return "-"
    if value < 0.001:
        return f"{value * 1e6:.0f}µs"
    if value < 1:
        return f"{value * 1e3:.1f}ms"
    if value < 60:
        return f"{value:.2f}s"
    return f"{int(value // 60)}m{int(value % 60):02d}s"


def step_table(stats: Sequence[StepStats]) -> Table:
    """One row per step: units by state, p50/p95 duration and throughput."""
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    table.add_column("step", no_wrap=True)
    for name, style in (
        ("total", ""),
        ("done", "green"),
        ("cached", "dim"),
        ("dead", "red"),
        ("skipped", "yellow"),
        ("left", "cyan"),
        ("p50", ""),
        ("p95", ""),
        ("units/s", ""),
    ):
        table.add_column(name, justify="right", style=style, no_wrap=True)
    for s in stats:
        waiting = sum(
            s.counts.get(state.value, 0)
            for state in (UnitState.PENDING, UnitState.READY, UnitState.RUNNING)
        )
        table.add_row(
            s.step,
            str(s.total),
            str(s.counts.get("done", 0)),
            str(s.counts.get("cached", 0)),
            str(s.counts.get("dead", 0)),
            str(s.counts.get("skipped", 0)),
            str(waiting),
            seconds(s.p50),
            seconds(s.p95),
            f"{s.rate:,.0f}" if s.rate else "-",
        )
    return table


def run_header(run: RunInfo) -> str:
    """One line: id, pipeline, state, source and timing."""
    style = _STATE_STYLE.get(run.state, "")
    when = datetime.fromtimestamp(run.created_at).strftime("%Y-%m-%d %H:%M:%S")
    took = f", took {seconds(run.finished_at - run.created_at)}" if run.finished_at else ""
    return (
        f"run [bold]{run.id}[/] of [bold]{run.pipeline}[/]: [{style}]{run.state.value}[/] "
        f"(started {when}{took}) over {escape(run.source)}"
    )


def runs_table(runs: Sequence[RunInfo]) -> Table:
    """Recent runs, newest first."""
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    for name in ("run", "pipeline", "state", "started", "took"):
        table.add_column(name, no_wrap=True)
    table.add_column("input")
    for run in runs:
        style = _STATE_STYLE.get(run.state, "")
        table.add_row(
            run.id,
            run.pipeline,
            f"[{style}]{run.state.value}[/]",
            datetime.fromtimestamp(run.created_at).strftime("%Y-%m-%d %H:%M:%S"),
            seconds(run.finished_at - run.created_at) if run.finished_at else "-",
            escape(run.source),
        )
    return table


def print_error_groups(console: Console, groups: Sequence[ErrorGroup], total: int) -> None:
    """The most frequent failures, grouped by signature, so the causes are visible at once."""
    if not groups:
        return
    console.print(f"[red]{total} unit(s) dead[/]; the top errors:")
    for g in groups:
        first = (g["message"] or "").strip().splitlines()
        console.print(
            f"  [bold]{g['count']}x {escape(g['step'])}[/]: {escape(str(g['error_type']))}: "
            f"{escape(first[0]) if first else ''} [dim](e.g. {escape(', '.join(g['samples']))}; "
            f"signature {g['signature']})[/]",
            highlight=False,
        )
    console.print("[dim]details: conveyor errors; conveyor dlq list; conveyor dlq show UNIT[/]")


def errors_table(groups: Sequence[ErrorGroup]) -> Table:
    """Failures grouped by signature, most frequent first."""
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    for name in ("signature", "step", "count", "first seen", "last seen", "error", "e.g. items"):
        table.add_column(name, no_wrap=name not in ("error", "e.g. items"))
    for g in groups:
        first = (g["message"] or "").strip().splitlines()
        table.add_row(
            g["signature"] or "-",
            escape(g["step"]),
            str(g["count"]),
            _clock(g["first_seen"]),
            _clock(g["last_seen"]),
            escape(f"{g['error_type']}: {first[0] if first else ''}"),
            escape(", ".join(g["samples"])),
        )
    return table


def _clock(when: float | None) -> str:
    return "-" if when is None else datetime.fromtimestamp(when).strftime("%H:%M:%S")
