"""A module Python refuses to compile: a ``return`` outside any function.

(A parse error would also stop ruff from reading the tests folder; this one only the compiler
rejects, so ruff can be told to let it be.)"""

from __future__ import annotations

import conveyor as cv

pipe = cv.Pipeline("syntax")


@pipe.step
def text(item: cv.Item) -> str:
    return item.read_text()


return pipe  # noqa: F706
