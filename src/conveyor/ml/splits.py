"""Deterministic splits: each row goes to train, valid or golden by a stable hash of its id (or,
without one, of its whole content), or by a time column with cut-offs. The same data gives the
same split on any machine, in any row order, as pandas or Arrow."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from conveyor.errors import DefinitionError, InputError
from conveyor.ml.tables import (
    Table,
    arrow_column,
    column_names,
    logical_type,
    num_rows,
    require_table,
)

#: The shares a split uses when none are given.
DEFAULT_SHARES: Mapping[str, float] = {"train": 0.7, "valid": 0.15, "golden": 0.15}
_NULL = np.uint64(0x9E3779B97F4A7C15)  # the hash of a null cell
_FNV_OFFSET, _FNV_PRIME = np.uint64(0xCBF29CE484222325), np.uint64(0x100000001B3)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_UNITS_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def split(
    table: Table,
    shares: Mapping[str, float] = DEFAULT_SHARES,
    id_column: str | None = None,
    *,
    salt: str = "",
) -> dict[str, Table]:
    """The rows of ``table`` by share, e.g. ``{"train": 0.7, "valid": 0.15, "golden": 0.15}``,
    as tables of the same kind (pandas keeps its index). A row's place depends only on its id
    (or content) and ``salt``; rows with the same id or content land together."""
    table = require_table(table)
    names = list(_validate_shares(shares))
    where = assign(table, shares, id_column, salt=salt)
    return {name: _take(table, np.flatnonzero(where == i)) for i, name in enumerate(names)}


def assign(
    table: Table, shares: Mapping[str, float], id_column: str | None = None, *, salt: str = ""
) -> np.ndarray:
    """For each row, the index (in ``shares``' order) of the split it belongs to."""
    bounds = np.cumsum(list(_validate_shares(shares).values()))
    bounds[-1] = 1.0  # sums within rounding of 1: the last split takes the rest
    unit = (row_hashes(table, id_column, salt=salt) >> np.uint64(11)) * (1.0 / (1 << 53))
    return np.searchsorted(bounds, unit, side="right").astype(np.int64)


def split_by_time(table: Table, column: str, cutoffs: Mapping[str, Any]) -> dict[str, Table]:
    """The rows by a time (or number) column: each split takes the rows before its cut-off and
    at or after the previous one; the last cut-off is None (the rest), e.g.
    ``{"train": "1990-01-01", "valid": "1995-01-01", "golden": None}``."""
    table = require_table(table)
    names = column_names(table)
    if column not in names:
        raise InputError(f"split_by_time: no column {column!r} (the table has {', '.join(names)})")
    values = arrow_column(table, names.index(column))
    series = values.to_pandas()
    if logical_type(values.type) == "date":  # Arrow dates come to pandas as Python dates
        series = pd.to_datetime(series)
    if series.isna().any():
        raise InputError(
            f"split_by_time: {int(series.isna().sum())} rows have no value in {column!r}; "
            "fill or drop them first"
        )
    bounds = _validate_cutoffs(cutoffs, series)
    tz = getattr(series.dt, "tz", None) if pd.api.types.is_datetime64_any_dtype(series) else None
    if tz is not None:
        series = series.dt.tz_convert(None)  # compared as UTC without a zone
    where = np.searchsorted(np.asarray(bounds), series.to_numpy(), side="right")
    return {name: _take(table, np.flatnonzero(where == i)) for i, name in enumerate(cutoffs)}


def row_hashes(table: Table, id_column: str | None = None, *, salt: str = "") -> np.ndarray:
    """A stable 64-bit hash per row: of its ``id_column`` value, or of all its cells in order.
    Defined on values, not memory: an int id and the same id as a float hash alike (a column
    that gains a null in pandas turns float), and text hashes as UTF-8 (FNV-1a, then mixed)."""
    table = require_table(table)
    names = column_names(table)
    if id_column is not None and id_column not in names:
        raise InputError(f"split: no id column {id_column!r} (the table has {', '.join(names)})")
    indices = [names.index(id_column)] if id_column is not None else range(len(names))
    seed = _mix(_fnv(pa.array([salt], pa.large_string())))[0]
    result = np.full(num_rows(table), seed, dtype=np.uint64)
    for index in indices:
        cells = _column_hashes(arrow_column(table, index).combine_chunks())
        result = _mix(result * _FNV_PRIME + cells)
    return result


def _column_hashes(array: pa.Array) -> np.ndarray:
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    kind = logical_type(array.type)
    valid = np.asarray(array.is_valid(), dtype=bool)
    if kind in ("int", "bool"):
        ints = np.asarray(array.fill_null(False if kind == "bool" else 0)).astype(np.int64)
        hashed = _mix(ints.view(np.uint64))
    elif kind == "float":
        values = np.asarray(array.cast(pa.float64()).fill_null(0.0), dtype=np.float64) + 0.0
        valid &= ~np.isnan(values)
        whole = np.isfinite(values) & (values == np.round(values)) & (np.abs(values) < 2.0**63)
        as_int = np.where(whole, values, 0.0).astype(np.int64).view(np.uint64)
        bits = np.where(valid, values, 0.0).view(np.uint64)
        hashed = _mix(np.where(whole, as_int, bits ^ _M2))
    elif kind in ("datetime", "duration"):
        per_second = _UNITS_PER_SECOND[array.type.unit]
        seconds, rest = np.divmod(np.asarray(array.cast(pa.int64()).fill_null(0)), per_second)
        nanos = (rest * (1_000_000_000 // per_second)).astype(np.uint64)
        hashed = _mix(_mix(seconds.astype(np.int64).view(np.uint64)) ^ nanos)
    elif kind in ("string", "binary"):
        target = pa.large_binary() if kind == "binary" else pa.large_string()
        text = array.cast(target).fill_null("")
        hashed = _mix(_fnv(text))
    else:
        cells = [json.dumps(v, sort_keys=True, default=str) for v in array.to_pylist()]
        hashed = _mix(_fnv(pa.array(cells, pa.large_string())))
    return np.where(valid, hashed, _NULL)


def _fnv(array: pa.Array) -> np.ndarray:
    """FNV-1a (64-bit) of each value's bytes (a large string or binary array), vectorised over
    the values one byte position at a time, longest first, so the work is the total length."""
    buffers = array.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int64)[
        array.offset : array.offset + len(array) + 1
    ]
    data = (
        np.frombuffer(buffers[2], dtype=np.uint8)
        if buffers[2] is not None
        else np.zeros(0, np.uint8)
    )
    lengths = np.diff(offsets)
    order = np.argsort(-lengths, kind="stable")
    starts, shorter = offsets[:-1][order], -lengths[order]  # `shorter` ascends
    hashes = np.full(len(order), _FNV_OFFSET, dtype=np.uint64)
    for j in range(int(-shorter[0]) if len(order) else 0):
        active = int(np.searchsorted(shorter, -j, side="left"))  # the values longer than j
        hashes[:active] ^= data[starts[:active] + j].astype(np.uint64)
        hashes[:active] *= _FNV_PRIME
    out = np.empty_like(hashes)
    out[order] = hashes
    return out


def _mix(z: np.ndarray | np.uint64) -> np.ndarray:
    """splitmix64's finaliser: every input bit moves every output bit."""
    z = np.asarray(z, dtype=np.uint64)
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return np.asarray(z ^ (z >> np.uint64(31)), dtype=np.uint64)


def _validate_shares(shares: Mapping[str, float]) -> Mapping[str, float]:
    example = "e.g. {'train': 0.7, 'valid': 0.15, 'golden': 0.15}"
    if not isinstance(shares, Mapping) or not shares:
        raise DefinitionError(f"split: shares must be a mapping of split name to share, {example}")
    for name, share in shares.items():
        if not isinstance(name, str) or not name:
            raise DefinitionError(f"split: a split name must be a non-empty string, not {name!r}")
        number = isinstance(share, int | float) and not isinstance(share, bool)
        if not number or not math.isfinite(share) or share <= 0:
            raise DefinitionError(f"split: share of {name!r} must be a number > 0, not {share!r}")
    total = sum(shares.values())
    if abs(total - 1.0) > 1e-6:
        raise DefinitionError(f"split: the shares add up to {total:g}, not 1; {example}")
    return shares


def _validate_cutoffs(cutoffs: Mapping[str, Any], series: pd.Series) -> list[Any]:
    example = "e.g. {'train': '1990-01-01', 'valid': '1995-01-01', 'golden': None}"
    if not isinstance(cutoffs, Mapping) or len(cutoffs) < 2:
        raise DefinitionError(f"split_by_time: give two or more splits with cut-offs, {example}")
    *firsts, last = cutoffs.values()
    if last is not None or any(c is None for c in firsts):
        raise DefinitionError(
            f"split_by_time: only the last split has no cut-off (None), {example}"
        )
    timed = pd.api.types.is_datetime64_any_dtype(series)
    if not timed and not pd.api.types.is_numeric_dtype(series):
        raise InputError(f"split_by_time: column {series.name!r} is neither times nor numbers")
    try:
        bounds = [_as_bound(c, series) if timed else float(c) for c in firsts]
    except (TypeError, ValueError) as e:
        raise DefinitionError(f"split_by_time: a cut-off is not a time or number: {e}") from e
    if any(b >= a for a, b in zip(bounds[1:], bounds, strict=False)):
        raise DefinitionError(f"split_by_time: cut-offs must increase, {example}")
    return bounds


def _as_bound(value: Any, series: pd.Series) -> np.datetime64:
    """A cut-off as a UTC time without zone, read in the column's zone when it has none."""
    stamp = pd.Timestamp(value)
    tz = getattr(series.dt, "tz", None)
    if stamp.tzinfo is None and tz is not None:
        stamp = stamp.tz_localize(tz)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return np.datetime64(stamp.to_datetime64())


def _take(table: Table, positions: np.ndarray) -> Table:
    if isinstance(table, pd.DataFrame):
        return table.iloc[positions]
    return table.take(pa.array(positions, pa.int64()))
