"""Real pipelines over real ledgers (SQLite files; PostgreSQL where a test takes
``store_location``) with real worker processes."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import conveyor as cv
from conveyor.definition.loader import load_pipeline
from conveyor.interfaces.export import rows
from conveyor.store import open_store

# Pipelines live at module level: worker processes are forked and inherit them.
chain, _ = load_pipeline(str(Path(__file__).parents[1] / "resources" / "chain_pipeline.py"))


def records(n: int) -> list[dict[str, Any]]:
    return [{"id": f"r{i:03d}", "value": i} for i in range(n)]


def counts(report: cv.RunReport) -> dict[str, dict[str, int]]:
    return {s.step: s.counts for s in report.stats}


def test_only_runs_the_steps_asked_and_what_they_need(store_path: Path) -> None:
    report = chain.run(records(5), store=store_path, workers=0, only=["doubled"])
    assert [s.step for s in report.stats] == ["parsed", "doubled"]


def test_force_recomputes_a_cached_step(store_path: Path) -> None:
    chain.run(records(5), store=store_path, workers=0)
    forced = chain.run(records(5), store=store_path, workers=0, force=["squared"])
    assert counts(forced)["squared"] == {"done": 5}
    assert counts(forced)["parsed"] == {"cached": 5}


def test_unknown_only_step_is_a_usage_error(store_path: Path) -> None:
    with pytest.raises(cv.UsageError, match="did you mean 'squared'"):
        chain.run(records(1), store=store_path, only=["squard"])


# -- editing code -----------------------------------------------------------------------------

VERSIONED = """
import conveyor as cv
pipe = cv.Pipeline("versioned")

@pipe.step
def base(item):
    return item["value"]

@pipe.step
def middle(base):
    return base + {increment}

@pipe.step
def after(middle):
    return middle * 10

@pipe.step
def beside(base):
    # a comment that {comment}
    return -base
"""


def load_version(tmp_path: Path, name: str, increment: int, comment: str) -> cv.Pipeline:
    from conveyor.definition.loader import load_pipeline

    path = tmp_path / f"{name}.py"
    path.write_text(VERSIONED.format(increment=increment, comment=comment))
    pipe, _ = load_pipeline(str(path))
    return pipe


def test_editing_one_step_recomputes_it_and_its_dependents_only(
    tmp_path: Path, store_path: Path
) -> None:
    first = load_version(tmp_path, "v1", increment=1, comment="says one thing")
    report = first.run(records(8), store=store_path, workers=2)
    assert report.state is cv.RunState.COMPLETED

    edited = load_version(tmp_path, "v2", increment=2, comment="says another")
    second = edited.run(records(8), store=store_path, workers=2)

    assert counts(second) == {
        "base": {"cached": 8},
        "middle": {"done": 8},
        "after": {"done": 8},
        "beside": {"cached": 8},  # only a comment changed
    }
    values = {r["id"]: r for r in rows(open_store(store_path), second.run_id, ["after"])}
    assert sorted(r["after"] for r in values.values()) == [(v + 2) * 10 for v in range(8)]


# -- retries, batches, resources, threads -----------------------------------------------------


def test_a_batch_that_returns_the_wrong_length_fails_every_unit_in_it(store_path: Path) -> None:
    broken = cv.Pipeline("broken-batch")

    @broken.step(batch_size=5)
    def short(item: list[cv.Item]) -> list[int]:
        return [1]

    report = broken.run([{"value": i} for i in range(5)], store=store_path, workers=0)
    assert counts(report) == {"short": {"dead": 5}}
    assert "returned 1 values for 5 inputs" in report.failures[0]["error_message"]


threaded = cv.Pipeline("threaded")
_active = 0
_peak = 0
_lock = threading.Lock()


@threaded.step(executor="thread", concurrency=8)
def remote_call(item: cv.Item) -> int:
    global _active, _peak
    with _lock:
        _active += 1
        _peak = max(_peak, _active)
    time.sleep(0.05)
    with _lock:
        _active -= 1
    return int(item["value"])


def test_thread_steps_run_concurrently_up_to_their_concurrency(store_path: Path) -> None:
    report = threaded.run([{"value": i} for i in range(40)], store=store_path, workers=1)
    assert counts(report) == {"remote_call": {"done": 40}}
    assert 2 <= _peak <= 8


parallel = cv.Pipeline("parallel")


@parallel.step
def left(item: cv.Item) -> float:
    time.sleep(0.3)
    return time.time()


@parallel.step
def right(item: cv.Item) -> float:
    time.sleep(0.3)
    return time.time()


def test_independent_steps_of_one_item_run_at_the_same_time(store_path: Path) -> None:
    report = parallel.run([{"value": 1}], store=store_path, workers=2)
    db = sqlite3.connect(store_path)
    spans = db.execute(
        "SELECT started_at, started_at + duration FROM units WHERE run_id = ?", (report.run_id,)
    ).fetchall()
    (a_start, a_end), (b_start, b_end) = spans
    assert a_start < b_end and b_start < a_end  # the two intervals overlap


# -- tables and groups ----------------------------------------------------------------------

grouped = cv.Pipeline("grouped")


@grouped.step
def total(item: cv.Item) -> float:
    return float(item.frame["sales"].sum())


@grouped.step
def rows_in(item: cv.Item) -> int:
    return len(item.frame)


def write_sales(path: Path) -> None:
    lines = ["segment,location,sales"]
    for i in range(60):
        lines.append(f"s{i % 3},l{i % 4},{i}")
    path.write_text("\n".join(lines) + "\n")


def test_group_by_makes_one_item_per_group(tmp_path: Path, store_path: Path) -> None:
    table = tmp_path / "sales.csv"
    write_sales(table)
    report = grouped.run(table, store=store_path, workers=2, group_by=["segment", "location"])
    out = list(rows(open_store(store_path), report.run_id, ["total", "rows_in"]))
    assert len(out) == 12
    assert sum(r["rows_in"] for r in out) == 60
    assert sum(r["total"] for r in out) == sum(range(60))
    assert {r["id"] for r in out} >= {"segment=s0/location=l0", "segment=s2/location=l3"}


def test_buckets_pack_groups_into_fewer_items(tmp_path: Path, store_path: Path) -> None:
    table = tmp_path / "sales.csv"
    write_sales(table)
    report = grouped.run(
        table, store=store_path, workers=0, group_by=["segment", "location"], buckets=5
    )
    out = list(rows(open_store(store_path), report.run_id, ["rows_in"]))
    assert 1 <= len(out) <= 5
    assert sum(r["rows_in"] for r in out) == 60


def test_files_in_a_folder_are_items_with_relative_ids(tmp_path: Path, store_path: Path) -> None:
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("alpha")
    (folder / "sub" / "b.txt").write_text("beta")
    (folder / "bad.txt").write_bytes(b"\xff\xfe not utf-8 \xff")
    lengths = cv.Pipeline("lengths")

    @lengths.step
    def size(item: cv.Item) -> int:
        return len(item.read_text())

    report = lengths.run(folder, store=store_path, workers=0)
    out = {r["id"]: r["size"] for r in rows(open_store(store_path), report.run_id, ["size"])}
    assert out == {"a.txt": 5, "bad.txt": None, "sub/b.txt": 4}
    [failure] = report.failures
    assert failure["error_type"] == "conveyor.errors.InputError"
    assert "bad.txt is not valid utf-8" in failure["error_message"]


def test_export_formats_round_trip(tmp_path: Path, store_path: Path) -> None:
    from conveyor.interfaces.export import export

    report = chain.run(records(14), store=store_path, workers=0, id_field="id")
    store = open_store(store_path)
    steps = list(chain.graph.order)
    export(store, report.run_id, steps, "jsonl", tmp_path / "out.jsonl")
    export(store, report.run_id, steps, "csv", tmp_path / "out.csv")
    export(store, report.run_id, steps, "parquet", tmp_path / "out.parquet")

    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert lines[2] == {"id": "r002", "parsed": 2, "doubled": 4, "described": "2->4", "squared": 4}
    csv_lines = (tmp_path / "out.csv").read_text().splitlines()
    assert csv_lines[0] == "id,parsed,doubled,described,squared"
    assert csv_lines[14] == "r013,13,,,169"
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert table[13] == {
        "id": "r013",
        "parsed": 13,
        "doubled": None,
        "described": None,
        "squared": 169,
    }


policies = cv.Pipeline("policies")


@policies.step(retries=3, backoff="10ms", retry_on=(ConnectionError,))
def only_connection_errors(item: cv.Item) -> str:
    if item["kind"] == "conn":
        raise ConnectionError("refused")
    raise KeyError("no such thing")


@policies.step(retries=2, backoff="10ms")
def asks_to_wait(item: cv.Item) -> str:
    raise cv.Retry("rate limited", delay="20ms")


def test_retry_policies_are_applied_and_each_decision_recorded(store_path: Path) -> None:
    report = policies.run(
        [{"kind": "conn"}, {"kind": "key"}], store=store_path, workers=0, id_field="kind"
    )
    assert counts(report) == {"only_connection_errors": {"dead": 2}, "asks_to_wait": {"dead": 2}}
    db = sqlite3.connect(store_path)
    attempts = dict(
        db.execute(
            "SELECT i.item_id || '/' || u.step, u.attempts FROM units u "
            "JOIN items i ON i.run_id = u.run_id AND i.idx = u.item_idx"
        ).fetchall()
    )
    assert attempts == {
        "conn/only_connection_errors": 4,  # retried three times
        "key/only_connection_errors": 1,  # KeyError is not in retry_on: dead at once
        "conn/asks_to_wait": 3,
        "key/asks_to_wait": 3,
    }
    decisions = [
        row[0]
        for row in db.execute(
            "SELECT a.decision FROM attempts a JOIN units u ON u.id = a.unit_id "
            "WHERE u.step = 'asks_to_wait' ORDER BY a.unit_id, a.attempt"
        )
    ]
    assert decisions[:3] == [
        "retry in 0.02s (the step asked to retry)",
        "retry in 0.02s (the step asked to retry)",
        "give up (attempt 3 of 3: no retries left)",
    ]


stuck = cv.Pipeline("stuck")


@stuck.step(timeout="300ms", retries=1, backoff="10ms")
def spins(item: cv.Item) -> int:
    if item["value"] == 2:
        while True:  # pure Python that never returns: only killing the worker stops it
            pass
    if item["value"] == 4:
        time.sleep(3600)  # blocked in C
    return int(item["value"])


def test_a_timeout_kills_code_that_never_returns_and_the_run_goes_on(store_path: Path) -> None:
    report = stuck.run([{"value": i} for i in range(8)], store=store_path, workers=2)
    assert counts(report) == {"spins": {"done": 6, "dead": 2}}
    assert {f["error_type"] for f in report.failures} == {"TimeoutError"}
    assert "ran longer than its timeout of 0.3s" in report.failures[0]["error_message"]
    db = sqlite3.connect(store_path)
    assert db.execute("SELECT max(attempts) FROM units WHERE state = 'dead'").fetchone() == (2,)
