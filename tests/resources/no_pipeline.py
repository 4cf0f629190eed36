"""Plain functions and no :class:`conveyor.Pipeline`."""

from __future__ import annotations


def text(path: str) -> str:
    with open(path, encoding="utf-8") as fh:
        return fh.read()
