"""The per-group workload of ``bench/ml_groups.py``: a synthetic but realistic sales table (one
demand curve per segment and location, weekly, with promotions and a yearly season) and a small
scikit-learn model fitted per group (a scaled ridge regression of log units sold)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import Ridge  # imported here: Conveyor's forked workers inherit it
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import conveyor as cv

pipe = cv.Pipeline("bench_groups")
GROUP_BY = ("segment", "location")
SEGMENTS = 30


def write_table(path: Path, groups: int, seed: int = 0) -> int:
    """``groups`` groups of 40 to 150 weeks each (a demand curve of their own: base volume,
    price elasticity, promotion lift, season); returns the number of rows."""
    rng = np.random.default_rng(seed)
    weeks = rng.integers(40, 151, size=groups)
    index = np.repeat(np.arange(groups), weeks)
    week = np.concatenate([np.arange(n) for n in weeks])
    base = rng.uniform(3.0, 6.0, size=groups)[index]
    elasticity = rng.uniform(0.8, 2.5, size=groups)[index]
    lift = rng.uniform(0.05, 0.4, size=groups)[index]
    price = rng.uniform(4.0, 20.0, size=len(index))
    promo = rng.random(len(index)) < 0.2
    season = 0.2 * np.sin(2 * np.pi * week / 52)
    log_units = base - elasticity * np.log(price) + lift * promo + season
    units = np.round(np.exp(log_units + rng.normal(0.0, 0.15, size=len(index))))
    table = pd.DataFrame({
        "segment": [f"s{n:02d}" for n in index % SEGMENTS], "location": index // SEGMENTS,
        "week": week, "price": price.round(2), "promo": promo, "units": units,
    })  # fmt: skip
    table.to_parquet(path, index=False)
    return len(table)


def features(frame: pd.DataFrame) -> pd.DataFrame:
    """Log price, promotion and the season of the week."""
    angle = 2 * np.pi * frame["week"].to_numpy() / 52
    return pd.DataFrame({
        "log_price": np.log(frame["price"].to_numpy()), "promo": frame["promo"].to_numpy(),
        "sin": np.sin(angle), "cos": np.cos(angle),
    })  # fmt: skip


@pipe.model(metric="mape", direction="minimize", search={"alpha": cv.search.log(1e-3, 10.0)})
def demand(train: pd.DataFrame, params: dict[str, Any]) -> Any:
    """A scaled ridge regression of log(1 + units)."""
    model = make_pipeline(StandardScaler(), Ridge(alpha=params["alpha"]))
    return model.fit(features(train), np.log1p(train["units"].to_numpy()))


@pipe.metric
def mape(demand: Any, valid: pd.DataFrame) -> float:
    """Mean absolute percentage error of the units predicted on the held-out weeks."""
    actual = valid["units"].to_numpy()
    predicted = np.expm1(demand.predict(features(valid)))
    return float(np.mean(np.abs(predicted - actual) / np.maximum(actual, 1.0)))
