"""``retries=-1``: a retry count cannot be negative."""

from __future__ import annotations

import conveyor as cv

pipe = cv.Pipeline("retries")


@pipe.step(retries=-1)
def text(item: cv.Item) -> str:
    return item.read_text()
