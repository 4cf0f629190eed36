"""The micro-batcher on a real asyncio loop with a small numpy predict: batches bounded by
max_batch (multi-row requests too), answers in order, failures confined to their batch,
withdrawal of cancelled and expired requests, close, and the cost fit and hold rule alone."""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import numpy as np
import pytest

from conveyor.errors import ConveyorError, Overloaded, UsageError
from conveyor.ml.batching import Arrivals, CostFit, MicroBatcher

T = TypeVar("T")
#: Every await in these tests is bounded: a hang fails the test instead of stalling the suite.
BOUND = 10.0


def run(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine on a fresh loop, bounded by BOUND seconds."""

    async def bounded() -> T:
        return await asyncio.wait_for(make(), BOUND)

    return asyncio.run(bounded())


class Affine:
    """A vectorised numpy predict, ``2x + 1`` of each row, that records every call's size; a
    NaN row makes it raise, as a model's input check would."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.lock = threading.Lock()
        self.gate: threading.Event | None = None

    def __call__(self, rows: list[Any]) -> list[float]:
        if self.gate is not None:
            self.gate.wait(BOUND)
        with self.lock:
            self.calls.append(len(rows))
        x = np.asarray(rows, dtype=float)
        if np.isnan(x).any():
            raise ValueError(f"row {int(np.flatnonzero(np.isnan(x))[0])} is NaN")
        return (2 * x + 1).tolist()


def expected(rows: list[float]) -> list[float]:
    return [2 * r + 1 for r in rows]


# -- batching and order --------------------------------------------------------------------------


def test_concurrent_requests_share_batches_in_order() -> None:
    model = Affine()

    async def go() -> list[list[Any]]:
        async with MicroBatcher(model, max_batch=16, max_wait=0.5) as batcher:
            return await asyncio.gather(*(batcher.submit([float(i)]) for i in range(40)))

    answers = run(go)
    assert answers == [expected([float(i)]) for i in range(40)]
    assert len(model.calls) < 40 and sum(model.calls) == 40
    assert max(model.calls) <= 16


def test_multi_row_requests_are_split_so_no_batch_exceeds_max_batch() -> None:
    model = Affine()
    sizes = [1, 3, 7, 10, 4, 1, 9]
    requests = []
    start = 0
    for size in sizes:
        requests.append([float(v) for v in range(start, start + size)])
        start += size

    async def go() -> list[list[Any]]:
        async with MicroBatcher(model, max_batch=4, max_wait=0.5) as batcher:
            return await asyncio.gather(*(batcher.submit(rows) for rows in requests))

    answers = run(go)
    assert answers == [expected(rows) for rows in requests]
    assert all(size <= 4 for size in model.calls), model.calls
    assert sum(model.calls) == sum(sizes)
    assert len(model.calls) == math.ceil(sum(sizes) / 4)  # rows of several requests share


def test_a_request_larger_than_max_batch_alone_is_answered_whole() -> None:
    model = Affine()
    rows = [float(v) for v in range(25)]

    async def go() -> list[Any]:
        async with MicroBatcher(model, max_batch=8) as batcher:
            return await batcher.submit(rows)

    assert run(go) == expected(rows)
    assert model.calls == [8, 8, 8, 1]


def test_an_empty_request_gets_an_empty_answer_without_a_batch() -> None:
    model = Affine()

    async def go() -> list[Any]:
        async with MicroBatcher(model) as batcher:
            return await batcher.submit([])

    assert run(go) == [] and model.calls == []


def test_predict_runs_off_the_loop_in_one_worker_thread() -> None:
    threads: set[str] = set()

    def predict(rows: list[Any]) -> list[Any]:
        threads.add(threading.current_thread().name)
        return rows

    async def go() -> None:
        async with MicroBatcher(predict, max_batch=2, name="rain") as batcher:
            await asyncio.gather(*(batcher.submit([i]) for i in range(10)))

    run(go)
    assert len(threads) == 1 and next(iter(threads)).startswith("conveyor-batch-rain")
    assert not any(t.name.startswith("conveyor-batch-rain") for t in threading.enumerate())


# -- failures ------------------------------------------------------------------------------------


def test_a_failing_batch_fails_only_its_requests_and_the_batcher_goes_on() -> None:
    model = Affine()

    async def go() -> tuple[list[Any], list[Any]]:
        async with MicroBatcher(model, max_batch=2) as batcher:
            # Queued together, they form the batches [1, nan] and [2, 3].
            first = await asyncio.gather(
                *(batcher.submit([v]) for v in (1.0, math.nan, 2.0, 3.0)),
                return_exceptions=True,
            )
            later = await batcher.submit([4.0])
            return first, later

    first, later = run(go)
    assert isinstance(first[0], ValueError) and isinstance(first[1], ValueError)
    assert "NaN" in str(first[0])
    assert first[2:] == [[5.0], [7.0]]
    assert later == [9.0]


def test_a_split_request_whose_later_batch_fails_gets_no_half_answer() -> None:
    model = Affine()

    async def go() -> list[Any]:
        async with MicroBatcher(model, max_batch=3) as batcher:
            return await asyncio.gather(
                batcher.submit([1.0, 2.0, 3.0, 4.0, math.nan]), batcher.submit([6.0]),
                return_exceptions=True,
            )  # fmt: skip

    split, other = run(go)
    assert isinstance(split, ValueError)
    assert isinstance(other, ValueError)  # it shared the failing batch [4, nan, 6]


def test_a_predict_answering_the_wrong_number_of_rows_is_an_error() -> None:
    async def go() -> None:
        async with MicroBatcher(lambda rows: rows[:-1]) as batcher:
            await batcher.submit([1, 2, 3])

    with pytest.raises(ConveyorError, match="2 answers for 3 rows"):
        run(go)


def test_a_failing_on_batch_callback_does_not_stop_the_batcher() -> None:
    seen: list[tuple[int, float, float]] = []

    def on_batch(size: int, seconds: float, waited: float) -> None:
        seen.append((size, seconds, waited))
        raise RuntimeError("metrics are down")

    async def go() -> list[list[Any]]:
        async with MicroBatcher(Affine(), max_batch=2, on_batch=on_batch) as batcher:
            return [await batcher.submit([1.0, 2.0, 3.0]), await batcher.submit([0.0])]

    assert run(go) == [[3.0, 5.0, 7.0], [1.0]]
    assert [size for size, _, _ in seen] == [2, 1, 1]
    assert all(seconds >= 0 and waited >= 0 for _, seconds, waited in seen)


# -- deadlines, cancellation, close ------------------------------------------------------------


def test_a_request_past_its_deadline_in_the_queue_gets_overloaded_and_is_not_computed() -> None:
    model = Affine()
    model.gate = threading.Event()  # the first batch holds the worker until released

    async def go() -> tuple[BaseException | list[Any], list[Any]]:
        async with MicroBatcher(model, max_batch=1) as batcher:
            first = asyncio.create_task(batcher.submit([1.0]))
            await asyncio.sleep(0.01)
            late = await asyncio.gather(batcher.submit([2.0], deadline=0.02),
                                        return_exceptions=True)  # fmt: skip
            model.gate.set()
            return late[0], await first

    late, first = run(go)
    assert isinstance(late, Overloaded) and late.retry_after > 0
    assert "within 0.02 s" in str(late)
    assert first == [3.0] and model.calls == [1]  # the expired row was never predicted


def test_a_request_the_queue_cannot_answer_in_time_is_refused_at_once() -> None:
    model = Affine()

    async def go() -> tuple[Overloaded, int]:
        async with MicroBatcher(model, max_batch=1) as batcher:
            for v in range(3):  # a fit: the first batch is not fitted
                await batcher.submit([float(v)])
            batcher._fit.add(1, 0.5)  # as if predict had become slow
            model.gate = threading.Event()
            queued = [asyncio.create_task(batcher.submit([1.0])) for _ in range(4)]
            await asyncio.sleep(0)
            with pytest.raises(Overloaded) as refused:
                await batcher.submit([1.0], deadline=0.1)
            stats = batcher.stats
            model.gate.set()
            await asyncio.gather(*queued)
            return refused.value, stats.refused

    refused, count = run(go)
    assert refused.retry_after > 0.1 and count == 1
    assert "cannot answer 1 rows within 0.1 s" in str(refused)
    assert "even with nothing queued" in str(refused)  # a retry alone will not help


def test_a_cancelled_request_is_withdrawn_from_the_queue() -> None:
    model = Affine()
    model.gate = threading.Event()

    async def go() -> int:
        async with MicroBatcher(model, max_batch=1) as batcher:
            first = asyncio.create_task(batcher.submit([1.0]))
            await asyncio.sleep(0.01)
            gone = asyncio.create_task(batcher.submit([2.0, 3.0]))
            await asyncio.sleep(0)
            queued = batcher.stats.queued_rows
            gone.cancel()
            await asyncio.gather(gone, return_exceptions=True)
            assert batcher.stats.queued_rows == 0
            model.gate.set()
            await first
            return queued

    assert run(go) == 2 and model.calls == [1]


def test_close_answers_every_queued_request_then_refuses_new_ones() -> None:
    model = Affine()

    async def go() -> tuple[list[list[Any]], Overloaded]:
        batcher = MicroBatcher(model, max_batch=3, max_wait=0.5)
        tasks = [asyncio.create_task(batcher.submit([float(i)])) for i in range(10)]
        await asyncio.sleep(0)
        await batcher.close()
        assert sum(model.calls) == 10 and max(model.calls) <= 3
        with pytest.raises(Overloaded) as refused:
            await batcher.submit([1.0])
        await batcher.close()  # again: nothing
        return [t.result() for t in tasks], refused.value

    answers, refused = run(go)
    assert answers == [expected([float(i)]) for i in range(10)]
    assert "closing" in str(refused) and refused.retry_after > 0


def test_closing_an_unused_batcher_stops_its_thread() -> None:
    async def go() -> None:
        await MicroBatcher(Affine(), name="idle").close()

    run(go)
    assert not any(t.name.startswith("conveyor-batch-idle") for t in threading.enumerate())


# -- bad arguments -------------------------------------------------------------------------------


@pytest.mark.parametrize("max_batch", [0, -3, 2.5, True, "8"])
def test_max_batch_must_be_a_whole_number_of_rows(max_batch: Any) -> None:
    with pytest.raises(UsageError, match=r"max_batch of 'rain' must be a whole number"):
        MicroBatcher(Affine(), max_batch=max_batch, name="rain")


@pytest.mark.parametrize("max_wait", ["soon", -1, float("inf")])
def test_max_wait_must_be_a_duration(max_wait: Any) -> None:
    with pytest.raises(UsageError, match="max_wait of 'rain'"):
        MicroBatcher(Affine(), max_wait=max_wait, name="rain")


def test_max_wait_accepts_written_durations() -> None:
    assert MicroBatcher(Affine(), max_wait="20ms").max_wait == pytest.approx(0.02)


@pytest.mark.parametrize("deadline", [0, -1.0, math.nan])
def test_a_deadline_must_be_positive(deadline: float) -> None:
    async def go() -> None:
        async with MicroBatcher(Affine()) as batcher:
            await batcher.submit([1.0], deadline=deadline)

    with pytest.raises(UsageError, match=r"deadline .* must be more than 0"):
        run(go)


# -- the cost fit, the arrival rate and the hold rule -------------------------------------------


def test_the_fit_recovers_a_line() -> None:
    fit = CostFit()
    for n in (1, 4, 16, 64, 2, 32):
        fit.add(n, 0.002 + 0.0001 * n)
    assert fit.a == pytest.approx(0.0001) and fit.b == pytest.approx(0.002)
    assert fit.cost(10) == pytest.approx(0.003)


def test_the_fit_keeps_both_terms_at_or_above_zero() -> None:
    shrinking = CostFit()
    for n, s in ((1, 0.010), (10, 0.008), (20, 0.006)):
        shrinking.add(n, s)
    assert shrinking.a == 0 and shrinking.b == pytest.approx(0.008)
    steep = CostFit()
    for n, s in ((10, 0.001), (20, 0.003), (30, 0.005)):
        steep.add(n, s)
    assert steep.b == 0 and steep.a > 0


def test_batches_of_one_size_fit_the_fixed_cost() -> None:
    fit = CostFit()
    assert fit.cost(5) == 0
    for _ in range(5):
        fit.add(8, 0.004)
    assert fit.a == 0 and fit.b == pytest.approx(0.004)


def test_the_fit_forgets_batches_older_than_its_window() -> None:
    fit = CostFit(window=4)
    for n in (1, 2, 3, 4):
        fit.add(n, 1.0 * n)
    for n in (1, 2, 3, 4):
        fit.add(n, 0.01 + 0.001 * n)
    assert fit.b == pytest.approx(0.01) and fit.a == pytest.approx(0.001)


def test_arrivals_count_the_rows_of_a_horizon() -> None:
    arrivals = Arrivals(window=4)
    assert arrivals.rows(0.0, 1.0) == 0
    arrivals.add(0.0, 1)
    arrivals.add(0.5, 3)
    arrivals.add(1.0, 2)
    assert arrivals.rows(1.0, 1.0) == 5  # the rows after 0.0
    assert arrivals.rows(1.0, 2.0) == 6
    assert arrivals.rows(5.0, 1.0) == 0  # nothing lately
    arrivals.add(1.5, 1)
    arrivals.add(2.0, 1)  # the first arrival leaves the window
    assert arrivals.rows(2.0, 10.0) == 3 + 2 + 1 + 1
    assert arrivals.last == 2.0


def test_a_slow_outlier_is_left_out_of_the_fit() -> None:
    fit = CostFit()
    for n in (1, 4, 16, 64, 2, 32, 8, 1, 4, 16):
        fit.add(n, 0.002 + 0.0001 * n)
    fit.add(8, 0.050)  # the worker descheduled once
    assert fit.b == pytest.approx(0.002, rel=0.01) and fit.a == pytest.approx(0.0001, rel=0.01)


class Held:
    """A batcher with a chosen fixed cost and steady arrivals, to ask its hold rule alone."""

    def __init__(self, *, b: float | None, rate: float, queued: int, max_batch: int = 64,
                 max_wait: float = 0.05) -> None:  # fmt: skip
        self.batcher = MicroBatcher(Affine(), max_batch=max_batch, max_wait=max_wait)
        if b is not None:
            self.batcher._fit.add(1, b)
        gap = 1.0 / rate
        count = int(1.5 * 10 * (b or 0.001) * rate)  # arrivals over 1.5 horizons, to now
        assert count <= 1024, "the arrival window would under-count"
        for k in range(count):
            self.batcher._arrivals.add(k * gap, 1)
        self.now = (count - 1) * gap
        self.request(queued)

    def request(self, rows: int, deadline: float | None = None) -> None:
        from conveyor.ml.batching import _Request

        loop = asyncio.new_event_loop()
        try:
            future: asyncio.Future[list[Any]] = loop.create_future()
        finally:
            loop.close()
        self.batcher._queue.append(_Request(
            rows=[0.0] * rows, future=future, queued_at=self.now,
            deadline_at=None if deadline is None else self.now + deadline,
        ))  # fmt: skip
        self.batcher._queued_rows += rows

    def hold(self, later: float = 0.0) -> float:
        return self.batcher._hold(self.now + later)


def test_a_lone_request_is_sent_at_once_when_arrivals_are_rare() -> None:
    # 10 rows/s against a 2 ms fixed cost: the next row is not worth 100 ms of waiting.
    assert Held(b=0.002, rate=10.0, queued=1).hold() == 0


def test_rows_are_held_while_the_fixed_cost_outweighs_the_wait() -> None:
    held = Held(b=0.002, rate=10_000.0, queued=4)  # 20 rows per fixed cost, 4 queued
    hold = held.hold()
    assert 0 < hold <= 2 / 10_000  # until the next arrival is overdue
    assert Held(b=0.002, rate=10_000.0, queued=25).hold() == 0  # enough rows queued


def test_a_hold_ends_when_arrivals_stop() -> None:
    held = Held(b=0.002, rate=10_000.0, queued=4)
    assert held.hold(later=3 / 10_000) == 0  # three gaps without a row: the burst is over


def test_a_hold_never_passes_max_wait_nor_max_batch() -> None:
    held = Held(b=0.002, rate=10_000.0, queued=4, max_wait=0.0001)
    assert 0 < held.hold() <= 0.0001
    assert held.hold(later=0.00011) == 0
    assert Held(b=0.002, rate=20_000.0, queued=16, max_batch=16).hold() == 0
    assert Held(b=0.002, rate=20_000.0, queued=15, max_batch=16).hold() > 0


def test_a_hold_never_makes_a_queued_request_miss_its_deadline() -> None:
    held = Held(b=0.002, rate=10_000.0, queued=4, max_wait=1.0)
    held.request(1, deadline=0.0021)  # its batch costs about 2 ms: 0.1 ms of slack left
    assert 0 < held.hold() <= 0.0001 + 1e-9
    tight = Held(b=0.002, rate=10_000.0, queued=4, max_wait=1.0)
    tight.request(1, deadline=0.0019)
    assert tight.hold() == 0


def test_nothing_is_held_before_the_cost_is_measured() -> None:
    assert Held(b=None, rate=10_000.0, queued=1).hold() == 0
