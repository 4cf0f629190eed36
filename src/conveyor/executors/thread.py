"""A thread pool in the coordinator process, for I/O-bound steps (remote calls, downloads)."""

from __future__ import annotations

import functools
import queue
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from conveyor.core.units import Outcome, Task
from conveyor.executors.base import Executor, TaskResult, WakePipe, lost
from conveyor.executors.runtime import Runtime
from conveyor.executors.slots import timed_out


class ThreadExecutor(Executor):
    """Runs up to ``concurrency`` tasks at once on threads; wakes the scheduler through a pipe."""

    name = "thread"

    def __init__(self, runtime: Runtime, concurrency: int) -> None:
        self._runtime = runtime
        self._concurrency = concurrency
        self._pool: ThreadPoolExecutor | None = None
        self._results: queue.SimpleQueue[TaskResult] = queue.SimpleQueue()
        self._running = 0
        self._wake = WakePipe()
        # Tasks with a timeout: task -> monotonic deadline. A thread cannot be killed, so an
        # overdue task is reported as timed out and its late result dropped; its thread keeps
        # its slot until it really returns.
        self._deadlines: dict[int, tuple[Task, float]] = {}
        self._abandoned: set[int] = set()

    def workers(self) -> int:
        return self._concurrency

    def start(self) -> None:
        self._pool = ThreadPoolExecutor(self._concurrency, thread_name_prefix="conveyor-thread")
        self._wake.open()

    def free_slots(self) -> int:
        return self._concurrency - self._running

    def submit(self, task: Task) -> None:
        if self._pool is None:
            raise RuntimeError("ThreadExecutor.submit before start")
        self._running += 1
        if task.timeout is not None:
            self._deadlines[task.task_id] = (task, time.monotonic() + task.timeout)
        future = self._pool.submit(self._runtime.run_task, task)
        future.add_done_callback(functools.partial(self._finished, task.task_id))

    def _finished(self, task_id: int, future: Future[list[Outcome]]) -> None:
        self._results.put((task_id, future.result()))
        # A thread abandoned past its timeout may finish after shutdown: the pipe allows it.
        self._wake.poke()

    def waitables(self) -> list[Any]:
        return [self._wake.read_fd]

    def collect(self) -> list[TaskResult]:
        self._wake.drain()
        done = []
        while True:
            try:
                task_id, outcomes = self._results.get_nowait()
            except queue.Empty:
                break
            self._running -= 1
            self._deadlines.pop(task_id, None)
            if task_id in self._abandoned:
                self._abandoned.discard(task_id)
            else:
                done.append((task_id, outcomes))
        now = time.monotonic()
        for task_id, (task, deadline) in list(self._deadlines.items()):
            if now > deadline:
                del self._deadlines[task_id]
                self._abandoned.add(task_id)
                error = timed_out(
                    task.describe(), task.timeout or 0.0, " on a thread; its result will be ignored"
                )
                done.append(lost(task, error, time.time(), running=True))
        return done

    def next_deadline(self) -> float | None:
        if not self._deadlines:
            return None
        return max(0.0, min(d for _, d in self._deadlines.values()) - time.monotonic())

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        self._wake.close()
