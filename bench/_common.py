"""Helpers shared by the benchmarks in ``bench/``: the console and progress lines, medians and
timing, the calibration of the CPU busy loop (:func:`_units.spin`, re-exported here), the
scratch folder of fresh ledgers, the results record, the summary table and the driver that runs
the sections.

The benchmarks are run as scripts (``python bench/core.py``), so ``bench/`` is on ``sys.path``
and they import this module as ``_common``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from _units import spin as spin  # re-exported for core.py and stream.py
from rich.console import Console, JustifyMethod
from rich.markup import escape
from rich.table import Table

import conveyor as cv

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

ConfigT = TypeVar("ConfigT", bound="DataclassInstance")
RowT = TypeVar("RowT", bound="DataclassInstance")

console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def median(values: Sequence[float]) -> float:
    """The median of a non-empty sequence."""
    return float(statistics.median(values))


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Run ``fn`` after a garbage collection and return (wall seconds, its value)."""
    gc.collect()
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def say(text: str) -> None:
    """Print a progress line at once (the output may be a file being polled)."""
    console.print(text)
    sys.stdout.flush()


def load_note() -> str:
    """The 1-minute load average, to flag a section measured on a busy machine."""
    try:
        return f" [dim](load {os.getloadavg()[0]:.2f})[/dim]"
    except OSError:
        return ""


def environment() -> dict[str, Any]:
    """Where the numbers were taken."""
    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "conveyor": cv.__version__,
        "loadavg_at_start": load,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


# ------------------------------------------------------------------------------------------------
# CPU work
# ------------------------------------------------------------------------------------------------


def burn_loops(loops: int) -> float:
    """CPU seconds of one :func:`spin` call of ``loops``."""
    started = time.process_time()
    spin(loops)
    return time.process_time() - started


def calibrate(
    target: float,
    *,
    start: int,
    samples: int,
    tolerance: float = 0.05,
    rounds: int = 8,
) -> tuple[int, float]:
    """The :func:`spin` loop count that takes about ``target`` CPU seconds, and the median CPU
    seconds it took in the last check. The CPU's speed drifts on a shared machine, so the count
    (doubled from ``start`` until it is measurable) is rescaled until a median of ``samples``
    calls lands within ``tolerance`` of the target."""
    loops = start
    while True:
        used = burn_loops(loops)
        if used >= target / 4:
            break
        loops *= 2
    loops = max(1, int(loops * target / used))
    per_call = target
    for _ in range(rounds):
        per_call = median([burn_loops(loops) for _ in range(samples)])
        if abs(per_call - target) <= tolerance * target:
            break
        loops = max(1, int(loops * target / per_call))
    return loops, per_call


# ------------------------------------------------------------------------------------------------
# Fresh ledgers and results
# ------------------------------------------------------------------------------------------------


class Scratch:
    """A temporary folder handing out fresh, never reused folders and ledger paths."""

    def __init__(self, prefix: str) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=prefix))
        self._count = 0

    def folder(self, label: str) -> Path:
        """A new empty folder."""
        self._count += 1
        folder = self.root / f"{self._count:03d}-{label}"
        folder.mkdir()
        return folder

    def store(self, label: str) -> Path:
        """A path for a new ledger in its own folder."""
        return self.folder(label) / "ledger.db"

    @staticmethod
    def drop(path: Path) -> None:
        """Delete a folder, or a ledger's folder (keeps the disk use of long benchmarks small)."""
        shutil.rmtree(path if path.is_dir() else path.parent, ignore_errors=True)

    def close(self) -> None:
        """Delete everything."""
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class Results(Generic[ConfigT, RowT]):
    """Everything measured, for the summary table and ``--json``."""

    config: ConfigT
    environment: dict[str, Any]
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    rows: list[RowT] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the whole benchmark."""
        return {
            "config": asdict(self.config),
            "environment": self.environment,
            "sections": self.sections,
            "summary": [asdict(row) for row in self.rows],
        }


@dataclass
class MetricRow:
    """One line of a summary table. ``passed`` is None for a line without a target."""

    section: str
    metric: str
    value: str
    detail: str
    target: str
    passed: bool | None


def metric_table(title: str, rows: Iterable[MetricRow]) -> Table:
    """The summary table of :class:`MetricRow` lines, every cell escaped."""
    return summary_table(
        title,
        (
            ("section", "left"),
            ("metric", "left"),
            ("value", "right"),
            ("detail", "left"),
            ("target", "left"),
        ),
        (
            (
                (r.section, escape(r.metric), escape(r.value), escape(r.detail), escape(r.target)),
                r.passed,
            )
            for r in rows
        ),
    )


def summary_table(
    title: str,
    columns: Sequence[tuple[str, JustifyMethod]],
    rows: Iterable[tuple[Sequence[str], bool | None]],
) -> Table:
    """The final table: one line per metric (its cells and verdict), a result column last."""
    table = Table(title=title, show_lines=False)
    for name, justify in (*columns, ("result", "center")):
        table.add_column(name, justify=justify)
    for cells, passed in rows:
        verdict = (
            "[dim]-[/dim]"
            if passed is None
            else "[green]PASS[/green]"
            if passed
            else "[red]MISS[/red]"
        )
        table.add_row(*cells, verdict)
    return table


# ------------------------------------------------------------------------------------------------
# Driver
# ------------------------------------------------------------------------------------------------


def main(
    argv: Sequence[str] | None,
    *,
    doc: str | None,
    name: str,
    sections: Mapping[str, Callable[[ConfigT, Scratch, Results[ConfigT, RowT]], None]],
    make_config: Callable[[bool], ConfigT],
    failed_row: Callable[[str, str], RowT],
    table: Callable[[Results[ConfigT, RowT]], Table],
    scratch_prefix: str,
    precheck: Callable[[], bool] = lambda: True,
) -> int:
    """Run every section (or those named by ``--only``), print the summary table, write
    ``--json``; returns the exit status: 2 if ``precheck`` fails, 1 if a section failed."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    parser.add_argument("--quick", action="store_true", help="small sizes, fewer repetitions")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the numbers to OUT")
    parser.add_argument(
        "--only",
        action="append",
        choices=list(sections),
        help="run only this section (repeatable; default: all)",
    )
    args = parser.parse_args(argv)
    cfg = make_config(args.quick)
    results: Results[ConfigT, RowT] = Results(cfg, environment())
    env = results.environment
    say(
        f"Conveyor {env['conveyor']} {name}{' (--quick)' if args.quick else ''}: "
        f"Python {env['python']}, {env['cpu_count']} CPUs, load {env['loadavg_at_start'][0]:.2f}"
    )
    if not precheck():
        return 2
    scratch = Scratch(scratch_prefix)
    started = time.perf_counter()
    try:
        for section_name, section in sections.items():
            if args.only and section_name not in args.only:
                continue
            before = os.getloadavg()
            try:
                section(cfg, scratch, results)
                results.sections.setdefault(section_name, {})["loadavg"] = {
                    "before": before,
                    "after": os.getloadavg(),
                }
            except Exception as exc:
                say(
                    f"   [red]section {section_name} failed[/red]: "
                    f"{type(exc).__name__}: {escape(str(exc))}"
                )
                results.sections[section_name] = {"error": f"{type(exc).__name__}: {exc}"}
                first = (str(exc).strip().splitlines() or [""])[0]
                results.rows.append(failed_row(section_name, first[:80]))
    finally:
        scratch.close()
    results.environment["total_seconds"] = time.perf_counter() - started
    console.print()
    console.print(table(results))
    say(f"total {results.environment['total_seconds']:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results.to_json(), indent=2, default=str) + "\n")
        say(f"wrote {args.json}")
    return 1 if any("error" in section for section in results.sections.values()) else 0


def metric_main(
    argv: Sequence[str] | None,
    *,
    doc: str | None,
    name: str,
    title: str,
    sections: Mapping[str, Callable[[ConfigT, Scratch, Results[ConfigT, MetricRow]], None]],
    make_config: Callable[[bool], ConfigT],
    scratch_prefix: str,
) -> int:
    """:func:`main` for a benchmark whose summary lines are :class:`MetricRow`: a failed
    section is a MISS line, and the table is titled ``title`` (marked when sizes are quick)."""

    def table(results: Results[ConfigT, MetricRow]) -> Table:
        quick = " - QUICK sizes" if getattr(results.config, "quick", False) else ""
        return metric_table(title + quick, results.rows)

    return main(
        argv,
        doc=doc,
        name=name,
        sections=sections,
        make_config=make_config,
        failed_row=lambda section, error: MetricRow(
            section, "section failed", "error", error, "", False
        ),
        table=table,
        scratch_prefix=scratch_prefix,
    )


def children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (a command's workers), read from ``/proc``."""
    from pathlib import Path

    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # The command name in field 2 may hold spaces or parentheses: split after it.
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found
