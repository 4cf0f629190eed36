"""Stream mode from Python: submit items one by one into an open run."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import conveyor as cv

pipe = cv.Pipeline("streamed")


@pipe.step
def words(item: cv.Item) -> list[str]:
    return str(item["text"]).split()


@pipe.step
def count(words: list[str]) -> int:
    if "poison" in words:
        raise ValueError("poisoned")
    return len(words)


@pipe.step(executor="thread", concurrency=4)
def shout(words: list[str]) -> str:
    return " ".join(words).upper()


@pytest.mark.parametrize("workers", [0, 2])
def test_submitted_items_are_processed_while_the_stream_is_open(
    store_location: str, workers: int, peek: Callable[[str, str], list[tuple[Any, ...]]]
) -> None:
    with pipe.stream(store=store_location, workers=workers, id_field="id") as stream:
        first = stream.submit({"id": "a", "text": "hello stream world"})
        assert stream.result(first, timeout=30) == {
            "words": ["hello", "stream", "world"],
            "count": 3,
            "shout": "HELLO STREAM WORLD",
        }
        later = [stream.submit({"id": f"n{i}", "text": "x " * i}) for i in range(1, 20)]
        assert [stream.result(i, timeout=30)["count"] for i in later] == list(range(1, 20))
        poisoned = stream.submit({"id": "p", "text": "a poison pill"})
        with pytest.raises(cv.StepError, match="step 'count' failed on item 'p'"):
            stream.result(poisoned, timeout=30)
        assert stream.submit({"id": "a", "text": "hello stream world"}) == "a"  # idempotent
    assert peek(store_location, "SELECT state, source FROM runs") == [
        ("completed_with_errors", "<stream>")
    ]
    assert peek(store_location, "SELECT count(*) FROM items") == [(21,)]


def test_submit_from_several_threads(store_path: Path) -> None:
    with pipe.stream(store=store_path, workers=2) as stream:
        ids: list[str] = []
        lock = threading.Lock()

        def feed(offset: int) -> None:
            for i in range(25):
                item_id = stream.submit({"text": f"t {offset} {i}"})
                with lock:
                    ids.append(item_id)

        threads = [threading.Thread(target=feed, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(set(ids)) == 100
        assert all(stream.result(i, timeout=30)["count"] == 3 for i in ids)


def test_a_closed_stream_refuses_items(store_path: Path) -> None:
    stream = pipe.stream(store=store_path, workers=0)
    with pytest.raises(cv.UsageError, match="not open"):
        stream.submit({"text": "too early"})
    with stream:
        item_id = stream.submit({"text": "in time"})
    with pytest.raises(cv.UsageError, match="not open"):
        stream.result(item_id)


def test_result_waits_at_most_its_timeout(store_path: Path) -> None:
    slow = cv.Pipeline("slow-stream")

    @slow.step
    def nap(item: cv.Item) -> int:
        import time

        time.sleep(1.0)
        return 1

    with slow.stream(store=store_path, workers=1) as stream:
        item_id = stream.submit({"v": 1})
        with pytest.raises(TimeoutError, match=r"not finished within 0\.05s"):
            stream.result(item_id, timeout=0.05)
        assert stream.result(item_id, timeout=30) == {"nap": 1}
