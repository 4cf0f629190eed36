"""Alarm evaluation: the rules of :mod:`conveyor.definition.alarms`, evaluated against a run on
a background thread while it goes; each firing and resolution is logged, notified and recorded
in the ledger."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from conveyor.core.logs import event
from conveyor.core.units import LiveStats, RunState, StepStats, UnitState
from conveyor.definition.alarms import EVALUATE_EVERY, METRICS, AlarmRule
from conveyor.observability.notify import Notifier
from conveyor.scheduling.hooks import Hooks, RunContext
from conveyor.store import Store, open_store

log = logging.getLogger("conveyor.observability.alarms")


class AlarmWatch:
    """Evaluates rules against one run every ``every`` seconds on a background thread (on
    its own ledger connection); each change of state is logged, notified and recorded."""

    def __init__(
        self,
        found: Sequence[AlarmRule],
        *,
        pipeline: str,
        store: str | Path | None,
        run_id: Callable[[], str | None],
        live: Callable[[], LiveStats | None] = lambda: None,
        notifiers: Sequence[Notifier] = (),
    ) -> None:
        self.rules = list(found)
        self._pipeline = pipeline
        self._location = store
        self._run_id = run_id
        self._live = live
        self._notifiers = list(notifiers)
        self._every = min((r.every for r in found), default=EVALUATE_EVERY)
        self._firing: dict[str, bool] = {}
        self._shares: dict[str, tuple[int, int]] = {}  # dead_share rule -> (dead, finished)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._store: Store | None = None

    def start(self) -> AlarmWatch:
        """Start evaluating (nothing happens without rules)."""
        if self.rules and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="conveyor-alarms", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Evaluate one last time, then stop."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=30)
            self._thread = None
        if self._store is not None:
            self._store.close()
            self._store = None

    def close_notifiers(self) -> None:
        """Deliver what the notifiers still hold, and stop them."""
        for notifier in self._notifiers:
            notifier.close()

    def _loop(self) -> None:
        while True:
            stopping = self._stop.wait(self._every)
            try:
                self.evaluate()
            except Exception:  # an alarm must never stop the run it watches
                log.exception("alarm evaluation failed")
            if stopping:
                return

    def evaluate(self) -> dict[str, float | None]:
        """Evaluate every rule now; return each rule's current value."""
        run_id = self._run_id()
        if not run_id:
            return {}
        if self._store is None:
            self._store = open_store(self._location)
        values: dict[str, float | None] = {}
        live = self._live()
        for r in self.rules:
            value = self._value(self._store, run_id, r, live)
            values[r.name] = value
            was = self._firing.get(r.name, False)
            firing = not r.cleared(value) if was else r.breached(value)
            if firing != was:
                self._firing[r.name] = firing
                self._announce(self._store, run_id, r, firing, value)
        return values

    def _value(
        self, store: Store, run_id: str, r: AlarmRule, live: LiveStats | None
    ) -> float | None:
        if r.metric == "dead_share":
            counts = store.run_counts([run_id]).get(run_id, {})
            dead, done = counts.get(UnitState.DEAD.value, 0), counts.get(UnitState.DONE.value, 0)
            self._shares[r.name] = (dead, dead + done)
            return dead / (dead + done) if dead + done >= r.min_units else None
        if r.metric == "worker_memory":
            if live is None or not live.rss_bytes:
                return None
            memory = live.rss_bytes
            return float(memory.get(r.step, 0) if r.step else max(memory.values()))
        window = store.alarm_window(run_id, r.window, r.step, p95=r.metric == "p95_latency")
        if r.metric == "queue_age":
            return window.oldest_ready_age
        if r.metric == "throughput":
            return window.done / r.window if window.waiting else None
        if window.done + window.failed < r.min_units:
            return None
        if r.metric == "failure_rate":
            return window.failed / (window.done + window.failed)
        return window.p95

    def _announce(
        self, store: Store, run_id: str, r: AlarmRule, firing: bool, value: float | None
    ) -> None:
        if r.builtin:
            if firing:  # the run's failure rate, as webhooks have always been told it
                dead, finished = self._shares[r.name]
                self._notify({"event": "run.failure_rate", "run": run_id, "rate": value,
                              "threshold": r.threshold, "dead": dead, "finished": finished,
                              "at": time.time()})  # fmt: skip
            return
        state = "firing" if firing else "resolved"
        what = METRICS[r.metric][2] + (f" of step {r.step}" if r.step else "")
        shown, limit = _shown(r.metric, value), _shown(r.metric, r.threshold)
        if firing:
            message = f"{what} is {shown}, {'above' if r.above else 'below'} {limit}"
        else:
            message = f"{what} is back to {shown} (threshold {limit})"
        store.set_alarm(run_id, r.name, state, value, r.threshold, message)
        name = "alarm.fired" if firing else "alarm.resolved"
        event(name, logging.WARNING if firing else logging.INFO, run=run_id, alarm=r.name,
              metric=r.metric, step=r.step, value=value, threshold=r.threshold)  # fmt: skip
        self._notify({"event": name, "run": run_id, "alarm": r.name, "metric": r.metric,
                      "step": r.step, "value": value, "threshold": r.threshold,
                      "message": message})  # fmt: skip

    def _notify(self, body: dict[str, Any]) -> None:
        body = {"event": body["event"], "pipeline": self._pipeline, **body}
        for notifier in self._notifiers:
            notifier.send(body)


class AlarmHooks(Hooks):
    """Evaluates ``rules`` while a run goes: from its start, once more when it finishes, and
    not after this coordinator stops driving it."""

    def __init__(self, rules: Sequence[AlarmRule], notifiers: Sequence[Notifier] = ()) -> None:
        self.rules = list(rules)
        self._notifiers = list(notifiers)
        self._watch: AlarmWatch | None = None

    def run_started(self, run: RunContext) -> None:
        """Start evaluating on a background thread, on its own ledger connection."""
        self._watch = AlarmWatch(
            self.rules, pipeline=run.pipeline, store=run.store, run_id=lambda: run.run_id,
            live=lambda: run.live, notifiers=self._notifiers,
        ).start()  # fmt: skip

    def run_finished(self, run: RunContext, state: RunState, stats: list[StepStats]) -> None:
        """Evaluate one last time on the final counts, before the run's end is announced."""
        self.run_stopped(run)

    def run_stopped(self, run: RunContext) -> None:
        """Stop evaluating."""
        if self._watch is not None:
            self._watch.stop()
            self._watch = None


def _shown(metric: str, value: float | None) -> str:
    if value is None:
        return "unknown"
    if metric in ("failure_rate", "dead_share"):
        return f"{value:.1%}"
    if metric in ("p95_latency", "queue_age"):
        return f"{value:.3g}s"
    if metric == "worker_memory":
        return f"{value / 2**20:.0f} MiB"
    return f"{value:.3g}/s"
