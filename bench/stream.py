"""Conveyor's stream-latency benchmark: what stream mode adds to an item's own compute time at a
steady arrival rate, against collecting the same arrivals into periodic batches.

Usage::

    python bench/stream.py [--quick] [--json OUT] [--only SECTION ...]

Both sections feed the same schedule: one item every 1/50 s for 60 s (``--quick``: 10 s), from
a feeder thread that submits on a fixed clock (late submits are not caught up by bursts; the
worst lateness is printed). The pipeline has two steps, ``first`` then ``second``, each a
calibrated ~2 ms CPU busy loop; workers=2, a fresh ledger per section.

Sections:

1. Stream: ``pipe.stream(store=fresh, workers=2)``; a collector thread calls
   ``stream.result(id)`` for each accepted id (as ``GET /items/{id}?wait=`` would). Per item:
   accepted = ``time.time()`` right after ``submit()`` returns; finished = the latest
   ``finished_at`` of its units in the ledger (epoch commit times, so that the collector's
   own wake-up adds no error); compute = the sum of its units' ``duration``. Overhead =
   finished - accepted - compute. Targets: p50 <= 20 ms, p99 <= 100 ms. For information, the
   overhead is split into the wait before the first unit started (dispatch), the gap between
   the two units and the commit of the last one.
2. Periodic batch: the same arrivals are queued, and every N s (5; ``--quick``: 2) what has
   arrived runs as ``pipe.run(records, store=fresh, workers=2)``; latency = the time that call
   returned - the item's arrival. For comparison only (no target): expect seconds.
3. The licences example as a stream: distinct copies of the 708 SPDX licence texts (each with
   its own last line, so none is a cache hit) submitted as file items at the same rate into a
   stream of ``examples/licenses/pipeline.py`` (11 steps, a batched VADER step), resources
   built before the workers start, as ``conveyor serve`` does. Overhead as in section 1 (the
   units' compute summed, though some of an item's units run in parallel). Same targets. The
   files arrive in a shuffled order (a fixed seed): a steady rate of items that is also a
   steady rate of work. Also reported: what queueing alone costs, each item's measured
   compute as one job served first come first served on as many cores, with no overhead.
4. The same in the order the licences are listed (sorted by name), with the same targets: a
   steady rate of items but bursts of work, as families of long texts (some thirty Creative
   Commons licences, the GPLs) arrive back to back; on a slow day for this machine that is up
   to ~3 s of compute within a second on 2 cores, and queueing alone then costs most of a
   second (the reference row shows it).
"""

from __future__ import annotations

import functools
import queue
import random
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _common
from _common import Scratch, calibrate, load_note, median, say, spin

import conveyor as cv
from conveyor.scheduling.stream import Stream

WORKERS = 2
#: Items per second fed to both sections.
RATE = 50.0
#: CPU seconds of each of the two steps.
STEP_SECONDS = 0.002
#: Overhead targets of the stream section, in seconds.
P50_TARGET = 0.020
P99_TARGET = 0.100
#: The seed of the shuffled arrival order of section 3.
SEED = 20261201
#: How long the collector waits for one item before the section fails.
RESULT_TIMEOUT = 60.0

# ------------------------------------------------------------------------------------------------
# Configuration and results
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """Sizes; ``--quick`` shrinks them for a smoke run."""

    quick: bool
    seconds: float
    batch_every: float
    rate: float = RATE
    step_seconds: float = STEP_SECONDS
    workers: int = WORKERS

    @classmethod
    def make(cls, quick: bool) -> Config:
        """The full configuration, or the quick one."""
        if quick:
            return cls(quick=True, seconds=10.0, batch_every=2.0)
        return cls(quick=False, seconds=60.0, batch_every=5.0)

    @property
    def items(self) -> int:
        """Items fed per section."""
        return round(self.seconds * self.rate)


Row = _common.MetricRow


Results = _common.Results[Config, Row]


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of a non-empty sequence, interpolated between neighbours."""
    if len(values) == 1:
        return float(values[0])
    cuts = statistics.quantiles(values, n=1000, method="inclusive")
    return float(cuts[round(q * 1000) - 1])


def spread(values: Sequence[float]) -> dict[str, float]:
    """min, p50, p99 and max, in seconds."""
    return {
        "min": min(values),
        "p50": median(values),
        "p99": quantile(values, 0.99),
        "max": max(values),
    }


def ms(seconds: float) -> str:
    """Seconds as milliseconds for a table cell."""
    return f"{seconds * 1000:.1f} ms"


# ------------------------------------------------------------------------------------------------
# The pipeline (module level: Conveyor forks its workers, which inherit it)
# ------------------------------------------------------------------------------------------------

#: Loop count of :func:`spin` for one step; set by :func:`calibrate` before any fork.
SPIN = {"loops": 0}
#: CPU seconds of one step as calibrated.
PER_STEP = {"seconds": 0.0}

pipe = cv.Pipeline("bench-stream")


@pipe.step
def first(item: cv.Item) -> int:
    """~2 ms of CPU, then the item's sequence number."""
    spin(SPIN["loops"])
    return int(item["seq"])


@pipe.step
def second(first: int) -> int:
    """~2 ms of CPU more, then a value the collector can check."""
    spin(SPIN["loops"])
    return first * 2 + 1


def calibrate_steps(cfg: Config) -> float:
    """Set the loop count of one step (once per invocation); returns its CPU seconds."""
    if not SPIN["loops"]:
        SPIN["loops"], PER_STEP["seconds"] = calibrate(cfg.step_seconds, start=2_000, samples=25)
    return PER_STEP["seconds"]


def feed(
    cfg: Config, submit: Callable[[int], None], lateness: list[float], failure: list[BaseException]
) -> None:
    """Call ``submit(i)`` for every item on the fixed schedule; records how late each was."""
    try:
        start = time.perf_counter()
        for i in range(cfg.items):
            due = start + i / cfg.rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            lateness.append(max(0.0, time.perf_counter() - due))
            submit(i)
    except BaseException as exc:
        failure.append(exc)


# ------------------------------------------------------------------------------------------------
# 1. Stream
# ------------------------------------------------------------------------------------------------


def ledger_units(store: Path, run_id: str) -> dict[str, list[tuple[str, str, float, float, float]]]:
    """Per item id: (step, state, started_at, finished_at, duration) of each of its units."""
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=30)
    try:
        rows = db.execute(
            "SELECT i.item_id, u.step, u.state, u.started_at, u.finished_at, u.duration "
            "FROM units u JOIN items i ON i.run_id = u.run_id AND i.idx = u.item_idx "
            "WHERE u.run_id = ?",
            (run_id,),
        ).fetchall()
    finally:
        db.close()
    units: dict[str, list[tuple[str, str, float, float, float]]] = {}
    for item_id, *unit in rows:
        units.setdefault(item_id, []).append(tuple(unit))  # type: ignore[arg-type]
    return units


def bench_stream(cfg: Config, scratch: Scratch, results: Results) -> None:
    """Steady arrivals into ``pipe.stream()``: per-item latency beyond its own compute."""
    per_step = calibrate_steps(cfg)
    n = cfg.items
    say(
        f"\n[bold]1. Stream[/bold]: {n:,} items at {cfg.rate:g}/s for {cfg.seconds:g} s, "
        f"2 steps of {per_step * 1000:.2f} ms CPU ({SPIN['loops']:,} loops), "
        f"workers={cfg.workers}"
        f"{load_note()}"
    )
    store = scratch.store("stream")
    accepted: dict[str, float] = {}
    submit_seconds: list[float] = []
    lateness: list[float] = []
    failure: list[BaseException] = []
    ids: queue.Queue[str | None] = queue.Queue()
    collected: dict[str, dict[str, Any]] = {}

    def collect() -> None:
        try:
            while (item_id := ids.get()) is not None:
                collected[item_id] = stream.result(item_id, timeout=RESULT_TIMEOUT)
        except BaseException as exc:
            failure.append(exc)

    stream = pipe.stream(store=store, workers=cfg.workers)
    with stream:
        run_id = stream.run_id

        def submit(i: int) -> None:
            began = time.perf_counter()
            item_id = stream.submit({"seq": i}, id=f"s{i:06d}")
            accepted[item_id] = time.time()
            submit_seconds.append(time.perf_counter() - began)
            ids.put(item_id)

        collector = threading.Thread(target=collect, name="bench-collector", daemon=True)
        feeder = threading.Thread(
            target=feed, args=(cfg, submit, lateness, failure), name="bench-feeder", daemon=True
        )
        collector.start()
        began = time.perf_counter()
        feeder.start()
        feeder.join()
        fed = time.perf_counter() - began
        ids.put(None)
        collector.join(RESULT_TIMEOUT + 10)
        drained = time.perf_counter() - began
    if failure:
        raise failure[0]
    if collector.is_alive():
        raise RuntimeError("the collector is still waiting for results")
    units = ledger_units(store, run_id)
    scratch.drop(store)

    wrong = [
        item_id
        for item_id, outputs in collected.items()
        if outputs.get("second") != int(item_id[1:]) * 2 + 1
    ]
    incomplete = [
        item_id
        for item_id in accepted
        if len(units.get(item_id, [])) != 2 or any(u[1] != "done" for u in units[item_id])
    ]
    if len(collected) != n or wrong or incomplete:
        raise RuntimeError(
            f"{len(collected)}/{n} results, {len(wrong)} wrong, {len(incomplete)} items not done "
            f"(e.g. {(wrong + incomplete)[:3]})"
        )

    overhead, latency, compute, dispatch, between, commit = [], [], [], [], [], []
    for item_id, at in accepted.items():
        steps = {
            step: (started, finished, dur) for step, _, started, finished, dur in units[item_id]
        }
        (s1, f1, d1), (s2, f2, d2) = steps["first"], steps["second"]
        done = max(f1, f2)
        latency.append(done - at)
        compute.append(d1 + d2)
        overhead.append(done - at - d1 - d2)
        dispatch.append(s1 - at)
        between.append(s2 - (s1 + d1))
        commit.append(f2 - (s2 + d2))
    stats = {
        "overhead": spread(overhead),
        "latency": spread(latency),
        "compute": spread(compute),
        "dispatch": spread(dispatch),
        "between_units": spread(between),
        "last_commit": spread(commit),
        "submit": spread(submit_seconds),
        "feeder_lateness": spread(lateness),
    }
    o, lat, sub = stats["overhead"], stats["latency"], stats["submit"]
    say(
        f"   fed {n:,} items in {fed:.1f} s ({n / fed:.1f}/s; feeder worst "
        f"{ms(max(lateness))} late), all results in {drained:.1f} s; submit p50 "
        f"{ms(sub['p50'])} p99 {ms(sub['p99'])}"
    )
    say(
        f"   overhead p50 {ms(o['p50'])}, p99 {ms(o['p99'])}, max {ms(o['max'])}; latency p50 "
        f"{ms(lat['p50'])}, p99 {ms(lat['p99'])}; compute p50 {ms(stats['compute']['p50'])}"
    )
    say(
        "   overhead parts (p50 / p99): "
        + ", ".join(
            f"{name} {ms(stats[key]['p50'])} / {ms(stats[key]['p99'])}"
            for name, key in (
                ("dispatch", "dispatch"),
                ("between units", "between_units"),
                ("last commit", "last_commit"),
            )
        )
        + load_note()
    )
    results.sections["stream"] = {
        "items": n,
        "rate": cfg.rate,
        "seconds_fed": fed,
        "seconds_to_last_result": drained,
        "per_step_cpu_seconds": per_step,
        "loops": SPIN["loops"],
        "seconds": stats,
    }
    scale = f"{n:,} items at {cfg.rate:g}/s"
    results.rows += [
        Row(
            "1 stream",
            "overhead p50 (finished - accepted - compute)",
            ms(o["p50"]),
            f"{scale}; compute p50 {ms(stats['compute']['p50'])}",
            f"<= {P50_TARGET * 1000:.0f} ms",
            o["p50"] <= P50_TARGET,
        ),
        Row(
            "1 stream",
            "overhead p99",
            ms(o["p99"]),
            f"max {ms(o['max'])}",
            f"<= {P99_TARGET * 1000:.0f} ms",
            o["p99"] <= P99_TARGET,
        ),
        Row(
            "1 stream",
            "  latency p50 / p99 (finished - accepted)",
            f"{ms(lat['p50'])} / {ms(lat['p99'])}",
            f"dispatch p50 {ms(stats['dispatch']['p50'])}, last commit p50 "
            f"{ms(stats['last_commit']['p50'])}",
            "(info)",
            None,
        ),
        Row(
            "1 stream",
            "  submit() p50 / p99",
            f"{ms(sub['p50'])} / {ms(sub['p99'])}",
            f"{n / fed:.1f} items/s fed, feeder worst {max(lateness) * 1000:.1f} ms late",
            "(info)",
            None,
        ),
    ]


# ------------------------------------------------------------------------------------------------
# 3. The licences example as a stream
# ------------------------------------------------------------------------------------------------


def example_texts(scratch: Scratch, count: int, order: str) -> list[Path]:
    """``count`` distinct licence files (the 708 SPDX texts, each copy with its own last line,
    so that no item is a cache hit of another), in the order they are fed: ``shuffled`` (a
    fixed seed) or ``sorted`` (by licence name, as the package lists them)."""
    from core import PREPARE

    data = scratch.folder("licenses")
    prepared = subprocess.run([sys.executable, str(PREPARE), str(data)], capture_output=True,
                              text=True, check=False)  # fmt: skip
    if prepared.returncode != 0:
        raise RuntimeError(f"prepare.py failed: {(prepared.stderr or prepared.stdout)[-300:]}")
    texts = sorted(p for p in data.rglob("*") if p.is_file())
    out = scratch.folder("stream-texts")
    paths = []
    for i in range(count):
        path = out / f"{i:06d}-{texts[i % len(texts)].name}"
        path.write_text(texts[i % len(texts)].read_text(encoding="utf-8") + f"\n\n(copy {i})\n")
        paths.append(path)
    if order == "shuffled":
        random.Random(SEED).shuffle(paths)
    return paths


def queueing_alone(arrivals: list[tuple[float, float]], workers: int) -> list[float]:
    """What queueing alone costs with these arrivals: each item's measured compute as one job,
    first come first served on ``workers`` cores by a scheduler that costs nothing. Per item,
    its wait for a free core (= finished - arrived - compute, as the overhead is measured)."""
    free = [0.0] * workers
    waits = []
    for arrived, compute in sorted(arrivals):
        core = min(range(workers), key=free.__getitem__)
        start = max(free[core], arrived)
        free[core] = start + compute
        waits.append(start - arrived)
    return waits


def bench_example(cfg: Config, scratch: Scratch, results: Results, order: str) -> None:
    """Steady arrivals of licence files into a stream of the licences example (11 steps)."""
    from core import EXAMPLE, load_example

    example = load_example(EXAMPLE)
    steps = list(example.graph.order)
    n = cfg.items
    paths = example_texts(scratch, n, order)
    section, number = ("example", 3) if order == "shuffled" else ("example-sorted", 4)
    say(
        f"\n[bold]{number}. Example stream, {order}[/bold]: {n:,} licence files at {cfg.rate:g}/s "
        f"for {cfg.seconds:g} s through {EXAMPLE.name} ({len(steps)} steps), "
        f"workers={cfg.workers}, resources built before the workers start{load_note()}"
    )
    store = scratch.store(section)
    accepted: dict[str, float] = {}
    lateness: list[float] = []
    failure: list[BaseException] = []
    ids: queue.Queue[str | None] = queue.Queue()
    collected: dict[str, dict[str, Any]] = {}
    stream = Stream(example, store=store, workers=cfg.workers, preload=True)

    def collect() -> None:
        try:
            while (item_id := ids.get()) is not None:
                collected[item_id] = stream.result(item_id, timeout=RESULT_TIMEOUT)
        except BaseException as exc:
            failure.append(exc)

    def submit(i: int) -> None:
        item = cv.Item(paths[i].name, cv.ItemKind.FILE, path=paths[i])
        item_id = stream.submit(item)
        accepted[item_id] = time.time()
        ids.put(item_id)

    with stream:
        run_id = stream.run_id
        collector = threading.Thread(target=collect, name="bench-collector", daemon=True)
        feeder = threading.Thread(target=feed, args=(cfg, submit, lateness, failure),
                                  name="bench-feeder", daemon=True)  # fmt: skip
        collector.start()
        feeder.start()
        feeder.join()
        ids.put(None)
        collector.join(RESULT_TIMEOUT + 10)
    if failure:
        raise failure[0]
    units = ledger_units(store, run_id)
    scratch.drop(store)
    unfinished = [i for i in accepted if len(units.get(i, [])) != len(steps)
                  or any(u[1] != "done" for u in units[i])]  # fmt: skip
    if len(collected) != n or unfinished:
        raise RuntimeError(f"{len(collected)}/{n} results, {len(unfinished)} items not done")
    overhead, latency, compute = [], [], []
    for item_id, at in accepted.items():
        done = max(finished for _, _, _, finished, _ in units[item_id])
        work = sum(duration for _, _, _, _, duration in units[item_id])
        latency.append(done - at)
        compute.append(work)
        overhead.append(done - at - work)
    o, lat, c = spread(overhead), spread(latency), spread(compute)
    ideal = spread(queueing_alone(list(zip(accepted.values(), compute, strict=True)),
                                  cfg.workers))  # fmt: skip
    say(f"   overhead p50 {ms(o['p50'])}, p99 {ms(o['p99'])}; latency p50 {ms(lat['p50'])}, "
        f"p99 {ms(lat['p99'])}; compute per item p50 {ms(c['p50'])}, p99 {ms(c['p99'])}, "
        f"{sum(compute) / cfg.seconds:.2f} s/s; queueing alone: p50 "
        f"{ms(ideal['p50'])}, p99 {ms(ideal['p99'])}; feeder worst "
        f"{ms(max(lateness))} late")  # fmt: skip
    seconds = {"overhead": o, "latency": lat, "compute": c, "queueing_alone": ideal}
    results.sections[section] = {"items": n, "rate": cfg.rate, "steps": len(steps),
                                 "order": order, "seed": SEED, "seconds": seconds}  # fmt: skip
    scale = f"{n:,} files at {cfg.rate:g}/s, {len(steps)} steps, {order}"
    label = f"{number} example ({order})"
    results.rows += [
        Row(label, "overhead p50 (finished - accepted - compute)", ms(o["p50"]),
            f"{scale}; compute p50 {ms(c['p50'])}", f"<= {P50_TARGET * 1000:.0f} ms",
            o["p50"] <= P50_TARGET),
        Row(label, "overhead p99", ms(o["p99"]), f"max {ms(o['max'])}",
            f"<= {P99_TARGET * 1000:.0f} ms", o["p99"] <= P99_TARGET),
        Row(label, "  latency p50 / p99 (finished - accepted)",
            f"{ms(lat['p50'])} / {ms(lat['p99'])}", "", "(info)", None),
        Row(label, "  queueing alone: wait p50 / p99",
            f"{ms(ideal['p50'])} / {ms(ideal['p99'])}",
            f"each item's compute as one job, FIFO on {cfg.workers} cores, no overhead; "
            f"compute {sum(compute) / cfg.seconds:.2f} s per s", "(info)", None),
    ]  # fmt: skip


# ------------------------------------------------------------------------------------------------
# 2. Periodic batch
# ------------------------------------------------------------------------------------------------


def bench_batch(cfg: Config, scratch: Scratch, results: Results) -> None:
    """The same arrivals run as ``pipe.run`` batches every N seconds."""
    per_step = calibrate_steps(cfg)
    n = cfg.items
    say(
        f"\n[bold]2. Periodic batch[/bold]: {n:,} items at {cfg.rate:g}/s for {cfg.seconds:g} s, "
        f"a pipe.run() batch every {cfg.batch_every:g} s, 2 steps of {per_step * 1000:.2f} ms "
        f"CPU, workers={cfg.workers}"
        f"{load_note()}"
    )
    store = scratch.store("batch")
    arrivals: queue.Queue[tuple[int, float]] = queue.Queue()
    lateness: list[float] = []
    failure: list[BaseException] = []
    feeder = threading.Thread(
        target=feed,
        args=(cfg, lambda i: arrivals.put((i, time.time())), lateness, failure),
        name="bench-feeder",
        daemon=True,
    )
    latency: list[float] = []
    batches: list[dict[str, Any]] = []
    began = time.perf_counter()
    feeder.start()
    tick = 0
    while True:
        tick += 1
        wait = began + tick * cfg.batch_every - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        last = not feeder.is_alive()  # checked before draining: nothing can arrive after
        batch: list[tuple[int, float]] = []
        while True:
            try:
                batch.append(arrivals.get_nowait())
            except queue.Empty:
                break
        if batch:
            started = time.perf_counter()
            report = pipe.run([{"seq": i} for i, _ in batch], store=store, workers=cfg.workers)
            finished = time.time()
            done = sum(s.counts.get("done", 0) for s in report.stats)
            if report.state is not cv.RunState.COMPLETED or done != 2 * len(batch):
                raise RuntimeError(f"batch {tick}: run ended {report.state}, {done} units done")
            latency += [finished - at for _, at in batch]
            batches.append(
                {"items": len(batch), "run_seconds": time.perf_counter() - started, "tick": tick}
            )
        if last:
            break
    feeder.join()
    scratch.drop(store)
    if failure:
        raise failure[0]
    if len(latency) != n:
        raise RuntimeError(f"{len(latency)}/{n} items ran in batches")
    lat = spread(latency)
    run_seconds = [b["run_seconds"] for b in batches]
    say(
        f"   {len(batches)} batches of median {median([b['items'] for b in batches]):.0f} items, "
        f"pipe.run() median {median(run_seconds):.2f} s (max {max(run_seconds):.2f} s); "
        f"latency p50 {lat['p50']:.2f} s, p99 {lat['p99']:.2f} s, max {lat['max']:.2f} s"
        f"{load_note()}"
    )
    results.sections["batch"] = {
        "items": n,
        "every_seconds": cfg.batch_every,
        "batches": batches,
        "latency_seconds": lat,
        "feeder_lateness_seconds": spread(lateness),
    }
    stream = results.sections.get("stream", {}).get("seconds", {}).get("latency")
    versus = f"; {lat['p50'] / stream['p50']:,.0f}x the stream's p50 latency" if stream else ""
    results.rows.append(
        Row(
            "2 batch",
            f"latency p50 / p99 (batch every {cfg.batch_every:g} s)",
            f"{lat['p50']:.2f} s / {lat['p99']:.2f} s",
            f"{len(batches)} batches, pipe.run() median {median(run_seconds):.2f} s{versus}",
            "(info)",
            None,
        )
    )


# ------------------------------------------------------------------------------------------------
# Driver
# ------------------------------------------------------------------------------------------------


SECTIONS: dict[str, Callable[[Config, Scratch, Results], None]] = {
    "stream": bench_stream,
    "batch": bench_batch,
    "example": functools.partial(bench_example, order="shuffled"),
    "example-sorted": functools.partial(bench_example, order="sorted"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run every section, print the summary table, write ``--json``; returns the exit status."""
    return _common.metric_main(
        argv,
        doc=__doc__,
        name="stream-latency benchmark",
        title="Conveyor stream-latency benchmark",
        sections=SECTIONS,
        make_config=Config.make,
        scratch_prefix="conveyor-stream-",
    )


if __name__ == "__main__":
    sys.exit(main())
