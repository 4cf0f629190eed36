"""A typo in a parameter: ``txet`` for the step ``text``."""

from __future__ import annotations

import conveyor as cv

pipe = cv.Pipeline("typo")


@pipe.step
def text(item: cv.Item) -> str:
    return item.read_text()


@pipe.step
def words(txet: str) -> list[str]:
    return txet.split()
