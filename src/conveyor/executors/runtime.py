"""What runs a unit wherever it runs: rebuild inputs, build resources once, call the step,
capture errors.

The same :class:`Runtime` serves worker processes, thread pools, the inline executor and Ray's
tasks and actors, so there is one code path for running a unit whatever executes it."""

from __future__ import annotations

import os
import pickle
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from conveyor.core.units import ErrorInfo, Outcome, Task, UnitWork
from conveyor.definition.graph import Graph
from conveyor.definition.retry import classify
from conveyor.definition.step import ITEM, Resource, StepOptions
from conveyor.errors import InputError
from conveyor.sources.names import escape_name
from conveyor.sources.readers import rebuild_item

#: Told by a chain which of its units of a step with a timeout run now, and that timeout in
#: seconds; ``((), None)`` once they are done.
Timed = Callable[[tuple[int, ...], float | None], None]


class ResourceFailed(Exception):
    """A resource could not be built in this process; the cause is chained."""


class Runtime:
    """Runs tasks of one pipeline graph; resources are built on first use and kept."""

    def __init__(self, graph: Graph, resources: Mapping[str, Resource]) -> None:
        self._graph = graph
        self._resources = resources
        self._built: dict[str, Any] = {}
        self._failed: dict[str, BaseException] = {}
        self._lock = threading.RLock()
        self._memory = _MemorySampler()

    def resource(self, name: str) -> Any:
        """The resource ``name``, built (with the resources it takes) the first time it is asked."""
        if name in self._built:
            return self._built[name]
        with self._lock:
            if name in self._built:
                return self._built[name]
            if name in self._failed:
                raise ResourceFailed(f"resource {name!r} failed to build in this worker") from (
                    self._failed[name]
                )
            resource = self._resources[name]
            try:
                # Parameters that are not resources have defaults (the graph checked it).
                kwargs = {
                    p.name: self.resource(p.name)
                    for p in resource.params
                    if p.name in self._resources
                }
                value = resource.fn(**kwargs)
            except ResourceFailed:
                raise
            except Exception as exc:
                self._failed[name] = exc
                raise ResourceFailed(f"resource {name!r} failed to build: {exc}") from exc
            self._built[name] = value
            return value

    def built(self, name: str) -> bool:
        """Whether the resource ``name`` is built in this process already."""
        return name in self._built

    def run_task(self, task: Task, timed: Timed | None = None) -> list[Outcome]:
        """Run every unit of ``task`` and return one outcome per unit, with the CPU time each
        used and, on the last, this process's memory; never raises. In a chain, ``timed`` is
        told which units of a step with a timeout run now (and ``None`` once they are done), so
        that whoever enforces timeouts knows the culprit."""
        if task.chain:
            outcomes = self._run_chain(task.units, timed)
        elif task.batch is not None:
            outcomes = self._timed_batch(task.batch, task.units)
        else:
            outcomes = [self._timed_one(unit) for unit in task.units]
        if outcomes and (rss := self._memory.sample()):
            outcomes[-1] = outcomes[-1]._replace(rss=rss)
        return outcomes

    def _timed_one(self, unit: UnitWork) -> Outcome:
        cpu0 = time.thread_time()
        outcome = self._run_one(unit)
        return outcome._replace(cpu=time.thread_time() - cpu0)

    def _timed_batch(self, step: str, units: tuple[UnitWork, ...]) -> list[Outcome]:
        cpu0 = time.thread_time()
        outcomes = self._run_batch(step, units)
        share = (time.thread_time() - cpu0) / max(1, len(outcomes))
        return [outcome._replace(cpu=share) for outcome in outcomes]

    def _run_chain(self, units: tuple[UnitWork, ...], timed: Timed | None) -> list[Outcome]:
        """Units of whole items in dependency order. Each takes the values of the units before
        it from memory; a unit whose upstream unit here did not succeed is handed back unrun
        (its item's other branches go on); consecutive units of a batched step run as one
        batch of at most ``batch_size``."""
        produced: dict[int, bytes | None] = {}  # unit id -> its pickled value; None if failed
        outcomes: list[Outcome] = []
        i = 0
        while i < len(units):
            options = self._graph.nodes[units[i].step].step.options
            end = i + 1
            while (options.batch_size and end < len(units) and end - i < options.batch_size
                   and units[end].step == units[i].step):  # fmt: skip
                end += 1
            runnable: list[UnitWork] = []
            for unit in units[i:end]:
                values = [(name, produced.get(source)) for name, source in unit.local]
                if any(value is None for _, value in values):
                    produced[unit.unit_id] = None
                    outcomes.append(_unrun(unit))
                    continue
                inputs = {**unit.inputs, **{name: v for name, v in values if v is not None}}
                runnable.append(unit._replace(inputs=inputs, local=()))
            if runnable:
                if timed is not None and options.timeout:
                    timed(tuple(u.unit_id for u in runnable), options.timeout)
                if options.batch_size:
                    done = self._timed_batch(runnable[0].step, tuple(runnable))
                else:
                    done = [self._timed_one(runnable[0])]
                if timed is not None and options.timeout:
                    timed((), None)
                for outcome in done:
                    produced[outcome.unit_id] = outcome.value if outcome.error is None else None
                outcomes += done
            i = end
        return outcomes

    def _run_one(self, unit: UnitWork) -> Outcome:
        step = self._graph.nodes[unit.step].step
        started = time.time()
        t0 = time.perf_counter()
        try:
            kwargs = self._arguments(unit)
            value = step.fn(**kwargs)
            payload = _dumps(unit.step, value)
        except Exception as exc:
            return Outcome(
                unit.unit_id,
                unit.fence,
                None,
                error_info(exc, step.options),
                started,
                time.perf_counter() - t0,
            )
        return Outcome(unit.unit_id, unit.fence, payload, None, started, time.perf_counter() - t0)

    def _run_batch(self, step: str, units: tuple[UnitWork, ...]) -> list[Outcome]:
        node = self._graph.nodes[step]
        started = time.time()
        t0 = time.perf_counter()
        # Units whose inputs cannot be built fail alone; the rest run as one batch.
        good: list[UnitWork] = []
        columns: dict[str, list[Any]] = {}
        outcomes: dict[int, Outcome] = {}
        for unit in units:
            try:
                kwargs = self._arguments(unit, with_resources=False)
            except Exception as exc:
                outcomes[unit.unit_id] = Outcome(
                    unit.unit_id,
                    unit.fence,
                    None,
                    error_info(exc, node.step.options),
                    started,
                    time.perf_counter() - t0,
                )
                continue
            good.append(unit)
            for name, value in kwargs.items():
                columns.setdefault(name, []).append(value)
        if good:
            try:
                call = dict(columns)
                for name in node.resources:
                    call[name] = self.resource(name)
                values = node.step.fn(**call)
                if not isinstance(values, Sequence) or isinstance(values, str | bytes):
                    raise TypeError(
                        f"batched step {step!r} must return a list with one value per input; "
                        f"it returned {type(values).__name__}"
                    )
                if len(values) != len(good):
                    raise ValueError(
                        f"batched step {step!r} returned {len(values)} values for "
                        f"{len(good)} inputs; return exactly one value per input, in order"
                    )
                share = (time.perf_counter() - t0) / len(good)
                for unit, value in zip(good, values, strict=True):
                    try:
                        outcomes[unit.unit_id] = Outcome(
                            unit.unit_id, unit.fence, _dumps(step, value), None, started, share
                        )
                    except Exception as exc:
                        outcomes[unit.unit_id] = Outcome(
                            unit.unit_id,
                            unit.fence,
                            None,
                            error_info(exc, node.step.options),
                            started,
                            share,
                        )
            except Exception as exc:
                share = (time.perf_counter() - t0) / len(good)
                info = error_info(exc, node.step.options)
                for unit in good:
                    outcomes[unit.unit_id] = Outcome(
                        unit.unit_id, unit.fence, None, info, started, share
                    )
        return [outcomes[unit.unit_id] for unit in units]

    def _arguments(self, unit: UnitWork, with_resources: bool = True) -> dict[str, Any]:
        node = self._graph.nodes[unit.step]
        kwargs: dict[str, Any] = {}
        if node.uses_item:
            row = unit.item
            if row is None:
                raise InputError(f"step {unit.step!r}: the item of unit {unit.unit_id} is missing")
            if row.error:
                raise InputError(row.error)
            kwargs[ITEM] = rebuild_item(row.kind, row.item_id, row.payload)
        for name in node.upstream:
            kwargs[name] = pickle.loads(unit.inputs[name])
        if with_resources:
            for name in node.resources:
                kwargs[name] = self.resource(name)
        return kwargs


class _MemorySampler:
    """This process's resident memory, read at most once a second (reading it costs more than
    a small unit)."""

    EVERY = 1.0

    def __init__(self) -> None:
        self._next = 0.0
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def sample(self) -> int:
        """Resident bytes now, or 0 if read less than a second ago (or unreadable here)."""
        now = time.monotonic()
        if now < self._next:
            return 0
        self._next = now + self.EVERY
        try:
            with open("/proc/self/statm", "rb") as fh:
                return int(fh.read().split()[1]) * self._page
        except (OSError, IndexError, ValueError):
            return 0


def _unrun(unit: UnitWork) -> Outcome:
    """A unit of a chain that did not run because an upstream unit in its task failed: it goes
    back to wait for that unit's retry, without spending an attempt."""
    return Outcome(unit.unit_id, unit.fence, None, None, time.time(), 0.0, requeue=True)


def _dumps(step: str, value: Any) -> bytes:
    try:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        raise TypeError(
            f"step {step!r} returned a {type(value).__name__} that cannot be stored ({exc}); "
            f"return plain data (str, numbers, lists, dicts, arrays)"
        ) from exc


def error_info(exc: BaseException, options: StepOptions | None = None) -> ErrorInfo:
    """The exception's type, message and traceback, without Conveyor's own frames on top, and
    whether the step's retry options allow another attempt."""
    cls = type(exc)
    name = (
        cls.__qualname__
        if cls.__module__ in ("builtins", "__main__")
        else (f"{cls.__module__}.{cls.__qualname__}")
    )
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_globals.get("__name__") == __name__:
        tb = tb.tb_next
    # a message may carry a path whose name is not UTF-8; the ledger stores text
    text = escape_name("".join(traceback.format_exception(cls, exc, tb)))
    message = escape_name(str(exc))
    verdict = classify(exc, options.retry_on, options.give_up_on) if options else None
    if verdict is None:
        return ErrorInfo(name, message, text)
    return ErrorInfo(name, message, text, verdict.retryable, verdict.delay)
