"""A dataset's version and profile: a hash of its whole content, and its schema with per-column
statistics (the reference a later version is compared with)."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from conveyor.ml.tables import (
    NUMERIC_TYPES,
    Table,
    arrow_columns,
    jsonable,
    logical_type,
    num_rows,
    require_table,
)

#: The version of the canonical encoding below; part of every fingerprint, so that a change of
#: the encoding can never make two different tables share a version.
FINGERPRINT_FORMAT = "conveyor-dataset/1"
#: Rows per hashed block. Part of the format: the blocks are the same on every machine.
CHUNK_ROWS = 65_536
#: How many top values a profile keeps per column, and how many histogram bins per number.
TOP_VALUES = 20
BINS = 30
QUANTILES = {"p1": 0.01, "p5": 0.05, "p25": 0.25, "p50": 0.5, "p75": 0.75, "p95": 0.95, "p99": 0.99}
_UNITS_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def fingerprint(table: Table) -> str:
    """The version of a table: the SHA-256 (hex) of its whole content, every row.

    Canonical, so that it is the same on any machine and for the same data given as pandas or
    Arrow: each column's name and logical type (int32 and int64 are both "int"; a dictionary is
    its values; a timestamp's time zone counts), then its values block by block (nulls as a
    mask; NaN is null; -0.0 is 0.0; numbers widened to 64 bits; times as seconds and
    nanoseconds whatever their unit; text as UTF-8). Row order and column order both count (a
    model may read columns by position); the pandas index is not data and does not.
    """
    table = require_table(table)
    digest = hashlib.sha256(f"{FINGERPRINT_FORMAT}\n{num_rows(table)}\n".encode())
    for name, column in arrow_columns(table):
        kind = logical_type(column.type)
        column_hash = hashlib.sha256(_header(name, kind, column.type))
        for start in range(0, len(column), CHUNK_ROWS):
            chunk = column.slice(start, CHUNK_ROWS).combine_chunks()
            if pa.types.is_dictionary(chunk.type):
                chunk = chunk.dictionary_decode()
            for part in _encode(chunk, kind):
                column_hash.update(part)
        digest.update(column_hash.digest())
    return digest.hexdigest()


def _header(name: str, kind: str, arrow_type: pa.DataType) -> bytes:
    detail = ""
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if pa.types.is_timestamp(arrow_type):
        detail = arrow_type.tz or ""
    return json.dumps([name, kind, detail]).encode()


def _encode(chunk: pa.Array, kind: str) -> list[bytes]:
    """The canonical bytes of one block of a column: its validity mask, then its values."""
    valid = np.asarray(chunk.is_valid(), dtype=bool)
    if kind == "float":
        values = np.asarray(chunk.cast(pa.float64()).fill_null(0.0), dtype="<f8")
        valid &= ~np.isnan(values)
        values = np.where(valid, values, 0.0) + 0.0  # + 0.0 turns -0.0 into 0.0
        return [valid.astype(np.uint8).tobytes(), values.astype("<f8").tobytes()]
    mask = valid.astype(np.uint8).tobytes()
    if kind in ("int", "bool"):
        # uint64 beyond 2**63 keeps its bits: equal to int64 wherever the values are
        ints = np.asarray(chunk.fill_null(False if kind == "bool" else 0)).astype("<i8")
        return [mask, ints.tobytes()]
    if kind in ("datetime", "duration"):
        per_second = _UNITS_PER_SECOND[chunk.type.unit]
        raw = np.asarray(chunk.cast(pa.int64()).fill_null(0), dtype=np.int64)
        seconds, rest = np.divmod(raw, per_second)
        nanos = rest * (1_000_000_000 // per_second)
        return [mask, seconds.astype("<i8").tobytes(), nanos.astype("<i8").tobytes()]
    if kind == "date":
        days = np.asarray(chunk.cast(pa.date32()).cast(pa.int32()).fill_null(0)).astype("<i8")
        return [mask, days.tobytes()]
    if kind == "time":
        nanos = np.asarray(chunk.cast(pa.time64("ns")).cast(pa.int64()).fill_null(0))
        return [mask, nanos.astype("<i8").tobytes()]
    if kind == "null":
        return [mask]
    if kind in ("string", "binary", "decimal"):
        target = pa.large_binary() if kind == "binary" else pa.large_string()
        text = chunk.cast(pa.large_string()) if kind == "decimal" else chunk
        return [mask, *_bytes_of(text.cast(target).fill_null(""))]
    # lists, structs and anything else: each value as canonical JSON text
    cells = [json.dumps(jsonable_deep(v), sort_keys=True) for v in chunk.to_pylist()]
    return [mask, *_bytes_of(pa.array(cells, pa.large_string()))]


def _bytes_of(array: pa.Array) -> list[bytes]:
    """Lengths then data of a large string/binary array, independent of its buffer layout."""
    buffers = array.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int64)[
        array.offset : array.offset + len(array) + 1
    ]
    if len(offsets) == 0:
        return [b""]
    data = buffers[2].to_pybytes()[offsets[0] : offsets[-1]] if buffers[2] is not None else b""
    return [np.diff(offsets).astype("<i8").tobytes(), data]


def jsonable_deep(value: Any) -> Any:
    """A nested cell (lists, dicts) as JSON values all the way down."""
    if isinstance(value, Mapping):
        return {str(k): jsonable_deep(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable_deep(v) for v in value]
    return jsonable(value)


@dataclass(frozen=True)
class Histogram:
    """A number column's distribution: ``len(counts) + 1`` bin edges (quantiles of the data, so
    each bin holds about the same share; equal edges merged) and the count in each bin."""

    edges: tuple[float, ...]
    counts: tuple[int, ...]


@dataclass(frozen=True)
class ColumnProfile:
    """The statistics of one column. ``count`` is the non-null values (NaN counts as null);
    ``min``/``max`` are numbers for numbers and ISO text for times; ``mean``, ``std`` (sample,
    ddof=1), ``quantiles`` and ``histogram`` are for numbers only, over their finite values;
    ``top`` is at most :data:`TOP_VALUES` (value, count) pairs, most frequent first."""

    name: str
    type: str
    count: int
    nulls: int
    distinct: int | None = None
    top: tuple[tuple[Any, int], ...] = ()
    min: Any = None
    max: Any = None
    mean: float | None = None
    std: float | None = None
    quantiles: Mapping[str, float] = field(default_factory=dict)
    histogram: Histogram | None = None
    infinite: int = 0

    def to_dict(self) -> dict[str, Any]:
        """This profile as JSON values."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["top"] = [list(pair) for pair in self.top]
        out["quantiles"] = dict(self.quantiles)
        if self.histogram is not None:
            out["histogram"] = {
                "edges": list(self.histogram.edges),
                "counts": list(self.histogram.counts),
            }
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnProfile:
        """The profile that :meth:`to_dict` wrote."""
        values = dict(data)
        values["top"] = tuple((v, int(n)) for v, n in values.get("top", ()))
        values["quantiles"] = dict(values.get("quantiles") or {})
        hist = values.get("histogram")
        if hist is not None:
            values["histogram"] = Histogram(tuple(hist["edges"]), tuple(hist["counts"]))
        return cls(**values)


@dataclass(frozen=True)
class DatasetProfile:
    """A table's schema and per-column statistics, the reference for later comparisons."""

    rows: int
    columns: tuple[ColumnProfile, ...]

    @property
    def schema(self) -> dict[str, str]:
        """Column name -> logical type, in column order."""
        return {c.name: c.type for c in self.columns}

    def column(self, name: str) -> ColumnProfile:
        """The profile of one column (KeyError if there is none of that name)."""
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """This profile as JSON values (``json.dumps`` takes it as it is)."""
        return {
            "format": 1,
            "rows": self.rows,
            "columns": [c.to_dict() for c in self.columns],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetProfile:
        """The profile that :meth:`to_dict` wrote."""
        columns = tuple(ColumnProfile.from_dict(c) for c in data["columns"])
        return cls(rows=int(data["rows"]), columns=columns)


def profile(table: Table) -> DatasetProfile:
    """The schema and per-column statistics of a whole table, read one column at a time."""
    table = require_table(table)
    columns = tuple(_profile_column(name, column) for name, column in arrow_columns(table))
    return DatasetProfile(rows=num_rows(table), columns=columns)


def _profile_column(name: str, column: pa.ChunkedArray) -> ColumnProfile:
    kind = logical_type(column.type)
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if kind in NUMERIC_TYPES:
        return _profile_number(name, kind, column)
    nulls = column.null_count
    count = len(column) - nulls
    distinct: int | None = None
    top: tuple[tuple[Any, int], ...] = ()
    if count and kind in ("datetime", "date", "time", "duration"):
        return _profile_time(name, kind, column)
    if count and kind not in ("list", "struct", "other", "null"):
        counted = pc.value_counts(column.drop_null())
        values, counts = counted.field("values"), np.asarray(counted.field("counts"))
        distinct = len(counts)
        order = np.argsort(-counts, kind="stable")[:TOP_VALUES]  # ties: first seen first
        top = tuple((jsonable(values[int(i)].as_py()), int(counts[i])) for i in order)
    return ColumnProfile(name, kind, count, nulls, distinct, top)


def _runs(ordered: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each distinct value starts in sorted values, how often it occurs, and the top
    :data:`TOP_VALUES` of them by count (ties: the smaller value first)."""
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    runs = np.diff(np.r_[starts, len(ordered)])
    return starts, runs, np.argsort(-runs, kind="stable")[:TOP_VALUES]


def _profile_time(name: str, kind: str, column: pa.ChunkedArray) -> ColumnProfile:
    """Times are sorted as integers (faster than hashing them) and shown as ISO text."""
    present = column.drop_null().combine_chunks()
    width = (
        pa.int32()
        if pa.types.is_date32(present.type) or pa.types.is_time32(present.type)
        else pa.int64()
    )
    ordered = np.sort(np.asarray(present.view(width)))
    starts, runs, order = _runs(ordered)

    def show(i: int) -> Any:
        return jsonable(pa.array(ordered[i : i + 1]).view(present.type)[0].as_py())

    top = tuple((show(int(starts[i])), int(runs[i])) for i in order)
    return ColumnProfile(
        name,
        kind,
        len(ordered),
        column.null_count,
        len(starts),
        top,
        show(0),
        show(len(ordered) - 1),
    )


def _profile_number(name: str, kind: str, column: pa.ChunkedArray) -> ColumnProfile:
    """Statistics of a number column from one sort: distinct values, top values, quantiles and
    histogram all read the sorted values."""
    raw = column.drop_null()
    values = np.asarray(raw.to_numpy() if len(raw) else np.empty(0, dtype=np.float64))
    nan = np.isnan(values) if kind == "float" else np.zeros(len(values), dtype=bool)
    values = values[~nan]
    nulls = column.null_count + int(nan.sum())
    count = len(values)
    if count == 0:
        return ColumnProfile(name, kind, 0, nulls, 0)
    ordered = np.sort(values + 0 if kind == "int" else values + 0.0)  # -0.0 is 0.0
    starts, runs, order = _runs(ordered)
    top = tuple((jsonable(ordered[starts[i]]), int(runs[i])) for i in order)
    finite = ordered[np.isfinite(ordered)] if kind == "float" else ordered.astype(np.float64)
    infinite = count - len(finite)
    ends = finite if kind == "float" and len(finite) else ordered  # the finite extremes
    base = ColumnProfile(
        name, kind, count, nulls, len(starts), top,
        jsonable(ends[0]), jsonable(ends[-1]), infinite=infinite,
    )  # fmt: skip
    if len(finite) == 0:
        return base
    finite = finite.astype(np.float64)
    mean = _finite_or_none(float(finite.mean()))
    std = _finite_or_none(float(finite.std(ddof=1))) if len(finite) > 1 else None
    quantiles = {k: _quantile(finite, q) for k, q in QUANTILES.items()}
    edges = np.unique([_quantile(finite, q) for q in np.linspace(0.0, 1.0, BINS + 1)])
    if len(edges) == 1:  # a constant column: one bin of no width
        histogram = Histogram((float(edges[0]), float(edges[0])), (len(finite),))
    else:
        # bins are [a, b) except the last, [a, b], as numpy's histogram counts them
        cuts = np.searchsorted(finite, edges[1:-1], side="left")
        counts = np.diff(np.r_[0, cuts, len(finite)])
        histogram = Histogram(tuple(float(e) for e in edges), tuple(int(c) for c in counts))
    return ColumnProfile(
        name, kind, count, nulls, base.distinct, top, base.min, base.max,
        mean, std, quantiles, histogram, infinite,
    )  # fmt: skip


def _quantile(ordered: np.ndarray, q: float) -> float:
    """The q-quantile of sorted values, interpolated linearly (numpy's default method)."""
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None
