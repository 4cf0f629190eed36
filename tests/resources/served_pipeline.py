"""A sample pipeline served for the OpenAPI fuzz test: steps with typed inputs and a resource."""

from __future__ import annotations

import conveyor as cv

pipe = cv.Pipeline("served-sample")


@pipe.resource
def vocabulary() -> set[str]:
    """A tiny lexicon."""
    return {"good", "great", "bad", "awful"}


@pipe.step
def words(item: cv.Item) -> list[str]:
    """The item's text as lower-case words."""
    text = item.get("text", "")
    return str(text).lower().split()


@pipe.step
def count(words: list[str]) -> int:
    """How many words."""
    return len(words)


@pipe.step
def known(words: list[str], vocabulary: set[str]) -> float:
    """The share of words in the lexicon."""
    return sum(w in vocabulary for w in words) / max(1, len(words))
