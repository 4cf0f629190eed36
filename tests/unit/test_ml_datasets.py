"""Dataset fingerprints (the whole content, canonical) and profiles (statistics, JSON)."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from conveyor.errors import InputError
from conveyor.ml.datasets import CHUNK_ROWS, DatasetProfile, fingerprint, profile
from conveyor.ml.tables import schema


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "a": [1, 2, 3],
            "b": [1.5, np.nan, -0.0],
            "c": ["x", None, "z"],
            "d": pd.to_datetime(["2020-01-01", "2021-01-01", None]),
            "e": [True, False, True],
            "cat": pd.Categorical(["u", "v", "u"]),
        }
    )


def arrow() -> pa.Table:
    stamps = [dt.datetime(2020, 1, 1), dt.datetime(2021, 1, 1), None]
    return pa.table(
        {
            "a": pa.array([1, 2, 3], pa.int32()),
            "b": pa.array([1.5, None, 0.0]),
            "c": pa.array(["x", None, "z"], pa.string()),
            "d": pa.array(stamps, pa.timestamp("ms")),
            "e": [True, False, True],
            "cat": pa.array(["u", "v", "u"]).dictionary_encode(),
        }
    )


def test_the_same_data_as_pandas_or_arrow_has_one_fingerprint() -> None:
    assert fingerprint(frame()) == fingerprint(arrow())
    assert len(fingerprint(frame())) == 64


def test_the_fingerprint_is_pinned_so_a_change_of_encoding_is_caught() -> None:
    # a change here moves every dataset version: bump FINGERPRINT_FORMAT instead
    table = pd.DataFrame({"x": [1, 2], "s": ["a", "é"]})
    assert fingerprint(table) == "ea1d7f257a8f11b57c4801a90a2fec8221b747e95e2f83cc7e68d257c6f6cf88"


def test_every_cell_row_order_and_column_order_count() -> None:
    base = fingerprint(frame())
    changed = frame()
    changed.loc[2, "a"] = 4
    assert fingerprint(changed) != base
    assert fingerprint(frame().iloc[::-1]) != base
    assert fingerprint(frame()[["b", "a", "c", "d", "e", "cat"]]) != base
    assert fingerprint(frame().rename(columns={"a": "A"})) != base
    # the index is not data
    assert fingerprint(frame().set_axis([10, 11, 12])) == base


def test_a_change_beyond_the_first_block_is_seen() -> None:
    # MLflow hashes at most 10,000 rows; this hashes them all
    n = CHUNK_ROWS + 10
    table = pd.DataFrame({"x": np.arange(n)})
    other = table.copy()
    other.loc[n - 1, "x"] = -1
    assert fingerprint(table) != fingerprint(other)


def test_null_nan_and_empty_text_are_told_apart_where_they_differ() -> None:
    assert fingerprint(pd.DataFrame({"s": ["", "a"]})) != fingerprint(
        pd.DataFrame({"s": [None, "a"]})
    )
    nan = pa.table({"f": pa.array([float("nan"), 1.0])})
    null = pa.table({"f": pa.array([None, 1.0], pa.float64())})
    assert fingerprint(nan) == fingerprint(null)  # NaN is missing, as pandas reads it
    # text boundaries count: ["ab", "c"] is not ["a", "bc"]
    assert fingerprint(pd.DataFrame({"s": ["ab", "c"]})) != fingerprint(
        pd.DataFrame({"s": ["a", "bc"]})
    )


def test_types_count_but_widths_and_units_do_not() -> None:
    ints = pa.table({"x": pa.array([1, 2], pa.int64())})
    assert fingerprint(ints) == fingerprint(pa.table({"x": pa.array([1, 2], pa.int8())}))
    assert fingerprint(ints) != fingerprint(pa.table({"x": pa.array([1.0, 2.0])}))
    utc = pa.table({"t": pa.array([0], pa.timestamp("s", "UTC"))})
    assert fingerprint(utc) != fingerprint(pa.table({"t": pa.array([0], pa.timestamp("s"))}))
    assert fingerprint(pa.table({"t": pa.array([1], pa.timestamp("s"))})) == fingerprint(
        pa.table({"t": pa.array([1_000_000_000], pa.timestamp("ns"))})
    )


def test_nested_and_temporal_columns_hash() -> None:
    table = pa.table(
        {
            "l": [[1, 2], None],
            "st": [{"k": 1}, {"k": 2}],
            "day": [dt.date(2020, 1, 1), None],
            "tm": [dt.time(1, 2), dt.time(3, 4)],
            "du": [dt.timedelta(seconds=1), None],
            "n": pa.nulls(2),
        }
    )
    assert fingerprint(table) == fingerprint(table.to_pandas())


def test_bad_tables_get_a_clear_error() -> None:
    with pytest.raises(InputError, match="pandas DataFrame or a pyarrow Table, not list"):
        fingerprint([1, 2])  # type: ignore[arg-type]
    mixed = pd.DataFrame({"m": [1, "a", 2.5]})
    with pytest.raises(InputError, match=r"column 'm' mixes types \(float, int, str\)"):
        fingerprint(mixed)
    with pytest.raises(InputError, match="duplicate column names"):
        profile(pd.DataFrame([[1, 2]], columns=["a", "a"]))
    assert schema(mixed) == {"m": "mixed"}


def test_an_empty_table_has_a_fingerprint_and_a_profile() -> None:
    empty = pd.DataFrame({"x": pd.Series([], dtype="float64")})
    assert fingerprint(empty) != fingerprint(pd.DataFrame())
    column = profile(empty).column("x")
    assert (column.count, column.nulls, column.distinct, column.histogram) == (0, 0, 0, None)


def test_profile_statistics_of_numbers() -> None:
    values = np.arange(1, 101, dtype=float)
    table = pd.DataFrame({"x": np.r_[values, np.nan, np.inf]})
    column = profile(table).column("x")
    assert (column.type, column.count, column.nulls, column.infinite) == ("float", 101, 1, 1)
    assert column.distinct == 101
    assert (column.min, column.max) == (1.0, 100.0)  # the finite extremes
    assert column.mean == pytest.approx(values.mean())
    assert column.std == pytest.approx(values.std(ddof=1))
    assert column.quantiles["p50"] == pytest.approx(np.quantile(values, 0.5))
    assert column.quantiles["p99"] == pytest.approx(np.quantile(values, 0.99))
    assert column.histogram is not None
    assert len(column.histogram.edges) == len(column.histogram.counts) + 1 == 31
    assert sum(column.histogram.counts) == 100
    assert np.histogram(values, column.histogram.edges)[0].tolist() == list(column.histogram.counts)


def test_profile_top_values_and_categories() -> None:
    table = pd.DataFrame({"k": ["b", "a", "b", None, "c", "b", "a"], "i": [3, 1, 3, 3, 2, 1, 9]})
    p = profile(table)
    k = p.column("k")
    assert (k.type, k.count, k.nulls, k.distinct) == ("string", 6, 1, 3)
    assert k.top == (("b", 3), ("a", 2), ("c", 1))
    assert k.histogram is None and k.mean is None
    assert p.column("i").top == ((3, 3), (1, 2), (2, 1), (9, 1))
    assert p.schema == {"k": "string", "i": "int"}


def test_profile_of_many_distinct_values_keeps_twenty() -> None:
    column = profile(pd.DataFrame({"s": [f"v{i}" for i in range(100)]})).column("s")
    assert column.distinct == 100 and len(column.top) == 20


def test_profile_of_times_and_a_constant_column() -> None:
    table = pd.DataFrame({"t": pd.to_datetime(["2020-01-02", "2020-01-01", None]), "c": [7, 7, 7]})
    p = profile(table)
    assert (p.column("t").min, p.column("t").max) == ("2020-01-01T00:00:00", "2020-01-02T00:00:00")
    constant = p.column("c")
    assert constant.std == 0.0 and constant.histogram is not None
    assert constant.histogram.counts == (3,)


def test_profile_round_trips_through_json() -> None:
    p = profile(frame())
    again = DatasetProfile.from_dict(json.loads(json.dumps(p.to_dict(), allow_nan=False)))
    assert again == p


@pytest.mark.slow
def test_a_million_rows_are_profiled_and_hashed_quickly() -> None:
    import time

    n = 1_000_000
    rng = np.random.default_rng(0)
    table = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "i": rng.integers(0, 1000, n),
            "s": rng.choice([f"k{i}" for i in range(500)], n),
            "t": pd.date_range("2000-01-01", periods=n, freq="min"),
        }
    )
    start = time.perf_counter()
    fingerprint(table)
    profile(table)
    assert time.perf_counter() - start < 10  # about 0.5 s on one free core
