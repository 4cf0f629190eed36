"""A misspelt option: ``retires=3`` for ``retries=3``."""

from __future__ import annotations

import conveyor as cv

pipe = cv.Pipeline("options")


@pipe.step(retires=3)
def text(item: cv.Item) -> str:
    return item.read_text()
