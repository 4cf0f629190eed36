"""Several coordinators on one PostgreSQL ledger: concurrent claims and commits, a coordinator
killed while it holds leases, and processes that start on an empty database at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from conveyor.core.units import Claim, Outcome, UnitState
from conveyor.store import Store, open_store
from conveyor.store.sqlfiles import load_migrations

Peek = Callable[[str, str], list[tuple[Any, ...]]]


def diamond_run(store: Store, items: int) -> None:
    """Per item: ``a`` and ``b`` ready, ``c`` waiting for both (so commits of different
    coordinators promote the same units)."""
    store.create_run("r1", pipeline="p", pipeline_file=None, source="t", steps=[], options={})
    store.add_items("r1", [(i, f"item{i}", "record", f"k{i}", b"x", None) for i in range(items)])
    store.add_units(
        "r1",
        [(i, "a", f"a{i}", UnitState.READY, 0, None) for i in range(items)]
        + [(i, "b", f"b{i}", UnitState.READY, 0, None) for i in range(items)]
        + [(i, "c", f"c{i}", UnitState.PENDING, 2, None) for i in range(items)],
    )


def work(store: Store, owner: str, claimed: list[Claim], stale: list[int]) -> None:
    """A coordinator's loop: claim a few units of any step, commit them done, until none is
    left to claim."""
    idle = 0
    while idle < 20:
        claims = store.claim("r1", ["a", "b", "c"], 7, owner=owner, lease=60)
        if not claims:
            idle += 1
            time.sleep(0.01)
            continue
        idle = 0
        claimed.extend(claims)
        done = [
            (c, Outcome(c.unit_id, c.fence, b"v", None, 1.0, 0.0), ("c",) if c.step != "c" else ())
            for c in claims
        ]
        stale.append(store.commit("r1", done, []))


@pytest.mark.parametrize("connections", [4, 1], ids=["four-connections", "one-shared-store"])
def test_coordinators_claiming_at_once_never_get_the_same_unit(
    postgres_url: str, connections: int
) -> None:
    items = 300
    opened = [open_store(postgres_url) for _ in range(connections)]
    stores = [opened[n % connections] for n in range(4)]  # one store may serve several threads
    diamond_run(stores[0], items)
    claimed: list[list[Claim]] = [[] for _ in stores]
    stale: list[int] = []
    threads = [
        threading.Thread(target=work, args=(store, f"owner{n}", claimed[n], stale))
        for n, store in enumerate(stores)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    units = [c.unit_id for mine in claimed for c in mine]

    assert len(units) == len(set(units)) == 3 * items  # every unit once, none twice
    assert sum(stale) == 0
    assert sum(1 for mine in claimed if mine) > 1  # the work was shared
    assert stores[0].unfinished("r1") == 0
    stats = {s.step: s.counts for s in stores[0].step_stats("r1", ["a", "b", "c"])}
    assert stats == {"a": {"done": items}, "b": {"done": items}, "c": {"done": items}}
    for store in opened:
        store.close()


CLAIM_AND_HANG = """
import sys, time
from conveyor.store import open_store
store = open_store(sys.argv[1])
claims = store.claim("r1", ["a"], 5, owner="doomed", lease=float(sys.argv[2]))
print(" ".join(f"{c.unit_id}:{c.fence}" for c in claims), flush=True)
time.sleep(60)
"""


@pytest.mark.slow
def test_units_of_a_killed_coordinator_are_finished_by_another_after_the_lease(
    postgres_url: str,
) -> None:
    survivor = open_store(postgres_url)
    diamond_run(survivor, 10)
    doomed = subprocess.Popen(
        [sys.executable, "-c", CLAIM_AND_HANG, postgres_url, "1.0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert doomed.stdout is not None
    held = {int(u): int(f) for u, f in (p.split(":") for p in doomed.stdout.readline().split())}
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.communicate(timeout=10)  # reaps it and closes its pipe
    assert len(held) == 5

    # Its leases hold until they expire: nobody else gets those units before.
    mine = survivor.claim("r1", ["a"], 10, owner="survivor", lease=60)
    assert {c.unit_id for c in mine}.isdisjoint(held)
    deadline = time.monotonic() + 10
    while survivor.heartbeat("r1", "host:1:survivor", "survivor", lease=60) == 0:
        assert time.monotonic() < deadline, "the dead coordinator's leases never expired"
        time.sleep(0.2)
    taken = survivor.claim("r1", ["a"], 10, owner="survivor", lease=60)
    assert {c.unit_id for c in taken} == set(held)
    assert all(c.fence == held[c.unit_id] + 1 for c in taken)
    done = [(c, Outcome(c.unit_id, c.fence, b"v", None, 1.0, 0.0), ("c",)) for c in mine + taken]
    assert survivor.commit("r1", done, []) == 0
    # A late commit under the dead coordinator's fences changes nothing.
    late = [
        (Claim(u, 0, "a", f"a{u}", f, 1), Outcome(u, f, b"late", None, 1.0, 0.0), ())
        for u, f in held.items()
    ]
    assert survivor.commit("r1", late, []) == 5
    assert survivor.step_stats("r1", ["a"])[0].counts == {"done": 10}
    survivor.close()


OPEN_AT = """
import sys, time
from conveyor.store import open_store
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
open_store(sys.argv[1]).close()
"""


@pytest.mark.slow
def test_processes_starting_on_an_empty_database_at_once_migrate_it_once(
    postgres: Any, peek: Peek
) -> None:
    url = postgres.database(migrated=False)
    try:
        start = time.time() + 2.0  # all four are up and waiting well before then
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", OPEN_AT, url, str(start)],
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        errors = [proc.communicate(timeout=60)[1] for proc in procs]
        assert [proc.returncode for proc in procs] == [0] * 4, errors
        versions = peek(url, "SELECT version FROM schema_migrations ORDER BY version")
        assert versions == [(n,) for n, _, _ in load_migrations("postgres")]
    finally:
        postgres.drop(url)


def test_a_write_that_loses_a_deadlock_is_run_again(postgres_url: str) -> None:
    import psycopg

    from conveyor.store.postgres import PostgresStore

    store = open_store(postgres_url)
    assert isinstance(store, PostgresStore)
    calls: list[int] = []

    def write(n: int) -> int:
        calls.append(n)
        if len(calls) < 3:
            raise psycopg.errors.DeadlockDetected("deadlock detected")
        return n

    assert store._retrying(write, 7) == 7 and calls == [7, 7, 7]

    def always() -> None:
        raise psycopg.errors.DeadlockDetected("deadlock detected")

    with pytest.raises(psycopg.errors.DeadlockDetected):
        store._retrying(always)
    store.close()
