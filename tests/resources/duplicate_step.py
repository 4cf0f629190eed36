"""Two functions named ``text``: the second would silently replace the first."""

from __future__ import annotations

import conveyor as cv

pipe = cv.Pipeline("duplicate")


@pipe.step
def text(item: cv.Item) -> str:
    return item.read_text()


@pipe.step
def text(item: cv.Item) -> str:  # noqa: F811 - the redefinition is the point of this fixture
    return item.read_text().strip()
