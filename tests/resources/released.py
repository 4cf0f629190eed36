"""A classifier whose strength is chosen by an environment variable, for the release tests
(train, gate, register, promote): logistic regression on a synthetic table whose label depends
on ``x1``, ``x2`` and ``x3`` (``x4`` is noise).

``CONVEYOR_TEST_STRENGTH`` picks the features the model sees, each a fit function of its own
source, so each has its own code version (and its own cached trials): ``worse`` (x1), ``good``
(x1, x2; the default) and ``better`` (x1, x2, x3). ``CONVEYOR_TEST_GATE=floor`` gives it a floor
above its reach, ``CONVEYOR_TEST_LABEL`` another label column, ``CONVEYOR_TEST_EXPORT=onnx``
an ONNX export as it is registered."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd

import conveyor as cv

pipe = cv.Pipeline("released")

STRENGTH = os.environ.get("CONVEYOR_TEST_STRENGTH", "good")
LABEL = os.environ.get("CONVEYOR_TEST_LABEL", "y")
GATE = (
    [cv.gate.rule("roc_auc", floor=0.999)]
    if os.environ.get("CONVEYOR_TEST_GATE") == "floor"
    else cv.gate.policy(cv.gate.rule("roc_auc", min_absolute=0.0), resamples=200)
)
EXPORT = os.environ.get("CONVEYOR_TEST_EXPORT") or None
SPACE = {"C": cv.search.log(0.1, 10.0)}


def table(rows: int = 1200, seed: int = 3) -> pd.DataFrame:
    """``rows`` rows of four features and a 0/1 label ``y`` drawn from x1 + x2 + x3."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 4))
    chance = 1 / (1 + np.exp(-1.5 * (x[:, 0] + x[:, 1] + x[:, 2])))
    frame = pd.DataFrame(x, columns=["x1", "x2", "x3", "x4"])
    frame["y"] = (rng.random(rows) < chance).astype(int)
    return frame


def fit(train: pd.DataFrame, params: dict[str, Any], features: list[str]) -> Any:
    """A scaled logistic regression of ``y`` on ``features``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=params["C"]))
    return model.fit(train[features], train["y"])


if STRENGTH == "better":

    def scorer(train: pd.DataFrame, params: dict[str, Any]) -> Any:
        return fit(train, params, ["x1", "x2", "x3"])

elif STRENGTH == "worse":

    def scorer(train: pd.DataFrame, params: dict[str, Any]) -> Any:
        return fit(train, params, ["x1"])

else:

    def scorer(train: pd.DataFrame, params: dict[str, Any]) -> Any:
        return fit(train, params, ["x1", "x2"])


pipe.model(metric="roc_auc", label=LABEL, trials=2, search=SPACE, gate=GATE, export=EXPORT)(scorer)


@pipe.metric
def roc_auc(scorer: Any, valid: pd.DataFrame) -> float:
    from sklearn.metrics import roc_auc_score

    features = list(scorer.feature_names_in_)
    return float(roc_auc_score(valid["y"], scorer.predict_proba(valid[features])[:, 1]))


@pipe.metric
def accuracy(scorer: Any, valid: pd.DataFrame) -> float:
    features = list(scorer.feature_names_in_)
    return float((scorer.predict(valid[features]) == valid["y"]).mean())
