"""``timeout="soon"``: not a duration."""

from __future__ import annotations

import conveyor as cv

pipe = cv.Pipeline("durations")


@pipe.step(timeout="soon")
def text(item: cv.Item) -> str:
    return item.read_text()
