"""Prometheus metrics of a run or a stream, read from the ledger when scraped (so they cost the
run nothing between scrapes) plus what only the coordinator knows (workers, CPU, memory).

Served at ``GET /metrics`` by ``conveyor serve`` and by ``conveyor run --metrics-port N``.
Labels are bounded: pipeline, step and state, never item ids."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from conveyor.core.units import LiveStats, UnitState
from conveyor.scheduling.hooks import Hooks, RunContext
from conveyor.store import Store, open_store

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

#: Upper bounds of the step duration histogram's buckets, in seconds.
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                    60.0, 300.0)  # fmt: skip
#: The text format's content type, for the HTTP answers.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class LedgerCollector(Collector):
    """Collects one run's metrics from the ledger at each scrape, on its own connection."""

    def __init__(
        self,
        pipeline: str,
        store: str | Path | None,
        run_id: Callable[[], str | None],
        live: Callable[[], LiveStats | None] = lambda: None,
    ) -> None:
        self._pipeline = pipeline
        self._location = store
        self._run_id = run_id
        self._live = live
        self._store: Store | None = None
        self._lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        """The metric families, as Prometheus asks for them."""
        run_id = self._run_id()
        if not run_id:
            return
        with self._lock:
            if self._store is None:
                self._store = open_store(self._location)
            found = self._store.ledger_metrics(run_id, DURATION_BUCKETS)
        p = self._pipeline
        units = GaugeMetricFamily("conveyor_units", "Units of work by step and state.",
                                  labels=["pipeline", "step", "state"])  # fmt: skip
        for (step, state), count in sorted(found.units.items()):
            units.add_metric([p, step, state], count)
        yield units
        ready_since = found.oldest_ready_at
        age = 0.0 if ready_since is None else max(0.0, time.time() - ready_since)
        live = self._live()
        per_step: list[tuple[type[Metric], str, str, Mapping[str, float]]] = [
            (GaugeMetricFamily, "conveyor_queue_depth", "Units ready to run, waiting for a worker.",
             found.by_state(UnitState.READY)),
            (GaugeMetricFamily, "conveyor_units_in_flight", "Units running now.",
             found.by_state(UnitState.RUNNING)),
            (GaugeMetricFamily, "conveyor_dead_letter_units", "Units in the dead-letter queue.",
             found.by_state(UnitState.DEAD)),
            (CounterMetricFamily, "conveyor_cache_hits", "Units whose result was already stored.",
             found.by_state(UnitState.CACHED)),
            (CounterMetricFamily, "conveyor_retries", "Failed attempts that were retried.",
             found.retries),
        ]  # fmt: skip
        per_run: list[tuple[type[Metric], str, str, float]] = [
            (CounterMetricFamily, "conveyor_items_ingested", "Items taken into the run.",
             found.items),
            (GaugeMetricFamily, "conveyor_oldest_ready_unit_age_seconds",
             "How long the unit at the head of the queue has been ready (0 when none is).", age),
        ]  # fmt: skip
        if live is not None:
            per_step += [
                (CounterMetricFamily, "conveyor_step_cpu_seconds",
                 "CPU time the step's units used in their workers.", live.cpu_seconds),
                (GaugeMetricFamily, "conveyor_worker_resident_memory_bytes",
                 "Resident memory of the worker that last ran a unit of the step.",
                 live.rss_bytes),
            ]  # fmt: skip
            per_run.append((GaugeMetricFamily, "conveyor_workers",
                            "Workers (processes, threads, actors) running units.",
                            live.workers))  # fmt: skip
        for kind, name, text, values in per_step:
            family = kind(name, text, labels=["pipeline", "step"])  # type: ignore[call-arg]
            for step, value in sorted(values.items()):
                family.add_metric([p, step], value)  # type: ignore[attr-defined]
            yield family
        for kind, name, text, value in per_run:
            family = kind(name, text, labels=["pipeline"])  # type: ignore[call-arg]
            family.add_metric([p], value)  # type: ignore[attr-defined]
            yield family
        durations = HistogramMetricFamily("conveyor_step_duration_seconds",
                                          "Wall time of finished units, per step.",
                                          labels=["pipeline", "step"])  # fmt: skip
        bounds = [*(repr(float(b)) for b in DURATION_BUCKETS), "+Inf"]
        for step, (counts, total) in sorted(found.durations.items()):
            durations.add_metric([p, step], list(zip(bounds, counts, strict=True)), total)
        yield durations

    def close(self) -> None:
        """Close the collector's ledger connection."""
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None


class RunMetrics:
    """The registry of one run or stream: ledger metrics plus this process's own (CPU, memory,
    open files of the coordinator)."""

    def __init__(
        self,
        pipeline: str,
        store: str | Path | None,
        run_id: Callable[[], str | None],
        live: Callable[[], LiveStats | None] = lambda: None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = LedgerCollector(pipeline, store, run_id, live)
        self.registry.register(self.collector)
        ProcessCollector(namespace="conveyor_coordinator", registry=self.registry)
        self._server: WSGIServer | None = None

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return generate_latest(self.registry)

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Answer ``GET /metrics`` on ``host:port`` from a background thread."""
        from prometheus_client import start_http_server

        server, _ = start_http_server(port, addr=host, registry=self.registry)
        self._server = server

    def close(self) -> None:
        """Stop serving and close the ledger connection."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self.collector.close()


class MetricsHooks(Hooks):
    """Stops serving a run's metrics once its coordinator stops driving it."""

    def __init__(self, metrics: RunMetrics) -> None:
        self.metrics = metrics

    def run_stopped(self, run: RunContext) -> None:
        """Stop serving."""
        self.metrics.close()
