"""A small model with a search, for the training tests: logistic regression on sklearn's
bundled breast-cancer table (shipped with scikit-learn, no download)."""

from __future__ import annotations

import os
from typing import Any

import pandas as pd

import conveyor as cv

pipe = cv.Pipeline("trained")


def table() -> pd.DataFrame:
    """The breast-cancer table as a DataFrame with a ``target`` column."""
    from sklearn.datasets import load_breast_cancer

    frame: pd.DataFrame = load_breast_cancer(as_frame=True).frame
    return frame


SPACE = {"C": cv.search.log(1e-3, 1e2), "intercept": cv.search.choice([True, False])}


@pipe.model(metric="roc_auc", direction="maximize", trials=8, search=SPACE)
def logistic(train: pd.DataFrame, params: dict[str, Any]) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if os.environ.get("CONVEYOR_TEST_FIT_FAILS") and not params["intercept"]:
        raise ValueError("no intercept today")
    model = make_pipeline(
        StandardScaler(),
        LogisticRegression(C=params["C"], fit_intercept=params["intercept"], solver="liblinear"),
    )
    return model.fit(train.drop(columns="target"), train["target"])


@pipe.metric
def roc_auc(logistic: Any, valid: pd.DataFrame) -> float:
    from sklearn.metrics import roc_auc_score

    scores = logistic.predict_proba(valid.drop(columns="target"))[:, 1]
    return float(roc_auc_score(valid["target"], scores))


@pipe.metric
def accuracy(logistic: Any, valid: pd.DataFrame) -> float:
    return float((logistic.predict(valid.drop(columns="target")) == valid["target"]).mean())
