"""One model per group: life expectancy per country of Gapminder's table (shipped offline by
the ``bokeh-sampledata`` package), the shape of a pricing team's one model per segment and
location. Each country is an item, each country's fit a unit of work; the result is one model
set, versioned as a whole.

    python examples/prices/prepare.py data      # writes data/gapminder.parquet
    conveyor train examples/prices/pipeline.py --input data/gapminder.parquet --group-by country
    conveyor train ... --group-by country --group-trials 8     # a small search per country
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import Ridge  # imported here: forked workers start with it loaded
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import conveyor as cv

pipe = cv.Pipeline("prices")


def features(frame: pd.DataFrame) -> pd.DataFrame:
    """What a country's life expectancy is fitted on: the year, fertility, log population."""
    return pd.DataFrame(
        {
            "year": frame["year"],
            "fertility": frame["fertility"],
            "log_population": np.log(frame["population"]),
        }
    )


@pipe.model(metric="mae", direction="minimize", search={"alpha": cv.search.log(1e-3, 10.0)})
def ridge(train: pd.DataFrame, params: dict[str, Any]) -> Any:
    """A scaled ridge regression of life expectancy, fitted on one country's years."""
    model = make_pipeline(StandardScaler(), Ridge(alpha=params["alpha"]))
    return model.fit(features(train), train["life_expectancy"])


@pipe.metric
def mae(ridge: Any, valid: pd.DataFrame) -> float:
    """Mean absolute error, in years of life expectancy, on the country's held-out years."""
    predicted = ridge.predict(features(valid))
    return float(np.abs(predicted - valid["life_expectancy"].to_numpy()).mean())


@pipe.metric
def worst_miss(ridge: Any, valid: pd.DataFrame) -> float:
    """The largest error on a held-out year, in years."""
    predicted = ridge.predict(features(valid))
    return float(np.abs(predicted - valid["life_expectancy"].to_numpy()).max())
