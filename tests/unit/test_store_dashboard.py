"""The store methods the dashboard reads, on every backend (and the in-memory ledger the
tests may use instead of a file): throughput aggregated into time buckets by the database,
units by state of several runs, the dead-letter queue page by page."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.core.units import ErrorInfo, Outcome, UnitState
from conveyor.store import Store
from conveyor.store.memory import MemoryStore


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store_location(request: pytest.FixtureRequest, store_path: Path) -> Iterator[str]:
    """A fresh ledger on each backend, in memory too (held open for the test)."""
    if request.param == "memory":
        keeper = MemoryStore()
        yield keeper.location
        keeper.close()
    elif request.param == "sqlite":
        yield str(store_path)
    else:
        yield str(request.getfixturevalue("postgres_url"))


def finish(ledger: Store, run_id: str, items: int, *, dead_every: int = 0) -> None:
    """A run of ``items`` items over steps a and b whose a units finish now (every
    ``dead_every``-th dead)."""
    ledger.create_run(
        run_id, pipeline="p", pipeline_file=None, source="t", steps=["a", "b"], options={}
    )
    ledger.add_items(run_id, [(i, f"item{i}", "record", f"k{i}", b"x", None) for i in range(items)])
    ledger.add_units(
        run_id,
        [(i, "a", f"{run_id}a{i}", UnitState.READY, 0, None) for i in range(items)]
        + [(i, "b", f"{run_id}b{i}", UnitState.PENDING, 1, None) for i in range(items)],
    )
    claims = ledger.claim(run_id, ["a"], items, owner="me", lease=60)
    done, failed = [], []
    for c in claims:
        if dead_every and c.item_idx % dead_every == 0:
            error = ErrorInfo("ValueError", f"bad {c.item_idx}", "Traceback ...")
            outcome = Outcome(c.unit_id, c.fence, None, error, time.time(), 0.2)
            failed.append((c, outcome, UnitState.DEAD, None, ("b",), "give up"))
        else:
            done.append((c, Outcome(c.unit_id, c.fence, b"v", None, time.time(), 0.1), ("b",)))
    ledger.commit(run_id, done, failed)


def test_throughput_counts_finished_units_per_step_and_time_bucket(ledger: Store) -> None:
    before = time.time()
    finish(ledger, "r1", 10, dead_every=5)
    after = time.time()
    # the whole run in the third of four buckets, as the database counts them
    span = after - before + 1
    rows = ledger.throughput("r1", before - 2 * span, after + span, 4)
    assert rows == [("a", 2, 8, 2)]
    # units finished after the end count in the last bucket; before the start, not at all
    assert ledger.throughput("r1", before - 100, before - 50, 5) == [("a", 4, 8, 2)]
    assert ledger.throughput("r1", after + 50, after + 100, 5) == []
    assert ledger.throughput("other", before - 10, after + 10, 5) == []


def test_run_counts_are_units_by_state_of_each_run(ledger: Store) -> None:
    finish(ledger, "r1", 4, dead_every=2)
    finish(ledger, "r2", 3)
    counts = ledger.run_counts(["r1", "r2", "r3"])
    assert counts == {
        "r1": {"done": 2, "dead": 2, "ready": 2, "skipped": 2},
        "r2": {"done": 3, "ready": 3},
        "r3": {},
    }
    assert ledger.run_counts([]) == {}


def test_dead_units_page_by_offset_and_limit(ledger: Store) -> None:
    finish(ledger, "r1", 7, dead_every=1)
    every = [d["item"] for d in ledger.dead_units("r1")]
    assert every == [f"item{i}" for i in range(7)]
    pages = [ledger.dead_units("r1", limit=3, offset=o) for o in (0, 3, 6, 9)]
    assert [[d["item"] for d in page] for page in pages] == [every[:3], every[3:6], every[6:], []]
    assert [d["item"] for d in ledger.dead_units("r1", offset=5)] == every[5:]
