"""One pipeline bound to two names: it is still one pipeline."""

from __future__ import annotations

import conveyor as cv

pipe = cv.Pipeline("aliased")
licenses = pipe


@pipe.step
def text(item: cv.Item) -> str:
    return item.read_text()
