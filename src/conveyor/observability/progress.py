"""The live progress display of a run: one bar per step (Rich)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from conveyor.core.units import RunState, StepStats, UnitState
from conveyor.scheduling.hooks import Hooks, RunContext


class RichProgress(Hooks):
    """Shows per-step progress while a run goes (the hooks of a run)."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._progress = Progress(
            TextColumn("[bold]{task.description:<18}"),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TextColumn("[cyan]{task.fields[rate]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
            refresh_per_second=8,
        )
        self._tasks: dict[str, TaskID] = {}
        self._counts: dict[str, dict[UnitState, int]] = {}

    def run_started(self, run: RunContext) -> None:
        """Create one bar per step, starting from what is already cached or failed."""
        run_id, plan = run.run_id, run.plan
        verb = "continuing run" if plan.resumed else "run"
        self.console.print(f"{verb} [bold]{run_id}[/]: {plan.items} items")
        for step, counts in plan.counts.items():
            total = sum(counts.values())
            self._counts[step] = dict(counts)
            self._tasks[step] = self._progress.add_task(
                step, total=total, completed=self._final(step), detail=self._detail(step), rate=""
            )
        self._progress.start()

    def units_advanced(self, step: str, state: UnitState, count: int) -> None:
        """Move ``step``'s bar."""
        counts = self._counts.setdefault(step, {})
        counts[state] = counts.get(state, 0) + count
        task = self._tasks.get(step)
        if task is None:
            return
        speed = self._progress.tasks[task].speed if task < len(self._progress.tasks) else None
        self._progress.update(
            task,
            completed=self._final(step),
            detail=self._detail(step),
            rate=f"{speed:,.0f}/s" if speed else "",
        )

    def run_finished(self, run: RunContext, state: RunState, stats: list[StepStats]) -> None:
        """Settle every bar on the ledger's final counts and stop the display."""
        for stat in stats:
            self._counts[stat.step] = {UnitState(k): v for k, v in stat.counts.items()}
            task = self._tasks.get(stat.step)
            if task is not None:
                self._progress.update(
                    task, completed=self._final(stat.step), detail=self._detail(stat.step)
                )
        self._progress.stop()

    def _final(self, step: str) -> int:
        return sum(n for state, n in self._counts.get(step, {}).items() if state.final)

    def _detail(self, step: str) -> str:
        counts = self._counts.get(step, {})
        parts: list[Any] = []
        if counts.get(UnitState.CACHED):
            parts.append(f"[dim]{counts[UnitState.CACHED]} cached[/]")
        if counts.get(UnitState.DEAD):
            parts.append(f"[red]{counts[UnitState.DEAD]} dead[/]")
        if counts.get(UnitState.SKIPPED):
            parts.append(f"[yellow]{counts[UnitState.SKIPPED]} skipped[/]")
        return " ".join(parts)
