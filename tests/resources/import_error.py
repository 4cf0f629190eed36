"""A module that raises while it is imported, as when a model file is missing."""

from __future__ import annotations

from pathlib import Path

import conveyor as cv

pipe = cv.Pipeline("imports")


def load_weights(path: Path) -> bytes:
    raise FileNotFoundError(f"model weights {path} are missing")


WEIGHTS = load_weights(Path("weights.bin"))


@pipe.step
def text(item: cv.Item) -> str:
    return item.read_text()
