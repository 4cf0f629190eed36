"""A small model whose trials misbehave on demand, for the training tests: logistic regression
on sklearn's bundled breast-cancer table, with environment variables (inherited by the
workers) that make ``fit`` slow, log each execution, raise, or return None, and the metric
return NaN or a string.

- ``CONVEYOR_TEST_FIT_SLEEP``: seconds each fit sleeps first (so a kill lands mid-study)
- ``CONVEYOR_TEST_FIT_LOG``: a file each execution of fit appends a line to (its parameters)
- ``CONVEYOR_TEST_CASE``: ``raise`` (fit raises when ``intercept`` is False), ``none`` (fit
  returns None), ``nan`` or ``string`` (the metric returns NaN or a string)
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pandas as pd

import conveyor as cv

pipe = cv.Pipeline("trial_cases")


def table() -> pd.DataFrame:
    """The breast-cancer table as a DataFrame with a ``target`` column."""
    from sklearn.datasets import load_breast_cancer

    frame: pd.DataFrame = load_breast_cancer(as_frame=True).frame
    return frame


SPACE = {"C": cv.search.log(1e-3, 1e2), "intercept": cv.search.choice([True, False])}


@pipe.model(metric="roc_auc", trials=6, search=SPACE, sampler="random", retries=1)
def logistic(train: pd.DataFrame, params: dict[str, Any]) -> Any:
    from sklearn.linear_model import LogisticRegression

    log = os.environ.get("CONVEYOR_TEST_FIT_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(json.dumps(params, sort_keys=True) + "\n")
    time.sleep(float(os.environ.get("CONVEYOR_TEST_FIT_SLEEP", "0")))
    case = os.environ.get("CONVEYOR_TEST_CASE")
    if case == "raise" and not params["intercept"]:
        raise ValueError(f"no intercept today (C={params['C']:.3g})")
    if case == "none":
        return None
    model = LogisticRegression(C=params["C"], fit_intercept=params["intercept"],
                               solver="liblinear")  # fmt: skip
    return model.fit(train.drop(columns="target"), train["target"])


@pipe.metric
def roc_auc(logistic: Any, valid: pd.DataFrame) -> Any:
    from sklearn.metrics import roc_auc_score

    case = os.environ.get("CONVEYOR_TEST_CASE")
    if case == "nan":
        return float("nan")
    if case == "string":
        return "high"
    scores = logistic.predict_proba(valid.drop(columns="target"))[:, 1]
    return float(roc_auc_score(valid["target"], scores))
