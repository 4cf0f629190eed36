"""Conveyor against its peers: the same workloads on every backend, side by side in one run.

Usage::

    python bench/peers.py [--quick] [--repeats N] [--json OUT]
                          [--only WORKLOAD ...] [--backend NAME ...]
                          [--redis-url URL] [--pg-url URL]

Backends (each repetition starts every backend afresh in its own child process,
``_peers_child.py``, in an order rotated from one repetition to the next so that drift on a
shared machine hits them alike):

* ``conveyor``: Conveyor local, ``pipe.run(records, store=fresh SQLite ledger, workers=N)``;
* ``conveyor-ray``: the same with ``executor="ray"`` (n/a until Conveyor has it);
* ``conveyor-pg``: the same with a PostgreSQL ledger, a fresh database per run (n/a until
  Conveyor has a PostgreSQL store);
* ``ray``: raw Ray, ``ray.remote`` per unit, ``ray.init(num_cpus=N)``;
* ``dask``: Dask distributed, ``LocalCluster(n_workers=N, threads_per_worker=1)``;
* ``celery``: a ``celery worker --pool=prefork --concurrency=N`` with Redis as broker and
  result backend (a database of its own, the only one flushed);
* ``pool``: ``multiprocessing.Pool(N).map``;
* ``sequential``: a plain loop.

N is the CPU count. Workloads (the same functions, ``_units.py``, and records for everyone):

* ``noop``: 20,000 no-op units;
* ``cpu``: 400 units of ~20 ms pure-Python CPU (a busy loop calibrated once, here);
* ``io``: 1,000 units of ``time.sleep(0.1)``, each backend in its I/O-friendly mode at
  concurrency 200: Conveyor's thread step (``executor="thread", concurrency=200``), Ray threaded
  actors, a Dask cluster of the same N processes with 200 threads in all, a Celery worker with
  ``--pool=threads --concurrency=200``, ``ThreadPool(200)``; the sequential time is computed;
* ``example``: the licences example (708 SPDX texts x 11 steps): Conveyor, the sequential step
  loop of ``bench/core.py`` and ``multiprocessing.Pool`` running every step for chunks of
  files; n/a for raw Ray, Dask and Celery (it would be a hand-written port of the pipeline).

What is timed: from the first submit to the last result collected (for Conveyor: the whole
``pipe.run`` call, forking its workers included, every result committed to the ledger; for
``Pool``, creating the pool to its exit). Not timed, and reported apart: ``ray.init``, starting
the Dask cluster or the Celery worker, and one warm-up batch per backend.

Every figure is the median of the repetitions. The targets of issue #6 are checked at the end;
a missed target is reported with the measurements that explain it, not tuned away.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _common import Scratch, calibrate, console, environment, load_note, median, say
from rich.console import JustifyMethod
from rich.markup import escape
from rich.table import Table

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
PREPARE = REPO / "examples" / "licenses" / "prepare.py"
WORKERS = os.cpu_count() or 2

#: Backend name -> label in the tables, in the order of the tables.
BACKENDS = {
    "conveyor": "conveyor local",
    "conveyor-ray": "conveyor on Ray",
    "conveyor-pg": "conveyor local, PostgreSQL store",
    "ray": "raw Ray",
    "dask": "Dask distributed",
    "celery": "Celery + Redis",
    "pool": "multiprocessing.Pool",
    "sequential": "sequential loop",
}
WORKLOADS = ("noop", "cpu", "io", "example")
BASELINE = "conveyor"


@dataclass(frozen=True)
class Config:
    """Sizes and repetitions; ``--quick`` shrinks them for a smoke run."""

    quick: bool
    repeats: int
    noop_units: int
    cpu_units: int
    cpu_unit_seconds: float
    io_units: int
    io_sleep: float
    io_concurrency: int
    example_files: int | None  # None: all of them
    warmup_units: int
    workers: int = WORKERS
    redis_url: str = "redis://127.0.0.1:6379/12"
    pg_url: str = "postgresql://postgres@127.0.0.1:5432"

    @classmethod
    def make(cls, quick: bool, **overrides: Any) -> Config:
        """The full configuration, or the quick one, with ``overrides``."""
        sizes: dict[str, Any] = (
            dict(repeats=1, noop_units=1_000, cpu_units=40, io_units=400, example_files=100)
            if quick
            else dict(
                repeats=3, noop_units=20_000, cpu_units=400, io_units=1_000, example_files=None
            )
        )
        sizes.update({k: v for k, v in overrides.items() if v is not None})
        return cls(
            quick=quick,
            cpu_unit_seconds=0.02,
            io_sleep=0.1,
            io_concurrency=200,
            warmup_units=50 if quick else 200,
            **sizes,
        )


# ------------------------------------------------------------------------------------------------
# What the children report
# ------------------------------------------------------------------------------------------------


@dataclass
class Measurements:
    """Everything the children reported, by workload and backend."""

    results: dict[str, dict[str, list[dict[str, Any]]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )
    na: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))
    errors: dict[str, dict[str, list[str]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )
    startup: dict[str, dict[str, list[float]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )

    def wall(self, workload: str, backend: str) -> float | None:
        """Median seconds, or None if it was not measured."""
        runs = self.results[workload].get(backend)
        return median([r["seconds"] for r in runs]) if runs else None

    def units(self, workload: str, backend: str) -> int:
        """Units per run."""
        return int(self.results[workload][backend][0]["units"])

    def rate(self, workload: str, backend: str) -> float | None:
        """Median units per second, or None."""
        wall = self.wall(workload, backend)
        return self.units(workload, backend) / wall if wall else None

    def why_missing(self, workload: str, backend: str) -> str:
        """Why a backend has no figure for a workload."""
        if backend in self.na[workload]:
            return f"{BACKENDS[backend]}: n/a ({self.na[workload][backend]})"
        if self.errors[workload].get(backend):
            return f"{BACKENDS[backend]}: failed ({self.errors[workload][backend][-1]})"
        return f"{BACKENDS[backend]}: not run"

    def to_json(self) -> dict[str, Any]:
        """Plain dicts for ``--json``."""
        return {
            "results": {w: dict(b) for w, b in self.results.items()},
            "not_available": {w: dict(b) for w, b in self.na.items()},
            "errors": {w: dict(b) for w, b in self.errors.items()},
            "startup_seconds": {b: dict(s) for b, s in self.startup.items()},
        }


# ------------------------------------------------------------------------------------------------
# Running one backend in a child process
# ------------------------------------------------------------------------------------------------


def child_events(spec: dict[str, Any], folder: Path, timeout: float) -> Iterator[dict[str, Any]]:
    """Run ``_peers_child.py`` on ``spec`` and yield its events as they come. Its stderr goes
    to ``folder/child.log``; past ``timeout`` it gets SIGTERM (it then shuts its backend down),
    30 s later SIGKILL, and an ``error`` event is yielded."""
    spec_path = folder / "spec.json"
    spec_path.write_text(json.dumps(spec))
    log_path = folder / "child.log"
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(p for p in (str(BENCH_DIR), os.environ.get("PYTHONPATH")) if p),
        PYTHONUNBUFFERED="1",
        RAY_USAGE_STATS_ENABLED="0",
        PEERS_REDIS_URL=spec["redis_url"],
    )
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, str(BENCH_DIR / "_peers_child.py"), str(spec_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
        )
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()

    timer = threading.Timer(timeout, expire)
    timer.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("@@"):
                yield json.loads(line[2:])
        proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:  # interrupted: let the child stop what it started
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    if expired.is_set():
        yield {"event": "error", "workload": "*", "error": f"timed out after {timeout:.0f} s"}
    elif proc.returncode != 0:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-12:]
        say("[dim]" + escape("\n".join(tail)) + "[/dim]")
        yield {"event": "error", "workload": "*", "error": f"child exited {proc.returncode}"}


def run_backend(
    backend: str,
    cfg: Config,
    workloads: Sequence[str],
    loops: int,
    data: Path | None,
    folder: Path,
    found: Measurements,
) -> None:
    """One fresh child process for ``backend``: every workload once, recorded in ``found``."""
    spec = {
        "backend": backend,
        "workloads": list(workloads),
        "workers": cfg.workers,
        "noop_units": cfg.noop_units,
        "cpu_units": cfg.cpu_units,
        "cpu_loops": loops,
        "io_units": cfg.io_units,
        "io_sleep": cfg.io_sleep,
        "io_concurrency": cfg.io_concurrency,
        "warmup_units": cfg.warmup_units,
        "example_data": str(data) if data is not None else None,
        "scratch": str(folder),
        "redis_url": cfg.redis_url,
        "pg_url": cfg.pg_url,
    }
    label = BACKENDS[backend]
    timeout = 300.0 if cfg.quick else 3600.0
    for event in child_events(spec, folder, timeout):
        kind, workload = event["event"], str(event.get("workload", "*"))
        shown = "every workload" if workload == "*" else workload
        if kind == "startup":
            found.startup[backend][event["what"]].append(event["seconds"])
            what = escape(event["what"])
            say(f"   [dim]{label}: {what} {event['seconds']:.2f} s (not timed)[/dim]")
        elif kind == "result":
            found.results[workload][backend].append(event)
            computed = " (computed)" if event.get("computed") else ""
            say(
                f"   {label}, {workload}: {event['seconds']:.3f} s{computed}, "
                f"{event['units'] / event['seconds']:,.0f} units/s"
            )
        elif kind == "na":
            for name in workloads if workload == "*" else [workload]:
                found.na[name][backend] = event["reason"]
            say(f"   [yellow]{label}, {shown}: n/a[/yellow] ({escape(event['reason'])})")
        elif kind == "error":
            for name in workloads if workload == "*" else [workload]:
                found.errors[name][backend].append(event["error"])
            say(f"   [red]{label}, {shown}: failed[/red]: {escape(event['error'])}")


def prepare_example(scratch: Scratch, files: int | None) -> Path | None:
    """The licence texts, written by the example's ``prepare.py``; with ``files``, a folder of
    only the first ``files`` of them. None (and a note) if they cannot be prepared."""
    data = scratch.folder("licenses")
    done = subprocess.run(
        [sys.executable, str(PREPARE), str(data)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        message = (done.stderr or done.stdout).strip()[-300:]
        say(f"   [yellow]the example is n/a: prepare.py failed[/yellow] ({escape(message)})")
        return None
    if files is None:
        return data
    subset = scratch.folder(f"licenses-{files}")
    for path in sorted(p for p in data.iterdir() if not p.name.startswith("."))[:files]:
        shutil.copy2(path, subset / path.name)
    return subset


# ------------------------------------------------------------------------------------------------
# Tables and targets
# ------------------------------------------------------------------------------------------------


def workload_title(workload: str, cfg: Config, per_unit: float, found: Measurements) -> str:
    """What a workload's table measures."""
    if workload == "noop":
        return f"{cfg.noop_units:,} no-op units"
    if workload == "cpu":
        return f"{cfg.cpu_units:,} units of ~{per_unit * 1000:.0f} ms CPU"
    if workload == "io":
        ideal = math.ceil(cfg.io_units / cfg.io_concurrency) * cfg.io_sleep
        return (
            f"{cfg.io_units:,} units of time.sleep({cfg.io_sleep}), concurrency "
            f"{cfg.io_concurrency} (ideal {ideal:.2f} s)"
        )
    runs = found.results["example"].get(BASELINE) or found.results["example"].get("sequential")
    size = f": {runs[0]['units']:,} units (files x steps)" if runs else ""
    return f"the licences example{size}"


def note(workload: str, backend: str, cfg: Config, found: Measurements) -> str:
    """The last column: what explains the figure."""
    runs = found.results[workload][backend]
    parts = []
    if workload == "noop":
        parts.append(f"{median([r['seconds'] / r['units'] for r in runs]) * 1e6:.0f} us/unit")
    if workload == "cpu" and all(r.get("unit_cpu") for r in runs):
        over = median([r["seconds"] / (r["unit_cpu"] / cfg.workers) for r in runs])
        parts.append(f"{over:.2f}x its ideal (its units' CPU s / {cfg.workers})")
    if any(r.get("computed") for r in runs):
        parts.append("computed: units x sleep")
    if any(r.get("failed") for r in runs):
        parts.append(f"{max(r['failed'] for r in runs)} failed units")
    return "; ".join(parts)


def times(ratio: float) -> str:
    """A ratio for a table: two decimals, or two significant digits when it is tiny."""
    return f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.2g}x"


def columns(table: Table, spec: Sequence[tuple[str, JustifyMethod]]) -> Table:
    """Add the named columns, each justified as given."""
    for name, justify in spec:
        table.add_column(name, justify=justify)
    return table


def workload_table(workload: str, cfg: Config, per_unit: float, found: Measurements) -> Table:
    """One workload: every backend's median wall time, units/s and ratio to Conveyor local."""
    title = f"{workload}: {workload_title(workload, cfg, per_unit, found)}"
    table = columns(
        Table(title=title),
        [
            ("backend", "left"),
            ("mode", "left"),
            ("wall s (median)", "right"),
            ("units/s", "right"),
            ("wall / conveyor local", "right"),
            ("note", "left"),
        ],
    )
    base = found.wall(workload, BASELINE)
    for backend, label in BACKENDS.items():
        wall = found.wall(workload, backend)
        if wall is None:
            if backend in found.na[workload]:
                table.add_row(label, "", "n/a", "", "", "[dim]not measured: see below[/dim]")
            elif found.errors[workload].get(backend):
                table.add_row(label, "", "[red]failed[/red]", "", "", "[dim]see above[/dim]")
            continue
        runs = found.results[workload][backend]
        rate = found.units(workload, backend) / wall
        table.add_row(
            label,
            escape(runs[0]["mode"]),
            f"{wall:.3f}" if wall >= 0.01 else f"{wall:.2g}",
            f"{rate:,.0f}",
            times(wall / base) if base else "-",
            escape(note(workload, backend, cfg, found)),
        )
    return table


def not_measured_table(found: Measurements, workloads: Sequence[str]) -> Table:
    """Each backend and workload without a figure, with the reason, said once per reason."""
    table = Table(title="not measured (n/a)")
    table.add_column("backend")
    table.add_column("workloads")
    table.add_column("why")
    for backend, label in BACKENDS.items():
        reasons: dict[str, list[str]] = defaultdict(list)
        for workload in workloads:
            if backend in found.na[workload]:
                reasons[found.na[workload][backend]].append(workload)
        for reason, names in reasons.items():
            shown = "all" if len(names) == len(workloads) > 1 else ", ".join(names)
            table.add_row(label, shown, escape(reason))
    return table


def startup_table(found: Measurements) -> Table:
    """What was started outside the timed sections, and how long it took (medians)."""
    table = Table(title="start-up, not timed (medians)")
    table.add_column("backend")
    table.add_column("step")
    table.add_column("s", justify="right")
    for backend, label in BACKENDS.items():
        for what, seconds in found.startup.get(backend, {}).items():
            table.add_row(label, escape(what), f"{median(seconds):.2f}")
    return table


@dataclass
class Target:
    """One target of issue #6: what was measured, the verdict (None: could not be measured)
    and, for a miss or an n/a, why."""

    target: str
    measured: str
    ratio: str
    passed: bool | None
    reason: str = ""


def targets(cfg: Config, found: Measurements) -> list[Target]:
    """The targets of issue #6, each with its measured ratio and verdict."""
    out = []

    def check(
        target: str,
        workload: str,
        a: str,
        b: str,
        ratio_of: Callable[[float, float], float],
        limit: Callable[[float], bool],
        shown: str,
        why: Callable[[float, float], str],
    ) -> None:
        wa, wb = found.wall(workload, a), found.wall(workload, b)
        if wa is None or wb is None:
            missing = [found.why_missing(workload, x) for x, w in ((a, wa), (b, wb)) if w is None]
            out.append(Target(target, "", "", None, "; ".join(missing)))
            return
        ratio = ratio_of(wa, wb)
        passed = limit(ratio)
        measured = f"{BACKENDS[a]} {wa:.3f} s, {BACKENDS[b]} {wb:.3f} s"
        out.append(
            Target(target, measured, shown.format(ratio), passed, "" if passed else why(wa, wb))
        )

    n_noop, n_cpu = cfg.noop_units, cfg.cpu_units

    def cpu_why(wa: float, wb: float) -> str:
        ideal = {
            b: median([r["seconds"] / (r["unit_cpu"] / cfg.workers) for r in runs])
            for b, runs in found.results["cpu"].items()
            if runs and all(r.get("unit_cpu") for r in runs)
        }
        over = ideal.get("conveyor-ray"), ideal.get("ray")
        shape = f" (wall/ideal {over[0]:.2f}x vs {over[1]:.2f}x)" if None not in over else ""
        return (
            f"{(wa - wb) / n_cpu * 1000:.1f} ms more per unit than raw Ray{shape}: Conveyor's "
            f"dispatch and ledger commits on top of Ray's own task overhead"
        )

    check(
        "conveyor on Ray <= 1.2x raw Ray's wall, CPU workload",
        "cpu", "conveyor-ray", "ray",
        lambda a, b: a / b, lambda r: r <= 1.2, "{:.2f}x", cpu_why,
    )  # fmt: skip
    check(
        "conveyor on Ray faster than raw Ray, no-op workload (packing)",
        "noop", "conveyor-ray", "ray",
        lambda a, b: b / a, lambda r: r > 1.0, "{:.2f}x as fast",
        lambda a, b: (
            f"{a / n_noop * 1e6:.0f} us/unit vs raw Ray's {b / n_noop * 1e6:.0f}: packing units "
            f"into tasks does not pay for the per-unit ledger work at this size"
        ),
    )  # fmt: skip
    check(
        "conveyor local >= 3x raw Ray's units/s, no-op workload",
        "noop", "conveyor", "ray",
        lambda a, b: b / a, lambda r: r >= 3.0, "{:.2f}x",
        lambda a, b: (
            f"{a / n_noop * 1e6:.0f} us/unit vs raw Ray's {b / n_noop * 1e6:.0f}"
            + (": fixed costs (forking workers, creating the ledger) dominate at --quick sizes"
               if cfg.quick else ": per-unit planning and ledger commits")
        ),
    )  # fmt: skip
    check(
        "conveyor local >= 2x Celery's units/s, no-op workload",
        "noop", "conveyor", "celery",
        lambda a, b: b / a, lambda r: r >= 2.0, "{:.2f}x",
        lambda a, b: (
            f"{a / n_noop * 1e6:.0f} us/unit vs Celery's {b / n_noop * 1e6:.0f}"
            + (": fixed costs dominate at --quick sizes" if cfg.quick else "")
        ),
    )  # fmt: skip
    check(
        "PostgreSQL store >= 0.5x the SQLite store's units/s, no-op workload",
        "noop", "conveyor-pg", "conveyor",
        lambda a, b: b / a, lambda r: r >= 0.5, "{:.2f}x",
        lambda a, b: (
            f"{a / n_noop * 1e6:.0f} us/unit vs SQLite's {b / n_noop * 1e6:.0f}: every ledger "
            f"write is a round trip to the server instead of a local file write"
        ),
    )  # fmt: skip
    return out


def targets_table(rows: Sequence[Target], quick: bool) -> Table:
    """The targets with their verdicts."""
    title = "targets of issue #6 (medians)" + (
        " - QUICK sizes: fixed costs dominate, indicative only" if quick else ""
    )
    table = columns(
        Table(title=title),
        [
            ("target", "left"),
            ("measured", "left"),
            ("ratio", "right"),
            ("result", "center"),
            ("why (for a miss or an n/a)", "left"),
        ],
    )
    for row in rows:
        verdict = (
            "[dim]n/a[/dim]"
            if row.passed is None
            else "[green]PASS[/green]"
            if row.passed
            else "[red]MISS[/red]"
        )
        table.add_row(
            escape(row.target), escape(row.measured), row.ratio, verdict, escape(row.reason)
        )
    return table


# ------------------------------------------------------------------------------------------------
# Driver
# ------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one repetition")
    parser.add_argument("--repeats", type=int, help="repetitions (default 3; --quick: 1)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the numbers to OUT")
    parser.add_argument(
        "--only", action="append", choices=WORKLOADS, help="this workload only (repeatable)"
    )
    parser.add_argument(
        "--backend", action="append", choices=list(BACKENDS), help="this backend only (repeatable)"
    )
    parser.add_argument(
        "--redis-url",
        default=Config.redis_url,
        help="Redis for Celery, a database of its own: it is flushed (default: %(default)s)",
    )
    parser.add_argument(
        "--pg-url",
        default=Config.pg_url,
        help="PostgreSQL server for conveyor-pg; a fresh database is created and dropped per run "
        "(default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run every backend on every workload, print the tables and the targets, write ``--json``;
    returns 1 if a backend failed (n/a is not a failure), else 0."""
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C: the running child is told to stop what it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    cfg = Config.make(
        args.quick, repeats=args.repeats, redis_url=args.redis_url, pg_url=args.pg_url
    )
    workloads = [w for w in WORKLOADS if not args.only or w in args.only]
    backends = [b for b in BACKENDS if not args.backend or b in args.backend]
    env = environment()
    say(
        f"Conveyor {env['conveyor']} peers benchmark{' (--quick)' if cfg.quick else ''}: "
        f"Python {env['python']}, {env['cpu_count']} CPUs, load {env['loadavg_at_start'][0]:.2f}; "
        f"{cfg.workers} worker processes for every backend, {cfg.repeats} repetition(s)"
    )
    found = Measurements()
    scratch = Scratch("conveyor-peers-")
    started = time.perf_counter()
    try:
        loops, per_unit = calibrate(cfg.cpu_unit_seconds, start=20_000, samples=9)
        say(f"   CPU unit: {loops:,} loops of the busy loop = {per_unit * 1000:.1f} ms CPU")
        data = prepare_example(scratch, cfg.example_files) if "example" in workloads else None
        for rep in range(cfg.repeats):
            shift = rep % len(backends)
            order = backends[shift:] + backends[:shift]
            say(f"\n[bold]repetition {rep + 1}/{cfg.repeats}[/bold]{load_note()}")
            for backend in order:
                if all(backend in found.na[w] for w in workloads):
                    continue  # not available here: said once
                todo = [w for w in workloads if backend not in found.na[w]]
                folder = scratch.folder(f"{backend}-{rep + 1}")
                run_backend(backend, cfg, todo, loops, data, folder, found)
                scratch.drop(folder)
    finally:
        scratch.close()
    total = time.perf_counter() - started
    console.print()
    for workload in workloads:
        console.print(workload_table(workload, cfg, per_unit, found))
    if any(found.na[w] for w in workloads):
        console.print(not_measured_table(found, workloads))
    console.print(startup_table(found))
    verdicts = targets(cfg, found)
    console.print(targets_table(verdicts, cfg.quick))
    say(f"total {total:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "config": asdict(cfg),
            "environment": {**env, "total_seconds": total},
            "cpu_unit": {"loops": loops, "cpu_seconds": per_unit},
            **found.to_json(),
            "medians": {
                w: {
                    b: {"seconds": found.wall(w, b), "units_per_s": found.rate(w, b)}
                    for b in found.results[w]
                }
                for w in workloads
            },
            "targets": [asdict(t) for t in verdicts],
        }
        args.json.write_text(json.dumps(record, indent=2, default=str) + "\n")
        say(f"wrote {args.json}")
    return 1 if any(found.errors[w] for w in workloads) else 0


if __name__ == "__main__":
    sys.exit(main())
