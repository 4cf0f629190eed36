"""What observability costs a run: the core overhead workload with Prometheus metrics served and
scraped, and with alarm rules evaluated, against the same run without them.

Usage::

    python bench/observability.py [--quick] [--json OUT]

One section, ``overhead``: N no-op units (20,000; ``--quick``: 4,000) through a one-step
pipeline, workers=2, a fresh SQLite ledger per run, in three modes interleaved over 5
repetitions (``--quick``: 2): plain; ``metrics_port`` set with a scraper fetching and parsing
``/metrics`` every 0.2 s (Prometheus' default is every 15 s: this is 75 times harsher, so that
even a one-second run is scraped several times); and metrics plus two alarm rules evaluated
every second. Reported: median units/s of each mode and
its ratio to plain. Target (issue #5): metrics on loses at most 10% units/s (ratio >= 0.90).

Per-unit CPU time and worker memory are measured in every mode (they cannot be switched off),
so the plain mode already carries them; the difference measured here is serving, scraping and
evaluating.
"""

from __future__ import annotations

import socket
import sys
import threading
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import _common
from _common import MetricRow, Results, Scratch, load_note, median, say, timed
from prometheus_client.parser import text_string_to_metric_families

import conveyor as cv
from conveyor.definition.alarms import rules

WORKERS = 2
TARGET = 0.90

Row = MetricRow


@dataclass
class Config:
    """Sizes of the run."""

    units: int
    reps: int
    quick: bool
    scrape_every: float = 0.2

    @classmethod
    def make(cls, quick: bool) -> Config:
        """Full or ``--quick`` sizes."""
        return cls(units=4_000, reps=2, quick=True) if quick else cls(20_000, 5, quick=False)


def noop(item: Any) -> None:
    """A unit that does nothing."""


pipe = cv.Pipeline("observed")
pipe.step(noop)
ALARMS = rules(
    [
        {"name": "failing", "metric": "failure_rate", "above": "10%", "every": "1s"},
        {"name": "backlog", "metric": "queue_age", "above": "10m", "every": "1s"},
    ]
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Scraper:
    """Fetches and parses ``/metrics`` every ``every`` seconds until stopped."""

    def __init__(self, port: int, every: float) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.every = every
        self.scrapes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                with urllib.request.urlopen(self.url, timeout=5) as response:
                    list(text_string_to_metric_families(response.read().decode()))
                self.scrapes += 1
            except OSError:
                pass  # not serving yet (planning) or already stopped

    def stop(self) -> int:
        """Stop and return how many scrapes succeeded."""
        self._stop.set()
        self._thread.join()
        return self.scrapes


def bench_overhead(cfg: Config, scratch: Scratch, results: Results[Config, Row]) -> None:
    """Plain vs metrics served and scraped vs metrics and alarms."""
    say(f"\n[bold]Overhead[/bold]: {cfg.units:,} no-op units, workers={WORKERS}, "
        f"{cfg.reps} repetitions, scrapes every {cfg.scrape_every:g} s{load_note()}")  # fmt: skip
    warm = scratch.store("warmup")
    pipe.run(range(200), store=warm, workers=WORKERS)
    scratch.drop(warm)
    modes = ("plain", "metrics", "metrics+alarms")
    samples: dict[str, list[float]] = {mode: [] for mode in modes}
    scrapes = 0
    for rep in range(cfg.reps):
        for mode in modes[rep % 3 :] + modes[: rep % 3]:  # rotate so drift hits all alike
            store = scratch.store(mode)
            options: dict[str, Any] = {}
            scraper = None
            if mode != "plain":
                options["metrics_port"] = port = free_port()
                scraper = Scraper(port, cfg.scrape_every)
            if mode == "metrics+alarms":
                options["alarms"] = ALARMS
            seconds, report = timed(
                lambda store=store, options=options: pipe.run(
                    range(cfg.units), store=store, workers=WORKERS, **options
                )
            )
            if scraper is not None:
                scrapes += scraper.stop()
            if report.stats[0].counts.get("done") != cfg.units:
                raise RuntimeError(f"{mode}: not every unit finished: {report.stats[0].counts}")
            scratch.drop(store)
            samples[mode].append(cfg.units / seconds)
            say(f"   rep {rep + 1} {mode:>15}: {cfg.units / seconds:,.0f} units/s")
    rates = {mode: median(values) for mode, values in samples.items()}
    say(f"   {scrapes} scrapes parsed")
    results.sections["overhead"] = {"units_per_second": samples, "medians": rates,
                                    "scrapes": scrapes}  # fmt: skip
    for mode in modes[1:]:
        ratio = rates[mode] / rates["plain"]
        results.rows.append(
            Row(
                "overhead",
                f"units/s with {mode}",
                f"{rates[mode]:,.0f}",
                f"{ratio:.3f}x plain ({rates['plain']:,.0f}/s)",
                f">= {TARGET:.2f}x plain",
                ratio >= TARGET,
            )
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Run every section, print the summary table, write ``--json``; returns the exit status."""
    return _common.metric_main(
        argv,
        doc=__doc__,
        name="observability benchmark",
        title="Conveyor observability benchmark",
        sections={"overhead": bench_overhead},
        make_config=Config.make,
        scratch_prefix="conveyor-bench-obs-",
    )


if __name__ == "__main__":
    sys.exit(main())
