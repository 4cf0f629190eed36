"""Running a pipeline over a batch: open the ledger, plan, schedule on executors, report."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain, islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from conveyor.dag import Graph
from conveyor.errors import UsageError
from conveyor.executors import Executor, InlineExecutor, ProcessExecutor, ThreadExecutor
from conveyor.planner import Plan, plan_run
from conveyor.scheduler import Scheduler
from conveyor.sources import SourceItem, SourceSpec, check_spec, items_from_iterable, read_source
from conveyor.store import Store, open_store
from conveyor.units import RunState, StepStats, UnitState
from conveyor.worker import Runtime

if TYPE_CHECKING:
    from conveyor.pipeline import Pipeline

#: Threads for a thread step that does not set ``concurrency``.
DEFAULT_THREADS = 8


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
    failures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed(self) -> int:
        """Units that failed for good."""
        return sum(s.counts.get(UnitState.FAILED.value, 0) for s in self.stats)


def new_run_id() -> str:
    """A sortable, readable run id: ``20261122-143501-7f3a``."""
    return f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def select_steps(graph: Graph, only: Sequence[str], force: Sequence[str]) -> list[str]:
    """The steps a run covers: ``only`` and what they need (all steps when empty)."""
    for option, names in (("--only", only), ("--force", force)):
        for name in names:
            if name not in graph.nodes:
                from conveyor.dag import _closest

                raise UsageError(
                    f"{option} {name!r}: no such step{_closest(name, list(graph.nodes))}; "
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
) -> RunReport:
    """Run ``pipeline`` over ``source`` to the end and return its report. Failures of units do
    not raise: they are in the report and the ledger."""
    graph = pipeline.graph
    steps = select_steps(graph, only, force)
    if workers is not None and workers < 0:
        raise UsageError(f"--workers {workers}: must be 0 (run inline) or more")
    items, description = _items(source, id_field, tuple(group_by), buckets)
    ledger = store if isinstance(store, Store) else open_store(store)
    run_id = new_run_id()
    started = time.perf_counter()
    ledger.create_run(
        run_id,
        pipeline=pipeline.name,
        pipeline_file=pipeline_file,
        source=description,
        steps=steps,
        options={"only": list(only), "force": list(force), "workers": workers},
    )
    try:
        plan = plan_run(
            ledger,
            run_id,
            graph,
            steps,
            items,
            force=set(force),
            resource_versions={n: r.code_version for n, r in pipeline.resources.items()},
        )
        if observer is not None:
            observer.started(run_id, plan)
        lanes = _executors(pipeline, graph, steps, workers)
        scheduler = Scheduler(ledger, run_id, graph, steps, lanes, observer)
        for executor in lanes:
            executor.start()
        try:
            scheduler.run()
        finally:
            for executor in lanes:
                executor.shutdown()
    except KeyboardInterrupt:
        ledger.set_run_state(run_id, RunState.INTERRUPTED, "interrupted by the user")
        raise
    except BaseException as exc:
        ledger.set_run_state(run_id, RunState.FAILED, f"{type(exc).__name__}: {exc}")
        raise
    stats = ledger.step_stats(run_id, steps)
    failed = sum(s.counts.get(UnitState.FAILED.value, 0) for s in stats)
    state = RunState.COMPLETED_WITH_ERRORS if failed else RunState.COMPLETED
    ledger.set_run_state(run_id, state)
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
        failures=ledger.failures(run_id, limit=5) if failed else [],
    )
    if not isinstance(store, Store):
        ledger.close()
    return report


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


def _executors(
    pipeline: Pipeline, graph: Graph, steps: Sequence[str], workers: int | None
) -> dict[Executor, list[str]]:
    factories = {name: r.fn for name, r in pipeline.resources.items()}

    def runtime() -> Runtime:
        return Runtime(graph, factories)

    lanes: dict[Executor, list[str]] = {}
    process_steps = [s for s in steps if graph.nodes[s].step.options.executor == "process"]
    if process_steps:
        count = (os.cpu_count() or 1) if workers is None else workers
        pool: Executor = (
            InlineExecutor(runtime()) if count == 0 else ProcessExecutor(runtime, count)
        )
        lanes[pool] = process_steps
    shared = runtime()  # thread steps share one set of resources in this process
    for step in steps:
        options = graph.nodes[step].step.options
        if options.executor == "thread":
            lanes[ThreadExecutor(shared, options.concurrency or DEFAULT_THREADS)] = [step]
    return lanes
