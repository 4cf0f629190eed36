"""Steps ``a`` and ``b`` take each other's output: a -> b -> a."""

from __future__ import annotations

import conveyor as cv

pipe = cv.Pipeline("cyclic")


@pipe.step
def text(item: cv.Item) -> str:
    return item.read_text()


@pipe.step
def a(text: str, b: str) -> str:
    return text + b


@pipe.step
def b(a: str) -> str:
    return a
