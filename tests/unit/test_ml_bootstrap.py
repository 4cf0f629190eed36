"""The bootstrap's prediction path: a known metric computed from one prediction and the row
counts of many resamples equals scikit-learn's metric on those resampled rows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as sk
from sklearn.linear_model import LinearRegression, LogisticRegression

from conveyor.ml.bootstrap import (
    BLOCK_CELLS,
    NoPredictionPath,
    Predictions,
    PredictionScorer,
    resample_blocks,
    row_counts,
)

ROWS = 300


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(ROWS, 3))
    noise = rng.normal(size=ROWS)
    frame = pd.DataFrame(x, columns=["a", "b", "c"])
    frame["y"] = (x[:, 0] + 0.5 * x[:, 1] + noise > 0).astype(int)
    frame["amount"] = 3 * x[:, 0] - x[:, 2] + noise + 100.0  # a large mean: r2 stays exact
    frame["rounded"] = frame["a"].round(1)  # tied scores
    return frame


def _proba(model: Any, rows: pd.DataFrame) -> np.ndarray:
    return np.asarray(model.predict_proba(rows[["a", "b", "c"]]))


CLASSIFIED: dict[str, Callable[[Any, pd.DataFrame], float]] = {
    "roc_auc": lambda m, t: sk.roc_auc_score(t["y"], _proba(m, t)[:, 1]),
    "accuracy": lambda m, t: sk.accuracy_score(t["y"], m.predict(t[["a", "b", "c"]])),
    "log_loss": lambda m, t: sk.log_loss(t["y"], _proba(m, t)),
    "brier": lambda m, t: sk.brier_score_loss(t["y"], _proba(m, t)[:, 1]),
    "f1": lambda m, t: sk.f1_score(t["y"], m.predict(t[["a", "b", "c"]])),
    "precision": lambda m, t: sk.precision_score(t["y"], m.predict(t[["a", "b", "c"]])),
    "recall": lambda m, t: sk.recall_score(t["y"], m.predict(t[["a", "b", "c"]])),
}
REGRESSED: dict[str, Callable[[Any, pd.DataFrame], float]] = {
    "mae": lambda m, t: sk.mean_absolute_error(t["amount"], m.predict(t[["a", "b", "c"]])),
    "mse": lambda m, t: sk.mean_squared_error(t["amount"], m.predict(t[["a", "b", "c"]])),
    "rmse": lambda m, t: sk.root_mean_squared_error(t["amount"], m.predict(t[["a", "b", "c"]])),
    "r2": lambda m, t: sk.r2_score(t["amount"], m.predict(t[["a", "b", "c"]])),
}


def _agrees(kind: str, model: Any, frame: pd.DataFrame, label: str, metric: Any) -> None:
    scorer = PredictionScorer(kind, Predictions(model, frame, label))
    [indices] = list(resample_blocks(ROWS, 6, seed=1))
    counts = row_counts(indices, ROWS)
    ours = scorer(indices, counts)
    theirs = [metric(model, frame.iloc[rows].reset_index(drop=True)) for rows in indices]
    assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-12)
    whole = scorer(np.arange(ROWS)[None, :], np.ones((1, ROWS)))
    assert whole[0] == pytest.approx(metric(model, frame), rel=1e-9)


@pytest.mark.parametrize("kind", list(CLASSIFIED))
def test_classification_metrics_match_scikit_learn_on_resampled_rows(
    kind: str, table: pd.DataFrame
) -> None:
    model = LogisticRegression().fit(table[["a", "b", "c"]], table["y"])
    _agrees(kind, model, table[["a", "b", "c", "y"]], "y", CLASSIFIED[kind])


@pytest.mark.parametrize("kind", list(REGRESSED))
def test_regression_metrics_match_scikit_learn_on_resampled_rows(
    kind: str, table: pd.DataFrame
) -> None:
    model = LinearRegression().fit(table[["a", "b", "c"]], table["amount"])
    _agrees(kind, model, table[["a", "b", "c", "amount"]], "amount", REGRESSED[kind])


def test_tied_scores_count_half_in_the_auc(table: pd.DataFrame) -> None:
    model = LogisticRegression().fit(table[["rounded"]], table["y"])

    def auc(m: Any, t: pd.DataFrame) -> float:
        return float(sk.roc_auc_score(t["y"], m.predict_proba(t[["rounded"]])[:, 1]))

    assert table["rounded"].nunique() < ROWS / 5
    _agrees("roc_auc", model, table[["rounded", "y"]], "y", auc)


def test_features_are_those_the_model_was_fitted_on(table: pd.DataFrame) -> None:
    model = LogisticRegression().fit(table[["b", "a"]], table["y"])
    assert list(Predictions(model, table, "y").features.columns) == ["b", "a"]
    with pytest.raises(NoPredictionPath, match=r"lacks features \['a'\]"):
        Predictions(model, table[["b", "y"]], "y")
    plain = LogisticRegression().fit(table[["a", "b"]].to_numpy(), table["y"])
    arrays = Predictions(plain, table[["a", "b", "y"]], "y")  # fitted on an array: given one
    assert arrays.features.shape == (ROWS, 2) and isinstance(arrays.features, np.ndarray)
    assert PredictionScorer("accuracy", arrays).rows == ROWS
    with pytest.raises(NoPredictionPath, match="'kappa' is not a metric the prediction path"):
        PredictionScorer("kappa", arrays)
    with pytest.raises(NoPredictionPath, match="has no classes_"):
        fitted = LinearRegression().fit(table[["a"]], table["y"])
        PredictionScorer("log_loss", Predictions(fitted, table[["a", "y"]], "y"))


def test_resamples_are_reproducible_and_blocked_for_large_tables() -> None:
    first = np.concatenate(list(resample_blocks(50, 300, seed=3)))
    assert first.shape == (300, 50)
    assert np.array_equal(first, np.concatenate(list(resample_blocks(50, 300, seed=3))))
    assert not np.array_equal(first, np.concatenate(list(resample_blocks(50, 300, seed=4))))
    rows = BLOCK_CELLS // 10 + 1
    blocks = list(resample_blocks(rows, 25, seed=0))
    assert [b.shape[0] for b in blocks] == [9, 9, 7]
    counts = row_counts(first[:4], 50)
    assert counts.sum(axis=1).tolist() == [50.0] * 4
    assert counts[0].tolist() == np.bincount(first[0], minlength=50).tolist()
