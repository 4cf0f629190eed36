"""The bookkeeping of executors whose tasks run on worker processes or actors of their own (the
process pool, Ray's actors): which calls each one holds, in the order it runs them, when the one
it runs began, the deadline of its timeout, and what to report when it overruns and is killed,
or dies. Each executor keeps one :class:`Slot` per worker process or actor; how it kills and
replaces one is its own."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, NamedTuple, TypeVar

from conveyor.core.units import ErrorInfo, Task
from conveyor.executors.base import TaskResult, lost


@dataclass(eq=False)
class Sent:
    """A call sent to a worker process or actor: the task it runs (``None``: a call that runs
    no units, such as an actor's start-up call) and when it was sent (wall clock, the time its
    outcomes carry if it is lost)."""

    task: Task | None
    submitted: float


SentT = TypeVar("SentT", bound=Sent)


def timed_out(what: str, timeout: float, consequence: str) -> ErrorInfo:
    """The error of ``what`` (a task, or a chain's step) that ran past its ``timeout``;
    ``consequence`` says what became of it (``; its worker process 12 was killed and replaced``)."""
    return ErrorInfo(
        "TimeoutError", f"{what} ran longer than its timeout of {timeout:g}s{consequence}", ""
    )


def worker_lost(message: str) -> ErrorInfo:
    """The error of a task whose worker process, actor or node went away."""
    return ErrorInfo("WorkerLost", message, "")


class Overrun(NamedTuple):
    """What ran past its timeout in a slot: the whole task running there (no ``culprits``), or
    the ``culprits``, the units of a chain's step with a timeout of its own."""

    what: str
    timeout: float
    culprits: tuple[int, ...]

    def error(self, consequence: str) -> ErrorInfo:
        """Its :func:`timed_out` error."""
        return timed_out(self.what, self.timeout, consequence)


@dataclass(eq=False)
class Slot(Generic[SentT]):
    """One worker process or actor. It runs the calls sent to it one after another, so the
    head of :attr:`sent` is the one running, since :attr:`started`."""

    sent: deque[SentT] = field(default_factory=deque)
    #: How many of :attr:`sent` run tasks (an actor's start-up call does not).
    tasks: int = 0
    started: float = 0.0  # monotonic: when the head of ``sent`` began to run
    #: In a chain: the units of a step with a timeout running now, when they must be done
    #: (monotonic), and that timeout.
    chain: tuple[tuple[int, ...], float, float] | None = None

    def send(self, call: SentT) -> None:
        """Queue ``call``; if nothing else is queued it starts now."""
        if not self.sent:
            self.started = time.monotonic()
        self.sent.append(call)
        if call.task is not None:
            self.tasks += 1

    def finish(self, call: SentT | None = None, at: float | None = None) -> SentT:
        """``call`` (by default the head) is done: if it was the head, the next one started
        ``at`` (monotonic; by default now)."""
        self.chain = None
        if call is None or self.sent[0] is call:
            call = self.sent.popleft()
            self.started = time.monotonic() if at is None else at
        else:  # its word came before the word of the call ahead of it
            self.sent.remove(call)
        if call.task is not None:
            self.tasks -= 1
        return call

    def time_chain(self, units: tuple[int, ...], seconds: float | None) -> None:
        """A chain running here says that ``units`` of a step with a timeout of ``seconds``
        start now (``None``: that they are done)."""
        self.chain = None if seconds is None else (units, time.monotonic() + seconds, seconds)

    def deadline(self) -> float | None:
        """When (monotonic) the call running now must be done, if it has a timeout."""
        head = self.sent[0].task if self.sent else None
        if head is None:
            return None
        end = self.chain[1] if self.chain is not None else math.inf
        if head.timeout is not None:
            end = min(end, self.started + head.timeout)
        return None if end == math.inf else end

    def overrun(self, now: float) -> Overrun | None:
        """What runs here past its timeout at ``now`` (monotonic), if anything does."""
        head = self.sent[0].task if self.sent else None
        if head is None:
            return None
        if self.chain is not None:  # a chain runs a step with a timeout
            units, deadline, timeout = self.chain
            if now <= deadline:
                return None
            what = next((u.step for u in head.units if u.unit_id == units[0]), "a step")
            return Overrun(what, timeout, units)
        if head.timeout is not None and now - self.started > head.timeout:
            return Overrun(head.describe(), head.timeout, ())
        return None

    def lost(
        self,
        error: ErrorInfo | Callable[[Task], ErrorInfo],
        *,
        blame: bool = True,
        culprits: tuple[int, ...] = (),
    ) -> list[TaskResult]:
        """The results of every task sent here, whose worker process or actor went away (see
        :func:`~conveyor.executors.base.lost`), each with ``error`` (or ``error(task)``, a
        message that names the task); the slot is emptied.
        The task that was running is the one to blame if ``blame`` (only its ``culprits``, if
        given); those queued behind it go back to the queue."""
        results: list[TaskResult] = []
        for call in self.sent:
            if call.task is None:
                continue
            head = not results
            results.append(
                lost(
                    call.task,
                    error if isinstance(error, ErrorInfo) else error(call.task),
                    call.submitted,
                    running=blame and head,
                    culprits=culprits if head else (),
                )
            )
        self.sent.clear()
        self.tasks = 0
        self.chain = None
        return results


def free_slots(slots: Iterable[Slot[SentT]], prefetch: int) -> int:
    """How many more tasks ``slots`` take, each holding at most ``prefetch``."""
    return sum(prefetch - slot.tasks for slot in slots)


def next_deadline(slots: Iterable[Slot[SentT]]) -> float | None:
    """Seconds until the earliest deadline of a call running in ``slots`` (0 if one is past)."""
    now = time.monotonic()
    waits = [end - now for slot in slots if (end := slot.deadline()) is not None]
    return max(0.0, min(waits)) if waits else None
