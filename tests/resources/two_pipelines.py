"""Two pipelines in one file: the command line must be told which one to use."""

from __future__ import annotations

import conveyor as cv

first = cv.Pipeline("first")
second = cv.Pipeline("second")


@first.step
def text(item: cv.Item) -> str:
    return item.read_text()


@second.step
def size(item: cv.Item) -> int:
    return len(item.read_bytes())
