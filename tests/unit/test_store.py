"""The SQLite ledger on real files: migrations, claims with fencing, commits, reports."""

from __future__ import annotations

import ast
import sqlite3
import time
from pathlib import Path

import pytest

from conveyor.errors import RunNotFound, StoreError, UsageError
from conveyor.store import open_store
from conveyor.store.sqlfiles import load_migrations, load_queries
from conveyor.store.sqlite import SQLiteStore
from conveyor.units import ErrorInfo, Outcome, RunState, UnitState

SRC = Path(__file__).resolve().parents[2] / "src" / "conveyor"


def new_run(store: SQLiteStore, run_id: str = "r1", items: int = 3) -> None:
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


def test_opening_twice_applies_each_migration_once(store_path: Path) -> None:
    open_store(store_path).close()
    store = open_store(store_path)
    assert isinstance(store, SQLiteStore)
    assert store.schema_version() == max(n for n, _, _ in load_migrations("sqlite"))
    db = sqlite3.connect(store_path)
    assert db.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == len(
        load_migrations("sqlite")
    )
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_file_that_is_not_a_ledger_is_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.db"
    bogus.write_text("these are not the tables you are looking for" * 100)
    with pytest.raises(StoreError, match="cannot open the ledger"):
        open_store(bogus)


def test_an_unknown_store_scheme_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="not available"):
        open_store("mongodb://localhost/ledger")


def test_claims_lease_ready_units_in_order_up_to_the_limit(store_path: Path) -> None:
    store = SQLiteStore(store_path)
    new_run(store)
    claims = store.claim("r1", ["a", "b"], 2, owner="me", lease=60)
    assert [(c.step, c.item_idx, c.fence, c.attempt) for c in claims] == [
        ("a", 0, 1, 1),
        ("a", 1, 1, 1),
    ]
    assert [c.item_idx for c in store.claim("r1", ["a"], 10, owner="me", lease=60)] == [2]
    assert store.claim("r1", ["a", "b"], 10, owner="me", lease=60) == []  # b still waits


def test_commit_stores_results_and_promotes_dependents(store_path: Path) -> None:
    store = SQLiteStore(store_path)
    new_run(store)
    claims = store.claim("r1", ["a"], 3, owner="me", lease=60)
    stale = store.commit("r1", [(c, ok(c.unit_id, c.fence), ("b",)) for c in claims], [])
    assert stale == 0
    ready = store.claim("r1", ["b"], 10, owner="me", lease=60)
    assert [c.item_idx for c in ready] == [0, 1, 2]
    assert store.existing_results(["a0", "a1", "zzz"]) == {"a0", "a1"}
    assert store.load_inputs("r1", [1], ["a"]) == {(1, "a"): b"v"}


def test_a_commit_with_a_stale_fence_changes_nothing(store_path: Path) -> None:
    store = SQLiteStore(store_path)
    new_run(store, items=1)
    [claim] = store.claim("r1", ["a"], 1, owner="me", lease=60)
    late = claim._replace(fence=claim.fence - 1)
    assert store.commit("r1", [(late, ok(claim.unit_id, late.fence), ("b",))], []) == 1
    assert store.existing_results(["a0"]) == set()
    assert store.unfinished("r1") == 2


def test_a_final_failure_skips_descendants_and_records_the_attempt(store_path: Path) -> None:
    store = SQLiteStore(store_path)
    new_run(store, items=1)
    [claim] = store.claim("r1", ["a"], 1, owner="me", lease=60)
    error = ErrorInfo("ValueError", "bad", "Traceback ...")
    outcome = Outcome(claim.unit_id, claim.fence, None, error, 1.0, 0.5)
    store.commit("r1", [], [(claim, outcome, UnitState.DEAD, None, ("b",), "give up")])
    stats = {s.step: s.counts for s in store.step_stats("r1", ["a", "b"])}
    assert stats == {"a": {"dead": 1}, "b": {"skipped": 1}}
    [failure] = store.failures("r1")
    assert (failure["item"], failure["error_type"], failure["error_message"]) == (
        "item0",
        "ValueError",
        "bad",
    )
    assert store.unfinished("r1") == 0


def test_a_retry_waits_until_its_time(store_path: Path) -> None:
    store = SQLiteStore(store_path)
    new_run(store, items=1)
    [claim] = store.claim("r1", ["a"], 1, owner="me", lease=60)
    outcome = Outcome(claim.unit_id, claim.fence, None, ErrorInfo("E", "m", ""), 1.0, 0.1)
    store.commit("r1", [], [(claim, outcome, UnitState.READY, 4e9, (), "retry")])
    assert store.claim("r1", ["a"], 1, owner="me", lease=60) == []
    assert store.next_retry_time("r1") == 4e9


def test_release_hands_leased_units_back(store_path: Path) -> None:
    store = SQLiteStore(store_path)
    new_run(store)
    store.claim("r1", ["a"], 3, owner="me", lease=60)
    assert store.release("r1", "someone else") == 0
    assert store.release("r1", "me") == 3
    assert len(store.claim("r1", ["a"], 3, owner="you", lease=60)) == 3


def test_runs_are_found_by_prefix_and_missing_ones_are_clear(store_path: Path) -> None:
    store = SQLiteStore(store_path)
    with pytest.raises(RunNotFound, match="no runs"):
        store.get_run()
    new_run(store, "20260101-aaaa")
    new_run(store, "20260102-bbbb")
    assert store.get_run("20260101").id == "20260101-aaaa"
    assert store.get_run().id == "20260102-bbbb"
    with pytest.raises(RunNotFound, match="ambiguous"):
        store.get_run("2026")
    with pytest.raises(RunNotFound, match="conveyor runs"):
        store.get_run("nope")
    store.set_run_state("20260101-aaaa", RunState.COMPLETED)
    run = store.get_run("20260101-aaaa")
    assert run.state is RunState.COMPLETED and run.finished_at is not None


def test_every_named_query_is_valid_sql(store_path: Path) -> None:
    SQLiteStore(store_path)
    db = sqlite3.connect(store_path)
    for name, sql in load_queries("sqlite").items():
        try:
            db.execute(f"EXPLAIN {sql}", _dummy_params(sql))
        except sqlite3.ProgrammingError:
            pass  # positional parameters: preparing the statement already checked it
        except sqlite3.OperationalError as exc:  # pragma: no cover - the failure we look for
            pytest.fail(f"query {name!r} is invalid: {exc}")


def _dummy_params(sql: str) -> dict[str, object]:
    import re

    return {name: "[]" for name in re.findall(r":(\w+)", sql)}


def test_only_the_store_speaks_sql() -> None:
    offenders = []
    for path in SRC.rglob("*.py"):
        if "store" in path.relative_to(SRC).parts:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + [getattr(node, "module", "") or ""]
                if any(n.split(".")[0] in ("sqlite3", "psycopg") for n in names):
                    offenders.append(str(path))
    assert offenders == []


def test_a_lease_not_renewed_expires_and_another_coordinator_takes_the_unit(
    store_path: Path,
) -> None:
    store = SQLiteStore(store_path)
    new_run(store, items=2)
    gone = store.claim("r1", ["a"], 2, owner="gone", lease=0.05)
    alive = SQLiteStore(store_path)
    assert alive.heartbeat("r1", "host:1:alive", "alive", lease=60) == 0  # not expired yet
    time.sleep(0.1)
    assert alive.heartbeat("r1", "host:1:alive", "alive", lease=60) == 2
    taken = alive.claim("r1", ["a"], 2, owner="alive", lease=60)
    assert [c.unit_id for c in taken] == [c.unit_id for c in gone]
    assert all(t.fence == g.fence + 1 for t, g in zip(taken, gone, strict=True))
    assert [c.attempt for c in taken] == [1, 1]  # an expired lease is not a failed attempt
    # The old holder's late commit is fenced out.
    late = [(c, ok(c.unit_id, c.fence), ()) for c in gone]
    assert store.commit("r1", late, []) == 2
    assert store.existing_results(["a0", "a1"]) == set()
