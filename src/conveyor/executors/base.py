"""The contract between the scheduler and whatever runs units (an executor: inline, a thread
pool, the pool of worker processes, or Ray's tasks and actors)."""

from __future__ import annotations

import abc
import os
import threading
from typing import Any

from conveyor.core.units import ErrorInfo, Outcome, Task

#: A finished task: its id and one outcome per unit.
TaskResult = tuple[int, list[Outcome]]


class Executor(abc.ABC):
    """Runs tasks asynchronously; the scheduler submits while slots are free and collects."""

    name: str = "executor"
    #: Whether it runs chains (whole items in one task) and enforces the timeouts of the steps
    #: inside them; the scheduler only packs chains for executors that do.
    runs_chains: bool = False

    @abc.abstractmethod
    def start(self) -> None:
        """Start its worker processes, threads or actors (called before any submit)."""

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
        """Finished tasks, without blocking. A task whose worker process or actor died comes
        back with an error outcome for each of its units."""

    def workers(self) -> int:
        """How many units it can run at once (worker processes, threads or actors)."""
        return 1

    def next_deadline(self) -> float | None:
        """Seconds until this executor must be looked at again to enforce a timeout."""
        return None

    @abc.abstractmethod
    def shutdown(self) -> None:
        """Stop its worker processes, threads or actors; tasks still running are abandoned
        (their leases expire)."""

    def __enter__(self) -> Executor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def lost(
    task: Task,
    error: ErrorInfo,
    started_at: float,
    running: bool,
    culprits: tuple[int, ...] = (),
) -> TaskResult:
    """The result of a task whose worker process, thread or actor went away (or was given up
    on for a timeout). If the executor knows which units did it (``culprits``: they overran
    their timeout), they fail with ``error`` and the rest are requeued. If it was running
    alone, its unit is what killed its worker process or actor and fails with ``error``. If it
    was running with others, one of them is the culprit: all are requeued as suspects, to run
    alone. A task that had not started is simply requeued."""
    if culprits:
        outcomes = []
        for unit in task.units:
            blamed = unit.unit_id in culprits
            outcomes.append(Outcome(unit.unit_id, unit.fence, None, error if blamed else None,
                                    started_at, 0.0, requeue=not blamed))  # fmt: skip
        return task.task_id, outcomes
    blame = running and len(task.units) == 1
    return task.task_id, [
        Outcome(unit.unit_id, unit.fence, None, error, started_at, 0.0, not blame, running)
        for unit in task.units
    ]


class WakePipe:
    """A pipe that wakes the scheduler's wait from any thread: executors whose work ends on
    threads (a thread pool, Ray's callbacks) poke it, and offer its read end as a waitable.
    Safe to poke after it is closed, when its descriptor numbers may belong to other files."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.read_fd = self._write_fd = -1

    def open(self) -> None:
        """Create the pipe (both ends non-blocking)."""
        self.read_fd, self._write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self._write_fd, False)

    def poke(self) -> None:
        """Wake the waiting scheduler (a no-op once closed)."""
        with self._lock:
            if self._write_fd < 0:
                return
            try:
                os.write(self._write_fd, b"x")
            except (BlockingIOError, OSError):
                pass  # the pipe is full: the scheduler is awake

    def drain(self) -> None:
        """Read away the pokes so far."""
        try:
            while os.read(self.read_fd, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:
        """Close both ends."""
        with self._lock:
            for fd in (self.read_fd, self._write_fd):
                if fd >= 0:
                    os.close(fd)
            self.read_fd = self._write_fd = -1
