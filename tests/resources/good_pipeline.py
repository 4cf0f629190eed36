"""A valid pipeline: a resource, a per-item step, a step with options, a batch step and a
thread step with a parameter that keeps its default."""

from __future__ import annotations

import conveyor as cv

pipe = cv.Pipeline("good")


@pipe.resource
def vocabulary() -> frozenset[str]:
    return frozenset({"mit", "apache", "gpl"})


@pipe.step
def text(item: cv.Item) -> str:
    return item.read_text()


@pipe.step(retries=2, timeout="30s")
def words(text: str) -> list[str]:
    return text.lower().split()


@pipe.step(batch_size=8)
def known(words: list[list[str]], vocabulary: frozenset[str]) -> list[int]:
    return [sum(word in vocabulary for word in ws) for ws in words]


@pipe.step(executor="thread", concurrency=2)
def summary(item: cv.Item, known: int, separator: str = ": ") -> str:
    return f"{item.id}{separator}{known}"
