"""Conveyor's core benchmark: overhead, parallel efficiency, I/O concurrency, coordinator memory
and the licences example, each against peers measured in the same invocation.

Usage::

    python bench/core.py [--quick] [--json OUT] [--only SECTION ...]

Every measurement is repeated and reported as a median; ratios compare medians taken in the
same run, with repetitions of the peers interleaved with Conveyor's so that drift on a shared
machine hits them alike. Every measured Conveyor run gets a fresh ledger (a re-used one would
turn the run into cache hits), except the deliberate re-run in section 5.

Sections:

1. Overhead: N no-op units through a one-step pipeline (SQLite ledger, workers=2) vs a plain
   loop, ``multiprocessing.Pool(2).map`` and Ray local (one task per unit; init excluded).
2. Parallel efficiency: ~20 ms pure-CPU units, workers=2: wall vs ideal (CPU time / 2).
3. I/O-bound: units that sleep 0.1 s on a thread step with concurrency=200.
4. Memory: the coordinator's peak RSS for a small vs a large run (each in a child process).
5. The licences example (``examples/licenses``): Conveyor vs the same step functions in a plain
   sequential loop, and a re-run on the same ledger (all cached).

What is timed: Conveyor, the whole ``pipe.run(...)`` call (ledger creation, planning, forking
the workers, shutdown); ``Pool.map``, pool start-up to pool exit; Ray, first submit to last
result in an already initialised and warmed-up Ray (``_ray_child.py``); the sequential loops,
the loop itself (the licences loop also lists the files and builds the resources).
"""

from __future__ import annotations

import importlib.util
import json
import multiprocessing
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

import _common
from _common import Scratch, calibrate, load_note, median, say, spin, timed
from rich.table import Table

import conveyor as cv
from conveyor.interfaces.export import rows as export_rows
from conveyor.store import open_store

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
EXAMPLE = REPO / "examples" / "licenses" / "pipeline.py"
PREPARE = REPO / "examples" / "licenses" / "prepare.py"
WORKERS = 2
MB = 1024 * 1024

# ------------------------------------------------------------------------------------------------
# Configuration and results
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """Sizes and repetitions; ``--quick`` shrinks them for a smoke run."""

    quick: bool
    overhead_units: int
    overhead_reps: int
    cpu_units: int
    cpu_unit_seconds: float
    cpu_reps: int
    io_units: int
    io_sleep: float
    io_concurrency: int
    io_reps: int
    memory_small: int
    memory_large: int
    memory_reps: int
    example_reps: int
    workers: int = WORKERS

    @classmethod
    def make(cls, quick: bool) -> Config:
        """The full configuration, or the quick one."""
        if quick:
            return cls(
                quick=True,
                overhead_units=2_000,
                overhead_reps=2,
                cpu_units=100,
                cpu_unit_seconds=0.02,
                cpu_reps=1,
                io_units=1_000,
                io_sleep=0.1,
                io_concurrency=200,
                io_reps=1,
                memory_small=1_000,
                memory_large=20_000,
                memory_reps=1,
                example_reps=1,
            )
        return cls(
            quick=False,
            overhead_units=20_000,
            overhead_reps=5,
            cpu_units=400,
            cpu_unit_seconds=0.02,
            cpu_reps=5,
            io_units=1_000,
            io_sleep=0.1,
            io_concurrency=200,
            io_reps=3,
            memory_small=10_000,
            memory_large=200_000,
            memory_reps=3,
            example_reps=5,
        )


@dataclass
class Row:
    """One line of the summary table. ``passed`` is None for a line without a target."""

    section: str
    metric: str
    conveyor: str
    peers: str
    ratio: str
    target: str
    passed: bool | None


Results = _common.Results[Config, Row]


def check_report(report: cv.RunReport, expected_done: int, what: str) -> None:
    """Fail loudly if a measured run did not do what it was asked."""
    done = sum(s.counts.get("done", 0) for s in report.stats)
    if report.state is not cv.RunState.COMPLETED or done != expected_done:
        counts = [s.counts for s in report.stats]
        raise RuntimeError(f"{what}: run {report.run_id} ended {report.state} with {counts}")


# ------------------------------------------------------------------------------------------------
# Pipelines (module level: Conveyor forks its workers, which inherit them)
# ------------------------------------------------------------------------------------------------

noop_pipe = cv.Pipeline("bench-noop")


@noop_pipe.step
def noop(item: Any) -> None:
    """Do nothing: the unit's cost is all framework overhead."""
    return None


#: Loop count of :func:`spin` for one CPU unit; set by :func:`calibrate` before any fork.
SPIN = {"loops": 0}


def burn_cpu(_: Any = None) -> tuple[float, float]:
    """One CPU unit; returns the (CPU, wall) seconds it took."""
    cpu, wall = time.process_time(), time.perf_counter()
    spin(SPIN["loops"])
    return time.process_time() - cpu, time.perf_counter() - wall


cpu_pipe = cv.Pipeline("bench-cpu")


@cpu_pipe.step
def burn(item: Any) -> tuple[float, float]:
    """One CPU unit as a Conveyor step; returns the (CPU, wall) seconds it took."""
    return burn_cpu(item)


#: Seconds each I/O unit sleeps.
IO = {"sleep": 0.1}


def sleep_unit(_: Any = None) -> None:
    """One I/O-bound unit: wait without using the CPU."""
    time.sleep(IO["sleep"])


io_pipes: dict[int, cv.Pipeline] = {}


def io_pipe(concurrency: int) -> cv.Pipeline:
    """A one-step pipeline whose step sleeps on a thread executor with ``concurrency`` threads."""
    if concurrency not in io_pipes:
        pipe = cv.Pipeline("bench-io")

        @pipe.step(executor="thread", concurrency=concurrency)
        def wait_io(item: Any) -> None:
            """Sleep like a remote call would."""
            sleep_unit(item)

        io_pipes[concurrency] = pipe
    return io_pipes[concurrency]


# ------------------------------------------------------------------------------------------------
# Ray peer (a child process, see _ray_child.py)
# ------------------------------------------------------------------------------------------------


class RayPeer:
    """Drives ``bench/_ray_child.py``: Ray is initialised once there and asked to run batches."""

    def __init__(self, cpus: int, log: Path, timeout: float = 300.0) -> None:
        self._timeout = timeout
        self._log_path = log
        self._log: TextIO = log.open("w")
        env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1")
        self._proc = subprocess.Popen(
            [sys.executable, str(BENCH_DIR / "_ray_child.py"), str(cpus)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=env,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            hello = self._answer()
        except RuntimeError:
            self.close()
            raise
        self.init_seconds = float(hello["init_seconds"])
        self.version = str(hello.get("ray", "?"))

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            if line.startswith("@@"):
                self._lines.put(line[2:])
        self._lines.put(None)

    def _answer(self) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=self._timeout)
        except queue.Empty:
            raise RuntimeError(f"Ray did not answer within {self._timeout:.0f} s") from None
        if line is None:
            tail = self._log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the Ray child exited; its stderr ends with:\n{tail}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def run(self, units: int) -> float:
        """Seconds Ray takes to run ``units`` no-op tasks (submit all, get all)."""
        assert self._proc.stdin is not None
        self._proc.stdin.write(f"{units}\n")
        self._proc.stdin.flush()
        return float(self._answer()["seconds"])

    def close(self) -> None:
        """Shut Ray down and wait for the child."""
        try:
            if self._proc.stdin is not None and self._proc.poll() is None:
                self._proc.stdin.write("quit\n")
                self._proc.stdin.close()
            self._proc.wait(timeout=60)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            self._proc.kill()
            self._proc.wait()
        self._log.close()


# ------------------------------------------------------------------------------------------------
# 1. Overhead
# ------------------------------------------------------------------------------------------------


def bench_overhead(cfg: Config, scratch: Scratch, results: Results) -> None:
    """No-op units: Conveyor vs a plain loop, a process pool and Ray."""
    n = cfg.overhead_units
    say(
        f"\n[bold]1. Overhead[/bold]: {n:,} no-op units, workers={cfg.workers}, "
        f"{cfg.overhead_reps} repetitions"
        f"{load_note()}"
    )
    records = [{"value": i} for i in range(n)]

    # Untimed warm-up so lazy imports and first-use costs do not land on repetition 1
    # (Ray gets the same courtesy: its workers are warmed before any measurement).
    warm = scratch.store("warmup")
    noop_pipe.run(range(200), store=warm, workers=cfg.workers)
    scratch.drop(warm)

    ray: RayPeer | None = None
    ray_note = ""
    try:
        ray = RayPeer(cfg.workers, scratch.root / "ray.log")
        say(f"   ray {ray.version}: init + warm-up {ray.init_seconds:.1f} s (not measured)")
    except Exception as exc:  # Ray missing or failing is reported, not fatal
        ray_note = f"{type(exc).__name__}: {exc}"
        say(f"   [yellow]Ray peer unavailable, skipped[/yellow]: {ray_note}")

    samples: dict[str, list[float]] = {"conveyor": [], "loop": [], "pool": [], "ray": []}
    ctx = multiprocessing.get_context("fork")

    def run_pool() -> None:
        with ctx.Pool(cfg.workers) as pool:
            pool.map(noop, records)

    def run_loop() -> None:
        for record in records:
            noop(record)

    try:
        for rep in range(cfg.overhead_reps):
            store = scratch.store("overhead")
            seconds, report = timed(
                lambda store=store: noop_pipe.run(range(n), store=store, workers=cfg.workers)
            )
            check_report(report, n, "overhead")
            scratch.drop(store)
            samples["conveyor"].append(seconds)
            samples["loop"].append(timed(run_loop)[0])
            samples["pool"].append(timed(run_pool)[0])
            if ray is not None:
                samples["ray"].append(ray.run(n))
            line = ", ".join(
                f"{name} {n / values[-1]:,.0f}/s" for name, values in samples.items() if values
            )
            say(f"   rep {rep + 1}: {line}")
    finally:
        if ray is not None:
            ray.close()

    rate = {name: n / median(values) for name, values in samples.items() if values}
    vs_ray = rate["conveyor"] / rate["ray"] if "ray" in rate else None
    say(
        "   median units/s: "
        + ", ".join(f"{name} {value:,.0f}" for name, value in rate.items())
        + (f"; conveyor/ray = {vs_ray:.1f}x" if vs_ray is not None else "")
    )
    results.sections["overhead"] = {
        "units": n,
        "seconds": samples,
        "median_units_per_s": rate,
        "conveyor_over_ray": vs_ray,
        "ray_init_seconds": ray.init_seconds if ray is not None else None,
        "ray_skipped": ray_note or None,
    }
    peers = ", ".join(f"{k} {v:,.0f}" for k, v in rate.items() if k != "conveyor")
    results.rows.append(
        Row(
            "1 overhead",
            f"no-op throughput, {n:,} units (units/s)",
            f"{rate['conveyor']:,.0f}",
            peers,
            f"{rate['conveyor'] / rate['pool']:.2f}x pool",
            ">= 5,000/s",
            rate["conveyor"] >= 5_000,
        )
    )
    results.rows.append(
        Row(
            "1 overhead",
            "throughput vs Ray local (conveyor/ray)",
            f"{rate['conveyor']:,.0f}/s",
            f"ray {rate['ray']:,.0f}/s" if "ray" in rate else "ray: skipped",
            f"{vs_ray:.1f}x" if vs_ray is not None else "n/a",
            ">= 3x",
            vs_ray >= 3 if vs_ray is not None else False,
        )
    )


# ------------------------------------------------------------------------------------------------
# 2. Parallel efficiency
# ------------------------------------------------------------------------------------------------


def bench_cpu(cfg: Config, scratch: Scratch, results: Results) -> None:
    """CPU-bound units on two workers: wall time vs the ideal (CPU seconds / workers).

    The ideal comes from the CPU time each unit measured for itself in the same run (so that
    a slower CPU during the run does not count against Conveyor); the ideal from a sequential
    calibration pass is shown alongside. The units' own wall times give a third reference, the
    "busy ideal": on a shared machine it includes time the workers were descheduled by other
    tenants, so wall / busy-ideal isolates the framework's own gaps (dispatch, commit, tail).
    """
    n = cfg.cpu_units
    SPIN["loops"], per_unit = calibrate(cfg.cpu_unit_seconds, start=20_000, samples=9)
    say(
        f"\n[bold]2. Parallel efficiency[/bold]: {n} units of {per_unit * 1000:.1f} ms CPU "
        f"({SPIN['loops']:,} loops), workers={cfg.workers}, {cfg.cpu_reps} repetitions"
        f"{load_note()}"
    )
    ideal_calibrated = n * per_unit / cfg.workers
    ctx = multiprocessing.get_context("fork")
    runs: dict[str, dict[str, list[float]]] = {
        name: {"wall": [], "unit_cpu": [], "unit_wall": []} for name in ("conveyor", "pool")
    }

    def run_pool() -> list[tuple[float, float]]:
        with ctx.Pool(cfg.workers) as pool:
            return pool.map(burn_cpu, range(n))

    for rep in range(cfg.cpu_reps):
        store = scratch.store("cpu")
        seconds, report = timed(
            lambda store=store: cpu_pipe.run(range(n), store=store, workers=cfg.workers)
        )
        check_report(report, n, "parallel efficiency")
        ledger = open_store(store)
        try:
            units = [row["burn"] for row in export_rows(ledger, report.run_id, ["burn"])]
        finally:
            ledger.close()
        scratch.drop(store)
        pool_seconds, pool_units = timed(run_pool)
        for name, wall, measured in (
            ("conveyor", seconds, units),
            ("pool", pool_seconds, pool_units),
        ):
            runs[name]["wall"].append(wall)
            runs[name]["unit_cpu"].append(sum(u[0] for u in measured))
            runs[name]["unit_wall"].append(sum(u[1] for u in measured))
        say(
            f"   rep {rep + 1}: "
            + ", ".join(
                f"{name} {r['wall'][-1]:.2f} s (ideal {r['unit_cpu'][-1] / cfg.workers:.2f} s, "
                f"busy ideal {r['unit_wall'][-1] / cfg.workers:.2f} s)"
                for name, r in runs.items()
            )
        )
    med = {name: {key: median(values) for key, values in r.items()} for name, r in runs.items()}
    wall = med["conveyor"]["wall"]
    ideal = med["conveyor"]["unit_cpu"] / cfg.workers
    busy = med["conveyor"]["unit_wall"] / cfg.workers
    pool = med["pool"]["wall"]
    pool_ideal = med["pool"]["unit_cpu"] / cfg.workers
    say(
        f"   median: conveyor {wall:.2f} s = {wall / ideal:.3f}x ideal {ideal:.2f} s "
        f"(calibrated ideal {ideal_calibrated:.2f} s: {wall / ideal_calibrated:.3f}x; "
        f"busy ideal {busy:.2f} s: {wall / busy:.3f}x); pool {pool:.2f} s = "
        f"{pool / pool_ideal:.3f}x its ideal; conveyor/pool wall {wall / pool:.3f}x"
    )
    results.sections["cpu"] = {
        "units": n,
        "loops": SPIN["loops"],
        "unit_cpu_seconds_calibrated": per_unit,
        "ideal_seconds_calibrated": ideal_calibrated,
        "runs": runs,
        "medians": med,
        "conveyor_wall_over_ideal": wall / ideal,
        "conveyor_wall_over_calibrated_ideal": wall / ideal_calibrated,
        "conveyor_wall_over_busy_ideal": wall / busy,
        "pool_wall_over_ideal": pool / pool_ideal,
        "conveyor_over_pool_wall": wall / pool,
    }
    results.rows.append(
        Row(
            "2 parallel",
            f"{n} x {per_unit * 1000:.0f} ms CPU, wall / ideal (CPU s / {cfg.workers})",
            f"{wall:.2f} s",
            f"ideal {ideal:.2f} s (calib. {ideal_calibrated:.2f}, busy {busy:.2f}); "
            f"Pool.map {pool:.2f} s = {pool / pool_ideal:.2f}x",
            f"{wall / ideal:.3f}x",
            "<= 1.10x",
            wall / ideal <= 1.10,
        )
    )


# ------------------------------------------------------------------------------------------------
# 3. I/O-bound
# ------------------------------------------------------------------------------------------------


def bench_io(cfg: Config, scratch: Scratch, results: Results) -> None:
    """Sleeping units on a thread step: wall time vs a plain thread pool and sequential."""
    n, c = cfg.io_units, cfg.io_concurrency
    IO["sleep"] = cfg.io_sleep
    pipe = io_pipe(c)
    sequential = n * cfg.io_sleep
    ideal = -(-n // c) * cfg.io_sleep
    say(
        f"\n[bold]3. I/O-bound[/bold]: {n:,} units sleeping {cfg.io_sleep} s, thread step "
        f"concurrency={c}, {cfg.io_reps} repetitions (ideal {ideal:.2f} s)"
        f"{load_note()}"
    )
    conveyor: list[float] = []
    threads: list[float] = []
    for rep in range(cfg.io_reps):
        store = scratch.store("io")
        seconds, report = timed(
            lambda store=store: pipe.run(range(n), store=store, workers=cfg.workers)
        )
        check_report(report, n, "I/O-bound")
        scratch.drop(store)
        conveyor.append(seconds)

        def run_threads() -> None:
            with ThreadPoolExecutor(c) as pool:
                list(pool.map(sleep_unit, range(n)))

        threads.append(timed(run_threads)[0])
        say(
            f"   rep {rep + 1}: conveyor {conveyor[-1]:.2f} s, ThreadPoolExecutor({c}) "
            f"{threads[-1]:.2f} s"
        )
    wall = median(conveyor)
    peer = median(threads)
    say(
        f"   median: conveyor {wall:.2f} s, thread pool {peer:.2f} s, "
        f"sequential {sequential:.0f} s "
        f"(computed) -> speed-up {sequential / wall:.0f}x"
    )
    results.sections["io"] = {
        "units": n,
        "sleep": cfg.io_sleep,
        "concurrency": c,
        "conveyor_seconds": conveyor,
        "thread_pool_seconds": threads,
        "sequential_seconds_computed": sequential,
        "ideal_seconds": ideal,
    }
    results.rows.append(
        Row(
            "3 I/O",
            f"{n:,} x sleep {cfg.io_sleep} s, concurrency {c} (wall)",
            f"{wall:.2f} s",
            f"threads {peer:.2f} s; sequential {sequential:.0f} s",
            f"{sequential / wall:.0f}x vs seq; {wall / peer:.2f}x threads",
            "< 1.5 s",
            wall < 1.5,
        )
    )


# ------------------------------------------------------------------------------------------------
# 4. Memory
# ------------------------------------------------------------------------------------------------


def memory_probe(units: int, store: Path, workers: int) -> dict[str, Any]:
    """Run ``_memory_child.py`` and return its JSON answer."""
    proc = subprocess.run(
        [sys.executable, str(BENCH_DIR / "_memory_child.py"), str(units), str(store), str(workers)],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or ["(no output)"]
        say("[dim]" + "\n".join(lines[-15:]) + "[/dim]")
        raise RuntimeError(f"memory child for {units} units failed: {lines[-1]}")
    answer: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    if answer["state"] != "completed" or answer["done"] != units:
        raise RuntimeError(f"memory child for {units} units: {answer}")
    return answer


def bench_memory(cfg: Config, scratch: Scratch, results: Results) -> None:
    """The coordinator's peak RSS for a small and a large run, each in a fresh process.

    The peak is the child's own high-water mark (``VmHWM``); see ``_memory_child.py`` for why
    ``ru_maxrss`` of a child of this process would hide growth below this process's size.
    Sizes are MiB, printed as MB."""
    small, large = cfg.memory_small, cfg.memory_large
    say(
        f"\n[bold]4. Memory[/bold]: coordinator peak RSS, {small:,} vs {large:,} no-op units, "
        f"workers={cfg.workers}, {cfg.memory_reps} repetitions (each in a child process)"
        f"{load_note()}"
    )
    probes: dict[int, list[dict[str, Any]]] = {small: [], large: []}
    for rep in range(cfg.memory_reps):
        for units in (small, large):
            store = scratch.store(f"memory-{units}")
            probes[units].append(memory_probe(units, store, cfg.workers))
            scratch.drop(store)
        a, b = probes[small][-1], probes[large][-1]
        say(
            f"   rep {rep + 1}: {small:,} units peak {a['peak_rss_kb'] / 1024:.1f} MB "
            f"({a['seconds']:.1f} s), {large:,} units peak {b['peak_rss_kb'] / 1024:.1f} MB "
            f"({b['seconds']:.1f} s, {large / b['seconds']:,.0f} units/s) [dim](ru_maxrss "
            f"{a['ru_maxrss_kb'] / 1024:.1f} / {b['ru_maxrss_kb'] / 1024:.1f} MB, inflated by "
            f"the parent's RSS at exec)[/dim]"
        )
    peak = {u: median([p["peak_rss_kb"] for p in probes[u]]) * 1024 / MB for u in probes}
    base = median([p["base_rss_kb"] for p in probes[small]]) * 1024 / MB
    growth = peak[large] - peak[small]
    say(
        f"   median peak: {peak[small]:.1f} MB vs {peak[large]:.1f} MB -> growth {growth:.1f} MB "
        f"(after import: {base:.1f} MB)"
    )
    results.sections["memory"] = {
        "small_units": small,
        "large_units": large,
        "probes": {str(u): p for u, p in probes.items()},
        "median_peak_mb": {str(u): v for u, v in peak.items()},
        "after_import_mb": base,
        "growth_mb": growth,
    }
    results.rows.append(
        Row(
            "4 memory",
            f"coordinator peak RSS growth, {small:,} -> {large:,} units",
            f"+{growth:.1f} MB",
            f"peak {peak[small]:.1f} MB -> {peak[large]:.1f} MB",
            f"{peak[large] / peak[small]:.2f}x",
            "<= 100 MB",
            growth <= 100,
        )
    )


# ------------------------------------------------------------------------------------------------
# 5. The licences example
# ------------------------------------------------------------------------------------------------


def load_example(path: Path) -> cv.Pipeline:
    """Import the example's file and return the :class:`conveyor.Pipeline` it defines."""
    spec = importlib.util.spec_from_file_location("bench_licenses_pipeline", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module: ModuleType = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    pipes = [v for v in vars(module).values() if isinstance(v, cv.Pipeline)]
    if not pipes:
        raise ImportError(f"{path} defines no conveyor.Pipeline")
    pipe = getattr(module, "pipe", pipes[0])
    return pipe.validate()


def input_files(root: Path) -> Iterator[Path]:
    """The files Conveyor reads from a folder: sorted, hidden entries skipped."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name


class _Failed:
    """Marks a unit that raised (or whose input did) in the sequential baseline."""


FAILED = _Failed()


def file_items(data: Path, paths: Iterable[Path] | None = None) -> list[cv.Item]:
    """Items for the files under ``data`` (or for ``paths`` under it), with Conveyor's ids."""
    return [
        cv.Item(path.relative_to(data).as_posix(), cv.ItemKind.FILE, path=path.resolve())
        for path in (input_files(data) if paths is None else paths)
    ]


def resource_builder(pipe: cv.Pipeline) -> Callable[[str], Any]:
    """A function returning the pipeline's resource of a name, each built once on first use."""
    built: dict[str, Any] = {}

    def resource(name: str) -> Any:
        if name not in built:
            res = pipe.resources[name]
            kwargs = {p.name: resource(p.name) for p in res.params if p.name in pipe.resources}
            built[name] = res.fn(**kwargs)
        return built[name]

    return resource


def run_steps(
    pipe: cv.Pipeline, items: Sequence[cv.Item], resource: Callable[[str], Any]
) -> tuple[dict[str, list[Any]], int]:
    """Run the pipeline's step functions over ``items`` in a plain loop, step by step in
    topological order, batched steps in batches of their ``batch_size``; returns every step's
    outputs (:data:`FAILED` where a unit raised or its input did) and the failed units."""
    graph = pipe.graph
    outputs: dict[str, list[Any]] = {}
    failures = 0
    for name in graph.order:
        node = graph.nodes[name]
        fn = node.step.fn
        shared = {r: resource(r) for r in node.resources}
        columns: list[tuple[str, Sequence[Any]]] = [(up, outputs[up]) for up in node.upstream]
        if node.uses_item:
            columns.insert(0, ("item", items))
        out: list[Any] = [FAILED] * len(items)
        usable = [i for i in range(len(items)) if all(c[i] is not FAILED for _, c in columns)]
        size = node.step.options.batch_size
        if size:
            for start in range(0, len(usable), size):
                batch = usable[start : start + size]
                call = {key: [col[i] for i in batch] for key, col in columns}
                try:
                    values = fn(**call, **shared)
                except Exception:
                    failures += len(batch)
                    continue
                for i, value in zip(batch, values, strict=True):
                    out[i] = value
        else:
            for i in usable:
                try:
                    out[i] = fn(**{key: col[i] for key, col in columns}, **shared)
                except Exception:
                    failures += 1
        outputs[name] = out
    return outputs, failures


def sequential_run(pipe: cv.Pipeline, data: Path) -> dict[str, Any]:
    """Run the pipeline's step functions over every file in a plain loop (:func:`run_steps`).
    Resources are built once. A unit that raises is counted and its dependents are skipped,
    like Conveyor does."""
    started = time.perf_counter()
    items = file_items(data)
    _, failures = run_steps(pipe, items, resource_builder(pipe))
    return {"seconds": time.perf_counter() - started, "failures": failures, "items": len(items)}


def in_fork(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``fn`` in a forked child and return its value: warm caches (``lru_cache`` in the
    example) then never leak into the coordinator that Conveyor's workers are forked from."""
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)

    def target() -> None:
        try:
            send.send(("ok", fn()))
        except BaseException as exc:
            send.send(("error", f"{type(exc).__name__}: {exc}"))

    process = ctx.Process(target=target, name="bench-sequential")
    process.start()
    send.close()
    try:
        status, value = receive.recv()
    except EOFError:
        status, value = "error", "the child died"
    process.join()
    if status != "ok":
        raise RuntimeError(f"sequential baseline failed: {value}")
    result: dict[str, Any] = value
    return result


def bench_example(cfg: Config, scratch: Scratch, results: Results) -> None:
    """The licences example: Conveyor vs a sequential loop of its steps, and a cached re-run."""
    say(f"\n[bold]5. Example[/bold]: {EXAMPLE.relative_to(REPO)}")
    try:
        pipe = load_example(EXAMPLE)
    except Exception as exc:  # the example is someone else's work in progress
        message = f"{type(exc).__name__}: {exc}"
        say(f"   [yellow]skipped: the example does not import yet[/yellow] ({message})")
        results.sections["example"] = {"skipped": message}
        results.rows.append(
            Row("5 example", "licences pipeline", "skipped", message[:60], "", "", None)
        )
        return
    data = scratch.root / "licenses"
    prepared = subprocess.run(
        [sys.executable, str(PREPARE), str(data)], capture_output=True, text=True, check=False
    )
    if prepared.returncode != 0:
        message = (prepared.stderr or prepared.stdout).strip()[-300:]
        say(f"   [yellow]skipped: prepare.py failed[/yellow] ({message})")
        results.sections["example"] = {"skipped": message}
        results.rows.append(
            Row("5 example", "licences pipeline", "skipped", message[:60], "", "", None)
        )
        return
    files = sum(1 for _ in input_files(data))
    steps = list(pipe.graph.order)
    say(
        f"   {files} licence texts, {len(steps)} steps, workers={cfg.workers}, "
        f"{cfg.example_reps} repetitions"
        f"{load_note()}"
    )
    first: list[float] = []
    rerun: list[float] = []
    sequential: list[float] = []
    failed: list[int] = []
    seq_failed: list[int] = []
    for rep in range(cfg.example_reps):
        # Alternate which goes first, so that drift on a shared machine favours neither.
        if rep % 2 == 1:
            seq = in_fork(lambda: sequential_run(pipe, data))
        store = scratch.store("example")
        seconds, report = timed(
            lambda store=store: pipe.run(str(data), store=store, workers=cfg.workers)
        )
        first.append(seconds)
        failed.append(report.failed)
        seconds, again = timed(
            lambda store=store: pipe.run(str(data), store=store, workers=cfg.workers)
        )
        cached = sum(s.counts.get("cached", 0) for s in again.stats)
        if cached != sum(s.total for s in again.stats) - again.failed:
            raise RuntimeError(
                f"the re-run was not all cache hits: {[s.counts for s in again.stats]}"
            )
        rerun.append(seconds)
        scratch.drop(store)
        if rep % 2 == 0:
            seq = in_fork(lambda: sequential_run(pipe, data))
        sequential.append(seq["seconds"])
        seq_failed.append(seq["failures"])
        say(
            f"   rep {rep + 1}: conveyor {first[-1]:.2f} s ({report.items} items, "
            f"{report.failed} failed units), re-run {rerun[-1]:.3f} s, sequential loop "
            f"{sequential[-1]:.2f} s ({seq['failures']} failed units)"
        )
    run, again_s, seq_s = median(first), median(rerun), median(sequential)
    say(
        f"   median: conveyor {run:.2f} s, sequential {seq_s:.2f} s -> speed-up "
        f"{seq_s / run:.2f}x; re-run {again_s:.3f} s = {again_s / run:.1%} of the first run"
    )
    results.sections["example"] = {
        "files": files,
        "steps": steps,
        "conveyor_seconds": first,
        "rerun_seconds": rerun,
        "sequential_seconds": sequential,
        "conveyor_failed_units": failed,
        "sequential_failed_units": seq_failed,
    }
    results.rows.append(
        Row(
            "5 example",
            f"licences, {files} files x {len(steps)} steps (wall)",
            f"{run:.2f} s",
            f"sequential loop {seq_s:.2f} s",
            f"{seq_s / run:.2f}x speed-up",
            "(info)",
            None,
        )
    )
    results.rows.append(
        Row(
            "5 example",
            "re-run on the same ledger, all cached (wall)",
            f"{again_s:.3f} s",
            f"first run {run:.2f} s",
            f"{again_s / run:.1%}",
            "< 10% of first",
            again_s / run < 0.10,
        )
    )


# ------------------------------------------------------------------------------------------------
# Driver
# ------------------------------------------------------------------------------------------------


SECTIONS: dict[str, Callable[[Config, Scratch, Results], None]] = {
    "overhead": bench_overhead,
    "cpu": bench_cpu,
    "io": bench_io,
    "memory": bench_memory,
    "example": bench_example,
}


def summary_table(results: Results) -> Table:
    """The final table: one line per metric with its target and verdict."""
    title = "Conveyor core benchmark (medians)" + (" - QUICK sizes" if results.config.quick else "")
    return _common.summary_table(
        title,
        (
            ("section", "left"),
            ("metric", "left"),
            ("conveyor", "right"),
            ("peer(s)", "left"),
            ("ratio", "right"),
            ("target", "left"),
        ),
        (
            ((r.section, r.metric, r.conveyor, r.peers, r.ratio, r.target), r.passed)
            for r in results.rows
        ),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run every section, print the summary table, write ``--json``; returns the exit status."""
    return _common.main(
        argv,
        doc=__doc__,
        name="core benchmark",
        sections=SECTIONS,
        make_config=Config.make,
        failed_row=lambda name, error: Row(name, "section failed", "error", error, "", "", False),
        table=summary_table,
        scratch_prefix="conveyor-bench-",
    )


if __name__ == "__main__":
    sys.exit(main())
