"""Joining a running run as one more coordinator (``conveyor worker``): it claims units from
the same queue in the ledger, runs them on its own workers and commits them under its own
leases, beside the run's coordinator, on this machine or another one sharing the ledger
(PostgreSQL, or SQLite on one machine)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from conveyor.core.units import RunInfo, RunState, UnitState
from conveyor.errors import UsageError
from conveyor.interfaces.api import (
    build_executors,
    check_executor,
    coordinator_alive,
    finish_run,
    parse_lease,
)
from conveyor.scheduling.planner import plan_signature
from conveyor.scheduling.scheduler import Scheduler, coordinator_id, new_owner
from conveyor.store import Store, open_store

if TYPE_CHECKING:
    from conveyor.definition.pipeline import Pipeline

#: How long a worker waits for a run of its pipeline to start, or to finish planning.
WAIT_FOR_RUN = 60.0


@dataclass
class Joined:
    """What one joining coordinator did: the run, and the units it finished there."""

    run_id: str
    done: int
    dead: int
    finished_run: bool  # it ended the run (the run's own coordinator was gone)


class _Tally:
    """Counts the units this coordinator brought to an end."""

    def __init__(self) -> None:
        self.counts: dict[UnitState, int] = {}

    def advanced(self, step: str, state: UnitState, count: int) -> None:
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
    none of its units is left to claim. The pipeline's code must be the run's: units are
    computed and cached under the run's keys. If the run's own coordinator is gone by then,
    this one ends the run."""
    check_executor(executor, ray_address, workers)
    ledger = open_store(store, create=False)
    try:
        run = _running_run(ledger, pipeline, run_id, wait)
        graph = pipeline.graph
        steps = list(run.steps)
        versions = {n: r.code_version for n, r in pipeline.resources.items()}
        force = run.options.get("force") or []
        if run.signature != plan_signature(graph, steps, force, versions):
            raise UsageError(
                f"run {run.id} was planned with other code than {pipeline.name!r} has here; "
                f"a worker must run the same pipeline code as the run's coordinator"
            )
        owner = new_owner()
        lanes = build_executors(
            pipeline, graph, steps, workers, executor=executor, ray_address=ray_address
        )
        tally = _Tally()
        scheduler = Scheduler(
            ledger, run.id, graph, steps, lanes, tally, owner=owner,
            coordinator=coordinator_id(owner), lease=parse_lease(run.options.get("lease")),
        )  # fmt: skip
        scheduler.run_with_executors()
        ended = False
        latest = ledger.get_run(run.id)
        if latest.state is RunState.RUNNING and not coordinator_alive(latest):
            finish_run(ledger, run.id, steps)
            ended = True
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
    candidates: Sequence[RunInfo] = [
        r for r in ledger.list_runs(50)
        if r.pipeline == pipeline.name and r.state is RunState.RUNNING
        and not r.options.get("stream")
    ]  # fmt: skip
    return candidates[0] if candidates else None
