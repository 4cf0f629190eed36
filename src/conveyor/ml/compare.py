"""What changed between two versions of a dataset, as TFX's data validation reports it: a column
added, removed or retyped, and a distribution that moved.

The distance is Jensen-Shannon (base 2, as a distance in [0, 1]) between the distributions the
two profiles stored: bounded and symmetric, defined when a bin is empty on one side (PSI is
infinite there and needs a made-up floor), and with a threshold, 0.1, that Evidently and
NannyML use by default on large references. Null values are one more bin, so a jump in the null
share is a move too. A move is reported only above the noise two samples of those sizes show
by chance (:func:`noise_floor`), so that a small table does not flag noise. PSI is here as well,
for those who want it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from conveyor.errors import DefinitionError
from conveyor.ml.datasets import TOP_VALUES, ColumnProfile, DatasetProfile, Histogram
from conveyor.ml.tables import NUMERIC_TYPES

#: Times move by nature (a new month of data is later): their distributions are not compared.
TIME_TYPES = frozenset({"datetime", "date", "time", "duration"})
#: Numbers are compared over about this many bins of the reference (its deciles).
COMPARE_BINS = 10
ChangeKind = Literal["added", "removed", "retyped", "drifted"]


@dataclass(frozen=True)
class Change:
    """One difference between two versions: ``before``/``after`` are the logical types for a
    schema change; ``score`` is the distance for a drift, over ``threshold``."""

    kind: ChangeKind
    column: str
    message: str
    before: str | None = None
    after: str | None = None
    score: float | None = None
    threshold: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """This change as JSON values."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Change:
        """The change that :meth:`to_dict` wrote."""
        return cls(**dict(data))


def compare(
    previous: DatasetProfile,
    current: DatasetProfile,
    threshold: float = 0.1,
    *,
    metric: Literal["jensen_shannon", "psi"] = "jensen_shannon",
) -> list[Change]:
    """The changes from ``previous`` to ``current``: added, removed and retyped columns, then
    the columns whose distribution moved by more than ``threshold`` (in column order)."""
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or threshold <= 0:
        raise DefinitionError(
            f"compare: threshold must be a number > 0, e.g. 0.1, not {threshold!r}"
        )
    if metric not in ("jensen_shannon", "psi"):
        raise DefinitionError(f"compare: metric is 'jensen_shannon' or 'psi', not {metric!r}")
    distance = jensen_shannon if metric == "jensen_shannon" else psi
    before, after = previous.schema, current.schema
    changes = [
        Change("removed", c, f"column {c!r} ({t}) was removed", before=t)
        for c, t in before.items()
        if c not in after
    ]
    for column, kind in after.items():
        if column not in before:
            changes.append(
                Change("added", column, f"column {column!r} ({kind}) was added", after=kind)
            )
        elif before[column] != kind:
            message = f"column {column!r} changed type from {before[column]} to {kind}"
            changes.append(Change("retyped", column, message, before[column], kind))
    for column, kind in after.items():
        if before.get(column) != kind or kind in TIME_TYPES:
            continue
        pair = distributions(previous.column(column), current.column(column))
        if pair is None:
            continue
        score = float(distance(*pair))
        old, new = previous.column(column), current.column(column)
        bar = max(
            threshold, noise_floor(len(pair[0]), old.count + old.nulls, new.count + new.nulls)
        )
        if score > bar:
            message = f"column {column!r} moved: {metric} {score:.3f} > {bar:.3f}"
            changes.append(Change("drifted", column, message, kind, kind, score, float(threshold)))
    return changes


def distributions(old: ColumnProfile, new: ColumnProfile) -> tuple[np.ndarray, np.ndarray] | None:
    """The two columns' distributions over the same bins (shares summing to 1; the last bin is
    null), or None when the profiles hold nothing to compare."""
    old_total, new_total = old.count + old.nulls, new.count + new.nulls
    if old_total == 0 or new_total == 0:
        return None
    few = old.distinct is not None and new.distinct is not None
    few = few and max(old.distinct or 0, new.distinct or 0) <= TOP_VALUES
    if old.type in NUMERIC_TYPES and not few:
        if old.histogram is None or new.histogram is None:
            p, q = np.zeros(0), np.zeros(0)  # no finite numbers on one side: nulls alone
        else:
            edges = _coarse_edges(old.histogram)
            p = _rebin(old.histogram, edges) * _finite_share(old)
            q = _rebin(new.histogram, edges) * _finite_share(new)
    elif old.top or new.top:
        # the top values both sides know, then "any other value": exact when few values
        keys = list(dict.fromkeys(json.dumps(v) for v, _ in (*old.top, *new.top)))
        p, q = (_category_masses(c, keys) for c in (old, new))
    else:
        return None
    p = np.r_[p, old.nulls / old_total]
    q = np.r_[q, new.nulls / new_total]
    return p, q


def _finite_share(column: ColumnProfile) -> float:
    """The share of all rows (nulls included) that are finite numbers in the histogram."""
    total = column.count + column.nulls
    return (column.count - column.infinite) / total if total else 0.0


def _coarse_edges(histogram: Histogram) -> tuple[float, ...]:
    """About :data:`COMPARE_BINS` of the reference's edges, each bin about the same share:
    the profile's 30 bins are finer than a few thousand rows can fill without noise."""
    edges = histogram.edges
    if len(edges) <= COMPARE_BINS + 1:
        return edges
    cumulative = np.r_[0.0, np.cumsum(histogram.counts)] / max(sum(histogram.counts), 1)
    picks = np.searchsorted(cumulative, np.linspace(0.0, 1.0, COMPARE_BINS + 1), side="left")
    picks = np.unique(np.clip(picks, 0, len(edges) - 1))
    return tuple(edges[i] for i in np.unique(np.r_[0, picks, len(edges) - 1]))


def _rebin(histogram: Histogram, edges: tuple[float, ...]) -> np.ndarray:
    """``histogram``'s shares over other ``edges``, assuming values spread evenly within each of
    its bins. The first and last bins reach out to -inf and +inf (values beyond the reference's
    range count there: a linear spread of a long tail would otherwise invent mass outside)."""
    own = np.asarray(histogram.edges, dtype=float)
    cumulative = np.r_[0.0, np.cumsum(histogram.counts)] / max(sum(histogram.counts), 1)
    at = np.asarray(edges, dtype=float)
    if at[0] == at[-1]:  # the reference is one value: the shares below, at and above it
        below = float(np.interp(at[0], own, cumulative, left=0.0, right=1.0))
        at_value = 1.0 if own[0] == own[-1] == at[0] else 0.0
        return np.asarray([below * (1 - at_value), at_value, (1 - below) * (1 - at_value)])
    if own[0] == own[-1]:  # this side is one value: all its mass in the bin that holds it
        cdf = (at[1:-1] >= own[0]).astype(float)
    else:
        cdf = np.interp(at[1:-1], own, cumulative, left=0.0, right=1.0)
    return np.diff(np.r_[0.0, cdf, 1.0])


def _category_masses(column: ColumnProfile, keys: list[str]) -> np.ndarray:
    total = column.count + column.nulls
    counts = {json.dumps(v): n for v, n in column.top}
    known = np.asarray([counts.get(k, 0) for k in keys], dtype=float)
    other = max(column.count - float(known.sum()), 0.0)
    masses: np.ndarray = np.r_[known, other] / total
    return masses


def noise_floor(bins: int, old_rows: int, new_rows: int) -> float:
    """Twice the Jensen-Shannon distance two samples of these sizes from one distribution show
    by chance (its large-sample mean): small tables move that much without any drift."""
    chance = (bins - 1) / (8 * np.log(2)) * (1 / max(old_rows, 1) + 1 / max(new_rows, 1))
    return float(2 * np.sqrt(chance))


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    """The Jensen-Shannon distance (base 2, in [0, 1]) between two distributions."""
    p, q = _normalised(p), _normalised(q)
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return float(np.sqrt(max((kl(p) + kl(q)) / 2, 0.0)))


def psi(p: np.ndarray, q: np.ndarray, floor: float = 1e-4) -> float:
    """The population stability index of ``q`` against the reference ``p``; empty bins get
    ``floor`` so that the index stays finite."""
    p, q = _normalised(p), _normalised(q)
    p, q = np.maximum(p, floor), np.maximum(q, floor)
    return float(np.sum((q - p) * np.log(q / p)))


def _normalised(values: np.ndarray) -> np.ndarray:
    values = np.clip(np.asarray(values, dtype=float), 0.0, None)
    total = values.sum()
    return values / total if total > 0 else values
