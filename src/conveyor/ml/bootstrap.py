"""The paired bootstrap behind the gate's noise rule: is a challenger's gain over the champion on
the golden rows larger than what resampling those rows gives by chance?

Each resample draws the golden rows with replacement; the challenger and the champion are
scored on the *same* resampled rows, and the interval is the percentiles of the difference.
A resample is held as the count of each row in it, so a metric whose value is a weighted mean
or a weighted rank statistic is computed for a thousand resamples at once from ONE prediction
per model (:class:`PredictionScorer`: ``roc_auc``, ``accuracy``, ``log_loss``, ``brier``, the
binary ``f1``, ``precision`` and ``recall``, ``mae``, ``mse``, ``rmse``, ``r2``). Any other
metric is the user's own function called on every resampled table (:class:`MetricScorer`):
``resamples`` x 2 calls, each with its own prediction — about a second per 100 resamples for
a gradient-boosted model on a few thousand rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa

from conveyor.definition.models import MetricSpec, metric_value
from conveyor.errors import UsageError
from conveyor.ml.tables import Table, column_names

#: A block of resamples holds at most this many row counts (32 MB of int64), so that a large
#: golden table is resampled in pieces.
BLOCK_CELLS = 4_000_000
#: The metric names the prediction path knows, and what each one computes.
KNOWN_METRICS: Mapping[str, str] = {
    "roc_auc": "auc", "auc": "auc", "roc_auc_score": "auc",
    "accuracy": "accuracy", "accuracy_score": "accuracy",
    "log_loss": "log_loss", "logloss": "log_loss", "cross_entropy": "log_loss",
    "brier": "brier", "brier_score": "brier", "brier_score_loss": "brier",
    "f1": "f1", "f1_score": "f1", "precision": "precision", "precision_score": "precision",
    "recall": "recall", "recall_score": "recall",
    "mae": "mae", "mean_absolute_error": "mae", "mse": "mse", "mean_squared_error": "mse",
    "rmse": "rmse", "root_mean_squared_error": "rmse", "r2": "r2", "r2_score": "r2",
}  # fmt: skip
_PROBABILITIES = frozenset({"auc", "log_loss", "brier"})


class NoPredictionPath(Exception):
    """The prediction path cannot score this metric for this model (the reason is the
    message); the gate falls back to the metric function. Never leaves this layer."""


class Scorer(Protocol):
    """Scores a model on a block of resamples: ``indices`` (resamples x rows) and the same
    resamples as ``counts`` of each row; returns one value per resample."""

    def __call__(self, indices: np.ndarray, counts: np.ndarray) -> np.ndarray: ...


def resample_blocks(rows: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """``resamples`` draws of ``rows`` row indices with replacement, in blocks; the same
    arguments give the same draws (whatever scores them)."""
    rng = np.random.default_rng(seed)
    size = max(1, min(resamples, BLOCK_CELLS // max(rows, 1)))
    done = 0
    while done < resamples:
        block = min(size, resamples - done)
        yield rng.integers(0, rows, size=(block, rows))
        done += block


def row_counts(indices: np.ndarray, rows: int) -> np.ndarray:
    """How often each row is in each resample (resamples x rows), as floats to weigh with."""
    block = indices.shape[0]
    flat = (indices + np.arange(block)[:, None] * rows).ravel()
    counts = np.bincount(flat, minlength=block * rows).reshape(block, rows)
    return counts.astype(float)


@dataclass(frozen=True)
class Pair:
    """One metric's paired comparison: positive differences are gains (``sign`` is -1 for a
    minimised metric)."""

    metric: str
    sign: float
    challenger: Scorer
    champion: Scorer


def paired_intervals(
    pairs: Sequence[Pair], rows: int, *, resamples: int, seed: int, confidence: float
) -> list[tuple[float, float]]:
    """The ``confidence`` percentile interval of each pair's gain over the same resamples."""
    gains: list[list[np.ndarray]] = [[] for _ in pairs]
    for indices in resample_blocks(rows, resamples, seed):
        counts = row_counts(indices, rows)
        for pair, kept in zip(pairs, gains, strict=True):
            ours = pair.challenger(indices, counts)
            theirs = pair.champion(indices, counts)
            gain = pair.sign * (np.asarray(ours, float) - np.asarray(theirs, float))
            if not np.all(np.isfinite(gain)):
                raise UsageError(
                    f"gate: metric {pair.metric!r} is undefined on some bootstrap resamples "
                    f"of the {rows} golden rows (e.g. one class only); give the golden split "
                    f"more rows or set noise=False on its rule"
                )
            kept.append(gain)
    alpha = 1.0 - confidence
    out = []
    for kept in gains:
        low, high = np.quantile(np.concatenate(kept), [alpha / 2, 1 - alpha / 2])
        out.append((float(low), float(high)))
    return out


class MetricScorer:
    """The user's metric function on each resampled golden table: any metric, at the cost
    of one call (and prediction) per resample."""

    def __init__(self, metric: MetricSpec, model: object, golden: Table) -> None:
        self.metric, self.model, self.golden = metric, model, golden

    def _take(self, rows: np.ndarray) -> Table:
        if isinstance(self.golden, pa.Table):
            return self.golden.take(pa.array(rows))
        return self.golden.iloc[rows].reset_index(drop=True)

    def __call__(self, indices: np.ndarray, counts: np.ndarray) -> np.ndarray:
        values = np.empty(indices.shape[0])
        for i, rows in enumerate(indices):
            try:
                value = self.metric.fn(**{self.metric.model: self.model,
                                          "valid": self._take(rows)})  # fmt: skip
                values[i] = metric_value(self.metric, value)
            except Exception as exc:
                raise UsageError(
                    f"gate: metric {self.metric.name!r} failed on a bootstrap resample of "
                    f"the golden rows ({type(exc).__name__}: {exc}); give the golden split "
                    f"more rows or set noise=False on its rule"
                ) from exc
        return values


class Predictions:
    """One model's predictions on the golden rows, each kind computed once and kept."""

    def __init__(self, model: object, frame: pd.DataFrame, label: str) -> None:
        self.model, self.label = model, label
        self.y = frame[label].to_numpy()
        names = getattr(model, "feature_names_in_", None)
        self.features: Any = frame.drop(columns=[label])
        if names is not None:
            missing = [str(n) for n in names if str(n) not in frame.columns]
            if missing:
                raise NoPredictionPath(f"the golden table lacks features {missing}")
            self.features = frame[[str(n) for n in names]]
        elif hasattr(model, "n_features_in_"):
            self.features = self.features.to_numpy()  # fitted on an array, without names
        self._kept: dict[str, np.ndarray] = {}

    def get(self, kind: str) -> np.ndarray:
        """``predict``, ``proba`` (predict_proba) or ``decision`` (decision_function)."""
        if kind not in self._kept:
            method = {"predict": "predict", "proba": "predict_proba",
                      "decision": "decision_function"}[kind]  # fmt: skip
            call = getattr(self.model, method, None)
            if call is None:
                raise NoPredictionPath(f"the model has no {method}")
            try:
                self._kept[kind] = np.asarray(call(self.features))
            except Exception as exc:
                raise NoPredictionPath(f"{method} failed: {type(exc).__name__}: {exc}") from exc
        return self._kept[kind]

    def classes(self) -> np.ndarray:
        """The model's classes, in the order of its probability columns."""
        classes = getattr(self.model, "classes_", None)
        if classes is None:
            raise NoPredictionPath("the model has no classes_")
        return np.asarray(classes)


class PredictionScorer:
    """A known metric computed for many resamples at once from one prediction: the counts of
    each row weigh a per-row loss, or the positives and negatives of a rank statistic."""

    def __init__(self, metric: str, predictions: Predictions) -> None:
        kind = KNOWN_METRICS.get(metric)
        if kind is None:
            raise NoPredictionPath(f"{metric!r} is not a metric the prediction path knows")
        self.kind = kind
        y = predictions.y
        self.rows = len(y)
        if kind in _PROBABILITIES:
            self._probabilities(kind, predictions, y)
        elif kind in ("accuracy", "f1", "precision", "recall"):
            predicted = predictions.get("predict").ravel()
            if kind == "accuracy":
                self.per_row = (predicted == y).astype(float)
            else:
                if not set(np.unique(y).tolist()) <= {0, 1}:
                    raise NoPredictionPath(f"{kind} here is binary with labels 0 and 1")
                hits = [(predicted == 1) & (y == 1), (predicted == 1) & (y != 1),
                        (predicted != 1) & (y == 1)]  # fmt: skip
                self.hits = np.stack(hits, axis=1).astype(float)
        else:
            truth = np.asarray(y, dtype=float)
            residual = truth - predictions.get("predict").astype(float).ravel()
            self.per_row = np.abs(residual) if kind == "mae" else residual**2
            if kind == "r2":
                centred = truth - truth.mean()
                self.moments = np.stack([centred, centred**2], axis=1)

    def _probabilities(self, kind: str, predictions: Predictions, y: np.ndarray) -> None:
        classes = predictions.classes()
        if kind == "log_loss":
            proba = predictions.get("proba")
            where = {value: i for i, value in enumerate(classes.tolist())}
            if proba.ndim != 2 or any(v not in where for v in np.unique(y).tolist()):
                raise NoPredictionPath("the labels are not all among the model's classes")
            eps = np.finfo(proba.dtype).eps if proba.dtype.kind == "f" else np.finfo(float).eps
            picked = proba[np.arange(len(y)), [where[v] for v in y.tolist()]]
            self.per_row = -np.log(np.clip(picked.astype(float), eps, 1 - eps))
            return
        if len(classes) != 2:
            raise NoPredictionPath(f"{kind} here is binary; the model has {len(classes)} classes")
        positive = (y == classes[1]).astype(float)
        try:
            scores = predictions.get("proba")[:, 1]
        except NoPredictionPath:
            if kind == "brier":
                raise
            scores = predictions.get("decision").ravel()
        if kind == "brier":
            self.per_row = (positive - scores.astype(float)) ** 2
            return
        order = np.argsort(scores, kind="mergesort")
        ranked = scores[order]
        self.order = order
        self.starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
        self.positive = positive[order]

    def __call__(self, indices: np.ndarray, counts: np.ndarray) -> np.ndarray:
        weights = counts
        if self.kind == "auc":
            return self._auc(weights)
        if self.kind in ("f1", "precision", "recall"):
            tp, fp, fn = (weights @ self.hits).T
            top, bottom = {"precision": (tp, tp + fp), "recall": (tp, tp + fn),
                           "f1": (2 * tp, 2 * tp + fp + fn)}[self.kind]  # fmt: skip
            share: np.ndarray = np.where(bottom > 0, top / np.where(bottom > 0, bottom, 1.0), 0.0)
            return share  # 0 when undefined, as sklearn's zero_division="warn"
        total = weights.sum(axis=1)
        mean: np.ndarray = (weights @ self.per_row) / total
        if self.kind == "rmse":
            root: np.ndarray = np.sqrt(mean)
            return root
        if self.kind == "r2":
            first, second = (weights @ self.moments).T
            spread = second - first**2 / total
            residual = mean * total
            fit = 1.0 - residual / np.where(spread > 0, spread, 1.0)
            # sklearn's force_finite: a constant label scores 1 when fitted exactly, else 0
            r2: np.ndarray = np.where(spread > 0, fit, np.where(residual == 0, 1.0, 0.0))
            return r2
        return mean

    def _auc(self, weights: np.ndarray) -> np.ndarray:
        """The Mann-Whitney statistic with the resample counts as weights; tied scores count
        one half, as the trapezoids of the ROC curve do."""
        ordered = weights[:, self.order]
        positives = np.add.reduceat(ordered * self.positive, self.starts, axis=1)
        negatives = np.add.reduceat(ordered * (1.0 - self.positive), self.starts, axis=1)
        below = np.cumsum(negatives, axis=1) - negatives
        pairs = positives.sum(axis=1) * negatives.sum(axis=1)
        won = (positives * (below + 0.5 * negatives)).sum(axis=1)
        auc: np.ndarray = np.where(pairs > 0, won / np.where(pairs > 0, pairs, 1.0), np.nan)
        return auc


def golden_frame(golden: Table, label: str) -> pd.DataFrame:
    """The golden table as pandas for the prediction path (an Arrow table is converted once);
    its label column must be there."""
    names = column_names(golden)
    if label not in names:
        raise UsageError(
            f"gate: the golden table has no label column {label!r} (its columns: "
            f"{', '.join(names)}); fix @pipe.model(label=...)"
        )
    frame: Any = golden.to_pandas() if isinstance(golden, pa.Table) else golden
    return frame  # type: ignore[no-any-return]
