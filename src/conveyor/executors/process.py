"""The local process pool: one worker process per core, each with its own pipe, so the
coordinator knows which tasks a worker process holds and can replace one that dies."""

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
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from conveyor.core.units import ErrorInfo, Task
from conveyor.executors.base import Executor, TaskResult
from conveyor.executors.runtime import Runtime
from conveyor.executors.slots import Sent, Slot, free_slots, next_deadline, worker_lost

#: Tasks sent to a worker process ahead of the one it is running, to hide the round trip.
PREFETCH = 2
#: While the tasks a worker process has not answered come to at most this many bytes, the
#: scheduler writes the next one to its pipe itself: the pipe's buffer (at least 64 KiB on
#: Linux) holds them all, so the write cannot block. Otherwise its feeder thread
#: writes it (a hop to another thread, which costs the scheduler more than a small write).
DIRECT_BYTES = 64 * 1024
_PR_SET_PDEATHSIG = 1
#: The native thread pools a worker process limits (OpenMP, BLAS, numexpr), as Ray does: N
#: worker processes that each start a thread per core fight over the cores (scikit-learn's
#: gradient boosting on 2 cores: 9x slower with 2 workers of 2 threads than of 1).
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


@dataclass(eq=False)
class _Sent(Sent):
    size: int = 0  # bytes of the pickled task


@dataclass(eq=False, kw_only=True)
class _WorkerProcess(Slot[_Sent]):
    process: multiprocessing.process.BaseProcess
    conn: Connection
    outbox: queue.SimpleQueue[bytes | None]
    #: Held while a task is written to ``conn``; ``queued`` counts tasks in ``outbox`` that
    #: the feeder has not finished writing (the scheduler writes itself only when it is 0, so
    #: that tasks arrive in the order sent).
    writing: threading.Lock = field(default_factory=threading.Lock)
    queued: int = 0


def _feed(worker: _WorkerProcess) -> None:
    """Write queued tasks to one worker process. A write blocks while it is busy and the pipe is
    full; doing it on this thread keeps the scheduler free to commit the others' results."""
    while (data := worker.outbox.get()) is not None:
        with worker.writing:
            try:
                worker.conn.send_bytes(data)
            except (BrokenPipeError, ConnectionResetError, EOFError, OSError):
                return  # it died; collect() sees its sentinel and reports its tasks lost
            finally:
                worker.queued -= 1


class ProcessExecutor(Executor):
    """``workers`` worker processes forked from the coordinator; each builds its resources
    once."""

    name = "process"
    runs_chains = True

    def __init__(self, runtime_factory: Callable[[], Runtime], workers: int) -> None:
        self._factory = runtime_factory
        self._size = workers
        self._workers: list[_WorkerProcess] = []
        self._context = multiprocessing.get_context("fork")

    @property
    def threads(self) -> int:
        """Native threads each worker process may start: its share of the cores."""
        return max(1, (os.cpu_count() or 1) // max(1, self._size))

    def start(self) -> None:
        for _ in range(self._size):
            self._workers.append(self._spawn())

    def _spawn(self) -> _WorkerProcess:
        parent, child = self._context.Pipe(duplex=True)
        # The forked worker process inherits the coordinator's ends of every pipe; it must close
        # them, or it never sees end-of-file when the coordinator dies.
        inherited = [parent, *(w.conn for w in self._workers)]
        process = self._context.Process(
            target=_worker_main,
            args=(child, self._factory, inherited, self.threads),
            name="conveyor-worker",
            daemon=True,
        )
        process.start()
        child.close()
        worker = _WorkerProcess(process=process, conn=parent, outbox=queue.SimpleQueue())
        threading.Thread(target=_feed, args=(worker,), name="conveyor-feeder", daemon=True).start()
        return worker

    @property
    def pids(self) -> list[int]:
        """Process ids of the live worker processes."""
        return [w.process.pid for w in self._workers if w.process.pid is not None]

    def workers(self) -> int:
        return len(self._workers)

    def free_slots(self) -> int:
        return free_slots(self._workers, PREFETCH)

    def submit(self, task: Task) -> None:
        worker = min(self._workers, key=lambda w: w.tasks)
        data = pickle.dumps(task, protocol=pickle.HIGHEST_PROTOCOL)
        worker.send(_Sent(task, time.time(), len(data)))
        with worker.writing:
            if worker.queued == 0 and sum(s.size for s in worker.sent) <= DIRECT_BYTES:
                try:
                    worker.conn.send_bytes(data)
                except (BrokenPipeError, ConnectionResetError, EOFError, OSError):
                    pass  # it died; collect() sees its sentinel and reports it lost
                return
            worker.queued += 1
        worker.outbox.put(data)

    def waitables(self) -> list[Any]:
        found: list[Any] = []
        for w in self._workers:
            found.append(w.conn)
            found.append(w.process.sentinel)
        return found

    def collect(self) -> list[TaskResult]:
        done: list[TaskResult] = []
        pipes: dict[Any, _WorkerProcess] = {w.conn: w for w in self._workers}
        sentinels: dict[Any, _WorkerProcess] = {w.process.sentinel: w for w in self._workers}
        ready = wait([*pipes, *sentinels], 0)
        gone = {id(sentinels[r]) for r in ready if r in sentinels}  # these exited
        readable = [r for r in ready if r in pipes]
        while readable:  # one look at every pipe per round, not one per message
            for pipe in readable:
                worker = pipes[pipe]
                try:
                    self._receive(worker, worker.conn.recv_bytes(), done)
                except (EOFError, OSError):
                    gone.add(id(worker))
            readable = [r for r in wait(readable, 0) if id(pipes[r]) not in gone]
        now = time.monotonic()
        for index, worker in enumerate(self._workers):
            overrun = worker.overrun(now)
            if overrun is not None:
                worker.process.kill()  # code that never returns cannot be stopped any other way
                worker.process.join(timeout=5)
                error = overrun.error(
                    f"; its worker process {worker.process.pid} was killed and replaced"
                )
                done.extend(self._replace(index, error, overrun.culprits))
            elif id(worker) in gone:
                done.extend(self._replace(index))
        return done

    @staticmethod
    def _receive(worker: _WorkerProcess, data: bytes, done: list[TaskResult]) -> None:
        """One message from a worker process: a finished task, or a chain's word on its timed
        units."""
        task_id, outcomes = pickle.loads(data)
        if task_id is None:
            worker.time_chain(*outcomes)
            return
        worker.finish()  # tasks run in the order sent: the next one starts now
        done.append((task_id, outcomes))

    def next_deadline(self) -> float | None:
        """Seconds until the earliest running task's (or chain unit's) timeout, if any."""
        return next_deadline(self._workers)

    def _replace(
        self, index: int, cause: ErrorInfo | None = None, culprits: tuple[int, ...] = ()
    ) -> list[TaskResult]:
        """Report the tasks of worker process ``index`` lost (with ``cause``: it was killed for
        a timeout, ``culprits`` to blame) and start another in its place."""
        worker = self._workers[index]
        worker.process.join(timeout=1)
        if worker.process.is_alive():  # its pipe broke but it lives on: it is of no more use
            worker.process.kill()
            worker.process.join(timeout=1)
        pid, how = worker.process.pid, _describe_exit(worker.process.exitcode)

        def died(task: Task) -> ErrorInfo:
            return worker_lost(f"worker process {pid} {how} while running {task.describe()}")

        results = worker.lost(cause or died, culprits=culprits)
        worker.outbox.put(None)
        worker.conn.close()
        self._workers[index] = self._spawn()
        return results

    def shutdown(self) -> None:
        for worker in self._workers:
            worker.outbox.put(b"")  # tells it to exit once its tasks are written
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
    """On Linux, have the kernel kill this worker process if the coordinator dies, even in the
    middle of a long unit (elsewhere the closed pipe stops it after the unit)."""
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


def limit_threads(threads: int) -> None:
    """Limit this process's native thread pools to ``threads``, unless the user chose
    (``OMP_NUM_THREADS`` set): the variables for libraries loaded later, and threadpoolctl
    (scikit-learn's dependency), when installed, for those already loaded."""
    if "OMP_NUM_THREADS" in os.environ:
        return
    for name in THREAD_VARIABLES:
        os.environ.setdefault(name, str(threads))
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(threads)


def _worker_main(
    conn: Connection, factory: Callable[[], Runtime], inherited: list[Connection], threads: int
) -> None:
    """A worker process's loop: receive a task, run it, send the outcomes; an empty message
    stops it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the coordinator's to handle
    _die_with_parent()
    limit_threads(threads)
    for other in inherited:
        other.close()
    runtime = factory()

    def timed(units: tuple[int, ...], seconds: float | None) -> None:
        conn.send_bytes(pickle.dumps((None, (units, seconds)), protocol=pickle.HIGHEST_PROTOCOL))

    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            break
        if not data:
            break
        task: Task = pickle.loads(data)
        outcomes = runtime.run_task(task, timed if task.chain else None)
        conn.send_bytes(pickle.dumps((task.task_id, outcomes), protocol=pickle.HIGHEST_PROTOCOL))
    conn.close()
    os._exit(0)
