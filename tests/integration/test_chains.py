"""Streams run each fresh item as a chain: one task in one worker, its units one after another,
with the same retries, timeouts, dead-letter queue and ledger as units run one by one."""

from __future__ import annotations

import os
import pickle
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import conveyor as cv

pipe = cv.Pipeline("chained")


def _once(item: cv.Item, what: str) -> bool:
    """True the first time ``what`` happens to this item (a marker file remembers it)."""
    marker = Path(str(item["dir"])) / f"{item['id']}.{what}"
    if marker.exists():
        return False
    marker.touch()
    return True


@pipe.step
def parse(item: cv.Item) -> dict[str, Any]:
    if item["mode"] == "kill" and _once(item, "killed"):
        os._exit(3)  # the worker dies in the middle of the item's chain
    if item["mode"] == "killer":
        os._exit(3)  # every time
    return {"n": int(item["n"]), "mode": item["mode"], "pid": os.getpid()}


@pipe.step(retries=1, backoff="0s")
def flaky(parse: dict[str, Any], item: cv.Item) -> int:
    if parse["mode"] == "flaky" and _once(item, "failed"):
        raise ConnectionError("the first attempt fails")
    if parse["mode"] == "poison":
        raise ValueError("always fails")
    return int(parse["n"]) + 1


@pipe.step(timeout="1s")
def slow(parse: dict[str, Any]) -> int:
    if parse["mode"] == "hang":
        time.sleep(60)
    if parse["mode"] == "nap":
        time.sleep(0.5)
    return os.getpid()


@pipe.step
def double(flaky: int) -> int:
    return flaky * 2


@pipe.step
def side(parse: dict[str, Any]) -> int:
    return os.getpid()


@pipe.step
def total(double: int, side: int, slow: int, parse: dict[str, Any]) -> dict[str, Any]:
    return {"value": double, "pids": {parse["pid"], side, slow, os.getpid()}}


Peek = Callable[[str, str], list[tuple[Any, ...]]]


def submit(stream: Any, tmp_path: Path, name: str, mode: str = "plain", n: int = 1) -> str:
    return str(stream.submit({"id": name, "n": n, "mode": mode, "dir": str(tmp_path)}, id=name))


def attempts(peek: Peek, location: str, item: str) -> dict[str, tuple[str, int]]:
    rows = peek(
        location,
        "SELECT u.step, u.state, u.attempts FROM units u JOIN items i "
        f"ON i.run_id = u.run_id AND i.idx = u.item_idx WHERE i.item_id = '{item}'",
    )
    return {step: (state, n) for step, state, n in rows}


def test_each_item_runs_in_one_worker_and_gets_every_output(
    store_location: str, tmp_path: Path
) -> None:
    with pipe.stream(store=store_location, workers=2) as stream:
        ids = [submit(stream, tmp_path, f"i{n}", n=n) for n in range(12)]
        results = [stream.result(i, timeout=30) for i in ids]
    assert [r["double"] for r in results] == [2 * (n + 1) for n in range(12)]
    assert all(len(r["total"]["pids"]) == 1 for r in results)  # the whole chain, one process


def test_a_failure_inside_a_chain_is_retried_and_its_dependents_wait_for_it(
    store_location: str, tmp_path: Path, peek: Peek
) -> None:
    with pipe.stream(store=store_location, workers=2) as stream:
        flaky_id = submit(stream, tmp_path, "f", "flaky", n=4)
        poison_id = submit(stream, tmp_path, "p", "poison")
        assert stream.result(flaky_id, timeout=30)["total"]["value"] == 10
        with pytest.raises(cv.StepError, match="step 'flaky' failed on item 'p'"):
            stream.result(poison_id, timeout=30)
    assert attempts(peek, store_location, "f") == {
        "parse": ("done", 1), "flaky": ("done", 2), "double": ("done", 1),
        "side": ("done", 1), "slow": ("done", 1), "total": ("done", 1),
    }  # fmt: skip
    poisoned = attempts(peek, store_location, "p")
    assert poisoned["flaky"] == ("dead", 2)
    assert poisoned["double"][0] == poisoned["total"][0] == "skipped"
    assert poisoned["side"] == poisoned["slow"] == ("done", 1)  # the other branches went on


def test_a_step_that_overruns_its_timeout_inside_a_chain_is_the_one_blamed(
    store_path: Path, tmp_path: Path, peek: Peek
) -> None:
    with pipe.stream(store=store_path, workers=1) as stream:
        hung = submit(stream, tmp_path, "h", "hang")
        after = submit(stream, tmp_path, "a", n=2)
        with pytest.raises(cv.StepError, match=r"step 'slow' failed on item 'h': TimeoutError"):
            stream.result(hung, timeout=30)
        assert stream.result(after, timeout=30)["double"] == 6
    units = attempts(peek, str(store_path), "h")
    assert units["slow"] == ("dead", 1)
    assert units["total"][0] == "skipped"
    assert {units[s] for s in ("parse", "flaky", "double", "side")} == {("done", 1)}
    [(message,)] = peek(str(store_path), "SELECT error_message FROM units WHERE step = 'slow' "
                                         "AND state = 'dead'")  # fmt: skip
    assert "slow ran longer than its timeout of 1s" in message


def test_a_worker_that_dies_inside_a_chain_loses_nothing(
    store_path: Path, tmp_path: Path, peek: Peek
) -> None:
    with pipe.stream(store=store_path, workers=2) as stream:
        killed = submit(stream, tmp_path, "k", "kill", n=5)
        others = [submit(stream, tmp_path, f"o{n}", n=n) for n in range(4)]
        assert stream.result(killed, timeout=30)["double"] == 12
        assert [stream.result(i, timeout=30)["double"] for i in others] == [2, 4, 6, 8]
    units = attempts(peek, str(store_path), "k")
    assert all(state == "done" for state, _ in units.values())
    assert units["parse"][1] == 1  # a lost worker is not a failed attempt


def test_a_watcher_is_told_once_its_item_may_have_finished(
    store_path: Path, tmp_path: Path
) -> None:
    with pipe.stream(store=store_path, workers=1) as stream:
        napping = submit(stream, tmp_path, "n", "nap")
        told = threading.Event()
        cancel = stream.watch(napping, told.set)
        assert not told.is_set()  # the item naps for half a second
        assert told.wait(30)
        began = time.monotonic()
        assert stream.result(napping, timeout=0)["double"] == 4  # finished when told
        assert time.monotonic() - began < 1.0
        cancel()
        never = threading.Event()
        stream.watch("no such item", never.set)()  # an item it does not have: nothing to tell
        assert stream.result(submit(stream, tmp_path, "m"), timeout=30)["double"] == 4
        assert not never.is_set()


def test_a_unit_that_always_kills_its_worker_ends_dead_and_chains_resume(
    store_path: Path, tmp_path: Path, peek: Peek
) -> None:
    with pipe.stream(store=store_path, workers=2) as stream:
        killer = submit(stream, tmp_path, "x", "killer")
        with pytest.raises(cv.StepError, match="step 'parse' failed on item 'x': WorkerLost"):
            stream.result(killer, timeout=30)
        later = [submit(stream, tmp_path, f"l{n}", n=n) for n in range(8)]
        results = [stream.result(i, timeout=30) for i in later]
    assert [r["double"] for r in results] == [2 * (n + 1) for n in range(8)]
    assert all(len(r["total"]["pids"]) == 1 for r in results)  # chains again, once it is dead
    units = attempts(peek, str(store_path), "x")
    assert units["parse"][0] == "dead"
    assert {state for step, (state, _) in units.items() if step != "parse"} == {"skipped"}


two = cv.Pipeline("two-steps")


@two.step
def first(item: cv.Item) -> int:
    return int(item["n"])


@two.step
def then(first: int) -> int:
    return first + 1


def test_a_chain_takes_finished_upstream_results_from_the_ledger(
    store_location: str, peek: Peek
) -> None:
    # Item 0 has `first` done and `then` ready (as after a retry); item 1 is fresh. Claimed
    # together, item 0's `then` reads `first` from the ledger and runs: nothing goes back.
    from conveyor.core.units import Outcome
    from conveyor.scheduling.planner import plan_run
    from conveyor.scheduling.scheduler import Scheduler
    from conveyor.sources.readers import items_from_iterable
    from conveyor.store import open_store

    graph = two.validate().graph
    store = open_store(store_location)
    steps = list(graph.order)
    store.create_run("r", pipeline="two-steps", pipeline_file=None, source="t", steps=steps,
                     options={})  # fmt: skip
    items = items_from_iterable([{"n": 1}, {"n": 2}], None)
    plan_run(store, "r", graph, steps, items, force=set(), resource_versions={})
    [done_first] = store.claim("r", ["first"], 1, owner="me", lease=60)
    value = Outcome(done_first.unit_id, done_first.fence, pickle.dumps(1), None, 0.0, 0.0)
    store.commit("r", [(done_first, value, ("then",))], [])
    claims = store.claim_items("r", steps, 5, owner="me", lease=60)
    assert sorted((c.item_idx, c.step) for c in claims) == [(0, "then"), (1, "first"),
                                                            (1, "then")]  # fmt: skip
    scheduler = Scheduler(store, "r", graph, steps, {}, owner="me", chains=True)
    items, inputs = scheduler._fetch(claims)
    [task], handed_back = scheduler._packer.pack_chains(claims, items, inputs, free=1)
    assert handed_back == []
    assert task.chain and len(task.units) == 3
    item0_then = next(u for u in task.units if u.unit_id == claims[0].unit_id)
    assert pickle.loads(item0_then.inputs["first"]) == 1 and item0_then.local == ()
    assert peek(store_location, "SELECT count(*) FROM units WHERE state = 'running'") == [(3,)]
    store.close()
