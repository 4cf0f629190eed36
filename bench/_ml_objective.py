"""The objective every tool of ``bench/ml.py`` searches: a linear classifier (scikit-learn's
``SGDClassifier`` behind a ``StandardScaler``) fitted on scikit-learn's bundled digits table
(1,797 rows x 64 pixels, shipped with scikit-learn, no download) and scored by accuracy on a
held-out split.

The classifier runs a fixed number of epochs (``tol=None``), so one fit costs about the same
whatever the parameters (~50 ms on the 2-core development machine) and the three tools' walls
compare scheduling, not the parameters their samplers happened to pick. The search space is
declared once here, in Optuna's distributions, and turned into Conveyor's
(:data:`CONVEYOR_SPACE`) for the bench pipeline.

With ``CONVEYOR_BENCH_ML_LOG`` set, every fit appends one line (its parameters, as JSON) to
that file before it starts, so that the crash section can count executions independently of
the ledger.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from typing import Any

import pandas as pd

#: Epochs of one fit; sets the cost of a trial (~50 ms here).
EPOCHS = 16
#: The fit's own random state: only the search's sampler is seeded per repetition.
FIT_SEED = 0
LEARNING_RATES = ("optimal", "invscaling", "constant")
#: (name, low, high) of the log-uniform parameters; ``learning_rate`` is a choice.
LOG_PARAMS = (("alpha", 1e-6, 1e-1), ("eta0", 1e-4, 1e-1))
LOG_ENV = "CONVEYOR_BENCH_ML_LOG"


def table() -> pd.DataFrame:
    """The digits table as a DataFrame of 64 pixel columns and a ``target`` column."""
    from sklearn.datasets import load_digits

    frame: pd.DataFrame = load_digits(as_frame=True).frame
    return frame


def optuna_space() -> dict[str, Any]:
    """The search space as Optuna distributions (for ``optuna`` and Ray Tune's OptunaSearch)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    space: dict[str, Any] = {
        name: FloatDistribution(low, high, log=True) for name, low, high in LOG_PARAMS
    }
    space["learning_rate"] = CategoricalDistribution(LEARNING_RATES)
    return space


def suggest(trial: Any) -> dict[str, Any]:
    """The parameters of one Optuna trial, define-by-run, in the same space."""
    params: dict[str, Any] = {
        name: trial.suggest_float(name, low, high, log=True) for name, low, high in LOG_PARAMS
    }
    params["learning_rate"] = trial.suggest_categorical("learning_rate", LEARNING_RATES)
    return params


def fit(train: pd.DataFrame, params: dict[str, Any]) -> Any:
    """Fit the classifier on ``train`` with ``params``."""
    from sklearn.linear_model import SGDClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    log = os.environ.get(LOG_ENV)
    if log:
        line = json.dumps(params, sort_keys=True) + "\n"
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
    model = make_pipeline(
        StandardScaler(),
        SGDClassifier(
            loss="modified_huber",
            alpha=params["alpha"],
            eta0=params["eta0"],
            learning_rate=params["learning_rate"],
            max_iter=EPOCHS,
            tol=None,
            random_state=FIT_SEED,
        ),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. an overflow with a large constant step
        return model.fit(train.drop(columns="target"), train["target"])


def accuracy(model: Any, valid: pd.DataFrame) -> float:
    """The share of ``valid`` rows the model classifies right."""
    predicted = model.predict(valid.drop(columns="target"))
    return float((predicted == valid["target"]).mean())


def evaluate(
    params: dict[str, Any], train: pd.DataFrame, valid: pd.DataFrame
) -> tuple[float, float]:
    """Fit and score one trial (the peers' objective); returns (accuracy, seconds it took)."""
    started = time.perf_counter()
    value = accuracy(fit(train, params), valid)
    return value, time.perf_counter() - started
