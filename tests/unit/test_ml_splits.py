"""Deterministic splits: by a stable hash of the id or the row, or by time cut-offs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from conveyor.errors import DefinitionError, InputError
from conveyor.ml.splits import assign, row_hashes, split, split_by_time


def table(n: int = 2_000) -> pd.DataFrame:
    return pd.DataFrame({"id": [f"user-{i}" for i in range(n)], "x": np.arange(n) * 0.5})


def test_shares_are_about_right_and_every_row_lands_once() -> None:
    parts = split(table(), id_column="id")
    assert list(parts) == ["train", "valid", "golden"]
    sizes = {k: len(v) for k, v in parts.items()}
    assert sum(sizes.values()) == 2_000
    assert abs(sizes["train"] / 2_000 - 0.7) < 0.05
    together = pd.concat(parts.values()).sort_index()
    assert together.equals(table())  # pandas keeps the index: rows can be traced back


def test_the_split_is_pinned_so_a_change_of_hashing_is_caught() -> None:
    # on any machine and version; a change here would move rows between train and golden
    assert assign(table(8), {"a": 0.5, "b": 0.5}, "id").tolist() == [0, 0, 0, 1, 0, 0, 0, 0]
    assert row_hashes(pd.DataFrame({"i": [1]}), "i")[0] == np.uint64(5715396625810474150)


def test_text_is_hashed_with_standard_fnv1a() -> None:
    from conveyor.ml.splits import _fnv

    hashes = _fnv(pa.array(["a", "foobar"], pa.large_string()))  # the published test vectors
    assert [hex(h) for h in hashes.tolist()] == ["0xaf63dc4c8601ec8c", "0x85944171f73967e8"]


def test_row_order_and_pandas_or_arrow_do_not_change_a_rows_place() -> None:
    df = table()
    where = dict(zip(df["id"], assign(df, {"a": 0.5, "b": 0.5}, "id"), strict=True))
    shuffled = df.sample(frac=1.0, random_state=3)
    again = dict(zip(shuffled["id"], assign(shuffled, {"a": 0.5, "b": 0.5}, "id"), strict=True))
    assert where == again
    arrow = pa.Table.from_pandas(df, preserve_index=False)
    assert (
        assign(arrow, {"a": 0.5, "b": 0.5}, "id") == assign(df, {"a": 0.5, "b": 0.5}, "id")
    ).all()


def test_an_int_id_that_turns_float_keeps_its_place() -> None:
    ints = pd.DataFrame({"id": [1, 2, 3]})
    floats = pd.DataFrame({"id": [1.0, 2.0, 3.0, np.nan]})
    assert (row_hashes(ints, "id") == row_hashes(floats, "id")[:3]).all()
    arrow = pa.table({"id": pa.array([1, 2, None], pa.int32())})
    assert (row_hashes(arrow, "id") == row_hashes(pd.DataFrame({"id": [1, 2, None]}), "id")).all()


def test_without_an_id_the_content_decides_and_equal_rows_go_together() -> None:
    df = pd.DataFrame({"a": [1, 1, 2] * 50, "b": ["x", "x", "y"] * 50})
    where = assign(df, {"a": 0.5, "b": 0.5})
    for value in (1, 2):
        assert len(set(where[df["a"] == value])) == 1
    assert (row_hashes(df) != row_hashes(df[["b", "a"]])).any()  # column order counts


def test_a_salt_gives_another_split_and_an_arrow_table_stays_arrow() -> None:
    arrow = pa.Table.from_pandas(table(), preserve_index=False)
    parts = split(arrow, {"a": 0.5, "b": 0.5}, "id", salt="second")
    assert isinstance(parts["a"], pa.Table)
    assert (assign(arrow, {"a": 0.5, "b": 0.5}, "id") != assign(arrow, {"a": 0.5, "b": 0.5}, "id",
                                                                 salt="s")).any()  # fmt: skip


def test_text_of_any_length_hashes_and_unicode_counts() -> None:
    df = pd.DataFrame({"t": ["", "é", "e", "a" * 500, None]})
    hashes = row_hashes(df, "t")
    assert len(set(hashes.tolist())) == 5


@pytest.mark.parametrize(
    ("shares", "message"),
    [
        ({}, "shares must be a mapping"),
        ({"train": 0.7, "valid": 0.2}, "add up to 0.9, not 1"),
        ({"train": 1.2, "valid": -0.2}, "share of 'valid' must be a number > 0"),
        ({"train": True}, "share of 'train' must be a number > 0"),
        ({"": 1.0}, "split name must be a non-empty string"),
        ({"train": float("nan"), "valid": 1.0}, "must be a number > 0"),
    ],
)
def test_bad_shares(shares: dict[str, float], message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        split(table(), shares)


def test_unknown_id_column_and_non_table() -> None:
    with pytest.raises(InputError, match="no id column 'nope'"):
        split(table(), id_column="nope")
    with pytest.raises(InputError, match="not list"):
        split([1, 2])  # type: ignore[arg-type]


def test_an_empty_table_splits_into_empty_tables() -> None:
    parts = split(table(0))
    assert all(len(p) == 0 for p in parts.values())


def test_by_time_with_cut_offs() -> None:
    df = pd.DataFrame({"day": pd.date_range("1990-01-01", periods=10, freq="YS"), "v": range(10)})
    parts = split_by_time(df, "day", {"train": "1995-01-01", "valid": "1997-01-01", "golden": None})
    assert [p["v"].tolist() for p in parts.values()] == [[0, 1, 2, 3, 4], [5, 6], [7, 8, 9]]
    zoned = df.assign(day=df["day"].dt.tz_localize("UTC"))
    arrow = pa.Table.from_pandas(zoned, preserve_index=False)
    again = split_by_time(arrow, "day", {"train": "1995-01-01", "rest": None})
    assert again["train"].num_rows == 5
    years = split_by_time(df.assign(y=df["day"].dt.year), "y", {"old": 1995, "new": None})
    assert len(years["old"]) == 5


def test_by_time_refuses_bad_cut_offs_and_missing_times() -> None:
    df = pd.DataFrame({"day": pd.to_datetime(["2020-01-01", None]), "s": ["a", "b"]})
    with pytest.raises(InputError, match="1 rows have no value in 'day'"):
        split_by_time(df, "day", {"a": "2020-06-01", "b": None})
    good = df.dropna()
    with pytest.raises(DefinitionError, match="only the last split has no cut-off"):
        split_by_time(good, "day", {"a": None, "b": "2020-01-01"})
    with pytest.raises(DefinitionError, match="cut-offs must increase"):
        split_by_time(good, "day", {"a": "2021-01-01", "b": "2020-01-01", "c": None})
    with pytest.raises(InputError, match="neither times nor numbers"):
        split_by_time(good, "s", {"a": "x", "b": None})
    with pytest.raises(InputError, match="no column 'when'"):
        split_by_time(good, "when", {"a": "2020-01-01", "b": None})
