"""Running a pipeline over a batch: open the ledger, plan, schedule on executors, report."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain, islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from conveyor.core.durations import parse_duration
from conveyor.core.logs import event
from conveyor.core.units import RunInfo, RunState, StepStats, UnitState
from conveyor.definition.graph import Graph
from conveyor.definition.step import did_you_mean
from conveyor.errors import UsageError
from conveyor.executors import Executor, InlineExecutor, ProcessExecutor, ThreadExecutor
from conveyor.executors.runtime import Runtime
from conveyor.scheduling.planner import Plan, plan_run, plan_signature, replan_item, step_salts
from conveyor.scheduling.scheduler import LEASE_SECONDS, Scheduler, coordinator_id, new_owner
from conveyor.sources.readers import (
    SourceItem,
    SourceSpec,
    check_spec,
    items_from_iterable,
    read_source,
)
from conveyor.store import Store, open_store
from conveyor.store.rows import ErrorGroup, Failure, UnitReset

if TYPE_CHECKING:
    from conveyor.definition.alarms import AlarmRule
    from conveyor.definition.pipeline import Pipeline
    from conveyor.observability.metrics import RunMetrics
    from conveyor.observability.notify import Notifier

#: Threads for a thread step that does not set ``concurrency``.
DEFAULT_THREADS = 8
#: Where process steps run: this machine's process pool, or a Ray cluster.
EXECUTORS = ("local", "ray")


class RunObserver(Protocol):
    """Told about a run's life: planned counts, progress, and the end."""

    def started(self, run_id: str, plan: Plan) -> None:
        """Planning is done; ``plan`` has the units per step and state."""

    def advanced(self, step: str, state: UnitState, count: int) -> None:
        """``count`` units of ``step`` reached ``state``."""

    def finished(self, stats: list[StepStats]) -> None:
        """The run ended; ``stats`` are the ledger's final counts."""


@dataclass
class RunReport:
    """How a run ended: its id, state, per-step statistics and wall time."""

    run_id: str
    state: RunState
    stats: list[StepStats]
    seconds: float
    items: int
    store: str
    duplicates: int = 0
    failures: list[Failure] = field(default_factory=list)
    errors: list[ErrorGroup] = field(default_factory=list)  # top error groups
    resumed: bool = False

    @property
    def failed(self) -> int:
        """Units that failed for good."""
        return sum(s.counts.get(UnitState.DEAD.value, 0) for s in self.stats)


def new_run_id() -> str:
    """A sortable, readable run id: ``20261122-143501-7f3a``."""
    return f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def select_steps(graph: Graph, only: Sequence[str], force: Sequence[str]) -> list[str]:
    """The steps a run covers: ``only`` and what they need (all steps when empty)."""
    for option, names in (("--only", only), ("--force", force)):
        for name in names:
            if name not in graph.nodes:
                raise UsageError(
                    f"{option} {name!r}: no such step{did_you_mean(name, graph.nodes)}; "
                    f"steps: {', '.join(graph.order)}"
                )
    return graph.closure(list(only)) if only else list(graph.order)


def run_pipeline(
    pipeline: Pipeline,
    source: str | Path | Iterable[Any],
    *,
    store: str | Path | Store | None = None,
    workers: int | None = None,
    only: Sequence[str] = (),
    force: Sequence[str] = (),
    observer: RunObserver | None = None,
    pipeline_file: str | None = None,
    id_field: str | None = None,
    group_by: Sequence[str] = (),
    buckets: int | None = None,
    resume: str | None = None,
    new: bool = False,
    notify: Sequence[str] = (),
    notify_format: str = "json",
    lease: str | float | None = None,
    metrics_port: int | None = None,
    executor: str = "local",
    ray_address: str | None = None,
    alarms: Sequence[AlarmRule] = (),
) -> RunReport:
    """Run ``pipeline`` over ``source`` to the end and return its report. Failures of units do
    not raise: they are in the report and the ledger. With ``metrics_port``, the run's
    Prometheus metrics are served on ``127.0.0.1:PORT/metrics`` while it runs; ``alarms``
    (with the pipeline's own) are evaluated as it goes.

    An unfinished run of the same pipeline over the same input with the same code (interrupted,
    or whose coordinator died) is continued rather than started again, unless ``new``;
    ``resume`` names the run to continue. ``executor="ray"`` runs process steps on Ray (a local
    Ray, or the cluster at ``ray_address``)."""
    graph = pipeline.graph
    steps = select_steps(graph, only, force)
    if workers is not None and workers < 0:
        raise UsageError(f"--workers {workers}: must be 0 (run inline) or more")
    check_executor(executor, ray_address, workers)
    lease_seconds = parse_lease(lease)
    items, description = _items(source, id_field, tuple(group_by), buckets)
    notifiers = _notifiers(pipeline, notify, notify_format)
    ledger = store if isinstance(store, Store) else open_store(store)
    observer = _with_notifications(observer, pipeline, ledger, notifiers)
    versions = {n: r.code_version for n, r in pipeline.resources.items()}
    signature = plan_signature(graph, steps, force, versions)
    owner = new_owner()
    coordinator = coordinator_id(owner)
    started = time.perf_counter()
    run_id = resume
    if run_id is None and not new and isinstance(source, str | Path):
        run_id = ledger.find_resumable(pipeline.name, description, signature)
    planned = adopted = False
    if run_id is not None:
        run = ledger.get_run(run_id)
        _check_resumable(run, pipeline.name, signature)
        ledger.adopt_run(run.id, coordinator)
        run_id, planned, adopted = run.id, run.planned, True
        if lease is None:  # a continued run keeps the visibility timeout it was started with
            lease_seconds = parse_lease(run.options.get("lease"))
    else:
        run_id = new_run_id()
        ledger.create_run(
            run_id,
            pipeline=pipeline.name,
            pipeline_file=pipeline_file,
            source=description,
            steps=steps,
            options={
                "input": None if not isinstance(source, str | Path) else str(source),
                "id_field": id_field,
                "group_by": list(group_by),
                "buckets": buckets,
                "only": list(only),
                "force": list(force),
                "lease": lease_seconds,
                "executor": executor,
                "ray_address": ray_address,
            },
            signature=signature,
            coordinator=coordinator,
        )
    try:
        if planned:
            plan = _plan_so_far(ledger, run_id, steps)
        else:
            plan = plan_run(
                ledger, run_id, graph, steps, items, force=set(force), resource_versions=versions
            )
            ledger.mark_planned(run_id)
        plan.resumed = adopted
    except BaseException as exc:
        _record_end(ledger, run_id, exc)
        raise
    return _execute(
        pipeline, ledger, run_id, steps, plan, workers, observer, owner, coordinator, started,
        close=not isinstance(store, Store), lease=lease_seconds, metrics_port=metrics_port,
        executor=executor, ray_address=ray_address,
        alarms=[*pipeline.alarms, *alarms], notifiers=notifiers,
    )  # fmt: skip


def check_executor(executor: str, ray_address: str | None, workers: int | None) -> None:
    """Refuse an unknown ``--executor``, a ``--ray-address`` without Ray, and Ray that is not
    installed, before anything is recorded."""
    if executor not in EXECUTORS:
        raise UsageError(
            f"--executor {executor!r}: must be one of {', '.join(EXECUTORS)}"
            f"{did_you_mean(executor, EXECUTORS)}"
        )
    if executor == "ray":
        from conveyor.executors.ray import require_ray

        if workers == 0:
            raise UsageError("--workers 0 runs inline in this process; it cannot be used with Ray")
        require_ray()
    elif ray_address:
        raise UsageError(f"--ray-address {ray_address!r} needs --executor ray")


def parse_lease(value: str | float | None) -> float:
    """The visibility timeout in seconds (``--lease``, default 5 minutes), at least a few
    heartbeats long."""
    if value is None:
        return LEASE_SECONDS
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise UsageError(f"--lease {exc}") from None
    if seconds < 1:
        raise UsageError(f"--lease {value!r}: must be at least 1s so leases can be renewed")
    return seconds


def _notifiers(pipeline: Pipeline, urls: Sequence[str], format: str) -> list[Notifier]:
    """Webhook notifiers for the pipeline's and the command's URLs (checked before anything
    is recorded)."""
    from conveyor.observability.notify import WebhookNotifier

    return [WebhookNotifier(url, format=format) for url in dict.fromkeys([*pipeline.notify, *urls])]


def _with_notifications(
    observer: RunObserver | None, pipeline: Pipeline, ledger: Store, notifiers: list[Notifier]
) -> RunObserver | None:
    """``observer`` plus a notifying observer sending to ``notifiers``."""
    if not notifiers:
        return observer
    from conveyor.observability.notify import NotifyingObserver

    notifying = NotifyingObserver(notifiers, ledger, pipeline.name)
    return Observers([o for o in (observer, notifying) if o is not None], closing=notifiers)


class Observers:
    """Several observers as one; ``closing`` are notifiers to flush when the run ends."""

    def __init__(self, observers: Sequence[RunObserver], closing: Sequence[Any] = ()) -> None:
        self._observers = observers
        self._closing = closing

    def started(self, run_id: str, plan: Plan) -> None:
        """Tell each observer."""
        for o in self._observers:
            o.started(run_id, plan)

    def advanced(self, step: str, state: UnitState, count: int) -> None:
        """Tell each observer."""
        for o in self._observers:
            o.advanced(step, state, count)

    def finished(self, stats: list[StepStats]) -> None:
        """Tell each observer, then deliver pending notifications."""
        for o in self._observers:
            o.finished(stats)
        for notifier in self._closing:
            notifier.close()


def redrive_run(
    pipeline: Pipeline,
    run_id: str | None = None,
    *,
    store: str | Path | Store | None = None,
    step: str | None = None,
    error: str | None = None,
    workers: int | None = None,
    observer: RunObserver | None = None,
) -> RunReport:
    """Re-queue a run's dead units (of ``step``, with error signature ``error``) and the units
    they had skipped, with cache keys from the current code, and run them to the end."""
    ledger = store if isinstance(store, Store) else open_store(store, create=False)
    run = ledger.get_run(run_id)
    if run.pipeline != pipeline.name:
        raise UsageError(
            f"run {run.id} is a run of pipeline {run.pipeline!r}, not {pipeline.name!r}"
        )
    if run.state is RunState.RUNNING and coordinator_alive(run):
        raise UsageError(f"run {run.id} is still running; redrive it once it has finished")
    graph = pipeline.graph
    missing = [s for s in run.steps if s not in graph.nodes]
    if missing:
        raise UsageError(
            f"run {run.id} has steps the pipeline no longer defines ({', '.join(missing)}); "
            f"start a new run instead"
        )
    dead = ledger.dead_units(run.id, step=step, signature=error)
    if not dead:
        what = " ".join(f for f in (f"of step {step!r}" if step else "",
                                    f"with error {error!r}" if error else "") if f)  # fmt: skip
        raise UsageError(f"run {run.id} has no dead units {what}".rstrip() + "; nothing to redrive")
    steps = list(run.steps)
    versions = {n: r.code_version for n, r in pipeline.resources.items()}
    force = run.options.get("force") or []
    signature = plan_signature(graph, steps, force, versions)
    salts = step_salts(graph, steps, versions)
    by_item: dict[int, set[str]] = {}
    for unit in dead:
        by_item.setdefault(unit["item_idx"], set()).add(unit["step"])
    resets: list[UnitReset] = []
    idxs = sorted(by_item)
    for start in range(0, len(idxs), 1000):
        rows = ledger.units_of_items(run.id, idxs[start : start + 1000])
        per_item: dict[int, dict[str, tuple[int, UnitState, str]]] = {}
        item_keys: dict[int, str] = {}
        for unit_id, idx, name, state, key, item_key in rows:
            per_item.setdefault(idx, {})[name] = (unit_id, state, key)
            item_keys[idx] = item_key
        for idx, units in per_item.items():
            resets += replan_item(graph, steps, salts, item_keys[idx], units, by_item[idx])
    owner = new_owner()
    coordinator = coordinator_id(owner)
    started = time.perf_counter()
    ledger.reset_units(run.id, resets, signature)
    ledger.adopt_run(run.id, coordinator)
    plan = _plan_so_far(ledger, run.id, steps)
    observer = _with_notifications(observer, pipeline, ledger, _notifiers(pipeline, (), "json"))
    return _execute(
        pipeline, ledger, run.id, steps, plan, workers, observer, owner, coordinator, started,
        close=not isinstance(store, Store), lease=parse_lease(run.options.get("lease")),
        executor=run.options.get("executor") or "local", ray_address=run.options.get("ray_address"),
    )  # fmt: skip


def _execute(
    pipeline: Pipeline,
    ledger: Store,
    run_id: str,
    steps: Sequence[str],
    plan: Plan,
    workers: int | None,
    observer: RunObserver | None,
    owner: str,
    coordinator: str,
    started: float,
    *,
    close: bool,
    lease: float = LEASE_SECONDS,
    metrics_port: int | None = None,
    executor: str = "local",
    ray_address: str | None = None,
    alarms: Sequence[AlarmRule] = (),
    notifiers: Sequence[Notifier] = (),
) -> RunReport:
    """Schedule a planned run to the end, record how it ended, and report; with
    ``metrics_port``, serve its Prometheus metrics on 127.0.0.1 meanwhile, and evaluate
    ``alarms`` as it goes (notifying ``notifiers``)."""
    graph = pipeline.graph
    metrics = None
    watch = None
    try:
        if observer is not None:
            observer.started(run_id, plan)
        event("run.started", run=run_id, pipeline=pipeline.name, items=plan.items,
              resumed=plan.resumed or None)  # fmt: skip
        lanes = build_executors(
            pipeline, graph, steps, workers, executor=executor, ray_address=ray_address
        )
        scheduler = Scheduler(
            ledger, run_id, graph, steps, lanes, observer, owner=owner, coordinator=coordinator,
            lease=lease,
        )  # fmt: skip
        if metrics_port is not None:
            metrics = _serve_metrics(pipeline, ledger, run_id, scheduler, metrics_port)
        if alarms:
            from conveyor.definition.alarms import AlarmWatch

            watch = AlarmWatch(alarms, pipeline=pipeline.name, store=ledger.location,
                               run_id=lambda: run_id, live=lambda: scheduler.live,
                               notifiers=notifiers).start()  # fmt: skip
        try:
            scheduler.run_with_executors()
        finally:
            if metrics is not None:
                metrics.close()
            if watch is not None:
                watch.stop()
    except BaseException as exc:
        _record_end(ledger, run_id, exc)
        raise
    state, stats = finish_run(ledger, run_id, steps)
    event("run.finished", run=run_id, pipeline=pipeline.name, state=state.value,
          seconds=round(time.perf_counter() - started, 3),
          dead=sum(st.counts.get(UnitState.DEAD.value, 0) for st in stats) or None)  # fmt: skip
    dead = state is RunState.COMPLETED_WITH_ERRORS
    if observer is not None:
        observer.finished(stats)
    report = RunReport(
        run_id=run_id,
        state=state,
        stats=stats,
        seconds=time.perf_counter() - started,
        items=plan.items,
        store=ledger.location,
        duplicates=plan.duplicates,
        failures=ledger.failures(run_id, limit=5) if dead else [],
        errors=ledger.error_groups(run_id, limit=5) if dead else [],
        resumed=plan.resumed,
    )
    if close:
        ledger.close()
    return report


def _serve_metrics(
    pipeline: Pipeline, ledger: Store, run_id: str, scheduler: Scheduler, port: int
) -> RunMetrics:
    from conveyor.observability.metrics import RunMetrics

    metrics = RunMetrics(pipeline.name, ledger.location, lambda: run_id, lambda: scheduler.live)
    try:
        metrics.serve(port)
    except OSError as exc:
        metrics.close()
        raise UsageError(f"--metrics-port {port}: cannot serve metrics there: {exc}") from exc
    return metrics


def finish_run(
    ledger: Store, run_id: str, steps: Sequence[str]
) -> tuple[RunState, list[StepStats]]:
    """Record how a run whose units are all final ended: with dead units or without."""
    stats = ledger.step_stats(run_id, steps)
    dead = sum(s.counts.get(UnitState.DEAD.value, 0) for s in stats)
    state = RunState.COMPLETED_WITH_ERRORS if dead else RunState.COMPLETED
    ledger.set_run_state(run_id, state)
    return state, stats


def _record_end(ledger: Store, run_id: str, exc: BaseException) -> None:
    if isinstance(exc, KeyboardInterrupt):
        ledger.set_run_state(run_id, RunState.INTERRUPTED, "interrupted by the user")
        event("run.interrupted", logging.WARNING, run=run_id)
    else:
        ledger.set_run_state(run_id, RunState.FAILED, f"{type(exc).__name__}: {exc}")
        event("run.failed", logging.ERROR, run=run_id, error_type=type(exc).__name__,
              error=str(exc))  # fmt: skip


def _check_resumable(run: RunInfo, pipeline: str, signature: str) -> None:
    """Refuse to continue a run that is finished, of another pipeline or other code, or whose
    coordinator is still alive."""
    if run.pipeline != pipeline:
        raise UsageError(f"run {run.id} is a run of pipeline {run.pipeline!r}, not {pipeline!r}")
    if run.state in (RunState.COMPLETED, RunState.COMPLETED_WITH_ERRORS):
        raise UsageError(
            f"run {run.id} is finished ({run.state.value}); 'conveyor redrive' re-queues its "
            f"dead units, 'conveyor run' starts a new run (finished units are cached)"
        )
    if run.signature != signature:
        raise UsageError(
            f"the pipeline's steps or code changed since run {run.id} started, so its planned "
            f"units no longer match; start a new run with 'conveyor run' (finished units are "
            f"cached, nothing is recomputed)"
        )
    if run.state is RunState.RUNNING and coordinator_alive(run):
        host, pid, _ = (run.coordinator or "::").split(":", 2)
        raise UsageError(
            f"run {run.id} is still running (coordinator pid {pid} on {host}); stop it first "
            f"or wait for it to finish"
        )


def coordinator_alive(run: RunInfo) -> bool:
    """Whether the coordinator recorded for ``run`` is still alive: its process exists on this
    host (or, on another host, it renewed its heartbeat within a lease)."""
    if not run.coordinator or run.heartbeat_at is None:
        return False
    if time.time() - run.heartbeat_at > parse_lease(run.options.get("lease")):
        return False
    host, pid, _ = run.coordinator.split(":", 2)
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True


def _plan_so_far(ledger: Store, run_id: str, steps: Sequence[str]) -> Plan:
    plan = Plan(resumed=True)
    for stat in ledger.step_stats(run_id, steps):
        plan.counts[stat.step] = {UnitState(k): v for k, v in stat.counts.items()}
        plan.items = max(plan.items, stat.total)
    return plan


def _items(
    source: str | Path | Iterable[Any],
    id_field: str | None,
    group_by: tuple[str, ...],
    buckets: int | None,
) -> tuple[Iterator[SourceItem], str]:
    if isinstance(source, str | Path):
        spec = SourceSpec(str(source), id_field=id_field, group_by=group_by, buckets=buckets)
        check_spec(spec)
        items = read_source(spec)
        # Read the first item now: a wrong --id-field or a damaged file is reported before a
        # run is recorded, as a usage error with nothing run.
        first = list(islice(items, 1))
        return chain(first, items), spec.describe()
    if group_by or buckets:
        raise UsageError("group_by and buckets apply to a table file; pass its path as the source")
    return items_from_iterable(source, id_field), "<python iterable>"


def build_executors(
    pipeline: Pipeline,
    graph: Graph,
    steps: Sequence[str],
    workers: int | None,
    *,
    runtime: Runtime | None = None,
    executor: str = "local",
    ray_address: str | None = None,
) -> dict[Executor, list[str]]:
    """The executors of a run and the steps each serves: for process steps the process pool
    (inline with ``workers=0``) or, with ``executor="ray"``, Ray; a thread pool per thread
    step. Given a ``runtime``, the local executors use it: workers forked from this process
    inherit the resources it has built."""
    factories = {name: r.fn for name, r in pipeline.resources.items()}
    given = runtime

    def runtime_() -> Runtime:
        return given if given is not None else Runtime(graph, factories)

    lanes: dict[Executor, list[str]] = {}
    process_steps = [s for s in steps if graph.nodes[s].step.options.executor == "process"]
    if process_steps and executor == "ray":
        from conveyor.executors.ray import ray_lanes

        lanes.update(
            ray_lanes(graph, factories, process_steps, address=ray_address, workers=workers)
        )
    elif process_steps:
        count = (os.cpu_count() or 1) if workers is None else workers
        pool: Executor = (
            InlineExecutor(runtime_()) if count == 0 else ProcessExecutor(runtime_, count)
        )
        lanes[pool] = process_steps
    shared = runtime_()  # thread steps share one set of resources in this process
    for step in steps:
        options = graph.nodes[step].step.options
        if options.executor == "thread":
            lanes[ThreadExecutor(shared, options.concurrency or DEFAULT_THREADS)] = [step]
    return lanes
