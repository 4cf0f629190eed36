"""The ledger contract on every backend (a real SQLite file, a real PostgreSQL database):
migrations, claims with fencing, commits, the dead-letter queue, reports."""

from __future__ import annotations

import ast
import re
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conveyor.core.units import Claim, ErrorInfo, Outcome, QueueTimes, RunState, UnitState
from conveyor.errors import RunNotFound, StoreError, UsageError
from conveyor.store import Store, open_store
from conveyor.store.sqlfiles import load_migrations, load_queries
from conveyor.store.sqlite import SQLiteStore

SRC = Path(__file__).resolve().parents[2] / "src" / "conveyor"
Peek = Callable[[str, str], list[tuple[Any, ...]]]


def new_run(store: Store, run_id: str = "r1", items: int = 3) -> None:
    store.create_run(
        run_id, pipeline="p", pipeline_file=None, source="test", steps=["a", "b"], options={}
    )
    store.add_items(run_id, [(i, f"item{i}", "record", f"k{i}", b"x", None) for i in range(items)])
    store.add_units(
        run_id,
        [(i, "a", f"a{i}", UnitState.READY, 0, None) for i in range(items)]
        + [(i, "b", f"b{i}", UnitState.PENDING, 1, None) for i in range(items)],
    )


def ok(unit_id: int, fence: int, value: bytes = b"v") -> Outcome:
    return Outcome(unit_id, fence, value, None, 1.0, 0.01)


def dialect(location: str) -> str:
    return "postgres" if "://" in location else "sqlite"


# -- opening ---------------------------------------------------------------------------------------


def test_opening_twice_applies_each_migration_once(store_location: str, peek: Peek) -> None:
    open_store(store_location).close()
    store = open_store(store_location)
    migrations = load_migrations(dialect(store_location))
    assert store.schema_version() == max(n for n, _, _ in migrations)
    store.close()
    assert peek(store_location, "SELECT count(*) FROM schema_migrations") == [(len(migrations),)]


def test_a_sqlite_ledger_runs_in_wal_mode(store_path: Path) -> None:
    open_store(store_path).close()
    assert sqlite3.connect(store_path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_file_that_is_not_a_ledger_is_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.db"
    bogus.write_text("these are not the tables you are looking for" * 100)
    with pytest.raises(StoreError, match="cannot open the ledger"):
        open_store(bogus)


def test_an_unknown_store_scheme_is_a_usage_error_naming_the_known_ones() -> None:
    with pytest.raises(UsageError, match=r"not available.*SQLite.*postgresql://") as caught:
        open_store("mongodb://admin:hunter2@localhost/ledger")
    assert "hunter2" not in str(caught.value)


def test_postgres_urls_open_a_postgres_store(postgres_url: str) -> None:
    from conveyor.store.postgres import PostgresStore

    for url in (postgres_url, postgres_url.replace("postgresql://", "postgres://", 1)):
        store = open_store(url)
        assert isinstance(store, PostgresStore) and store.location == url
        store.close()


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql://postgres@127.0.0.1:1/ledger", "server is running"),
        ("postgresql://postgres@127.0.0.1:notaport/ledger", "check the URL"),
    ],
)
def test_an_unreachable_postgres_server_is_a_one_line_store_error(url: str, says: str) -> None:
    pytest.importorskip("psycopg")
    with pytest.raises(StoreError, match="cannot connect to the ledger") as caught:
        open_store(url)
    assert says in str(caught.value) and "\n" not in str(caught.value)


def test_a_postgres_url_without_psycopg_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if it were not installed
    monkeypatch.delitem(sys.modules, "conveyor.store.postgres", raising=False)
    with pytest.raises(UsageError, match=r"pip install 'conveyor\[postgres\]'"):
        open_store("postgresql://postgres@127.0.0.1/ledger")


def test_a_missing_postgres_database_is_a_one_line_store_error(postgres_url: str) -> None:
    url = postgres_url.rsplit("/", 1)[0] + "/conveyor_no_such_database"
    with pytest.raises(StoreError, match="does not exist; create it") as caught:
        open_store(url)
    assert "\n" not in str(caught.value)


def test_a_password_never_shows_in_messages(postgres_url: str) -> None:
    url = postgres_url.replace("postgres@", "postgres:hunter2@", 1).rsplit("/", 1)[0] + "/nope"
    with pytest.raises(StoreError) as caught:
        open_store(url)
    assert "hunter2" not in str(caught.value) and "postgres:***@" in str(caught.value)


def test_reading_an_empty_postgres_database_does_not_create_a_ledger(postgres: Any) -> None:
    url = postgres.database(migrated=False)
    try:
        with pytest.raises(RunNotFound, match="no ledger in"):
            open_store(url, create=False)
        open_store(url).close()  # a command that writes creates it
        open_store(url, create=False).close()
    finally:
        postgres.drop(url)


# -- the queue -------------------------------------------------------------------------------------


def test_claims_lease_ready_units_in_order_up_to_the_limit(ledger: Store) -> None:
    new_run(ledger)
    claims = ledger.claim("r1", ["a", "b"], 2, owner="me", lease=60)
    assert [(c.step, c.item_idx, c.fence, c.attempt) for c in claims] == [
        ("a", 0, 1, 1),
        ("a", 1, 1, 1),
    ]
    assert [c.item_idx for c in ledger.claim("r1", ["a"], 10, owner="me", lease=60)] == [2]
    assert ledger.claim("r1", ["a", "b"], 10, owner="me", lease=60) == []  # b still waits


def test_whole_items_are_claimed_with_their_pending_units(ledger: Store, peek: Peek) -> None:
    new_run(ledger)
    claims = ledger.claim_items("r1", ["a", "b"], 2, owner="me", lease=60)
    assert [(c.item_idx, c.step, c.fence, c.attempt) for c in claims] == [
        (0, "a", 1, 1), (1, "a", 1, 1), (0, "b", 1, 1), (1, "b", 1, 1),
    ]  # fmt: skip
    # Item 2 has nothing leased; items 0 and 1 are held, so neither claim takes them again.
    assert [
        (c.item_idx, c.step) for c in ledger.claim_items("r1", ["a", "b"], 5, owner="you", lease=60)
    ] == [(2, "a"), (2, "b")]
    assert ledger.claim("r1", ["a", "b"], 10, owner="you", lease=60) == []
    # Handed back unrun, a unit leased ahead of its upstream waits for it again ...
    first_a, first_b = claims[0], claims[2]
    assert ledger.commit("r1", [], [], [first_a, first_b]) == 0
    location = ledger.location
    assert sorted(peek(location, "SELECT item_idx, step, state, attempts FROM units "
                                 "WHERE item_idx = 0")) == [
        (0, "a", "ready", 0), (0, "b", "pending", 0)]  # fmt: skip
    # ... and counts the upstream unit done in the same commit, whatever the order given.
    a1, b1 = claims[1], claims[3]
    assert ledger.commit("r1", [(a1, ok(a1.unit_id, a1.fence), ("b",))], [], [b1]) == 0
    assert [(c.item_idx, c.step) for c in ledger.claim("r1", ["b"], 5, owner="me",
                                                       lease=60)] == [(1, "b")]  # fmt: skip


def test_a_unit_leased_ahead_counts_an_upstream_another_coordinator_finished(
    open_ledger: Callable[[], Store],
) -> None:
    # Two coordinators may split an item (PostgreSQL skips rows another claim holds): one
    # commits the upstream unit while the other still holds the dependent, then hands it back.
    mine, theirs = open_ledger(), open_ledger()
    new_run(mine, items=1)
    a_ahead, b = theirs.claim_items("r1", ["a", "b"], 1, owner="theirs", lease=60)
    assert theirs.commit("r1", [], [], [a_ahead]) == 0  # keeps b, leased ahead of a
    [a] = mine.claim("r1", ["a"], 1, owner="mine", lease=60)
    assert mine.commit("r1", [(a, ok(a.unit_id, a.fence), ("b",))], []) == 0
    assert theirs.commit("r1", [], [], [b]) == 0  # handed back once its upstream is done
    assert [c.step for c in mine.claim("r1", ["b"], 5, owner="mine", lease=60)] == ["b"]


def test_a_chained_unit_that_fails_is_ready_for_its_retry(ledger: Store) -> None:
    new_run(ledger, items=1)
    a, b = ledger.claim_items("r1", ["a", "b"], 1, owner="me", lease=60)
    error = ErrorInfo("ValueError", "bad", "tb")
    failed = Outcome(b.unit_id, b.fence, None, error, 1.0, 0.01)
    retry = (b, failed, UnitState.READY, 0.0, (), "retry")
    assert ledger.commit("r1", [(a, ok(a.unit_id, a.fence), ("b",))], [retry]) == 0
    [again] = ledger.claim("r1", ["a", "b"], 5, owner="me", lease=60)
    assert (again.step, again.attempt) == ("b", 2)
    assert ledger.release("r1", "me") == 1  # released, it is ready: its upstream is done
    assert [c.step for c in ledger.claim("r1", ["b"], 5, owner="me", lease=60)] == ["b"]


def test_a_chain_whose_lease_expires_waits_for_its_upstream_again(
    open_ledger: Callable[[], Store],
) -> None:
    store, alive = open_ledger(), open_ledger()
    new_run(store, items=1)
    store.claim_items("r1", ["a", "b"], 1, owner="gone", lease=0.3)
    time.sleep(0.4)
    assert alive.heartbeat("r1", "host:1:alive", "alive", lease=60) == 2
    assert [c.step for c in alive.claim("r1", ["a", "b"], 5, owner="alive", lease=60)] == ["a"]


def test_items_with_a_unit_waiting_out_a_retry_are_not_claimed_whole(ledger: Store) -> None:
    new_run(ledger, items=2)
    [a0] = ledger.claim("r1", ["a"], 1, owner="me", lease=60)
    failed = Outcome(a0.unit_id, a0.fence, None, ErrorInfo("E", "m", "t"), 1.0, 0.01)
    later = (a0, failed, UnitState.READY, time.time() + 60, (), "retry in 60s")
    ledger.commit("r1", [], [later])
    assert {c.item_idx for c in ledger.claim_items("r1", ["a", "b"], 5, owner="me",
                                                   lease=60)} == {1}  # fmt: skip


def test_adding_items_again_adds_nothing(ledger: Store) -> None:
    new_run(ledger, items=2)
    again = [(i, f"item{i}", "record", f"k{i}", b"x", None) for i in range(3)]
    assert ledger.add_items("r1", again) == 1
    assert ledger.next_item_index("r1") == 3
    assert ledger.load_items("r1", [0, 2])[2].item_id == "item2"


def test_commit_stores_results_and_promotes_dependents(ledger: Store) -> None:
    new_run(ledger)
    claims = ledger.claim("r1", ["a"], 3, owner="me", lease=60)
    stale = ledger.commit("r1", [(c, ok(c.unit_id, c.fence), ("b",)) for c in claims], [])
    assert stale == 0
    ready = ledger.claim("r1", ["b"], 10, owner="me", lease=60)
    assert [c.item_idx for c in ready] == [0, 1, 2]
    assert ledger.existing_results(["a0", "a1", "zzz"]) == {"a0", "a1"}
    assert ledger.load_inputs("r1", [1], ["a"]) == {(1, "a"): b"v"}


def test_a_unit_whose_upstreams_finish_in_one_commit_becomes_ready(ledger: Store) -> None:
    ledger.create_run("r1", pipeline="p", pipeline_file=None, source="t", steps=[], options={})
    ledger.add_items("r1", [(0, "item0", "record", "k0", b"x", None)])
    ledger.add_units(
        "r1",
        [
            (0, "a", "a0", UnitState.READY, 0, None),
            (0, "b", "b0", UnitState.READY, 0, None),
            (0, "c", "c0", UnitState.PENDING, 2, None),
        ],
    )
    claims = ledger.claim("r1", ["a", "b"], 2, owner="me", lease=60)
    assert ledger.commit("r1", [(c, ok(c.unit_id, c.fence), ("c",)) for c in claims], []) == 0
    assert [c.step for c in ledger.claim("r1", ["c"], 5, owner="me", lease=60)] == ["c"]


def test_units_sharing_a_cache_key_store_one_result(ledger: Store) -> None:
    ledger.create_run("r1", pipeline="p", pipeline_file=None, source="t", steps=[], options={})
    ledger.add_items("r1", [(i, f"item{i}", "record", "same", b"x", None) for i in range(2)])
    ledger.add_units("r1", [(i, "a", "a-same", UnitState.READY, 0, None) for i in range(2)])
    claims = ledger.claim("r1", ["a"], 2, owner="me", lease=60)
    done = [(c, ok(c.unit_id, c.fence, b"v%d" % c.item_idx), ()) for c in claims]
    assert ledger.commit("r1", done, []) == 0
    assert ledger.load_inputs("r1", [0, 1], ["a"]) == {(0, "a"): b"v1", (1, "a"): b"v1"}


def test_a_commit_with_a_stale_fence_changes_nothing(ledger: Store) -> None:
    new_run(ledger, items=2)
    first, second = ledger.claim("r1", ["a"], 2, owner="me", lease=60)
    late = first._replace(fence=first.fence - 1)
    done = [(late, ok(late.unit_id, late.fence), ("b",)), (second, ok(second.unit_id, 1), ("b",))]
    assert ledger.commit("r1", done, []) == 1
    assert ledger.existing_results(["a0", "a1"]) == {"a1"}  # the fresh one in the batch counts
    assert ledger.unfinished("r1") == 3


def test_a_final_failure_skips_descendants_and_records_the_attempt(ledger: Store) -> None:
    new_run(ledger, items=1)
    [claim] = ledger.claim("r1", ["a"], 1, owner="me", lease=60)
    error = ErrorInfo("ValueError", "bad 17", "Traceback ...")
    outcome = Outcome(claim.unit_id, claim.fence, None, error, 1.0, 0.5)
    ledger.commit("r1", [], [(claim, outcome, UnitState.DEAD, None, ("b",), "give up")])
    stats = {s.step: s.counts for s in ledger.step_stats("r1", ["a", "b"])}
    assert stats == {"a": {"dead": 1}, "b": {"skipped": 1}}
    [failure] = ledger.failures("r1")
    assert (failure["item"], failure["error_type"], failure["error_message"]) == (
        "item0",
        "ValueError",
        "bad 17",
    )
    assert ledger.unfinished("r1") == 0
    detail = ledger.unit_detail(claim.unit_id)
    assert detail is not None and detail["payload"] == b"x" and detail["state"] == "dead"
    assert [(a["attempt"], a["decision"]) for a in detail["attempt_log"]] == [(1, "give up")]
    assert ledger.unit_detail(10_000) is None


def test_an_error_message_with_a_nul_character_is_recorded(ledger: Store) -> None:
    new_run(ledger, items=1)
    [claim] = ledger.claim("r1", ["a"], 1, owner="me", lease=60)
    error = ErrorInfo("ValueError", "bad \x00 byte", "Traceback \x00")
    outcome = Outcome(claim.unit_id, claim.fence, None, error, 1.0, 0.5)
    assert ledger.commit("r1", [], [(claim, outcome, UnitState.DEAD, None, ("b",), "no")]) == 0
    [failure] = ledger.failures("r1")
    assert failure["error_message"] in ("bad \x00 byte", "bad \\x00 byte")  # PostgreSQL: escaped


def test_dead_units_are_listed_grouped_and_reset(ledger: Store) -> None:
    new_run(ledger, items=3)
    claims = ledger.claim("r1", ["a"], 3, owner="me", lease=60)
    failed = []
    for c in claims:
        error = ErrorInfo("KeyError", f"missing {c.item_idx}", "")
        outcome = Outcome(c.unit_id, c.fence, None, error, 1.0, 0.1)
        failed.append((c, outcome, UnitState.DEAD, None, ("b",), "give up"))
    ledger.commit("r1", [], failed)

    dead = ledger.dead_units("r1")
    assert [d["item"] for d in dead] == ["item0", "item1", "item2"]
    assert len(ledger.dead_units("r1", limit=2)) == 2
    assert ledger.dead_units("r1", step="b") == []
    assert len(ledger.dead_units("r1", signature=dead[0]["signature"][:4])) == 3
    [group] = ledger.error_groups("r1", samples=2)
    assert (group["count"], group["step"], group["samples"]) == (3, "a", ["item0", "item1"])

    units = ledger.units_of_items("r1", [1])
    assert sorted((step, state) for _, _, step, state, _, _ in units) == [
        ("a", UnitState.DEAD),
        ("b", UnitState.SKIPPED),
    ]
    resets = [
        (u, UnitState.READY if step == "a" else UnitState.PENDING, 0 if step == "a" else 1, key)
        for u, _, step, _, key, _ in units
    ]
    ledger.reset_units("r1", resets, "sig2")
    assert ledger.get_run("r1").signature == "sig2"
    [again] = ledger.claim("r1", ["a", "b"], 5, owner="me", lease=60)
    assert (again.item_idx, again.attempt) == (1, 1)


def test_a_retry_waits_until_its_time(ledger: Store) -> None:
    new_run(ledger, items=1)
    assert ledger.next_retry_time("r1") == 0
    [claim] = ledger.claim("r1", ["a"], 1, owner="me", lease=60)
    assert ledger.next_retry_time("r1") is None
    outcome = Outcome(claim.unit_id, claim.fence, None, ErrorInfo("E", "m", ""), 1.0, 0.1)
    ledger.commit("r1", [], [(claim, outcome, UnitState.READY, 4e9, (), "retry")])
    assert ledger.claim("r1", ["a"], 1, owner="me", lease=60) == []
    assert ledger.next_retry_time("r1") == 4e9


def test_the_queue_times_are_read_together(ledger: Store) -> None:
    new_run(ledger, items=2)
    assert ledger.queue_times("r1") == QueueTimes(0, None, 4)
    first, second = ledger.claim("r1", ["a"], 2, owner="me", lease=60)
    times = ledger.queue_times("r1")
    assert times.next_retry is None and times.next_expiry is not None and times.unfinished == 4
    outcome = Outcome(first.unit_id, first.fence, None, ErrorInfo("E", "m", ""), 1.0, 0.1)
    ledger.commit("r1", [(second, ok(second.unit_id, second.fence), ["b"])],
                  [(first, outcome, UnitState.READY, 4e9, (), "retry")])  # fmt: skip
    assert ledger.queue_times("r1") == QueueTimes(0, None, 3)  # b of the second item is ready


def test_requeued_units_go_back_without_spending_an_attempt(ledger: Store) -> None:
    new_run(ledger, items=1)
    [claim] = ledger.claim("r1", ["a"], 1, owner="me", lease=60)
    assert ledger.commit("r1", [], [], [claim]) == 0
    assert ledger.commit("r1", [], [], [claim]) == 1  # no longer leased under that fence
    [again] = ledger.claim("r1", ["a"], 1, owner="me", lease=60)
    assert (again.fence, again.attempt) == (claim.fence + 1, 1)


def test_the_ledger_counts_the_attempts_that_lost_their_worker(ledger: Store) -> None:
    new_run(ledger, items=1)

    def fail(claim: Claim, kind: str) -> None:
        outcome = Outcome(claim.unit_id, claim.fence, None, ErrorInfo(kind, "m", ""), 1.0, 0.1)
        ledger.commit("r1", [], [(claim, outcome, UnitState.READY, None, (), "retry")])

    [claim] = ledger.claim("r1", ["a"], 1, owner="me", lease=60)
    assert (claim.attempt, claim.losses) == (1, 0)
    fail(claim, "WorkerLost")
    [claim] = ledger.claim("r1", ["a"], 1, owner="me", lease=60)
    assert (claim.attempt, claim.losses) == (2, 1)
    fail(claim, "ValueError")  # a failure of the step's own is no loss
    [claim] = ledger.claim("r1", ["a"], 1, owner="me", lease=60)
    assert (claim.attempt, claim.losses) == (3, 1)
    fail(claim, "WorkerLost")
    claim, ahead = ledger.claim_items("r1", ["a", "b"], 1, owner="me", lease=60)
    assert (claim.step, claim.attempt, claim.losses) == ("a", 4, 2)
    assert (ahead.step, ahead.attempt, ahead.losses) == ("b", 1, 0)
    ledger.commit("r1", [], [], [ahead])
    ledger.reset_units("r1", [(claim.unit_id, UnitState.READY, 0, claim.key)], "sig")
    [claim] = ledger.claim("r1", ["a"], 1, owner="me", lease=60)  # a clean slate
    assert (claim.attempt, claim.losses) == (1, 0)


def test_release_hands_leased_units_back(ledger: Store) -> None:
    new_run(ledger)
    ledger.claim("r1", ["a"], 3, owner="me", lease=60)
    assert ledger.release("r1", "someone else") == 0
    assert ledger.release("r1", "me") == 3
    assert len(ledger.claim("r1", ["a"], 3, owner="you", lease=60)) == 3


def test_adopting_a_run_requeues_what_its_old_coordinator_held(ledger: Store) -> None:
    new_run(ledger)
    ledger.create_run(
        "r2", pipeline="p", pipeline_file=None, source="t", steps=[], options={}, coordinator="x"
    )
    ledger.claim("r1", ["a"], 2, owner="gone", lease=60)
    ledger.set_run_state("r1", RunState.INTERRUPTED, "stopped")
    assert ledger.adopt_run("r1", "host:2:new") == 2
    run = ledger.get_run("r1")
    assert (run.state, run.coordinator, run.message) == (RunState.RUNNING, "host:2:new", None)
    assert ledger.unfinished_items("r1") == 3


def test_runs_are_found_by_prefix_and_missing_ones_are_clear(ledger: Store) -> None:
    with pytest.raises(RunNotFound, match="no runs"):
        ledger.get_run()
    new_run(ledger, "20260101-aaaa")
    new_run(ledger, "20260102-bbbb")
    assert ledger.get_run("20260101").id == "20260101-aaaa"
    assert ledger.get_run().id == "20260102-bbbb"
    assert [r.id for r in ledger.list_runs(limit=1)] == ["20260102-bbbb"]
    with pytest.raises(RunNotFound, match="ambiguous"):
        ledger.get_run("2026")
    with pytest.raises(RunNotFound, match="conveyor runs"):
        ledger.get_run("nope")
    ledger.set_run_state("20260101-aaaa", RunState.COMPLETED)
    run = ledger.get_run("20260101-aaaa")
    assert run.state is RunState.COMPLETED and run.finished_at is not None


def test_a_resumable_run_is_found_by_pipeline_source_and_signature(ledger: Store) -> None:
    ledger.create_run(
        "r1", pipeline="p", pipeline_file="p.py", source="s", steps=["a"],
        options={"workers": 2}, signature="sig", coordinator="host:1:me",
    )  # fmt: skip
    ledger.mark_planned("r1")
    run = ledger.get_run("r1")
    assert (run.planned, run.options, run.steps, run.pipeline_file) == (
        True,
        {"workers": 2},
        ("a",),
        "p.py",
    )
    assert ledger.find_resumable("p", "s", "sig") == "r1"
    assert ledger.find_resumable("p", "s", "other") is None
    ledger.set_run_state("r1", RunState.COMPLETED)
    assert ledger.find_resumable("p", "s", "sig") is None


def test_exports_and_item_units_read_results_in_source_order(ledger: Store) -> None:
    new_run(ledger, items=3)
    claims = ledger.claim("r1", ["a"], 3, owner="me", lease=60)
    ledger.commit(
        "r1", [(c, ok(c.unit_id, c.fence, b"%d" % c.item_idx), ("b",)) for c in claims], []
    )
    exported = list(ledger.export_rows("r1"))
    assert [item for item, _ in exported] == ["item0", "item1", "item2"]
    assert exported[1][1] == {"a": ("done", b"1"), "b": ("ready", None)}
    assert ledger.item_units("r1", "item2") == [
        ("a", UnitState.DONE, b"2", None, None),
        ("b", UnitState.READY, None, None, None),
    ]
    [a, b] = ledger.step_stats("r1", ["a", "b"])
    assert (a.counts, a.p50, a.p95) == ({"done": 3}, 0.01, 0.01)
    assert (b.counts, b.p50, b.rate) == ({"ready": 3}, None, None)


def test_a_lease_not_renewed_expires_and_another_coordinator_takes_the_unit(
    open_ledger: Callable[[], Store],
) -> None:
    store, alive = open_ledger(), open_ledger()
    new_run(store, items=2)
    gone = store.claim("r1", ["a"], 2, owner="gone", lease=0.5)
    assert alive.heartbeat("r1", "host:1:alive", "alive", lease=60) == 0  # not expired yet
    time.sleep(0.6)
    assert alive.heartbeat("r1", "host:1:alive", "alive", lease=60) == 2
    taken = alive.claim("r1", ["a"], 2, owner="alive", lease=60)
    assert [c.unit_id for c in taken] == [c.unit_id for c in gone]
    assert all(t.fence == g.fence + 1 for t, g in zip(taken, gone, strict=True))
    assert [c.attempt for c in taken] == [1, 1]  # an expired lease is not a failed attempt
    # The old holder's late commit is fenced out; the new holder's goes in.
    late = [(c, ok(c.unit_id, c.fence), ()) for c in gone]
    assert store.commit("r1", late, []) == 2
    assert store.existing_results(["a0", "a1"]) == set()
    assert alive.commit("r1", [(c, ok(c.unit_id, c.fence), ("b",)) for c in taken], []) == 0
    assert store.existing_results(["a0", "a1"]) == {"a0", "a1"}


# -- the SQL ---------------------------------------------------------------------------------------


def test_metrics_aggregate_units_durations_retries_and_queue_age(ledger: Store) -> None:
    before = time.time()
    new_run(ledger)
    claims = ledger.claim("r1", ["a"], 3, owner="me", lease=60)
    error = ErrorInfo("E", "m", "")
    retried = Outcome(claims[2].unit_id, claims[2].fence, None, error, time.time(), 0.5)
    ledger.commit(
        "r1",
        [(c, Outcome(c.unit_id, c.fence, b"v", None, 1.0, d), ("b",))
         for c, d in zip(claims[:2], (0.003, 2.0), strict=True)],
        [(claims[2], retried, UnitState.READY, None, (), "retry in 0s")],
    )  # fmt: skip
    bounds = (0.001, 0.01, 0.1, 0.5, 1.0, 1.5, 2.5, 3, 4, 5, 10, 20, 30, 60, 300)
    found = ledger.ledger_metrics("r1", bounds)
    assert found.units == {("a", "done"): 2, ("a", "ready"): 1, ("b", "ready"): 2,
                           ("b", "pending"): 1}  # fmt: skip
    assert found.durations == {"a": ([0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2], 2.003)}
    with pytest.raises(ValueError, match="15 duration buckets"):
        ledger.ledger_metrics("r1", (0.1, 1.0))
    assert found.retries == {"a": 1} and found.items == 3
    assert found.oldest_ready_at is not None and before <= found.oldest_ready_at <= time.time()
    window = ledger.alarm_window("r1", 60, p95=True)
    assert (window.done, window.failed, window.waiting) == (2, 1, 3)
    assert window.p95 == 2.0 and window.oldest_ready_age is not None
    assert ledger.alarm_window("r1", 60, step="b").done == 0


def test_alarm_states_are_recorded_and_replaced(ledger: Store) -> None:
    new_run(ledger)
    ledger.set_alarm("r1", "failing", "firing", 0.4, 0.1, "failed attempts is 40.0%")
    ledger.set_alarm("r1", "failing", "resolved", 0.0, 0.1, "back to 0.0%")
    [alarm] = ledger.alarms("r1")
    assert (alarm["name"], alarm["state"], alarm["value"]) == ("failing", "resolved", 0.0)
    assert ledger.alarms("nope") == []


def test_unfinished_items_of_a_stream_carry_over_and_the_old_run_ends(ledger: Store) -> None:
    new_run(ledger, items=2)
    [claim] = ledger.claim("r1", ["a"], 1, owner="me", lease=60)
    ledger.commit("r1", [(claim, ok(claim.unit_id, claim.fence), ("b",))], [])
    assert ledger.unfinished_runs("p", "test") == ["r1"]
    rows = ledger.unfinished_item_rows("r1")
    assert [(r[0], r[2], r[3]) for r in rows] == [("item0", "k0", b"x"), ("item1", "k1", b"x")]
    assert ledger.latest_run_with_item("p", "test", "item1") == "r1"
    assert ledger.latest_run_with_item("p", "test", "nope") is None
    ledger.supersede("r1", "continued in r2")
    assert ledger.unfinished("r1") == 0 and ledger.unfinished_runs("p", "test") == []
    run = ledger.get_run("r1")
    assert (run.state, run.message) == (RunState.COMPLETED_WITH_ERRORS, "continued in r2")


def test_every_named_query_is_valid_sql(store_location: str, peek: Peek) -> None:
    open_store(store_location).close()
    if dialect(store_location) == "sqlite":
        db = sqlite3.connect(store_location)
        for name, sql in load_queries("sqlite").items():
            try:
                db.execute(f"EXPLAIN {sql}", {n: "[]" for n in re.findall(r":(\w+)", sql)})
            except sqlite3.ProgrammingError:
                pass  # positional parameters: preparing the statement already checked it
            except sqlite3.OperationalError as exc:  # pragma: no cover - the failure we look for
                pytest.fail(f"query {name!r} is invalid: {exc}")
        return
    import psycopg

    with psycopg.connect(store_location, autocommit=True) as conn:
        for i, (name, sql) in enumerate(load_queries("postgres").items()):
            try:  # the server parses, plans and types every parameter of the statement
                if sql.startswith("CREATE"):  # DDL cannot be prepared; this one is idempotent
                    conn.execute(sql)
                else:
                    conn.execute(f"PREPARE q{i} AS {_numbered(sql)}")
            except psycopg.Error as exc:  # pragma: no cover - the failure we look for
                pytest.fail(f"query {name!r} is invalid: {exc}")


def _numbered(sql: str) -> str:
    """psycopg's %(name)s and %s placeholders as the server's $1, $2, ..."""
    names: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        if match.group(0) == "%%":
            return "%"
        key = match.group(1) or f"#{len(names)}"
        return f"${names.setdefault(key, len(names) + 1)}"

    return re.sub(r"%%|%\((\w+)\)s|%s", number, sql)


def test_the_dialects_have_the_same_queries_and_migrations() -> None:
    sqlite, postgres = load_queries("sqlite"), load_queries("postgres")
    assert set(postgres) - set(sqlite) == {"migration_lock", "migrations_table"}
    assert set(sqlite) - set(postgres) == set()
    assert [m[:2] for m in load_migrations("sqlite")] == [
        m[:2] for m in load_migrations("postgres")
    ]


def test_the_dialects_build_the_same_tables_and_indexes(
    store_path: Path, postgres_url: str, peek: Peek
) -> None:
    open_store(store_path).close()
    lite: dict[str, set[str]] = {}
    for (table,) in peek(str(store_path), "SELECT name FROM sqlite_master WHERE type = 'table'"):
        lite[table] = {row[1] for row in peek(str(store_path), f"PRAGMA table_info({table})")}
    pg: dict[str, set[str]] = {}
    for table, column in peek(
        postgres_url,
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'public'",
    ):
        pg.setdefault(table, set()).add(column)
    assert pg == lite
    lite_indexes = peek(
        str(store_path), "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
    )
    pg_indexes = peek(postgres_url, "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")
    assert {n for (n,) in lite_indexes} <= {n for (n,) in pg_indexes}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] + [getattr(node, "module", "") or ""]
            found.update(n.split(".")[0] for n in names)
    return found


def test_only_the_store_speaks_sql() -> None:
    offenders = [
        str(path)
        for path in SRC.rglob("*.py")
        if "store" not in path.relative_to(SRC).parts and _imports(path) & {"sqlite3", "psycopg"}
    ]
    assert offenders == []


def test_only_the_postgres_store_needs_psycopg() -> None:
    users = [p.name for p in (SRC / "store").rglob("*.py") if "psycopg" in _imports(p)]
    assert users == ["postgres.py"]


def test_the_sqlite_store_is_the_one_for_paths(store_path: Path) -> None:
    store = open_store(f"sqlite:///{store_path}")
    assert isinstance(store, SQLiteStore) and store.path == store_path
    store.close()
