"""A per-group model for the model-set tests: a ridge regression of ``y`` on ``x`` per group of
a small synthetic sales table. ``CONVEYOR_TEST_FAIL_SEGMENT=b`` makes fit raise on segment b,
``CONVEYOR_TEST_NONE_SEGMENT=c`` makes it return None there."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import Ridge

import conveyor as cv

pipe = cv.Pipeline("grouped")


def table(segments: str = "abc", locations: int = 2, rows: int = 30) -> pd.DataFrame:
    """``rows`` rows per (segment, location): ``y = slope * x + noise``, a slope per group."""
    rng = np.random.default_rng(7)
    frames = []
    for number, segment in enumerate(segments):
        for location in range(locations):
            x = rng.normal(size=rows)
            slope = 1.0 + number + location / 2
            y = slope * x + rng.normal(scale=0.1, size=rows)
            frames.append(pd.DataFrame({"segment": segment, "location": location, "x": x, "y": y}))
    return pd.concat(frames, ignore_index=True)


SPACE = {"alpha": cv.search.log(1e-4, 1.0)}


@pipe.model(metric="mae", direction="minimize", search=SPACE)
def ridge(train: pd.DataFrame, params: dict[str, Any]) -> Any:
    segment = train["segment"].iloc[0]
    if segment == os.environ.get("CONVEYOR_TEST_FAIL_SEGMENT"):
        raise ValueError(f"no prices for segment {segment} today")
    if segment == os.environ.get("CONVEYOR_TEST_NONE_SEGMENT"):
        return None
    return Ridge(alpha=params["alpha"]).fit(train[["x"]], train["y"])


@pipe.metric
def mae(ridge: Any, valid: pd.DataFrame) -> float:
    return float(np.abs(ridge.predict(valid[["x"]]) - valid["y"]).mean())


@pipe.metric
def rows(ridge: Any, valid: pd.DataFrame) -> float:
    return float(len(valid))
