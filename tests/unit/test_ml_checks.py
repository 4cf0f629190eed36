"""Data quality checks: validated when built, every failure reported at once."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from conveyor.errors import DefinitionError, InputError
from conveyor.ml import checks
from conveyor.ml.report import CheckReport


def table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [1, 2, 2, 4, 5],
            "temp": [1.0, np.nan, 9.0, -7.0, 0.5],
            "kind": ["a", "b", "z", None, "a"],
            "day": pd.to_datetime(["2020-01-01", "2020-01-02", "2020-01-03", "2020-01-04", None]),
        }
    )


def test_every_failure_is_reported_at_once() -> None:
    report = checks.run_checks(
        table(),
        [
            checks.no_nulls(),
            checks.between("temp", -6, 6),
            checks.allowed("kind", ["a", "b"]),
            checks.unique("id"),
            checks.rows(min=10),
            checks.dtypes({"id": "int", "kind": "float", "missing": "int"}),
        ],
    )
    found = [(f.check, f.column, f.failing) for f in report.failed]
    assert found == [
        ("no_nulls", "temp", 1),
        ("no_nulls", "kind", 1),
        ("no_nulls", "day", 1),
        ("between", "temp", 2),
        ("allowed", "kind", 1),
        ("unique", "id", 2),
        ("rows", None, None),
        ("dtypes", "missing", None),
        ("dtypes", "kind", None),
    ]
    assert not report.ok and report.checks == 6 and report.rows == 5
    between = report.failed[3]
    assert between.share == pytest.approx(0.4)
    assert between.rows == (2, 3)
    assert between.examples[0] == {"id": 2, "temp": 9.0, "kind": "z", "day": "2020-01-03T00:00:00"}
    text = report.describe()
    assert text.startswith("6 checks on 5 rows: 9 errors, 0 warnings")
    assert "between column 'temp': 2 rows (40.00%) are outside [-6, 6]" in text
    assert "the table has 5 rows, needs at least 10" in text


def test_a_passing_table_and_an_arrow_table() -> None:
    good = pa.table({"x": [1, 2, 3]})
    report = checks.run_checks(good, [checks.no_nulls(), checks.between("x", 0, None),
                                      checks.schema({"x": "number"})])  # fmt: skip
    assert report.ok and report.failures == ()
    assert report.describe() == "3 checks on 3 rows: 0 errors, 0 warnings"


def test_warnings_are_reported_and_do_not_fail() -> None:
    report = checks.run_checks(table(), [checks.unique("id", severity="warn")])
    assert report.ok and len(report.warnings) == 1
    assert report.warnings[0].describe().startswith("WARN  unique column 'id': 2 rows")


def test_no_nulls_with_a_tolerated_share_and_named_columns() -> None:
    assert checks.run_checks(table(), [checks.no_nulls("temp", tolerance=0.25)]).ok
    report = checks.run_checks(table(), [checks.no_nulls(["temp", "id"], tolerance=0.1)])
    assert [f.column for f in report.failed] == ["temp"]


def test_between_on_times_and_one_sided() -> None:
    report = checks.run_checks(table(), [checks.between("day", high="2020-01-02"),
                                         checks.between("temp", low=0)])  # fmt: skip
    assert [(f.column, f.failing) for f in report.failed] == [("day", 2), ("temp", 1)]


def test_a_check_on_the_wrong_kind_of_column_is_a_failure_not_a_crash() -> None:
    report = checks.run_checks(table(), [checks.between("kind", 0, 1), checks.unique("nope")])
    assert "cannot compare" in report.failed[0].message
    assert (
        report.failed[1].message == "column 'nope' is not in the table (it has id, temp, kind, day)"
    )


def test_unique_over_several_columns() -> None:
    df = pd.DataFrame({"a": [1, 1, 1], "b": ["x", "y", "x"]})
    report = checks.run_checks(df, [checks.unique("a", "b")])
    assert report.failed[0].column == "a,b" and report.failed[0].rows == (0, 2)


def test_custom_checks_by_row_by_table_and_broken() -> None:
    def positive(df: pd.DataFrame) -> pd.Series:
        return df["temp"] > 0

    def broken(df: pd.DataFrame) -> bool:
        raise ValueError("no")

    report = checks.run_checks(table(), [
        checks.custom(positive),
        checks.custom(lambda df: len(df) > 10, name="big"),
        checks.custom(broken),
        checks.custom(lambda df: "yes", name="odd"),
    ])  # fmt: skip
    messages = [(f.check, f.message) for f in report.failed]
    assert messages[0] == ("positive", "2 rows (40.00%) fail it")
    assert messages[1] == ("big", "the check returned False")
    assert messages[2] == ("broken", "the check raised ValueError: no")
    assert messages[3][1].startswith("the check returned str; return True/False")


def test_dtypes_strict_schema_names_extra_columns() -> None:
    report = checks.run_checks(table(), [checks.schema({"id": "int", "temp": "float"})])
    assert [f.message for f in report.failed] == [
        "column 'kind' is not in the schema",
        "column 'day' is not in the schema",
    ]
    mixed = pd.DataFrame({"m": [1, "a"]})
    assert checks.run_checks(mixed, [checks.dtypes({"m": "int"})]).failed[0].message == (
        "column 'm' is mixed, not int"
    )


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: checks.no_nulls(tolerance=1.5), "no_nulls: tolerance is a share"),
        (lambda: checks.no_nulls([""]), "no_nulls: column names must be non-empty"),
        (lambda: checks.between("x"), "between: give low, high or both"),
        (lambda: checks.between("x", 5, 1), "between: low .5. is above high .1.; swap them"),
        (lambda: checks.between("x", float("nan"), 1), "between: a bound is NaN"),
        (lambda: checks.between(3, 0, 1), "between: the column must be a non-empty string"),
        (lambda: checks.allowed("x", "abc"), "allowed: values must be a list"),
        (lambda: checks.allowed("x", []), "allowed: values is empty"),
        (lambda: checks.unique(), "unique: name the column"),
        (lambda: checks.rows(), "rows: give min, max or both"),
        (lambda: checks.rows(min=-1), "rows: min must be a whole number >= 0"),
        (lambda: checks.rows(min=5, max=2), r"rows: min \(5\) is above max \(2\)"),
        (lambda: checks.dtypes({"x": "integer"}), "dtypes: column 'x' has unknown type 'integer'"),
        (lambda: checks.dtypes({}), "dtypes: give a mapping"),
        (lambda: checks.custom(3), "custom: fn must be a function"),  # type: ignore[arg-type]
        (lambda: checks.custom(lambda df: True), "custom: a lambda needs a name"),
        (lambda: checks.rows(min=1, severity="fatal"), "rows: severity must be 'error' or 'warn'"),
    ],
)
def test_bad_arguments_fail_when_the_check_is_built(build: object, message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        build()  # type: ignore[operator]


def test_bad_checks_and_tables() -> None:
    with pytest.raises(DefinitionError, match=r"checks\[1\] is str, not a check"):
        checks.run_checks(table(), [checks.rows(min=1), "no_nulls"])
    with pytest.raises(InputError, match="not dict"):
        checks.run_checks({"a": [1]}, [checks.rows(min=1)])  # type: ignore[arg-type]


def test_an_empty_table_fails_a_row_count_and_nothing_divides_by_zero() -> None:
    empty = pd.DataFrame({"x": pd.Series([], dtype=float)})
    report = checks.run_checks(empty, [checks.rows(min=1), checks.no_nulls(), checks.unique("x")])
    assert [f.check for f in report.failed] == ["rows"]


def test_the_report_round_trips_through_json() -> None:
    report = checks.run_checks(table(), [checks.no_nulls(), checks.rows(max=2, severity="warn")])
    again = CheckReport.from_dict(json.loads(json.dumps(report.to_dict(), allow_nan=False)))
    assert again == report


def test_a_pandera_schema_is_a_check() -> None:
    pa_ = pytest.importorskip("pandera.pandas")
    schema = pa_.DataFrameSchema({"temp": pa_.Column(float, pa_.Check.in_range(-6, 6),
                                                     nullable=True)})  # fmt: skip
    report = checks.run_checks(table(), [schema])
    assert report.failed and report.failed[0].column == "temp"
