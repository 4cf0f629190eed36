"""The contract between the scheduler and whatever runs units."""

from __future__ import annotations

import abc
from typing import Any

from conveyor.units import ErrorInfo, Outcome, Task

#: A finished task: its id and one outcome per unit.
TaskResult = tuple[int, list[Outcome]]


class Executor(abc.ABC):
    """Runs tasks asynchronously; the scheduler submits while slots are free and collects."""

    name: str = "executor"

    @abc.abstractmethod
    def start(self) -> None:
        """Start workers (called before any submit)."""

    @abc.abstractmethod
    def free_slots(self) -> int:
        """How many more tasks may be submitted now."""

    @abc.abstractmethod
    def submit(self, task: Task) -> None:
        """Start running ``task``."""

    @abc.abstractmethod
    def waitables(self) -> list[Any]:
        """Objects for :func:`multiprocessing.connection.wait` that become ready when
        :meth:`collect` has something to return."""

    @abc.abstractmethod
    def collect(self) -> list[TaskResult]:
        """Finished tasks, without blocking. A task whose worker died comes back with an error
        outcome for each of its units."""

    def workers(self) -> int:
        """How many units it can run at once (processes, threads or actors)."""
        return 1

    def next_deadline(self) -> float | None:
        """Seconds until this executor must be looked at again to enforce a timeout."""
        return None

    @abc.abstractmethod
    def shutdown(self) -> None:
        """Stop workers; tasks still running are abandoned (their leases expire)."""

    def __enter__(self) -> Executor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def lost(task: Task, error: ErrorInfo, started_at: float, running: bool) -> TaskResult:
    """The result of a task whose worker went away. If it was running alone, its unit is what
    killed the worker and fails with ``error``. If it was running with others, one of them is
    the culprit: all are requeued as suspects, to run alone. A task that had not started is
    simply requeued."""
    blame = running and len(task.units) == 1
    return task.task_id, [
        Outcome(unit.unit_id, unit.fence, None, error, started_at, 0.0, not blame, running)
        for unit in task.units
    ]
