"""The in-memory ledger that ships for tests: shared by name within the process, gone with its
last connection, and the same contract as the file ledger (whole runs and streams on it)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import conveyor as cv
from conveyor.core.units import Claim, UnitState
from conveyor.definition.loader import load_pipeline
from conveyor.errors import RunNotFound, UsageError
from conveyor.store import Store, open_store, protocols
from conveyor.store.memory import MemoryStore

chain, _ = load_pipeline(str(Path(__file__).parents[1] / "resources" / "chain_pipeline.py"))

words = cv.Pipeline("words")


@words.step
def counted(item: cv.Item) -> int:
    return len(str(item["text"]).split())


def new_run(store: Store, items: int) -> None:
    store.create_run("r1", pipeline="p", pipeline_file=None, source="t", steps=["a"], options={})
    store.add_items("r1", [(i, f"item{i}", "record", f"k{i}", b"x", None) for i in range(items)])
    store.add_units("r1", [(i, "a", f"a{i}", UnitState.READY, 0, None) for i in range(items)])


def test_memory_opens_a_fresh_ledger_and_a_name_opens_the_same_one() -> None:
    first, other = open_store("memory:"), open_store("memory:")
    assert isinstance(first, MemoryStore) and first.location.startswith("memory:conveyor-")
    assert first.location != other.location
    new_run(first, items=2)
    again = open_store(first.location)  # another connection to the same ledger
    assert again.get_run("r1").pipeline == "p"
    with pytest.raises(RunNotFound, match="no runs"):
        other.get_run()
    for store in (first, other, again):
        store.close()


def test_a_memory_ledger_is_gone_with_its_last_connection() -> None:
    store = MemoryStore("gone-with-close")
    new_run(store, items=1)
    store.close()
    with pytest.raises(RunNotFound, match="no ledger in memory:gone-with-close"):
        open_store("memory:gone-with-close", create=False)
    assert MemoryStore("gone-with-close").list_runs() == []


def test_a_memory_ledger_name_must_be_plain() -> None:
    with pytest.raises(UsageError, match="letters, digits"):
        open_store("memory:../x?vfs=unix")


def test_connections_in_threads_share_the_queue_under_its_fences() -> None:
    keeper = MemoryStore()
    new_run(keeper, items=200)
    taken: list[list[Claim]] = [[] for _ in range(4)]

    def take(n: int) -> None:
        store = open_store(keeper.location)
        while claims := store.claim("r1", ["a"], 7, owner=f"o{n}", lease=60):
            taken[n] += claims
        store.close()

    threads = [threading.Thread(target=take, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [c.unit_id for claims in taken for c in claims]
    assert len(ids) == len(set(ids)) == 200
    keeper.close()


def test_a_whole_run_on_a_memory_ledger_is_read_back_from_it() -> None:
    ledger = MemoryStore()  # held open, so the run's own connections find it by name
    report = chain.run([{"id": f"r{i}", "value": i} for i in range(20)], store=ledger.location,
                       workers=0, id_field="id")  # fmt: skip
    assert report.state is cv.RunState.COMPLETED_WITH_ERRORS and report.store == ledger.location
    [dead] = ledger.dead_units(report.run_id)
    assert (dead["item"], dead["step"], dead["error_type"]) == ("r13", "doubled", "ValueError")
    assert sum(s.counts.get("done", 0) for s in ledger.step_stats(report.run_id, chain.graph.order))
    ledger.close()


def test_a_stream_on_a_memory_ledger() -> None:
    ledger = MemoryStore()
    with words.stream(store=ledger.location, workers=0, id_field="id") as stream:
        ids = [stream.submit({"id": f"s{i}", "text": "a b " * i}) for i in range(10)]
        assert [stream.result(i, timeout=30)["counted"] for i in ids] == [2 * i for i in range(10)]
    assert ledger.get_run().source == "<stream>"
    ledger.close()


def test_every_store_method_belongs_to_one_concern() -> None:
    concerns = [protocols.RunLedger, protocols.ItemLedger, protocols.UnitQueue,
                protocols.DeadLetters, protocols.Reports, protocols.AlarmLog,
                protocols.DatasetLedger, protocols.ModelRegistry]  # fmt: skip
    owners: dict[str, list[str]] = {}
    for concern in concerns:
        assert concern in Store.__mro__
        for name in concern.__abstractmethods__:
            owners.setdefault(name, []).append(concern.__name__)
    shared = {name: found for name, found in owners.items() if len(found) > 1}
    assert shared == {}
    unowned = set(Store.__abstractmethods__) - set(owners) - {"close"}
    assert unowned == set(), f"put {sorted(unowned)} in the protocol of its concern"


def test_rows_unpack_as_the_tuples_they_replace() -> None:
    store = MemoryStore()
    new_run(store, items=1)
    [claim] = store.claim("r1", ["a"], 1, owner="me", lease=60)
    [(step, state, value, *_)] = store.item_units("r1", "item0")
    assert (step, state, value) == ("a", UnitState.RUNNING, None)
    [unit] = store.units_of_items("r1", [0])
    assert unit == (claim.unit_id, 0, "a", UnitState.RUNNING, "a0", "k0")
    assert unit.item_key == "k0"
    store.close()
