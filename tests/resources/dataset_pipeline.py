"""A pipeline of datasets, read from files the test writes (the environment names them):
``weather`` is checked, ``stations`` is not."""

from __future__ import annotations

import os

import pandas as pd

import conveyor as cv

pipe = cv.Pipeline("rain")


@pipe.dataset(
    checks=[
        cv.checks.no_nulls("temperature"),
        cv.checks.between("temperature", -30, 50),
        cv.checks.rows(min=3),
        cv.checks.unique("day", severity="warn"),
    ]
)
def weather() -> pd.DataFrame:
    return pd.read_csv(os.environ["WEATHER_CSV"])


@pipe.dataset
def stations() -> pd.DataFrame:
    return pd.DataFrame({"station": ["a", "b", "c"], "height": [10.0, 20.0, 30.0]})
