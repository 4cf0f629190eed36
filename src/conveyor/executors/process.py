"""The local process pool: one worker process per core, each with its own pipe, so the
coordinator knows which tasks a worker holds and can replace a worker that dies."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import pickle
import queue
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from conveyor.executors.base import Executor, TaskResult, lost
from conveyor.units import ErrorInfo, Task
from conveyor.worker import Runtime

#: Tasks sent to a worker ahead of the one it is running, to hide the round trip.
PREFETCH = 2
_PR_SET_PDEATHSIG = 1


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    conn: Connection
    outbox: queue.SimpleQueue[bytes | None]
    inflight: deque[tuple[Task, float]] = field(default_factory=deque)
    head_started: float = 0.0  # when the task at the head of ``inflight`` began to run


def _feed(conn: Connection, outbox: queue.SimpleQueue[bytes | None]) -> None:
    """Write queued tasks to one worker. A write blocks while the worker is busy and the pipe is
    full; doing it on this thread keeps the scheduler free to commit other workers' results."""
    while (data := outbox.get()) is not None:
        try:
            conn.send_bytes(data)
        except (BrokenPipeError, ConnectionResetError, EOFError, OSError):
            return  # the worker died; collect() sees its sentinel and reports its tasks lost


class ProcessExecutor(Executor):
    """``workers`` processes forked from the coordinator; each builds its resources once."""

    name = "process"

    def __init__(self, runtime_factory: Callable[[], Runtime], workers: int) -> None:
        self._factory = runtime_factory
        self._size = workers
        self._workers: list[_Worker] = []
        self._context = multiprocessing.get_context("fork")
        self._lost: list[TaskResult] = []

    def start(self) -> None:
        for _ in range(self._size):
            self._workers.append(self._spawn())

    def _spawn(self) -> _Worker:
        parent, child = self._context.Pipe(duplex=True)
        # The forked worker inherits the coordinator's ends of every pipe; it must close them,
        # or it never sees end-of-file when the coordinator dies.
        inherited = [parent, *(w.conn for w in self._workers)]
        process = self._context.Process(
            target=_worker_main,
            args=(child, self._factory, inherited),
            name="conveyor-worker",
            daemon=True,
        )
        process.start()
        child.close()
        outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        threading.Thread(
            target=_feed, args=(parent, outbox), name="conveyor-feeder", daemon=True
        ).start()
        return _Worker(process, parent, outbox)

    @property
    def pids(self) -> list[int]:
        """Process ids of the live workers."""
        return [w.process.pid for w in self._workers if w.process.pid is not None]

    def workers(self) -> int:
        return len(self._workers)

    def free_slots(self) -> int:
        return sum(PREFETCH - len(w.inflight) for w in self._workers)

    def submit(self, task: Task) -> None:
        worker = min(self._workers, key=lambda w: len(w.inflight))
        if not worker.inflight:
            worker.head_started = time.monotonic()
        worker.inflight.append((task, time.time()))
        worker.outbox.put(pickle.dumps(task, protocol=pickle.HIGHEST_PROTOCOL))

    def waitables(self) -> list[Any]:
        found: list[Any] = []
        for w in self._workers:
            found.append(w.conn)
            found.append(w.process.sentinel)
        return found

    def collect(self) -> list[TaskResult]:
        done, self._lost = self._lost, []
        for index, worker in enumerate(self._workers):
            try:
                while worker.conn.poll():
                    task_id, outcomes = pickle.loads(worker.conn.recv_bytes())
                    worker.inflight.popleft()
                    # Tasks run in the order sent: the next one starts now.
                    worker.head_started = time.monotonic()
                    done.append((task_id, outcomes))
            except (EOFError, OSError):
                pass
            overdue = self._overdue(worker)
            if overdue is not None:
                worker.process.kill()  # code that never returns cannot be stopped any other way
                worker.process.join(timeout=5)
                done.extend(self._replace(index, worker, overdue))
            elif not worker.process.is_alive():
                done.extend(self._replace(index, worker))
        return done

    def next_deadline(self) -> float | None:
        """Seconds until the earliest running task's timeout, if any task has one."""
        waits = [
            w.head_started + (w.inflight[0][0].timeout or 0.0) - time.monotonic()
            for w in self._workers
            if w.inflight and w.inflight[0][0].timeout is not None
        ]
        return max(0.0, min(waits)) if waits else None

    def _overdue(self, worker: _Worker) -> ErrorInfo | None:
        if not worker.inflight:
            return None
        task = worker.inflight[0][0]
        if task.timeout is None or time.monotonic() - worker.head_started <= task.timeout:
            return None
        return ErrorInfo(
            "TimeoutError",
            f"{task.describe()} ran longer than its timeout of {task.timeout:g}s; its worker "
            f"process {worker.process.pid} was killed and replaced",
            "",
        )

    def _replace(
        self, index: int, worker: _Worker, cause: ErrorInfo | None = None
    ) -> list[TaskResult]:
        worker.process.join(timeout=1)
        code = worker.process.exitcode
        how = _describe_exit(code)
        results = []
        for position, (task, started) in enumerate(worker.inflight):
            error = cause or ErrorInfo(
                "WorkerLost",
                f"worker process {worker.process.pid} {how} while running {task.describe()}",
                "",
            )
            results.append(lost(task, error, started, running=position == 0))
        worker.outbox.put(None)
        worker.conn.close()
        self._workers[index] = self._spawn()
        return results

    def shutdown(self) -> None:
        for worker in self._workers:
            worker.outbox.put(b"")  # tells the worker to exit once its tasks are written
            worker.outbox.put(None)
        deadline = time.monotonic() + 2.0
        for worker in self._workers:
            worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=1)
            worker.conn.close()
        self._workers.clear()


def _die_with_parent() -> None:
    """On Linux, have the kernel kill this worker if the coordinator dies, even in the middle
    of a long unit (elsewhere the closed pipe stops it after the unit)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:  # the coordinator died before prctl took effect
        os._exit(1)


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "stopped responding"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _worker_main(
    conn: Connection, factory: Callable[[], Runtime], inherited: list[Connection]
) -> None:
    """The worker loop: receive a task, run it, send the outcomes; an empty message stops it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the coordinator's to handle
    _die_with_parent()
    for other in inherited:
        other.close()
    runtime = factory()
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            break
        if not data:
            break
        task: Task = pickle.loads(data)
        outcomes = runtime.run_task(task)
        conn.send_bytes(pickle.dumps((task.task_id, outcomes), protocol=pickle.HIGHEST_PROTOCOL))
    conn.close()
    os._exit(0)
