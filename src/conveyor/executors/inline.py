"""Run tasks in the calling thread, one at a time: for debugging (``--workers 0``) and tests."""

from __future__ import annotations

from typing import Any

from conveyor.core.units import Task
from conveyor.executors.base import Executor, TaskResult
from conveyor.executors.runtime import Runtime


class InlineExecutor(Executor):
    """Runs each task as soon as it is submitted, in this process; breakpoints work."""

    name = "inline"

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._done: list[TaskResult] = []

    def start(self) -> None:
        pass

    def free_slots(self) -> int:
        return 0 if self._done else 1

    def submit(self, task: Task) -> None:
        self._done.append((task.task_id, self._runtime.run_task(task)))

    def waitables(self) -> list[Any]:
        return []

    def collect(self) -> list[TaskResult]:
        done, self._done = self._done, []
        return done

    def shutdown(self) -> None:
        self._done.clear()
