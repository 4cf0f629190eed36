"""The coordinator: one process's life on one run, written once.

Create the run or adopt it, plan its units, drive a :class:`~.scheduler.Scheduler` over the
executors (heartbeats and leases included), and record how it ended, telling the run's
:class:`~.hooks.Hooks` at each stage. Batch runs, redrive, streams, joined coordinators
(``conveyor worker``) and training runs are thin front-ends of this one lifecycle."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from conveyor.core.durations import parse_duration
from conveyor.core.logs import event
from conveyor.core.units import RunInfo, RunState, StepStats, UnitState
from conveyor.errors import UsageError
from conveyor.executors import Executor
from conveyor.scheduling.hooks import HookChain, Hooks, RunContext
from conveyor.scheduling.lanes import build_lanes
from conveyor.scheduling.planner import Plan, plan_run, plan_signature, replan_item, step_salts
from conveyor.scheduling.scheduler import LEASE_SECONDS, Scheduler, coordinator_id, new_owner
from conveyor.sources.readers import SourceItem
from conveyor.store import Store
from conveyor.store.rows import DeadUnit, UnitReset

if TYPE_CHECKING:
    from conveyor.definition.pipeline import Pipeline


def new_run_id() -> str:
    """A sortable, readable run id: ``20261122-143501-7f3a``."""
    return f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


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


def check_resumable(run: RunInfo, pipeline: str, signature: str) -> None:
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


class Coordinator:
    """One coordinator of one run of ``pipeline``'s ``steps`` on ``ledger``: it creates or
    adopts the run, plans it, schedules its units under its own leases, and records the end,
    telling ``hooks`` as it goes."""

    def __init__(
        self,
        pipeline: Pipeline,
        ledger: Store,
        steps: Sequence[str],
        *,
        force: Sequence[str] = (),
        lease: float = LEASE_SECONDS,
        hooks: Sequence[Hooks | None] = (),
    ) -> None:
        self.pipeline = pipeline
        self.ledger = ledger
        self.steps = list(steps)
        self.lease = lease
        #: Told of the run's life; front-ends add the observability the run should have.
        self.hooks = HookChain(hooks)
        #: The code version of each resource: part of every cache key and of the signature.
        self.versions = {n: r.code_version for n, r in pipeline.resources.items()}
        #: What decides the run's units besides its input; a run continues only with the same.
        self.signature = plan_signature(pipeline.graph, self.steps, force, self.versions)
        #: Who holds the leases this coordinator takes, and who it is (``host:pid:owner``).
        self.owner = new_owner()
        self.id = coordinator_id(self.owner)
        self.context = RunContext(pipeline.name, "", ledger.location)
        self.started = time.perf_counter()

    @property
    def run_id(self) -> str:
        """The run this coordinator drives ('' before :meth:`create` or :meth:`adopt`)."""
        return self.context.run_id

    # the run -----------------------------------------------------------------------------------
    def create(
        self, *, source: str, options: Mapping[str, Any], pipeline_file: str | None = None
    ) -> str:
        """Record a new run held by this coordinator and return its id."""
        run_id = new_run_id()
        self.ledger.create_run(
            run_id, pipeline=self.pipeline.name, pipeline_file=pipeline_file, source=source,
            steps=self.steps, options=dict(options), signature=self.signature,
            coordinator=self.id,
        )  # fmt: skip
        self.context.run_id = run_id
        return run_id

    def adopt(self, run: RunInfo) -> None:
        """Take over ``run``: this coordinator now holds it (its earlier one is gone)."""
        self.ledger.adopt_run(run.id, self.id)
        self.context.run_id = run.id

    def join(self, run: RunInfo) -> None:
        """Work on ``run`` beside the coordinator that holds it, without taking it over."""
        self.context.run_id = run.id

    def plan(self, items: Iterator[SourceItem], *, force: set[str] | None = None) -> Plan:
        """Plan ``items`` into the run's units (the cached ones found at once) and mark the
        run planned; a failure records the run as failed."""
        try:
            plan = plan_run(
                self.ledger, self.run_id, self.pipeline.graph, self.steps, items,
                force=force or set(), resource_versions=self.versions,
            )  # fmt: skip
            self.ledger.mark_planned(self.run_id)
        except BaseException as exc:
            self.record_end(exc)
            raise
        self.context.plan = plan
        return plan

    def requeue_dead(self, run_id: str, dead: Sequence[DeadUnit]) -> None:
        """Put ``dead`` units of ``run_id`` back in the queue with the units they had skipped,
        their cache keys computed from this coordinator's code (the fix)."""
        graph = self.pipeline.graph
        salts = step_salts(graph, self.steps, self.versions)
        by_item: dict[int, set[str]] = {}
        for unit in dead:
            by_item.setdefault(unit["item_idx"], set()).add(unit["step"])
        resets: list[UnitReset] = []
        idxs = sorted(by_item)
        for start in range(0, len(idxs), 1000):
            per_item: dict[int, dict[str, tuple[int, UnitState, str]]] = {}
            item_keys: dict[int, str] = {}
            for unit_id, idx, name, state, key, item_key in self.ledger.units_of_items(
                run_id, idxs[start : start + 1000]
            ):
                per_item.setdefault(idx, {})[name] = (unit_id, state, key)
                item_keys[idx] = item_key
            for idx, units in per_item.items():
                resets += replan_item(graph, self.steps, salts, item_keys[idx], units, by_item[idx])
        self.ledger.reset_units(run_id, resets, self.signature)

    def plan_so_far(self) -> Plan:
        """The plan of a run planned earlier, from the ledger's counts."""
        plan = Plan(resumed=True)
        for stat in self.ledger.step_stats(self.run_id, self.steps):
            plan.counts[stat.step] = {UnitState(k): v for k, v in stat.counts.items()}
            plan.items = max(plan.items, stat.total)
        self.context.plan = plan
        return plan

    # scheduling --------------------------------------------------------------------------------
    def scheduler(
        self,
        lanes: Mapping[Executor, Sequence[str]],
        *,
        chains: bool = False,
        on_finished: Callable[[set[int]], None] | None = None,
    ) -> Scheduler:
        """A scheduler for this coordinator's run on ``lanes``, under its leases, telling its
        hooks of every unit that advances."""
        return Scheduler(
            self.ledger, self.run_id, self.pipeline.graph, self.steps, lanes, self.hooks,
            owner=self.owner, coordinator=self.id, lease=self.lease, on_finished=on_finished,
            chains=chains, live=self.context.live,
        )  # fmt: skip

    def drive(
        self, workers: int | None, *, backend: str = "local", ray_address: str | None = None
    ) -> tuple[RunState, list[StepStats]]:
        """As the run's holder, run its units to the end on ``workers`` worker processes (or on
        Ray, with ``backend="ray"``), record how it ended (a failure or an interruption too),
        and return that."""
        self.start()
        try:
            try:
                self._schedule(workers, backend, ray_address)
            except BaseException as exc:
                self.record_end(exc)
                raise
            return self.finish()
        finally:
            self.stop()

    def drive_joined(
        self, workers: int | None, *, backend: str = "local", ray_address: str | None = None
    ) -> bool:
        """Beside the run's holder, run its units until none is left to claim; end the run
        (and return True) only if the holder is gone by then."""
        self.start()
        try:
            self._schedule(workers, backend, ray_address)
            latest = self.ledger.get_run(self.run_id)
            if latest.state is RunState.RUNNING and not coordinator_alive(latest):
                self.finish()
                return True
            return False
        finally:
            self.stop()

    def _schedule(self, workers: int | None, backend: str, ray_address: str | None) -> None:
        lanes = build_lanes(self.pipeline, self.steps, workers, backend=backend,
                            ray_address=ray_address)  # fmt: skip
        self.scheduler(lanes).run_with_executors()

    def start(self) -> None:
        """Tell the hooks the run starts (its plan known) and log it."""
        plan = self.context.plan
        self.hooks.run_started(self.context)
        event("run.started", run=self.run_id, pipeline=self.pipeline.name, items=plan.items,
              resumed=plan.resumed or None)  # fmt: skip

    def stop(self) -> None:
        """Tell the hooks this coordinator is done with the run."""
        self.hooks.run_stopped(self.context)

    # the end -----------------------------------------------------------------------------------
    def finish(self) -> tuple[RunState, list[StepStats]]:
        """Record how a run whose units are all final ended (with dead units or without), log
        it and tell the hooks."""
        stats = self.ledger.step_stats(self.run_id, self.steps)
        dead = sum(s.counts.get(UnitState.DEAD.value, 0) for s in stats)
        state = RunState.COMPLETED_WITH_ERRORS if dead else RunState.COMPLETED
        self.ledger.set_run_state(self.run_id, state)
        event("run.finished", run=self.run_id, pipeline=self.pipeline.name, state=state.value,
              seconds=round(time.perf_counter() - self.started, 3), dead=dead or None)  # fmt: skip
        self.hooks.run_finished(self.context, state, stats)
        return state, stats

    def record_end(self, exc: BaseException) -> None:
        """Record a run that stopped on ``exc``: interrupted (Ctrl-C) or failed."""
        if isinstance(exc, KeyboardInterrupt):
            self.ledger.set_run_state(self.run_id, RunState.INTERRUPTED, "interrupted by the user")
            event("run.interrupted", logging.WARNING, run=self.run_id)
        else:
            self.ledger.set_run_state(self.run_id, RunState.FAILED, f"{type(exc).__name__}: {exc}")
            event("run.failed", logging.ERROR, run=self.run_id, error_type=type(exc).__name__,
                  error=str(exc))  # fmt: skip
