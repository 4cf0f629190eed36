"""The Python API and the composition root: the one place that sees every layer.

Each front-end here (a batch run, a redrive, a stream, a joined coordinator) checks what it was
asked, opens the ledger, wires the observability a run should have (progress, notifications,
alarms, metrics) into the run's hooks, and hands the rest to one
:class:`~conveyor.scheduling.coordinator.Coordinator`."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.core.units import RunInfo, RunReport, RunState, UnitState
from conveyor.definition.alarms import DEFAULT_RULES, AlarmRule
from conveyor.definition.graph import Graph
from conveyor.definition.step import did_you_mean
from conveyor.errors import UsageError
from conveyor.scheduling.coordinator import (
    Coordinator,
    check_resumable,
    coordinator_alive,
    parse_lease,
)
from conveyor.scheduling.hooks import Hooks, RunContext
from conveyor.scheduling.lanes import check_backend
from conveyor.scheduling.planner import Plan
from conveyor.scheduling.stream import Stream
from conveyor.sources.readers import (
    SourceItem,
    SourceSpec,
    check_spec,
    items_from_iterable,
    read_source,
)
from conveyor.store import Store, open_store

if TYPE_CHECKING:
    from conveyor.definition.pipeline import Pipeline
    from conveyor.observability.notify import Notifier

__all__ = [
    "RunReport",
    "Stream",
    "coordinator_alive",
    "join_run",
    "open_stream",
    "redrive_run",
    "run_pipeline",
    "select_steps",
]

#: How long a joining coordinator waits for a run of its pipeline to start, or to finish planning.
WAIT_FOR_RUN = 60.0


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
    hooks: Sequence[Hooks] = (),
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
    (with the pipeline's own) are evaluated as it goes; ``hooks`` are told of its progress.

    An unfinished run of the same pipeline over the same input with the same code (interrupted,
    or whose coordinator died) is continued rather than started again, unless ``new``;
    ``resume`` names the run to continue. ``executor="ray"`` (the backend) runs process steps
    on Ray (a local Ray, or the cluster at ``ray_address``)."""
    steps = select_steps(pipeline.graph, only, force)
    check_backend(executor, ray_address, workers)
    lease_seconds = parse_lease(lease)
    items, description = _items(source, id_field, tuple(group_by), buckets)
    notifiers = _notifiers(pipeline, notify, notify_format)
    ledger = store if isinstance(store, Store) else open_store(store)
    coordinator = Coordinator(pipeline, ledger, steps, force=force, lease=lease_seconds)
    run_id = resume
    if run_id is None and not new and isinstance(source, str | Path):
        run_id = ledger.find_resumable(pipeline.name, description, coordinator.signature)
    if run_id is not None:
        run = ledger.get_run(run_id)
        check_resumable(run, pipeline.name, coordinator.signature)
        if lease is None:  # a continued run keeps the visibility timeout it was started with
            coordinator.lease = parse_lease(run.options.get("lease"))
        coordinator.adopt(run)
        plan = (
            coordinator.plan_so_far() if run.planned else coordinator.plan(items, force=set(force))
        )
        plan.resumed = True
    else:
        coordinator.create(source=description, pipeline_file=pipeline_file, options={
            "input": None if not isinstance(source, str | Path) else str(source),
            "id_field": id_field, "group_by": list(group_by), "buckets": buckets,
            "only": list(only), "force": list(force), "lease": lease_seconds,
            "executor": executor, "ray_address": ray_address,
        })  # fmt: skip
        coordinator.plan(items, force=set(force))
    return _drive(
        coordinator, workers, hooks=hooks, notifiers=notifiers, metrics_port=metrics_port,
        alarms=[*pipeline.alarms, *alarms], backend=executor, ray_address=ray_address,
        close=not isinstance(store, Store),
    )  # fmt: skip


def redrive_run(
    pipeline: Pipeline,
    run_id: str | None = None,
    *,
    store: str | Path | Store | None = None,
    step: str | None = None,
    error: str | None = None,
    workers: int | None = None,
    hooks: Sequence[Hooks] = (),
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
    missing = [s for s in run.steps if s not in pipeline.graph.nodes]
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
    coordinator = Coordinator(
        pipeline, ledger, run.steps, force=run.options.get("force") or [],
        lease=parse_lease(run.options.get("lease")),
    )  # fmt: skip
    coordinator.requeue_dead(run.id, dead)
    coordinator.adopt(run)
    coordinator.plan_so_far()
    return _drive(
        coordinator, workers, hooks=hooks, notifiers=_notifiers(pipeline, (), "json"),
        backend=run.options.get("executor") or "local", ray_address=run.options.get("ray_address"),
        close=not isinstance(store, Store),
    )  # fmt: skip


def _drive(
    coordinator: Coordinator,
    workers: int | None,
    *,
    hooks: Sequence[Hooks],
    notifiers: Sequence[Notifier],
    close: bool,
    metrics_port: int | None = None,
    alarms: Sequence[AlarmRule] = (),
    backend: str = "local",
    ray_address: str | None = None,
) -> RunReport:
    """Wire a planned run's observability into its coordinator's hooks, drive it to the end,
    and report how it ended."""
    ledger = coordinator.ledger
    try:
        coordinator.hooks.add(*hooks, *_observability(coordinator, notifiers, alarms, metrics_port))
    except BaseException as exc:
        coordinator.record_end(exc)
        raise
    state, stats = coordinator.drive(workers, backend=backend, ray_address=ray_address)
    dead = state is RunState.COMPLETED_WITH_ERRORS
    run_id, plan = coordinator.run_id, coordinator.context.plan
    report = RunReport(
        run_id=run_id,
        state=state,
        stats=stats,
        seconds=time.perf_counter() - coordinator.started,
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


def _observability(
    coordinator: Coordinator,
    notifiers: Sequence[Notifier],
    alarms: Sequence[AlarmRule],
    metrics_port: int | None,
) -> list[Hooks]:
    """The hooks that watch a run: its metrics served on ``metrics_port``, its alarms (and,
    with webhooks, the default rules) evaluated, and its notifications sent (in that order:
    the last evaluation of the alarms comes before the run's end is announced)."""
    found: list[Hooks] = []
    if metrics_port is not None:
        from conveyor.observability.metrics import MetricsHooks, RunMetrics

        context = coordinator.context
        metrics = RunMetrics(context.pipeline, context.store, lambda: context.run_id,
                             lambda: context.live)  # fmt: skip
        try:
            metrics.serve(metrics_port)
        except OSError as exc:
            metrics.close()
            raise UsageError(
                f"--metrics-port {metrics_port}: cannot serve metrics there: {exc}"
            ) from exc
        found.append(MetricsHooks(metrics))
    rules = [*alarms, *(DEFAULT_RULES if notifiers else ())]
    if rules:
        from conveyor.observability.alarms import AlarmHooks

        found.append(AlarmHooks(rules, notifiers))
    if notifiers:
        from conveyor.observability.notify import NotifyingHooks

        found.append(NotifyingHooks(notifiers, coordinator.ledger))
    return found


def _notifiers(pipeline: Pipeline, urls: Sequence[str], format: str) -> list[Notifier]:
    """Webhook notifiers for the pipeline's and the command's URLs (checked before anything
    is recorded)."""
    from conveyor.observability.notify import WebhookNotifier

    return [WebhookNotifier(url, format=format) for url in dict.fromkeys([*pipeline.notify, *urls])]


# streams ---------------------------------------------------------------------------------------
def open_stream(
    pipeline: Pipeline,
    *,
    store: str | Path | None = None,
    workers: int | None = None,
    id_field: str | None = None,
    preload: bool = False,
    alarms: Sequence[AlarmRule] = (),
    notify: Sequence[str] = (),
) -> Stream:
    """A :class:`~conveyor.scheduling.stream.Stream` of ``pipeline`` (not open yet: use it as
    a context manager), with its alarms (``alarms`` and the pipeline's own) evaluated while it
    is open, notifying the pipeline's webhooks and ``notify``."""
    rules = [*pipeline.alarms, *alarms]
    hooks: list[Hooks] = []
    if rules:
        from conveyor.observability.alarms import AlarmHooks
        from conveyor.observability.notify import WebhookNotifier

        notifiers = [WebhookNotifier(url) for url in dict.fromkeys([*pipeline.notify, *notify])]
        hooks += [AlarmHooks(rules, notifiers), _ClosingNotifiers(notifiers)]
    return Stream(
        pipeline, store=store, workers=workers, id_field=id_field, preload=preload, hooks=hooks
    )


class _ClosingNotifiers(Hooks):
    """Delivers what a stream's notifiers still hold once the stream closes."""

    def __init__(self, notifiers: Sequence[Notifier]) -> None:
        self.notifiers = notifiers

    def run_stopped(self, run: RunContext) -> None:
        """Flush and stop each notifier."""
        for notifier in self.notifiers:
            notifier.close()


# joined coordinators ---------------------------------------------------------------------------
@dataclass
class Joined:
    """What one joining coordinator did: the run, and the units it finished there."""

    run_id: str
    done: int
    dead: int
    finished_run: bool  # it ended the run (the run's own coordinator was gone)


class _Tally(Hooks):
    """Counts the units this coordinator brought to an end."""

    def __init__(self) -> None:
        self.counts: dict[UnitState, int] = {}

    def units_advanced(self, step: str, state: UnitState, count: int) -> None:
        """Count them."""
        self.counts[state] = self.counts.get(state, 0) + count


def join_run(
    pipeline: Pipeline,
    run_id: str | None = None,
    *,
    store: str | Path | None = None,
    workers: int | None = None,
    executor: str = "local",
    ray_address: str | None = None,
    wait: float = WAIT_FOR_RUN,
) -> Joined:
    """Work on the queue of ``run_id`` (default: the latest running run of ``pipeline``) until
    none of its units is left to claim, as one more coordinator beside the run's own (this
    machine or another sharing the ledger). The pipeline's code must be the run's: units are
    computed and cached under the run's keys. If the run's own coordinator is gone by then,
    this one ends the run."""
    check_backend(executor, ray_address, workers)
    ledger = open_store(store, create=False)
    try:
        run = _running_run(ledger, pipeline, run_id, wait)
        tally = _Tally()
        coordinator = Coordinator(
            pipeline, ledger, run.steps, force=run.options.get("force") or [],
            lease=parse_lease(run.options.get("lease")), hooks=[tally],
        )  # fmt: skip
        if run.signature != coordinator.signature:
            raise UsageError(
                f"run {run.id} was planned with other code than {pipeline.name!r} has here; "
                f"a worker must run the same pipeline code as the run's coordinator"
            )
        coordinator.join(run)
        ended = coordinator.drive_joined(workers, backend=executor, ray_address=ray_address)
        done = tally.counts.get(UnitState.DONE, 0)
        return Joined(run.id, done, tally.counts.get(UnitState.DEAD, 0), ended)
    finally:
        ledger.close()


def _running_run(ledger: Store, pipeline: Pipeline, run_id: str | None, wait: float) -> RunInfo:
    """The run to join, once its units are all planned; waits up to ``wait`` seconds for a run
    of the pipeline to start and finish planning."""
    deadline = time.monotonic() + wait
    while True:
        run = _find(ledger, pipeline, run_id)
        if run is not None and run.state is not RunState.RUNNING:
            raise UsageError(f"run {run.id} is {run.state.value}: there is nothing to join")
        if run is not None and run.planned:
            return run
        if time.monotonic() > deadline:
            what = f"run {run_id}" if run_id else f"a running run of {pipeline.name!r}"
            raise UsageError(
                f"{what} did not start within {wait:g}s; start it with 'conveyor run' (on any "
                f"machine sharing --store) and start workers beside it"
            )
        time.sleep(0.2)


def _find(ledger: Store, pipeline: Pipeline, run_id: str | None) -> RunInfo | None:
    if run_id is not None:
        run = ledger.get_run(run_id)
        if run.pipeline != pipeline.name:
            raise UsageError(
                f"run {run.id} is a run of pipeline {run.pipeline!r}, not {pipeline.name!r}"
            )
        return run
    candidates = [
        r for r in ledger.list_runs(50)
        if r.pipeline == pipeline.name and r.state is RunState.RUNNING
        and not r.options.get("stream")
    ]  # fmt: skip
    return candidates[0] if candidates else None


# sources ---------------------------------------------------------------------------------------
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


# Plan is part of what hooks see (RunContext.plan); re-exported for hook authors.
__all__ += ["Plan", "RunContext"]
