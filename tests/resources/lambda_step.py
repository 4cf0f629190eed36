"""``pipe.step`` applied to a lambda, which has no name to become the step's name."""

from __future__ import annotations

import conveyor as cv

pipe = cv.Pipeline("anonymous")

text = pipe.step(lambda item: item.read_text())
