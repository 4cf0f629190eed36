"""Hooks: what a coordinator tells the rest of the system about a run's life.

A hook is a class with named no-op methods (dramatiq's middleware are the model); progress
bars, metrics, notifications and alarms each override the ones they need. The coordinator calls
them through :class:`HookChain`, which logs a failing hook and goes on: a display, a webhook or an
alarm must never stop the run it watches."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field

from conveyor.core.logs import event
from conveyor.core.units import LiveStats, RunState, StepStats, UnitState
from conveyor.scheduling.planner import Plan


@dataclass
class RunContext:
    """The run a coordinator drives, as its hooks see it."""

    pipeline: str
    run_id: str
    #: Where the ledger is (a path or URL): a hook that reads it opens its own connection.
    store: str
    plan: Plan = field(default_factory=Plan)
    #: Workers, CPU and memory per step, updated by the scheduler as the run goes.
    live: LiveStats = field(default_factory=LiveStats)


class Hooks:
    """Named hooks on a run's life, each a no-op here: override the ones you need."""

    def run_started(self, run: RunContext) -> None:
        """The run is recorded and planned; its units are about to be scheduled."""

    def units_advanced(self, step: str, state: UnitState, count: int) -> None:
        """``count`` units of ``step`` reached ``state`` (called on the scheduler's thread)."""

    def run_finished(self, run: RunContext, state: RunState, stats: list[StepStats]) -> None:
        """Every unit is final; ``stats`` are the ledger's final counts."""

    def run_stopped(self, run: RunContext) -> None:
        """This coordinator stopped driving the run, however it ended (finished, failed,
        interrupted): release what :meth:`run_started` took."""


class HookChain(Hooks):
    """Several hooks as one, called in order; a hook that raises is logged once, never
    allowed to stop the run (``KeyboardInterrupt`` and the like still propagate)."""

    def __init__(self, hooks: Iterable[Hooks | None] = ()) -> None:
        self.hooks = [h for h in hooks if h is not None]

    def add(self, *hooks: Hooks) -> None:
        """Call ``hooks`` too, after the ones already here."""
        self.hooks.extend(hooks)

    def run_started(self, run: RunContext) -> None:
        """Tell every hook."""
        for hook in self.hooks:
            try:
                hook.run_started(run)
            except Exception:
                _failed(hook, "run_started")

    def units_advanced(self, step: str, state: UnitState, count: int) -> None:
        """Tell every hook."""
        for hook in self.hooks:
            try:
                hook.units_advanced(step, state, count)
            except Exception:
                _failed(hook, "units_advanced")

    def run_finished(self, run: RunContext, state: RunState, stats: list[StepStats]) -> None:
        """Tell every hook."""
        for hook in self.hooks:
            try:
                hook.run_finished(run, state, stats)
            except Exception:
                _failed(hook, "run_finished")

    def run_stopped(self, run: RunContext) -> None:
        """Tell every hook."""
        for hook in self.hooks:
            try:
                hook.run_stopped(run)
            except Exception:
                _failed(hook, "run_stopped")


def _failed(hook: Hooks, name: str) -> None:
    event("hook.failed", logging.ERROR, hook=f"{type(hook).__name__}.{name}",
          traceback=traceback.format_exc())  # fmt: skip
