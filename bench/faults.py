"""Conveyor's fault-tolerance benchmark: recovery after a worker is killed, the cost of leases
and heartbeats, and a long chaos run with worker and coordinator kills.

Usage::

    python bench/faults.py [--quick] [--json OUT] [--only SECTION ...]

Like ``bench/core.py``, every measurement is repeated and reported as a median (the machine is
shared and noisy: 2 cores, other work beside us), the variants compared are interleaved within
each repetition, and every run gets a fresh ledger.

Sections:

1. Recovery: a one-step pipeline of ~1 ms CPU units on two workers, run with ``conveyor run``
   in a subprocess. After ~4 s (and at least 2.5 s after the first unit finished) one worker
   process, a child of the coordinator, is killed with SIGKILL. From the ledger's per-unit
   ``finished_at`` (commit times) throughput is counted in 250 ms windows: the pre-kill rate is
   the median window over the 2 s before the kill; recovery is the start of the first window
   after the kill at >= 0.9x that rate whose next 2 s average >= 0.9x too. The target is
   2x the lease (visibility timeout, ``scheduling.scheduler.LEASE_SECONDS``); a dead worker is
   noticed by its process sentinel, not by an expired lease, so the real figure is far lower.
   The time until the replacement worker process appears is measured by polling ``/proc``.
2. Durability overhead: no-op units through ``pipe.run(..., workers=2)`` with leases and
   heartbeats as shipped, vs the same run with heartbeats made inert (``HEARTBEAT_SECONDS``
   = 1e9, in that measurement only), vs the rate recorded in BENCHMARKS.md before leases and
   heartbeats existed. A third variant beats every 50 ms, to show what a heartbeat costs at
   all (for information: a 20,000-unit run lasts about a second, less than one heartbeat
   period, so as shipped no heartbeat fires in it; the number that fired is printed).
3. Chaos: ``tests/acceptance/test_chaos.py`` scaled up (3,000 items x 3 steps, 100 worker
   SIGKILLs, 3 coordinator SIGKILLs continued alternately by ``conveyor run`` again and by
   ``conveyor resume``). Counts lost units, duplicated results and export rows, units
   re-executed after a failed attempt, every execution started (each step appends a line to a
   log, so work repeated because of kills is counted too), dead units and their attempts.
"""

from __future__ import annotations

import math
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import _common
from _common import Scratch, calibrate, load_note, median, say, timed
from rich.markup import escape
from rich.table import Table

import conveyor as cv
import conveyor.scheduling.scheduler as scheduler
from conveyor.store.sqlite import SQLiteStore

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
WORKERS = 2

#: No-op throughput before leases and heartbeats existed: BENCHMARKS.md, "Core engine" table,
#: overhead row (20,000 no-op units, one step, workers=2, ``bench/core.py`` full run measured
#: 2026-11-22 at commit 940964b, before f814a68 added crash recovery: leases and heartbeats).
PRE_LEASE_NOOP_RATE = 19_677.0
#: Throughput windows of the recovery section.
WINDOW = 0.25
#: The pre-kill rate is the median window over this many seconds before the kill.
PRE_KILL_SECONDS = 2.0
#: Recovered: a window at this fraction of the pre-kill rate, and the next ones on average.
RECOVERED = 0.9
#: "On average": over this many seconds from the recovered window.
SETTLE_SECONDS = 2.0
#: Most durable runs may lose to the inert-heartbeat run.
MAX_SLOWDOWN = 0.15
#: A heartbeat period that makes heartbeats fire often enough to see their cost.
STRESS_HEARTBEAT = 0.05

# ------------------------------------------------------------------------------------------------
# Configuration and results
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """Sizes and repetitions; ``--quick`` shrinks them for a smoke run."""

    quick: bool
    recovery_units: int
    recovery_unit_seconds: float
    recovery_kill_after: float
    recovery_reps: int
    overhead_units: int
    overhead_reps: int
    chaos_items: int
    chaos_worker_kills: int
    chaos_coordinator_kills: int
    chaos_reps: int
    chaos_timeout: float
    workers: int = WORKERS

    @classmethod
    def make(cls, quick: bool) -> Config:
        """The full configuration, or the quick one."""
        if quick:
            return cls(
                quick=True,
                recovery_units=8_000,
                recovery_unit_seconds=0.001,
                recovery_kill_after=3.0,
                recovery_reps=1,
                overhead_units=5_000,
                overhead_reps=2,
                chaos_items=600,
                chaos_worker_kills=20,
                chaos_coordinator_kills=2,
                chaos_reps=1,
                chaos_timeout=120.0,
            )
        return cls(
            quick=False,
            recovery_units=20_000,
            recovery_unit_seconds=0.001,
            recovery_kill_after=4.0,
            recovery_reps=3,
            overhead_units=20_000,
            overhead_reps=5,
            chaos_items=3_000,
            chaos_worker_kills=100,
            chaos_coordinator_kills=3,
            chaos_reps=2,
            chaos_timeout=600.0,
        )


Row = _common.MetricRow


Results = _common.Results[Config, Row]


# ------------------------------------------------------------------------------------------------
# Processes and the ledger
# ------------------------------------------------------------------------------------------------


def query(ledger: Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` on the ledger, or none while it does not exist or cannot be read yet."""
    if not ledger.exists():
        return []
    try:
        db = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=10)
        try:
            return db.execute(sql, params).fetchall()
        finally:
            db.close()
    except sqlite3.OperationalError:
        return []


def finished_units(ledger: Path) -> int:
    """Units in a final state."""
    rows = query(ledger, "SELECT count(*) FROM units WHERE state IN ('done', 'dead', 'skipped')")
    return int(rows[0][0]) if rows else 0


CLI_ENV = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}


def start_cli(args: Sequence[str], cwd: Path, log: IO[str]) -> subprocess.Popen[str]:
    """Start ``python -m conveyor ARGS --no-progress`` in ``cwd``, its output going to ``log``."""
    log.write(f"$ conveyor {' '.join(args)} --no-progress\n")
    log.flush()
    return subprocess.Popen(
        [sys.executable, "-m", "conveyor", *args, "--no-progress"],
        cwd=cwd,
        env=CLI_ENV,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )


def stop(proc: subprocess.Popen[str]) -> None:
    """Kill a process this benchmark started, if it still runs, and reap it."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log file, for an error message."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# ------------------------------------------------------------------------------------------------
# 1. Recovery after a worker kill
# ------------------------------------------------------------------------------------------------

RECOVERY_PIPELINE = """
import conveyor as cv

LOOPS = {loops}

pipe = cv.Pipeline("bench-faults-recovery")


@pipe.step(retries=3)
def burn(item: cv.Item) -> int:
    x = 0
    for i in range(LOOPS):
        x ^= i
    return x
"""


def window_rates(times: Sequence[float], start: float, count: int) -> list[float]:
    """Units per second in ``count`` consecutive windows of :data:`WINDOW` from ``start``."""
    counts = [0] * count
    for t in times:
        k = math.floor((t - start) / WINDOW)
        if 0 <= k < count:
            counts[k] += 1
    return [c / WINDOW for c in counts]


def analyse_recovery(finished: Sequence[float], kill_at: float) -> dict[str, Any]:
    """Pre-kill rate, post-kill windows and recovery time from the units' commit times."""
    pre = window_rates(finished, kill_at - PRE_KILL_SECONDS, round(PRE_KILL_SECONDS / WINDOW))
    full = max(0, math.floor((max(finished) - kill_at) / WINDOW))  # whole windows only
    post = window_rates(finished, kill_at, full)
    pre_rate = median(pre)
    threshold = RECOVERED * pre_rate
    settle = round(SETTLE_SECONDS / WINDOW)
    recovered: int | None = None
    for k, rate in enumerate(post):
        if rate >= threshold and statistics.fmean(post[k : k + settle]) >= threshold:
            recovered = k
            break
    until = recovered if recovered is not None else len(post)
    deficit = sum(max(0.0, pre_rate - rate) * WINDOW for rate in post[: until + 1])
    return {
        "pre_rates": pre,
        "pre_rate": pre_rate,
        "threshold": threshold,
        "post_rates": post[:24],
        "post_windows": len(post),
        "recovered_window": recovered,
        "recovery_seconds": None if recovered is None else recovered * WINDOW,
        "dip_rate": min(post[:4]) if post else None,
        "deficit_units": deficit,
    }


def recovery_run(
    cfg: Config, folder: Path, pipeline: Path, items: Path, rng: random.Random
) -> dict[str, Any]:
    """One ``conveyor run`` with one worker killed: the kill's timing and the ledger's times."""
    store = folder / "ledger.db"
    log_path = folder / "coordinator.log"
    args = ["run", str(pipeline), "-i", str(items), "--id-field", "id"]
    args += ["-w", str(cfg.workers), "--store", str(store)]
    with log_path.open("w") as log:
        started = time.time()
        proc = start_cli(args, folder, log)
        try:
            first_done: float | None = None
            while proc.poll() is None:
                if first_done is None:
                    rows = query(store, "SELECT min(finished_at) FROM units WHERE state = 'done'")
                    if rows and rows[0][0] is not None:
                        first_done = float(rows[0][0])
                if first_done is not None and time.time() >= max(
                    started + cfg.recovery_kill_after, first_done + PRE_KILL_SECONDS + 0.5
                ):
                    break
                time.sleep(0.1)
            workers = _common.children(proc.pid)
            if proc.poll() is not None or len(workers) != cfg.workers:
                raise RuntimeError(
                    f"no workers to kill (run exited {proc.returncode}, children {workers}); "
                    f"log:\n{tail(log_path)}"
                )
            victim = rng.choice(workers)
            kill_at = time.time()
            os.kill(victim, signal.SIGKILL)
            # The replacement: a new child of the coordinator.
            replaced_after: float | None = None
            while time.time() - kill_at < 5.0 and proc.poll() is None:
                if set(_common.children(proc.pid)) - set(workers):
                    replaced_after = time.time() - kill_at
                    break
                time.sleep(0.002)
            code = proc.wait(timeout=600)
        finally:
            stop(proc)
        ended = time.time()
    if code != 0:
        raise RuntimeError(f"the run exited with {code}; log:\n{tail(log_path)}")
    finished = [
        float(t) for (t,) in query(store, "SELECT finished_at FROM units WHERE state = 'done'")
    ]
    if len(finished) != cfg.recovery_units:
        raise RuntimeError(f"{len(finished)} of {cfg.recovery_units} units done")
    retried = query(store, "SELECT count(*) FROM units WHERE attempts > 1")[0][0]
    return {
        "seconds": ended - started,
        "kill_after_start": kill_at - started,
        "kill_after_first_done": kill_at - (first_done or kill_at),
        "replaced_after": replaced_after,
        "retried_units": int(retried),
        "finished": finished,
        "kill_at": kill_at,
    }


def bench_recovery(cfg: Config, scratch: Scratch, results: Results) -> None:
    """Kill one of two workers mid-run; how soon is throughput back?"""
    n = cfg.recovery_units
    loops, per_unit = calibrate(cfg.recovery_unit_seconds, start=2_000, samples=25)
    lease = scheduler.LEASE_SECONDS
    say(
        f"\n[bold]1. Recovery after a worker kill[/bold]: {n:,} units of "
        f"{per_unit * 1000:.2f} ms CPU ({loops:,} loops), workers={cfg.workers}, `conveyor run` "
        f"subprocess, SIGKILL one worker after >= {cfg.recovery_kill_after:g} s; "
        f"{cfg.recovery_reps} repetitions; lease (visibility timeout) {lease:g} s"
        f"{load_note()}"
    )
    inputs = scratch.folder("recovery-input")
    pipeline = inputs / "recovery.py"
    pipeline.write_text(RECOVERY_PIPELINE.format(loops=loops))
    items = inputs / "items.jsonl"
    items.write_text("".join(f'{{"id": "u{i:06d}", "value": {i}}}\n' for i in range(n)))
    rng = random.Random(20261123)
    reps: list[dict[str, Any]] = []
    for rep in range(cfg.recovery_reps):
        folder = scratch.folder("recovery")
        probe = recovery_run(cfg, folder, pipeline, items, rng)
        scratch.drop(folder)
        finished = probe.pop("finished")
        analysis = analyse_recovery(finished, probe["kill_at"])
        probe.update(analysis)
        reps.append(probe)
        rec = analysis["recovery_seconds"]
        replaced = probe["replaced_after"]
        say(
            f"   rep {rep + 1}: run {probe['seconds']:.1f} s ({n / probe['seconds']:,.0f} units/s "
            f"overall), kill at {probe['kill_after_start']:.1f} s "
            f"({probe['kill_after_first_done']:.1f} s after the first commit); pre-kill "
            f"{analysis['pre_rate']:,.0f}/s; "
            + (f"replacement worker after {replaced * 1000:.0f} ms; " if replaced else "")
            + f"first windows after the kill "
            f"{', '.join(f'{r:,.0f}' for r in analysis['post_rates'][:6])}/s; "
            + (
                f"recovered after {rec:.2f} s"
                if rec is not None
                else f"[red]not recovered[/red] in {analysis['post_windows'] * WINDOW:.1f} s"
            )
            + f"; deficit ~{analysis['deficit_units']:,.0f} units; "
            f"{probe['retried_units']} units with a failed attempt"
        )
    recoveries = [
        r["recovery_seconds"] if r["recovery_seconds"] is not None else math.inf for r in reps
    ]
    recovery = median(recoveries)
    replacements = [r["replaced_after"] for r in reps if r["replaced_after"] is not None]
    replaced = median(replacements) if replacements else None
    pre_rate = median([r["pre_rate"] for r in reps])
    dip = median([r["dip_rate"] for r in reps if r["dip_rate"] is not None] or [0.0])
    say(
        f"   median: recovery {recovery:.2f} s (windows of {WINDOW:g} s; target <= "
        f"{2 * lease:g} s = 2x lease), pre-kill {pre_rate:,.0f}/s, lowest window in the first "
        f"second {dip:,.0f}/s"
        + (f", replacement worker after {replaced * 1000:.0f} ms" if replaced else "")
    )
    results.sections["recovery"] = {
        "units": n,
        "loops": loops,
        "unit_cpu_seconds_calibrated": per_unit,
        "lease_seconds": lease,
        "heartbeat_seconds": scheduler.HEARTBEAT_SECONDS,
        "window_seconds": WINDOW,
        "repetitions": reps,
        "median_recovery_seconds": recovery,
        "median_replaced_after_seconds": replaced,
    }
    results.rows.append(
        Row(
            "1 recovery",
            "worker SIGKILL -> throughput back at >= 0.9x pre-kill",
            f"{recovery:.2f} s" if math.isfinite(recovery) else "never",
            f"pre-kill {pre_rate:,.0f}/s, lowest window {dip:,.0f}/s; "
            f"{n:,} x {per_unit * 1000:.1f} ms, {WINDOW:g} s windows",
            f"<= {2 * lease:g} s (2x lease)",
            recovery <= 2 * lease,
        )
    )
    results.rows.append(
        Row(
            "1 recovery",
            "worker SIGKILL -> replacement process forked",
            f"{replaced * 1000:.0f} ms" if replaced is not None else "not seen",
            "by the process sentinel, not the lease",
            "(info)",
            None,
        )
    )


# ------------------------------------------------------------------------------------------------
# 2. Durability overhead
# ------------------------------------------------------------------------------------------------

noop_pipe = cv.Pipeline("bench-faults-noop")


@noop_pipe.step
def noop(item: Any) -> None:
    """Do nothing: the unit's cost is all framework overhead."""
    return None


@contextmanager
def heartbeat_every(seconds: float | None) -> Iterator[None]:
    """Set ``conveyor.scheduling.scheduler.HEARTBEAT_SECONDS`` for the block (None: leave it)."""
    saved = scheduler.HEARTBEAT_SECONDS
    if seconds is not None:
        scheduler.HEARTBEAT_SECONDS = seconds
    try:
        yield
    finally:
        scheduler.HEARTBEAT_SECONDS = saved


@dataclass
class Beats:
    """Heartbeats the ledger received, and the coordinator's seconds spent in them."""

    count: int = 0
    seconds: float = 0.0


@contextmanager
def counting_heartbeats() -> Iterator[Beats]:
    """Count and time the heartbeats the ledger receives in the block."""
    original = SQLiteStore.heartbeat
    beats = Beats()

    def counted(self: SQLiteStore, run_id: str, coordinator: str, owner: str, lease: float) -> int:
        started = time.perf_counter()
        try:
            return original(self, run_id, coordinator, owner, lease)
        finally:
            beats.count += 1
            beats.seconds += time.perf_counter() - started

    SQLiteStore.heartbeat = counted  # type: ignore[method-assign]
    try:
        yield beats
    finally:
        SQLiteStore.heartbeat = original  # type: ignore[method-assign]


def noop_run(n: int, store: Path, workers: int) -> float:
    """Seconds of one ``noop_pipe.run`` over ``range(n)`` (after a garbage collection)."""
    seconds, report = timed(lambda: noop_pipe.run(range(n), store=store, workers=workers))
    done = sum(s.counts.get("done", 0) for s in report.stats)
    if report.state is not cv.RunState.COMPLETED or done != n:
        raise RuntimeError(f"no-op run {report.run_id} ended {report.state} with {done} done")
    return seconds


def bench_overhead(cfg: Config, scratch: Scratch, results: Results) -> None:
    """No-op throughput with leases and heartbeats vs inert heartbeats vs the pre-lease figure."""
    n = cfg.overhead_units
    shipped = scheduler.HEARTBEAT_SECONDS
    variants: dict[str, float | None] = {
        "durable": None,  # as shipped
        "inert": 1e9,
        "stress": STRESS_HEARTBEAT,
    }
    say(
        f"\n[bold]2. Durability overhead[/bold]: {n:,} no-op units, workers={cfg.workers}, "
        f"`pipe.run`; heartbeats every {shipped:g} s (as shipped) vs 1e9 s (inert) vs "
        f"{STRESS_HEARTBEAT:g} s (stress, info); {cfg.overhead_reps} repetitions, order rotated"
        f"{load_note()}"
    )
    warm = scratch.store("warmup")
    noop_run(200, warm, cfg.workers)  # untimed: first-use costs stay out of repetition 1
    scratch.drop(warm)
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    beats: dict[str, list[int]] = {name: [] for name in variants}
    beat_seconds: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for rep in range(cfg.overhead_reps):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            store = scratch.store(f"overhead-{name}")
            with heartbeat_every(variants[name]), counting_heartbeats() as count:
                seconds[name].append(noop_run(n, store, cfg.workers))
            beats[name].append(count.count)
            beat_seconds[name].append(count.seconds)
            scratch.drop(store)
        say(
            f"   rep {rep + 1} ({' -> '.join(order)}): "
            + ", ".join(
                f"{name} {n / seconds[name][-1]:,.0f}/s ({beats[name][-1]} heartbeats)"
                for name in names
            )
        )
    rate = {name: n / median(values) for name, values in seconds.items()}
    ratio = rate["durable"] / rate["inert"]
    recorded = rate["durable"] / PRE_LEASE_NOOP_RATE
    stress = rate["stress"] / rate["inert"]
    beat_ms = 1000 * sum(beat_seconds["stress"]) / max(1, sum(beats["stress"]))
    say(
        f"   median: durable {rate['durable']:,.0f}/s, inert {rate['inert']:,.0f}/s -> "
        f"{ratio:.3f}x; recorded before leases {PRE_LEASE_NOOP_RATE:,.0f}/s -> {recorded:.3f}x; "
        f"stress {rate['stress']:,.0f}/s -> {stress:.3f}x inert "
        f"({median(beats['stress']):.0f} heartbeats per run, {beat_ms:.2f} ms each)"
    )
    results.sections["overhead"] = {
        "units": n,
        "heartbeat_seconds_shipped": shipped,
        "variants": variants,
        "seconds": seconds,
        "heartbeats": beats,
        "heartbeat_seconds_spent": beat_seconds,
        "stress_ms_per_heartbeat": beat_ms,
        "median_rate": rate,
        "pre_lease_rate_recorded": PRE_LEASE_NOOP_RATE,
        "durable_over_inert": ratio,
        "durable_over_recorded": recorded,
        "stress_over_inert": stress,
    }
    results.rows.append(
        Row(
            "2 durability",
            f"{n:,} no-op units/s, leases + heartbeats vs inert heartbeats",
            f"{rate['durable']:,.0f}/s",
            f"inert {rate['inert']:,.0f}/s; {median(beats['durable']):.0f} heartbeats fired",
            f">= {1 - MAX_SLOWDOWN:.2f}x inert (got {ratio:.3f}x)",
            ratio >= 1 - MAX_SLOWDOWN,
        )
    )
    results.rows.append(
        Row(
            "2 durability",
            "  vs BENCHMARKS.md before leases (another day)",
            f"{recorded:.3f}x",
            f"recorded {PRE_LEASE_NOOP_RATE:,.0f}/s (20,000 units)",
            "(info)",
            None,
        )
    )
    results.rows.append(
        Row(
            "2 durability",
            f"  heartbeat every {STRESS_HEARTBEAT * 1000:.0f} ms (stress) vs inert",
            f"{rate['stress']:,.0f}/s",
            f"{stress:.3f}x inert; {median(beats['stress']):.0f} heartbeats per run, "
            f"{beat_ms:.2f} ms each",
            "(info)",
            None,
        )
    )


# ------------------------------------------------------------------------------------------------
# 3. Chaos
# ------------------------------------------------------------------------------------------------

#: Every this many items, step ``check`` always fails.
FAILING_EVERY = 100
#: Attempts of step ``check`` (retries=2).
CHECK_ATTEMPTS = 3

CHAOS_PIPELINE = """
import os
import time

import conveyor as cv

LOG = {log!r}


def started(step: str, value: int) -> None:
    # One append per execution started: repeated work shows as repeated lines.
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{{step}} {{value}}\\n".encode())
    finally:
        os.close(fd)


pipe = cv.Pipeline("bench-faults-chaos")


@pipe.step(retries=8, backoff="10ms", backoff_max="50ms")
def parse(item: cv.Item) -> int:
    started("parse", int(item["value"]))
    time.sleep(0.004)
    return int(item["value"])


@pipe.step(retries=8, backoff="10ms", backoff_max="50ms")
def square(parse: int) -> int:
    started("square", parse)
    time.sleep(0.004)
    return parse * parse


@pipe.step(retries={retries}, backoff="10ms", backoff_max="50ms")
def check(parse: int) -> bool:
    started("check", parse)
    time.sleep(0.002)
    if parse % {every} == 0:
        raise ValueError(f"{{parse}} is not allowed")
    return True
"""


def chaos_run(cfg: Config, folder: Path, rng: random.Random) -> dict[str, Any]:
    """One chaos run: kill workers and the coordinator while it goes; count what the ledger,
    the export and the execution log say afterwards."""
    items = cfg.chaos_items
    total = items * 3
    failing = len(range(0, items, FAILING_EVERY))
    ledger = folder / "ledger.db"
    executions = folder / "executions.log"
    (folder / "chaos.py").write_text(
        CHAOS_PIPELINE.format(log=str(executions), retries=CHECK_ATTEMPTS - 1, every=FAILING_EVERY)
    )
    (folder / "items.jsonl").write_text(
        "".join(f'{{"id": "i{i:05d}", "value": {i}}}\n' for i in range(items))
    )
    store = ["--store", str(ledger)]
    command = ["run", "chaos.py", "-i", "items.jsonl", "--id-field", "id", "-w", str(cfg.workers)]
    restarts = [command + store if k % 2 == 0 else ["resume", *store] for k in range(10)]
    coordinator_at = [
        total * (k + 1) // (cfg.chaos_coordinator_kills + 1)
        for k in range(cfg.chaos_coordinator_kills)
    ]
    # Worker kills spread evenly over the run's progress, from 1% to 95% of the units.
    worker_at = [
        int(total * (0.01 + 0.94 * k / max(1, cfg.chaos_worker_kills - 1)))
        for k in range(cfg.chaos_worker_kills)
    ]
    log_path = folder / "coordinators.log"
    worker_kills = coordinator_kills = 0
    restarted_with: list[str] = []
    with log_path.open("w") as log:
        started = time.perf_counter()
        proc = start_cli(command + store, folder, log)
        try:
            deadline = time.monotonic() + cfg.chaos_timeout
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"chaos run still going after {cfg.chaos_timeout:.0f} s; "
                        f"log:\n{tail(log_path)}"
                    )
                time.sleep(rng.uniform(0.03, 0.08))
                progress = finished_units(ledger)
                if coordinator_at and progress >= coordinator_at[0]:
                    coordinator_at.pop(0)
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(timeout=60)
                    coordinator_kills += 1
                    again = restarts[coordinator_kills - 1]
                    restarted_with.append(again[0])
                    proc = start_cli(again, folder, log)
                    continue
                if worker_at and progress >= worker_at[0]:
                    workers = _common.children(proc.pid)
                    if workers:
                        try:
                            os.kill(rng.choice(workers), signal.SIGKILL)
                            worker_kills += 1
                            worker_at.pop(0)
                        except ProcessLookupError:
                            pass
            code = proc.wait()
        finally:
            stop(proc)
        wall = time.perf_counter() - started
    states = {
        str(s): int(c) for s, c in query(ledger, "SELECT state, count(*) FROM units GROUP BY state")
    }
    missing = total - sum(states.values())
    unfinished = sum(states.get(s, 0) for s in ("pending", "ready", "running"))
    runs = query(ledger, "SELECT count(*), min(state) FROM runs")
    result_rows, result_keys = query(ledger, "SELECT count(*), count(DISTINCT key) FROM results")[0]
    dead = query(
        ledger, "SELECT step, attempts, count(*) FROM units WHERE state = 'dead' GROUP BY 1, 2"
    )
    reexecuted = query(ledger, "SELECT count(*) FROM units WHERE state = 'done' AND attempts > 1")
    exported = subprocess.run(
        [sys.executable, "-m", "conveyor", "results", "--format", "csv", *store],
        cwd=folder,
        env=CLI_ENV,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()[1:]
    ids = [line.split(",", 1)[0] for line in exported]
    lines = executions.read_text().splitlines() if executions.exists() else []
    dead_units = sum(int(c) for _, _, c in dead)
    return {
        "units": total,
        "items": items,
        "exit_code": code,
        "wall_seconds": wall,
        "worker_kills": worker_kills,
        "coordinator_kills": coordinator_kills,
        "restarted_with": restarted_with,
        "states": states,
        "lost": missing + unfinished,
        "duplicated_results": int(result_rows) - int(result_keys),
        "export_rows": len(ids),
        "duplicated_export_rows": len(ids) - len(set(ids)),
        "reexecuted": int(reexecuted[0][0]),
        "executions_started": len(lines),
        "repeated_executions": len(lines) - len(set(lines)),
        "units_executed": len(set(lines)),
        "dead": dead_units,
        "dead_groups": [list(row) for row in dead],
        "expected_dead": failing,
        "dead_as_expected": dead == [("check", CHECK_ATTEMPTS, failing)],
        "runs": [list(row) for row in runs],
    }


def bench_chaos(cfg: Config, scratch: Scratch, results: Results) -> None:
    """``test_chaos.py`` scaled up: nothing lost, nothing duplicated, dead after the limit."""
    items = cfg.chaos_items
    say(
        f"\n[bold]3. Chaos[/bold]: {items:,} items x 3 steps = {items * 3:,} units, "
        f"{cfg.chaos_worker_kills} worker SIGKILLs, {cfg.chaos_coordinator_kills} coordinator "
        f"SIGKILLs (then `run` again / `resume` alternately), workers={cfg.workers}, "
        f"{cfg.chaos_reps} repetition(s)"
        f"{load_note()}"
    )
    rng = random.Random(20261122)
    reps: list[dict[str, Any]] = []
    for rep in range(cfg.chaos_reps):
        folder = scratch.folder("chaos")
        r = chaos_run(cfg, folder, rng)
        scratch.drop(folder)
        reps.append(r)
        parts = [
            f"   rep {rep + 1}: {r['units']:,} units, {r['worker_kills']} worker kills, "
            f"{r['coordinator_kills']} coordinator kills ({' / '.join(r['restarted_with'])})",
            f"exit {r['exit_code']}, runs {escape(str(r['runs']))}",
            f"lost {r['lost']}",
            f"duplicated results {r['duplicated_results']}",
            f"duplicated export rows {r['duplicated_export_rows']} ({r['export_rows']} rows)",
            f"re-executed {r['reexecuted']} (attempts > 1)",
            f"executions started {r['executions_started']:,} for {r['units_executed']:,} "
            f"units ({r['repeated_executions']} repeated)",
            f"dead {r['dead']} {escape(str(r['dead_groups']))}",
            f"wall {r['wall_seconds']:.1f} s",
        ]
        say("; ".join(parts))
    lost = max(r["lost"] for r in reps)
    dup = max(r["duplicated_results"] for r in reps)
    dup_rows = max(r["duplicated_export_rows"] for r in reps)
    rows_ok = all(r["export_rows"] == r["items"] for r in reps)
    dead_ok = all(r["dead_as_expected"] for r in reps)
    ended_ok = all(
        r["exit_code"] == 1 and r["runs"] == [[1, "completed_with_errors"]] for r in reps
    )
    kills_ok = all(
        r["worker_kills"] == cfg.chaos_worker_kills
        and r["coordinator_kills"] == cfg.chaos_coordinator_kills
        for r in reps
    )
    wall = median([r["wall_seconds"] for r in reps])
    kills = f"{reps[0]['worker_kills']} worker / {reps[0]['coordinator_kills']} coordinator kills"
    results.sections["chaos"] = {"repetitions": reps, "median_wall_seconds": wall}
    scale = f"{items * 3:,} units, {len(reps)} rep(s), worst"
    results.rows += [
        Row("3 chaos", f"lost units ({scale})", str(lost), kills, "0", lost == 0),
        Row(
            "3 chaos", "duplicated results", str(dup), "results rows - distinct keys", "0", dup == 0
        ),
        Row(
            "3 chaos",
            "duplicated export rows",
            str(dup_rows),
            f"{reps[-1]['export_rows']:,} rows for {items:,} items",
            "0, one row per item",
            dup_rows == 0 and rows_ok,
        ),
        Row(
            "3 chaos",
            "re-executed (done with attempts > 1)",
            str(max(r["reexecuted"] for r in reps)),
            f"executions repeated (step log): {max(r['repeated_executions'] for r in reps):,}",
            "(info)",
            None,
        ),
        Row(
            "3 chaos",
            "dead units, all at the attempt limit",
            str(max(r["dead"] for r in reps)),
            f"{reps[-1]['dead_groups']} (step, attempts, count)",
            f"{reps[0]['expected_dead']} x check @ {CHECK_ATTEMPTS}",
            dead_ok,
        ),
        Row(
            "3 chaos",
            "run ended completed_with_errors, exit 1, every kill done",
            "yes" if ended_ok and kills_ok else "no",
            f"exit codes {[r['exit_code'] for r in reps]}",
            "yes",
            ended_ok and kills_ok,
        ),
        Row(
            "3 chaos",
            "wall time (median)",
            f"{wall:.1f} s",
            f"ideal without faults ~{items * 0.010 / cfg.workers:.0f} s (sleeps / workers)",
            "(info)",
            None,
        ),
    ]


# ------------------------------------------------------------------------------------------------
# Driver
# ------------------------------------------------------------------------------------------------


SECTIONS: dict[str, Callable[[Config, Scratch, Results], None]] = {
    "recovery": bench_recovery,
    "overhead": bench_overhead,
    "chaos": bench_chaos,
}


def summary_table(results: Results) -> Table:
    """The final table: one line per metric with its target and verdict."""
    quick = " - QUICK sizes" if results.config.quick else ""
    return _common.metric_table(
        "Conveyor fault-tolerance benchmark (medians)" + quick, results.rows
    )


def has_proc() -> bool:
    """Whether ``/proc`` is there to find worker processes (said when it is not)."""
    if Path("/proc/self/stat").exists():
        return True
    say("[red]needs /proc to find worker processes[/red]")
    return False


def main(argv: Sequence[str] | None = None) -> int:
    """Run every section, print the summary table, write ``--json``; returns the exit status."""
    return _common.main(
        argv,
        doc=__doc__,
        name="fault-tolerance benchmark",
        sections=SECTIONS,
        make_config=Config.make,
        failed_row=lambda name, error: Row(name, "section failed", "error", error, "", False),
        table=summary_table,
        scratch_prefix="conveyor-faults-",
        precheck=has_proc,
    )


if __name__ == "__main__":
    sys.exit(main())
