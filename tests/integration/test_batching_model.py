"""The micro-batcher in front of a real scikit-learn model (a gradient-boosted classifier, whose
predict has a fixed cost of about a millisecond): concurrent clients share batches of at most
max_batch rows with their answers in order, a lone request is not held, deadlines end in
Overloaded rather than a hang, and close drains. Bounds are generous and counted, not timed
to the millisecond, so that a loaded two-core machine does not fail them."""

from __future__ import annotations

import asyncio
import random
import statistics
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import numpy as np
import pytest

from conveyor.errors import Overloaded
from conveyor.ml.batching import MicroBatcher

pytestmark = pytest.mark.slow

T = TypeVar("T")
BOUND = 60.0


def run(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine on a fresh loop, bounded: a hang fails the test."""

    async def bounded() -> T:
        return await asyncio.wait_for(make(), BOUND)

    return asyncio.run(bounded())


class Model:
    """A fitted ``HistGradientBoostingClassifier`` on 8 features, its predict of a batch of
    rows (lists of 8 floats) as rain-like probabilities, every call's size recorded."""

    def __init__(self) -> None:
        from sklearn.datasets import make_classification
        from sklearn.ensemble import HistGradientBoostingClassifier

        x, y = make_classification(n_samples=2000, n_features=8, random_state=0)
        self.model = HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(x, y)
        self.rows = x.tolist()
        self.calls: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, rows: list[Any]) -> list[float]:
        with self.lock:
            self.calls.append(len(rows))
        return self.model.predict_proba(np.asarray(rows))[:, 1].tolist()

    def alone(self, rows: list[Any]) -> list[float]:
        """The answers predicted without the batcher."""
        return self.model.predict_proba(np.asarray(rows))[:, 1].tolist()


@pytest.fixture(scope="module")
def model() -> Model:
    return Model()


def test_concurrent_clients_share_bounded_batches_and_get_their_own_rows(model: Model) -> None:
    model.calls.clear()
    picks = random.Random(0)
    plans = [[model.rows[picks.randrange(2000) : ][: picks.randint(1, 12)] for _ in range(10)]
             for _ in range(16)]  # fmt: skip
    answers: list[list[list[float]]] = [[] for _ in plans]

    async def client(index: int, batcher: MicroBatcher) -> None:
        for rows in plans[index]:
            answers[index].append(await batcher.submit(rows))

    async def go() -> None:
        async with MicroBatcher(model, max_batch=8, max_wait=0.05) as batcher:
            await asyncio.gather(*(client(i, batcher) for i in range(len(plans))))

    run(go)
    requests = sum(len(plan) for plan in plans)
    assert all(size <= 8 for size in model.calls), max(model.calls)
    assert sum(model.calls) == sum(len(rows) for plan in plans for rows in plan)
    assert len(model.calls) < requests  # shared batches
    for plan, got in zip(plans, answers, strict=True):
        for rows, answer in zip(plan, got, strict=True):
            assert answer == pytest.approx(model.alone(rows), abs=1e-12)


def test_a_lone_request_on_an_idle_batcher_is_not_held(model: Model) -> None:
    waits: list[float] = []
    latencies: list[float] = []

    async def go() -> tuple[float, float]:
        batcher = MicroBatcher(model, max_batch=64, max_wait=0.5,
                               on_batch=lambda n, s, w: waits.append(w))  # fmt: skip
        async with batcher:
            for _ in range(3):  # bursts: the fit learns the fixed cost, the rate is high
                await asyncio.gather(*(batcher.submit([row]) for row in model.rows[:32]))
            await asyncio.sleep(0.05)
            del waits[:]
            for row in model.rows[:20]:
                started = time.perf_counter()
                await batcher.submit([row])
                latencies.append(time.perf_counter() - started)
            return batcher.stats.b, batcher.stats.a

    b, _ = run(go)
    assert b > 0  # there was a fixed cost a hold could have paid for
    assert max(latencies) < 0.25  # half of max_wait: never held for it
    assert statistics.median(waits) < 0.05 and len(waits) == 20


def test_a_request_the_queue_cannot_serve_in_time_is_refused_with_retry_after(
    model: Model,
) -> None:
    async def go() -> tuple[float, Overloaded, float, int]:
        async with MicroBatcher(model, max_batch=1) as batcher:
            for row in model.rows[:10]:
                await batcher.submit([row])  # a measured cost for one row
            one = batcher.stats.b + batcher.stats.a
            queued = [asyncio.create_task(batcher.submit([row])) for row in model.rows[:200]]
            await asyncio.sleep(0)
            started = time.perf_counter()
            with pytest.raises(Overloaded) as refused:
                await batcher.submit([model.rows[0]], deadline=20 * one)
            took = time.perf_counter() - started
            answered = await asyncio.gather(*queued)
            return one, refused.value, took, len(answered)

    one, refused, took, answered = run(go)
    assert refused.retry_after > 20 * one  # about the 200 rows queued ahead
    assert "rows queued" in str(refused)
    assert took < 1.0  # at once, not at the deadline
    assert answered == 200


def test_a_request_expiring_in_the_queue_gets_overloaded_not_a_hang(model: Model) -> None:
    model.calls.clear()

    async def go() -> tuple[Overloaded, float]:
        async with MicroBatcher(model, max_batch=1) as batcher:
            # No cost measured yet, so it is admitted; 100 batches are queued ahead of it.
            queued = [asyncio.create_task(batcher.submit([row])) for row in model.rows[:100]]
            await asyncio.sleep(0)
            started = time.perf_counter()
            with pytest.raises(Overloaded) as late:
                await batcher.submit(model.rows[:3], deadline=0.005)
            took = time.perf_counter() - started
            await asyncio.gather(*queued)
            return late.value, took

    late, took = run(go)
    assert late.retry_after > 0 and "within 0.005 s" in str(late)
    assert took < 1.0
    assert sum(model.calls) == 100  # its rows were withdrawn, never predicted


def test_close_answers_the_queue_then_stops(model: Model) -> None:
    async def go() -> tuple[int, int]:
        batcher = MicroBatcher(model, max_batch=16, name="closing")
        tasks = [asyncio.create_task(batcher.submit([row])) for row in model.rows[:100]]
        await asyncio.sleep(0)
        await batcher.close()
        done = [len(await task) for task in tasks]
        return sum(done), batcher.stats.batches

    answered, batches = run(go)
    assert answered == 100 and batches < 100
    assert not any(t.name.startswith("conveyor-batch-closing") for t in threading.enumerate())
