"""Models trained on a checked @pipe.dataset, for the training tests: scikit-learn's bundled
breast-cancer table (no download) with a ``day`` column to split by time. ``sgd`` reports its
training loss each epoch (``cv.report``) and is pruned by a threshold when it goes badly."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import optuna
import pandas as pd

import conveyor as cv

pipe = cv.Pipeline("trained_data")


@pipe.dataset(checks=[cv.checks.no_nulls(), cv.checks.rows(min=100)])
def cancer() -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer

    frame: pd.DataFrame = load_breast_cancer(as_frame=True).frame
    frame.insert(0, "day", np.arange(len(frame)))
    if os.environ.get("CONVEYOR_TEST_BREAK_DATA"):
        frame.loc[:6, "mean radius"] = None  # seven rows without a value
    return frame


@pipe.model(
    metric="accuracy",
    trials=6,
    dataset="cancer",
    sampler="random",
    pruner=optuna.pruners.ThresholdPruner(upper=1.0),
    search={"alpha": cv.search.log(1e-4, 1e-1), "diverge": cv.search.choice([False, True])},
)
def sgd(train: pd.DataFrame, params: dict[str, Any]) -> Any:
    from sklearn.linear_model import SGDClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train.drop(columns=["day", "target"]))
    x = scaler.transform(train.drop(columns=["day", "target"]))
    model = SGDClassifier(loss="log_loss", alpha=params["alpha"], random_state=0)
    for epoch in range(5):
        model.partial_fit(x, train["target"], classes=[0, 1])
        error = float(np.mean(model.predict(x) != train["target"]))
        cv.report(epoch, error + (2.0 if params["diverge"] else 0.0))  # > 1.0: pruned
    return Pipeline([("scale", scaler), ("sgd", model)])


@pipe.metric
def accuracy(sgd: Any, valid: pd.DataFrame) -> float:
    return float((sgd.predict(valid.drop(columns=["day", "target"])) == valid["target"]).mean())
