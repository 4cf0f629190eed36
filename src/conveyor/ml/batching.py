"""Adaptive micro-batching: the rows of concurrent requests grouped into one vectorised predict.

A :class:`MicroBatcher` owns a queue of rows and one dispatcher task on the event loop. The
predict function is synchronous and vectorised; it runs in one dedicated worker thread (or a
given executor), one batch at a time, so the loop stays free to queue requests while a batch
runs, and the rows queued meanwhile form the next batch.

When the worker is free, the dispatcher either sends what is queued at once or holds it for
more rows. The rule (``MicroBatcher._hold``), from two measurements:

* the cost of a batch, ``seconds ≈ a·n + b``, a least-squares fit over the last 50 batches
  (as BentoML's dispatcher does): ``b`` is what a batch costs whatever its size;
* the arrival rate ``λ`` of rows over the last ten fixed costs (``10·b`` seconds), so that it
  follows the traffic of the last few batches rather than a burst long gone.

Holding ``n`` queued rows for the next arrival (``1/λ`` away) adds ``n/λ`` row-seconds of
waiting; letting that row miss the batch costs it a batch of its own, ``b``. So the dispatcher
holds only while ``λ·b > n`` (over the horizon of ``10·b``: while more than ``10·n`` rows
arrived in it), and only while rows keep coming (the last arrived less than ``2/λ`` ago: a
burst that is over is not waited for). It never holds past ``max_wait`` after the oldest queued
row arrived, never with ``max_batch`` rows queued, never so long that a queued request would
miss its deadline, and not before batches have been measured (``b`` is 0 until then).

A lone request on an idle batcher is therefore sent at once: with no other traffic only its own
row is in the horizon (``λ·b = 1/10``), and a single client sending request after request
brings fewer than ``n`` rows per ``b``, each of its requests waiting for the last. Rows
queued while a batch runs are not held either once ``n ≥ λ·b``: under load the batches grow by
themselves, from the rows that arrived meanwhile.

Batches never exceed ``max_batch`` rows: a request of more rows is split over several batches
(its rows may share a batch with other requests' rows) and its answer is reassembled in order.

Deadlines: a request whose estimated queue wait and batch cost exceed its deadline is refused
at once with :class:`~conveyor.errors.Overloaded` (``retry_after`` > 0); one whose deadline
passes before it is answered gets :class:`~conveyor.errors.Overloaded` then, and its rows still
queued are withdrawn. Never a hang, never half an answer. A predict that raises fails the
requests of that batch alone, with its exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from types import TracebackType
from typing import Any

from conveyor.core.durations import parse_duration
from conveyor.core.logs import logger
from conveyor.errors import ConveyorError, Overloaded, UsageError

#: The vectorised predict: one answer per row, in order.
Predict = Callable[[list[Any]], Sequence[Any]]
#: Called after each answered batch with its rows, its predict seconds and the queue wait of
#: its oldest row (seconds), e.g. to feed metrics.
OnBatch = Callable[[int, float, float], None]

#: The default largest batch, in rows, and the default longest hold, from ``bench/batching.py``
#: on the rain model (b ≈ 1.1 ms, a ≈ 3 µs a row): at 64 clients, batches capped at 16 or 32
#: rows lose 40-60% of the throughput and 128 gains nothing over 64 (a batch of 64 costs 1.1x
#: one row); the throughput is flat within 6% for a max_wait of 1 to 20 ms (0 is about 5%
#: lower), so 5 ms bounds a mistaken hold at half Ray Serve's fixed 10 ms.
DEFAULT_MAX_BATCH = 64
DEFAULT_MAX_WAIT = 0.005
#: Batches kept for the cost fit, and requests kept for the arrival rate.
FIT_WINDOW = 50
RATE_WINDOW = 1024
#: The arrival rate is measured over this many fixed costs ``b`` (at least RATE_MIN_HORIZON
#: seconds), so it follows the traffic of the last few batches, not of a burst long gone.
RATE_HORIZON = 10
RATE_MIN_HORIZON = 0.0001
#: A hold ends when no row arrived for this many mean gaps between arrivals.
QUIET_GAPS = 2.0
#: A batch slower than the fitted line by this many median residuals is left out of the fit.
OUTLIER_SPREAD = 4.0
#: The retry delay given when nothing better is known, and the least one given.
CLOSED_RETRY_AFTER = 1.0
MIN_RETRY_AFTER = 0.001


class CostFit:
    """The cost of a batch of ``n`` rows, ``a·n + b`` seconds, fitted by least squares over the
    last ``window`` batches; both are kept at or above 0. A batch far slower than the line (the
    worker descheduled on a busy machine) is left out of it: one such batch would otherwise
    raise ``b`` for the next fifty."""

    def __init__(self, window: int = FIT_WINDOW) -> None:
        self._samples: deque[tuple[int, float]] = deque(maxlen=window)
        #: Seconds per row, and seconds per batch whatever its size.
        self.a = 0.0
        self.b = 0.0

    def __len__(self) -> int:
        return len(self._samples)

    def add(self, rows: int, seconds: float) -> None:
        """Record one batch and fit again."""
        self._samples.append((rows, seconds))
        samples = list(self._samples)
        self.a, self.b = _line(samples, self.a)
        if len(samples) >= 5:
            residuals = sorted(abs(s - self.a * n - self.b) for n, s in samples)
            limit = OUTLIER_SPREAD * residuals[len(residuals) // 2] + 1e-6
            kept = [(n, s) for n, s in samples if s - self.a * n - self.b <= limit]
            if len(kept) < len(samples):
                self.a, self.b = _line(kept, self.a)

    def cost(self, rows: int) -> float:
        """The expected seconds of a batch of ``rows`` rows (0 before any batch)."""
        return self.a * rows + self.b if self._samples else 0.0


def _line(samples: list[tuple[int, float]], slope: float) -> tuple[float, float]:
    """Least squares ``(a, b)`` of ``seconds ≈ a·rows + b``, both at or above 0; with every
    batch of one size, ``slope`` is kept and the intercept fitted."""
    k = len(samples)
    sn = sum(n for n, _ in samples)
    ss = sum(s for _, s in samples)
    snn = sum(n * n for n, _ in samples)
    sns = sum(n * s for n, s in samples)
    spread = k * snn - sn * sn
    if spread <= 0:
        return slope, max(0.0, (ss - slope * sn) / k)
    a = (k * sns - sn * ss) / spread
    b = (ss - a * sn) / k
    if a < 0:  # no cost per row measurable: all of it is fixed
        return 0.0, ss / k
    if b < 0:  # no fixed cost measurable: a line through the origin
        return sns / snn, 0.0
    return a, b


class Arrivals:
    """When the last ``window`` requests arrived and their rows, to count the rows of a recent
    horizon (a full window under-counts: holding less, never more)."""

    def __init__(self, window: int = RATE_WINDOW) -> None:
        self._arrivals: deque[tuple[float, int]] = deque(maxlen=window)
        #: When the latest request arrived (loop time), or None.
        self.last: float | None = None

    def add(self, now: float, rows: int) -> None:
        """Record a request of ``rows`` rows arriving at ``now``."""
        self._arrivals.append((now, rows))
        self.last = now

    def rows(self, now: float, horizon: float) -> int:
        """The rows that arrived in the ``horizon`` seconds up to ``now``."""
        since = now - horizon
        rows = 0
        for at, count in reversed(self._arrivals):
            if at <= since:
                break
            rows += count
        return rows


@dataclass(frozen=True)
class BatcherStats:
    """What a :class:`MicroBatcher` has done so far, and its current fit and queue."""

    #: Batches answered, rows in them, and batches whose predict raised.
    batches: int
    rows: int
    failed_batches: int
    #: Requests refused at admission, and requests whose deadline passed while queued.
    refused: int
    expired: int
    #: Rows queued now, and the fit of a batch's seconds, ``a·rows + b``.
    queued_rows: int
    a: float
    b: float
    #: Rows per second that arrived in the last second.
    arrival_rate: float


@dataclass(eq=False)
class _Request:
    """One submitted request: its rows, where its answers go, and how far it has got."""

    rows: list[Any]
    future: asyncio.Future[list[Any]]
    queued_at: float
    deadline_at: float | None
    results: list[Any] = field(default_factory=list)
    taken: int = 0  # rows handed to batches (all of them once withdrawn)
    answered: int = 0
    timer: asyncio.TimerHandle | None = None


#: One request's share of a batch: the request, the offset of its first row, how many rows.
_Piece = tuple[_Request, int, int]


class MicroBatcher:
    """Groups the rows of concurrent :meth:`submit` calls into batches of at most ``max_batch``
    rows for ``predict``, holding a free worker for more rows only while the measured cost and
    arrival rate say it pays (see the module's docstring), never longer than ``max_wait``.

    Use it from one event loop, as ``async with MicroBatcher(predict) as batcher: ...`` or by
    calling :meth:`close` at the end."""

    def __init__(
        self,
        predict: Predict,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_wait: float | str | timedelta = DEFAULT_MAX_WAIT,
        on_batch: OnBatch | None = None,
        executor: Executor | None = None,
        name: str = "model",
    ) -> None:
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise UsageError(f"max_batch of {name!r} must be a whole number of rows >= 1, "
                             f"not {max_batch!r}")  # fmt: skip
        try:
            wait = parse_duration(max_wait)
        except ValueError as exc:
            raise UsageError(f"max_wait of {name!r}: {exc}") from exc
        self.predict = predict
        self.max_batch = max_batch
        self.max_wait = wait
        self.name = name
        self._on_batch = on_batch
        self._own_executor = executor is None
        self._executor: Executor = executor or ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"conveyor-batch-{name}"
        )
        self._fit = CostFit()
        self._arrivals = Arrivals()
        self._queue: deque[_Request] = deque()
        self._queued_rows = 0
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._running: tuple[float, float] | None = None  # (started, expected seconds)
        self._inflight: list[_Piece] = []
        self._closing = False
        self._closed = False
        self._batches = self._rows = self._failed = self._refused = self._expired = 0

    # -- the public side ---------------------------------------------------------------------

    async def submit(self, rows: list[Any], *, deadline: float | None = None) -> list[Any]:
        """The answers for ``rows``, in order, from one or more batches. ``deadline``: seconds
        from now within which the answer must come, else :class:`Overloaded` is raised (at
        once when the estimate already says so). A predict error is raised as it was."""
        loop = self._bind()
        if self._task is not None and self._task.done() and not self._closing:
            raise ConveyorError(f"the batcher of {self.name!r} has stopped; restart the server")
        if self._closing:
            raise Overloaded(
                f"the batcher of {self.name!r} is closing and takes no new requests; "
                "retry on another server",
                retry_after=CLOSED_RETRY_AFTER,
            )
        if not rows:
            return []
        now = loop.time()
        count = len(rows)
        if deadline is not None:
            if not deadline > 0:
                raise UsageError(f"the deadline of a request to {self.name!r} must be more "
                                 f"than 0 seconds, not {deadline!r}")  # fmt: skip
            expected = self._expected(now, count)
            if expected > deadline:
                self._refused += 1
                retry = self._retry_after(now, count)
                alone = self._fit.a * count + math.ceil(count / self.max_batch) * self._fit.b
                why = (f"about {expected:.3g} s with {self._queued_rows} rows queued"
                       if alone <= deadline else
                       f"about {alone:.3g} s even with nothing queued: send fewer rows or "
                       "allow more time")  # fmt: skip
                raise Overloaded(
                    f"{self.name!r} cannot answer {count} rows within {deadline:.3g} s: {why}; "
                    f"retry after {retry:.3g} s",
                    retry_after=retry,
                )
        request = _Request(
            rows=rows,
            future=loop.create_future(),
            queued_at=now,
            deadline_at=None if deadline is None else now + deadline,
            results=[None] * count,
        )
        if deadline is not None:
            request.timer = loop.call_at(now + deadline, self._expire, request, deadline)
        self._arrivals.add(now, count)
        self._queue.append(request)
        self._queued_rows += count
        self._wake.set()
        try:
            return await request.future
        except asyncio.CancelledError:
            self._withdraw(request)  # the caller went away: its rows are not computed
            raise
        finally:
            if request.timer is not None:
                request.timer.cancel()

    @property
    def stats(self) -> BatcherStats:
        """Counts so far, the current fit and the rows queued now."""
        now = self._loop.time() if self._loop is not None else time.monotonic()
        return BatcherStats(
            batches=self._batches,
            rows=self._rows,
            failed_batches=self._failed,
            refused=self._refused,
            expired=self._expired,
            queued_rows=self._queued_rows,
            a=self._fit.a,
            b=self._fit.b,
            arrival_rate=float(self._arrivals.rows(now, 1.0)),
        )

    async def close(self) -> None:
        """Stop taking requests (:meth:`submit` raises :class:`Overloaded`), answer every
        queued row, then stop the worker thread. Calling it again does nothing."""
        self._closing = True
        self._wake.set()
        try:
            if self._task is not None:
                await asyncio.shield(self._task)
        finally:
            if not self._closed:
                self._closed = True
                if self._own_executor:
                    self._executor.shutdown(wait=True)

    async def __aenter__(self) -> MicroBatcher:
        self._bind()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- estimates ---------------------------------------------------------------------------

    def _expected(self, now: float, rows: int) -> float:
        """Seconds until ``rows`` more rows would be answered: what runs now, what is queued
        before them, and theirs, in batches of ``max_batch``."""
        if not len(self._fit):
            return 0.0
        ahead = self._queued_rows + rows
        batches = math.ceil(ahead / self.max_batch)
        return self._remaining(now) + self._fit.a * ahead + batches * self._fit.b

    def _remaining(self, now: float) -> float:
        """Expected seconds left of the batch running now (0 when none runs)."""
        if self._running is None:
            return 0.0
        started, expected = self._running
        return max(0.0, started + expected - now)

    def _retry_after(self, now: float, rows: int) -> float:
        """When a request of ``rows`` rows would likely be answered if sent again: once the
        rows queued now are done, and never less than its own batch."""
        queued = self._queued_rows
        drain = self._remaining(now)
        if queued:
            drain += self._fit.a * queued + math.ceil(queued / self.max_batch) * self._fit.b
        return max(drain, self._fit.cost(min(rows, self.max_batch)), MIN_RETRY_AFTER)

    # -- the dispatcher ----------------------------------------------------------------------

    def _bind(self) -> asyncio.AbstractEventLoop:
        """The running loop; the first call starts the dispatcher on it."""
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
            self._task = loop.create_task(self._dispatch(), name=f"conveyor-batch-{self.name}")
        elif loop is not self._loop:
            raise UsageError(f"the batcher of {self.name!r} belongs to another event loop; "
                             "create one per loop")  # fmt: skip
        return loop

    async def _dispatch(self) -> None:
        """Wait for rows, hold them while it pays, send a batch, again; after :meth:`close`,
        until the queue is empty. Should it stop otherwise (cancelled with its loop, or a bug),
        every request still waiting is failed: none is left hanging."""
        try:
            await self._batches_loop()
        except BaseException as exc:
            stopped = ConveyorError(f"the batcher of {self.name!r} stopped "
                                    f"({type(exc).__name__}); restart the server")  # fmt: skip
            stopped.__cause__ = exc
            for request in [*self._queue, *(r for r, _, _ in self._inflight)]:
                self._fail(request, stopped)
            self._queue.clear()
            self._queued_rows = 0
            raise

    async def _batches_loop(self) -> None:
        """The dispatcher's loop (see :meth:`_dispatch`)."""
        assert self._loop is not None
        loop = self._loop
        while True:
            if not self._queued_rows:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            hold = self._hold(loop.time())
            if hold > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(hold):
                        await self._wake.wait()
                continue
            await self._run(self._take())

    def _hold(self, now: float) -> float:
        """Seconds to keep a free worker waiting for more rows; 0 to send the batch now."""
        n = self._queued_rows
        if self._closing or n >= self.max_batch:
            return 0.0
        live = [r for r in self._queue if r.taken < len(r.rows)]
        budget = self.max_wait - (now - live[0].queued_at)
        if budget <= 0 or self._fit.b <= 0:
            return 0.0
        # λ·b > n, λ over a horizon of RATE_HORIZON fixed costs.
        horizon = max(RATE_HORIZON * self._fit.b, RATE_MIN_HORIZON)
        arrived = self._arrivals.rows(now, horizon)
        if arrived * self._fit.b / horizon <= n + 1e-9:
            return 0.0
        last = self._arrivals.last if self._arrivals.last is not None else now
        quiet = QUIET_GAPS * horizon / arrived - (now - last)
        hold = min(budget, quiet)
        cost = self._fit.cost(n + 1)
        for request in live:
            if request.deadline_at is not None:
                hold = min(hold, request.deadline_at - now - cost)
        return max(hold, 0.0)

    def _take(self) -> list[_Piece]:
        """The next batch from the head of the queue: at most ``max_batch`` rows, a request's
        rows split where the batch ends."""
        pieces: list[_Piece] = []
        size = 0
        while self._queue and size < self.max_batch:
            request = self._queue[0]
            left = len(request.rows) - request.taken
            if left <= 0:
                self._queue.popleft()
                continue
            k = min(left, self.max_batch - size)
            pieces.append((request, request.taken, k))
            request.taken += k
            size += k
            if request.taken == len(request.rows):
                self._queue.popleft()
        self._queued_rows -= size
        return pieces

    async def _run(self, pieces: list[_Piece]) -> None:
        """Predict one batch in the worker and hand each request its answers."""
        if not pieces:
            return
        assert self._loop is not None
        loop = self._loop
        rows = [row for request, start, k in pieces for row in request.rows[start : start + k]]
        started = loop.time()
        queue_wait = started - min(request.queued_at for request, _, _ in pieces)
        self._running = (started, self._fit.cost(len(rows)))
        self._inflight = pieces
        try:
            answers, seconds = await loop.run_in_executor(
                self._executor, _timed, self.predict, rows
            )
        except Exception as exc:
            self._failed += 1
            for request, _, _ in pieces:
                self._fail(request, exc)
            return
        finally:
            self._running = None
            self._inflight = []
        if self._batches or self._failed:  # the first batch pays for cold caches: not fitted
            self._fit.add(len(rows), seconds)
        self._batches += 1
        self._rows += len(rows)
        offset = 0
        for request, start, k in pieces:
            if not request.future.done():
                request.results[start : start + k] = answers[offset : offset + k]
                request.answered += k
                if request.answered == len(request.rows):
                    request.future.set_result(request.results)
            offset += k
        if self._on_batch is not None:
            try:
                self._on_batch(len(rows), seconds, queue_wait)
            except Exception:  # a metrics hook must not stop the batcher
                logger.exception("the on_batch callback of %r failed", self.name)

    def _withdraw(self, request: _Request) -> None:
        """Take the request's rows not yet in a batch out of the queue."""
        left = len(request.rows) - request.taken
        if left > 0:
            self._queued_rows -= left
            request.taken = len(request.rows)

    def _fail(self, request: _Request, exc: BaseException) -> None:
        """End the request with ``exc``: no half answer, its queued rows withdrawn."""
        self._withdraw(request)
        if not request.future.done():
            request.future.set_exception(exc)

    def _expire(self, request: _Request, deadline: float) -> None:
        """The request's deadline passed before its answer: :class:`Overloaded`."""
        if request.future.done():
            return
        assert self._loop is not None
        self._expired += 1
        self._withdraw(request)
        retry = self._retry_after(self._loop.time(), len(request.rows))
        self._fail(request, Overloaded(
            f"{self.name!r} did not answer {len(request.rows)} rows within {deadline:.3g} s "
            f"({self._queued_rows} rows queued); retry after {retry:.3g} s",
            retry_after=retry,
        ))  # fmt: skip


def _timed(predict: Predict, rows: list[Any]) -> tuple[list[Any], float]:
    """``predict(rows)`` as a list, and its seconds (measured in the worker, so the loop's
    delays are not counted); an answer count other than the row count is an error."""
    started = time.perf_counter()
    answers = list(predict(rows))
    seconds = time.perf_counter() - started
    if len(answers) != len(rows):
        raise ConveyorError(f"predict returned {len(answers)} answers for {len(rows)} rows; "
                            "it must return one answer per row, in order")  # fmt: skip
    return answers, seconds
