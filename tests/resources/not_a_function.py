"""``@pipe.step`` applied to a class."""

from __future__ import annotations

import conveyor as cv

pipe = cv.Pipeline("classy")


@pipe.step
class Text:
    def __call__(self, item: cv.Item) -> str:
        return item.read_text()
