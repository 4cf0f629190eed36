"""Alarm rules: what to watch, declared in the pipeline (``Pipeline(alarms=[...])``) or in a
YAML file (``--alarms FILE``). :mod:`conveyor.observability.alarms` evaluates them continuously
while a run, ``serve`` or ``watch`` goes; firing and resolving each log one event, send one
notification and are recorded in the ledger, where ``conveyor alarms`` and the dashboard read
them.

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
      - name: dying
        metric: dead_share        # dead units / finished units of the whole run
        above: 10%
        min_units: 20             # finished units needed before it can fire
        clear: 5%                 # resolves only once back below this (default: the threshold)

With webhooks (``--notify``), every run also has :data:`DEFAULT_RULES`: the run's share of dead
units crossing 10% (after 20 finished) fires once and sends ``run.failure_rate``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.core.durations import parse_duration
from conveyor.core.sizes import parse_size
from conveyor.errors import DefinitionError

#: metric -> (the direction it alarms in, how its threshold is written, a description)
METRICS: dict[str, tuple[str, str, str]] = {
    "failure_rate": ("above", "a fraction (0.1) or a percentage ('10%')", "failed attempts"),
    "p95_latency": ("above", "a duration ('2s')", "p95 unit wall time"),
    "queue_age": ("above", "a duration ('10m')", "age of the oldest ready unit"),
    "throughput": ("below", "units per second (1.5)", "finished units per second"),
    "worker_memory": ("above", "bytes or a size ('2GB')", "worker resident memory"),
    "dead_share": (
        "above",
        "a fraction (0.1) or a percentage ('10%')",
        "dead units of those finished",
    ),
}
#: Seconds between evaluations, unless a rule asks for less.
EVALUATE_EVERY = 5.0
_KEYS = {"name", "metric", "above", "below", "window", "step", "min_units", "every", "clear"}
#: Metrics whose thresholds are fractions of 1.
_FRACTIONS = ("failure_rate", "dead_share")


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
    #: A firing rule resolves once the value is back beyond this (hysteresis, so that a value
    #: hovering at the threshold does not fire again and again); None: the threshold itself.
    clear: float | None = None
    #: One of :data:`DEFAULT_RULES`: it only notifies (as ``run.failure_rate``, the webhook event
    #: it has always been), and is neither recorded in the ledger nor logged as an alarm, so
    #: that ``conveyor alarms`` shows the user's own rules alone.
    builtin: bool = False

    @property
    def above(self) -> bool:
        """Whether it fires above its threshold (else below)."""
        return METRICS[self.metric][0] == "above"

    def breached(self, value: float | None) -> bool:
        """Whether ``value`` is on the wrong side of the threshold (None: not enough data)."""
        if value is None:
            return False
        return value > self.threshold if self.above else value < self.threshold

    def cleared(self, value: float | None) -> bool:
        """Whether a firing rule resolves at ``value`` (None: not enough data, it resolves)."""
        if value is None:
            return True
        limit = self.threshold if self.clear is None else self.clear
        return value <= limit if self.above else value >= limit


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
        clear = None if spec.get("clear") is None else _threshold(metric, spec["clear"])
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
    if clear is not None and (clear > threshold if direction == "above" else clear < threshold):
        raise DefinitionError(f"{where}: 'clear' is where a firing alarm resolves: it cannot be "
                              f"{direction} the threshold")  # fmt: skip
    return AlarmRule(name, str(metric), threshold, window, step, min_units, every, clear)


def _threshold(metric: str, raw: Any) -> float:
    if metric in ("p95_latency", "queue_age"):
        return parse_duration(raw)
    if metric == "worker_memory":
        return float(parse_size(raw))
    if metric in _FRACTIONS and isinstance(raw, str) and raw.strip().endswith("%"):
        raw = float(raw.strip()[:-1]) / 100
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ValueError(f"threshold {raw!r}: write {METRICS[metric][1]}")
    if metric in _FRACTIONS and not 0 <= raw <= 1:
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


#: The rules every run with webhooks has: the run's failure rate (its share of dead units)
#: crossing 10% after 20 finished units fires once, and re-arms once back below 5%.
DEFAULT_RULES = (
    AlarmRule("failure_rate", "dead_share", 0.1, min_units=20, clear=0.05, builtin=True),
)
