"""Alarm rules: declared in the pipeline (``Pipeline(alarms=[...])``) or in a YAML file
(``--alarms FILE``), evaluated continuously while a run, ``serve`` or ``watch`` goes. Firing
and resolving each log one event, send one notification and are recorded in the ledger, where
``conveyor alarms`` and the dashboard read them.

A YAML file::

    alarms:
      - name: failing
        metric: failure_rate      # failed attempts / attempts, over the window
        above: 10%
        window: 5m                # the default
        min_units: 10             # attempts needed before a rate can fire (the default)
        every: 5s                 # how often it is evaluated (the default)
      - name: slow-scoring
        metric: p95_latency       # p95 wall time of the step's finished units (seconds)
        step: score
        above: 2s
      - name: backlog
        metric: queue_age         # how long the oldest ready unit has waited
        above: 10m
      - name: stalled
        metric: throughput        # finished units per second, while work is waiting
        below: 1
      - name: memory
        metric: worker_memory     # resident memory of a worker (bytes, or "2GB")
        above: 2GB
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.core.durations import parse_duration
from conveyor.core.logs import event
from conveyor.core.sizes import parse_size
from conveyor.core.units import LiveStats
from conveyor.errors import DefinitionError
from conveyor.store import Store, open_store

if TYPE_CHECKING:
    from conveyor.observability.notify import Notifier

#: metric -> (the direction it alarms in, how its threshold is written, a description)
METRICS: dict[str, tuple[str, str, str]] = {
    "failure_rate": ("above", "a fraction (0.1) or a percentage ('10%')", "failed attempts"),
    "p95_latency": ("above", "a duration ('2s')", "p95 unit wall time"),
    "queue_age": ("above", "a duration ('10m')", "age of the oldest ready unit"),
    "throughput": ("below", "units per second (1.5)", "finished units per second"),
    "worker_memory": ("above", "bytes or a size ('2GB')", "worker resident memory"),
}
#: Seconds between evaluations, unless a rule asks for less.
EVALUATE_EVERY = 5.0
_KEYS = {"name", "metric", "above", "below", "window", "step", "min_units", "every"}


@dataclass(frozen=True, slots=True)
class AlarmRule:
    """One rule: ``metric`` (of ``step``, or of the whole run) over the last ``window``
    seconds crossing ``threshold``; ``min_units`` finished units are needed before a rate or a
    percentile can fire."""

    name: str
    metric: str
    threshold: float
    window: float = 300.0
    step: str | None = None
    min_units: int = 10
    every: float = EVALUATE_EVERY

    @property
    def above(self) -> bool:
        """Whether it fires above its threshold (else below)."""
        return METRICS[self.metric][0] == "above"

    def breached(self, value: float | None) -> bool:
        """Whether ``value`` is on the wrong side of the threshold (None: not enough data)."""
        if value is None:
            return False
        return value > self.threshold if self.above else value < self.threshold


def rule(spec: AlarmRule | Mapping[str, Any], where: str = "alarm") -> AlarmRule:
    """An :class:`AlarmRule` from a rule or a mapping as written in YAML; a bad one raises
    :class:`~conveyor.errors.DefinitionError` saying which key is wrong and how to fix it."""
    if isinstance(spec, AlarmRule):
        return spec
    if not isinstance(spec, Mapping):
        raise DefinitionError(f"{where}: an alarm is a mapping with name, metric and above/below")
    unknown = sorted(set(spec) - _KEYS)
    if unknown:
        raise DefinitionError(f"{where}: unknown keys {unknown}; use {sorted(_KEYS)}")
    name = spec.get("name")
    if not isinstance(name, str) or not name.strip():
        raise DefinitionError(f"{where}: 'name' must be a non-empty string")
    where = f"{where} {name!r}"
    metric = spec.get("metric")
    if metric not in METRICS:
        raise DefinitionError(f"{where}: 'metric' must be one of {', '.join(METRICS)}")
    direction, form, _ = METRICS[metric]
    wrong = "below" if direction == "above" else "above"
    if wrong in spec or direction not in spec:
        raise DefinitionError(f"{where}: {metric} alarms fire {direction} a threshold: write "
                              f"'{direction}: {form}'")  # fmt: skip
    try:
        threshold = _threshold(metric, spec[direction])
        window = parse_duration(spec.get("window", "5m"))
        every = parse_duration(spec.get("every", EVALUATE_EVERY))
    except ValueError as exc:
        raise DefinitionError(f"{where}: {exc}") from None
    if window <= 0 or every <= 0:
        raise DefinitionError(f"{where}: 'window' and 'every' must be longer than zero")
    step = spec.get("step")
    if step is not None and not isinstance(step, str):
        raise DefinitionError(f"{where}: 'step' must be a step name")
    min_units = spec.get("min_units", 10)
    if not isinstance(min_units, int) or isinstance(min_units, bool) or min_units < 1:
        raise DefinitionError(f"{where}: 'min_units' must be a whole number of at least 1")
    return AlarmRule(name, str(metric), threshold, window, step, min_units, every)


def _threshold(metric: str, raw: Any) -> float:
    if metric in ("p95_latency", "queue_age"):
        return parse_duration(raw)
    if metric == "worker_memory":
        return float(parse_size(raw))
    if metric == "failure_rate" and isinstance(raw, str) and raw.strip().endswith("%"):
        raw = float(raw.strip()[:-1]) / 100
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ValueError(f"threshold {raw!r}: write {METRICS[metric][1]}")
    if metric == "failure_rate" and not 0 <= raw <= 1:
        raise ValueError(f"threshold {raw!r}: a failure rate is between 0 and 1 (or 0%-100%)")
    return float(raw)


def rules(specs: Iterable[AlarmRule | Mapping[str, Any]], where: str = "alarms") -> list[AlarmRule]:
    """Rules from ``specs``, with unique names."""
    found = [rule(spec, f"{where}[{i}]") for i, spec in enumerate(specs)]
    names = [r.name for r in found]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DefinitionError(f"{where}: alarm names must be unique; repeated: {twice}")
    return found


def load_rules(path: str | Path) -> list[AlarmRule]:
    """The rules of a YAML file (a top-level ``alarms:`` list)."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise DefinitionError(f"--alarms {path}: cannot read it: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise DefinitionError(f"--alarms {path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("alarms"), list):
        raise DefinitionError(f"--alarms {path}: expected a top-level 'alarms:' list of rules")
    return rules(data["alarms"], f"{path}: alarms")


def check_steps(found: Sequence[AlarmRule], steps: Iterable[str]) -> None:
    """Refuse rules about steps the pipeline does not have."""
    known = set(steps)
    for r in found:
        if r.step is not None and r.step not in known:
            raise DefinitionError(f"alarm {r.name!r}: no step {r.step!r} in the pipeline "
                                  f"(steps: {', '.join(sorted(known))})")  # fmt: skip


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
                logging.getLogger("conveyor.definition.alarms").exception("alarm evaluation failed")
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
            firing = r.breached(value)
            if firing != self._firing.get(r.name, False):
                self._firing[r.name] = firing
                self._announce(self._store, run_id, r, firing, value)
        return values

    def _value(
        self, store: Store, run_id: str, r: AlarmRule, live: LiveStats | None
    ) -> float | None:
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
        for notifier in self._notifiers:
            notifier.send({"event": name, "pipeline": self._pipeline, "run": run_id,
                           "alarm": r.name, "metric": r.metric, "step": r.step, "value": value,
                           "threshold": r.threshold, "message": message})  # fmt: skip


def _shown(metric: str, value: float | None) -> str:
    if value is None:
        return "unknown"
    if metric == "failure_rate":
        return f"{value:.1%}"
    if metric in ("p95_latency", "queue_age"):
        return f"{value:.3g}s"
    if metric == "worker_memory":
        return f"{value / 2**20:.0f} MiB"
    return f"{value:.3g}/s"
