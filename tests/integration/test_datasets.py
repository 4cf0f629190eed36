"""Dataset versions in the ledger on every backend (SQLite and PostgreSQL), and building them:
each version and each Parquet copy kept once, checks reported all at once, a failed check
raising DataCheckFailed after the version is recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import conveyor as cv
from conveyor.errors import DataCheckFailed, DatasetNotFound, InputError, UsageError
from conveyor.ml.artifacts import ArtifactStore
from conveyor.ml.builds import artifacts_beside, build_dataset
from conveyor.store import Store


def record(ledger: Store, version: str, **overrides: Any) -> bool:
    values: dict[str, Any] = {
        "name": "weather", "version": version, "pipeline": "rain", "code_version": "c1",
        "rows": 3, "columns": 1, "schema": {"t": "float"}, "profile": {"rows": 3},
        "report": {"rows": 3, "checks": 0, "failures": []}, "changes": [],
        "artifact": f"/a/{version}.parquet",
    }  # fmt: skip
    return ledger.record_dataset(**{**values, **overrides})


def test_versions_are_recorded_once_and_the_latest_built_comes_first(ledger: Store) -> None:
    assert ledger.dataset_names() == []
    assert record(ledger, "aa11" + "0" * 60) is True
    assert record(ledger, "bb22" + "0" * 60, rows=5, changes=[{"kind": "added"}]) is True
    assert ledger.get_dataset("weather")["version"].startswith("bb22")
    again = {"rows": 3, "checks": 1, "failures": [{"severity": "warn"}]}
    assert record(ledger, "aa11" + "0" * 60, report=again) is False  # unchanged: not stored twice
    versions = ledger.dataset_versions("weather")
    assert [v["version"][:4] for v in versions] == ["aa11", "bb22"]
    latest = ledger.get_dataset("weather")
    assert latest["report"] == again and latest["schema"] == {"t": "float"}
    assert latest["seen_at"] >= latest["created_at"]
    assert ledger.get_dataset("weather", "bb")["rows"] == 5
    assert ledger.get_dataset("weather", "bb")["changes"] == [{"kind": "added"}]
    assert ledger.dataset_names() == ["weather"]


def test_unknown_and_ambiguous_versions_are_clear_errors(ledger: Store) -> None:
    with pytest.raises(DatasetNotFound, match=r"no dataset 'weather'.*conveyor datasets build"):
        ledger.get_dataset("weather")
    record(ledger, "ab11" + "0" * 60)
    record(ledger, "ab22" + "0" * 60)
    with pytest.raises(UsageError, match="'ab' is the start of several versions"):
        ledger.get_dataset("weather", "ab")
    with pytest.raises(DatasetNotFound, match="has no version 'ff'"):
        ledger.get_dataset("weather", "ff")


def _pipeline(frame: dict[str, pd.DataFrame]) -> cv.Pipeline:
    pipe = cv.Pipeline("rain")

    @pipe.dataset(
        checks=[cv.checks.no_nulls("t"), cv.checks.between("t", -30, 50),
                cv.checks.unique("day", severity="warn")]
    )  # fmt: skip
    def weather() -> pd.DataFrame:
        return frame["now"]

    return pipe


def test_a_build_is_versioned_stored_once_and_compared(ledger: Store, tmp_path: Path) -> None:
    frame = {"now": pd.DataFrame({"day": [1, 2, 3, 4], "t": [1.0, 2.0, 3.0, 4.0]})}
    pipe, artifacts = _pipeline(frame), ArtifactStore(tmp_path / "artifacts")
    first = build_dataset(pipe, "weather", ledger, artifacts)
    assert first.new and first.previous is None and first.report.ok and first.rows == 4
    again = build_dataset(pipe, "weather", ledger, artifacts)
    assert again.version == first.version and not again.new
    parquet = list((tmp_path / "artifacts").rglob("*.parquet"))
    assert [p.name[:10] for p in parquet] == [first.version[2:12]]  # one copy
    frame["now"] = pd.DataFrame({"day": [1, 2], "t": [1.0, 2.0], "wind": ["n", "s"]})
    second = build_dataset(pipe, "weather", ledger, artifacts)
    assert second.previous == first.version
    assert (second.changes[0].kind, second.changes[0].column) == ("added", "wind")
    stored = ledger.get_dataset("weather")
    assert stored["version"] == second.version and stored["changes"][0]["kind"] == "added"
    assert artifacts.open_table(second.version).num_rows == 2
    assert len(list((tmp_path / "artifacts").rglob("*.parquet"))) == 2


def test_a_failed_check_is_recorded_then_raised(ledger: Store, tmp_path: Path) -> None:
    bad = pd.DataFrame({"day": [1, 1, 2, 3], "t": [1.0, None, 99.0, 4.0]})
    pipe, artifacts = _pipeline({"now": bad}), ArtifactStore(tmp_path)
    with pytest.raises(DataCheckFailed) as info:
        build_dataset(pipe, "weather", ledger, artifacts)
    message, error = str(info.value), info.value
    assert error.exit_code == 2 and error.dataset == "weather"
    assert "2 errors, 1 warning" in message
    assert "ERROR no_nulls column 't': 1 rows (25.00%) are null" in message
    assert "ERROR between column 't': 1 rows (25.00%) are outside [-30, 50]" in message
    assert "row 2: {'day': 2, 't': 99.0}" in message and "WARN  unique column 'day'" in message
    stored = ledger.get_dataset("weather")
    assert stored["version"] == error.version
    assert [f["check"] for f in stored["report"]["failures"]] == ["no_nulls", "between", "unique"]
    build = build_dataset(pipe, "weather", ledger, artifacts, raise_on_failure=False)
    assert not build.report.ok and len(build.report.warnings) == 1


def test_a_warning_alone_does_not_stop_the_build(ledger: Store, tmp_path: Path) -> None:
    dup = pd.DataFrame({"day": [1, 1], "t": [1.0, 2.0]})
    build = build_dataset(_pipeline({"now": dup}), "weather", ledger, ArtifactStore(tmp_path))
    assert build.report.ok and [w.check for w in build.report.warnings] == ["unique"]


@pytest.mark.parametrize(
    ("returned", "expected"),
    [
        (ZeroDivisionError("division by zero"), "raised ZeroDivisionError: division by zero"),
        ([1, 2], "must be a pandas DataFrame or a pyarrow Table, not list"),
        (pd.DataFrame({"t": []}), "returned an empty table"),
    ],
)
def test_a_function_that_gives_no_table_is_an_input_error(
    ledger: Store, tmp_path: Path, returned: object, expected: str
) -> None:
    pipe = cv.Pipeline("rain")

    @pipe.dataset
    def weather() -> Any:
        if isinstance(returned, Exception):
            raise returned
        return returned

    with pytest.raises(InputError, match="dataset 'weather'") as info:
        build_dataset(pipe, "weather", ledger, ArtifactStore(tmp_path))
    assert expected in str(info.value)
    if isinstance(returned, Exception):
        assert info.value.__cause__ is returned
    assert ledger.dataset_names() == []


def test_an_unknown_dataset_and_the_default_artifact_folder(ledger: Store, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="has no dataset 'nope'"):
        build_dataset(cv.Pipeline("rain"), "nope", ledger, ArtifactStore(tmp_path))
    beside = artifacts_beside(str(tmp_path / "ledger" / "conveyor.db"))
    assert beside.location == str(tmp_path / "ledger" / "artifacts")
    assert artifacts_beside("postgresql://x@h/db").location.endswith(".conveyor/artifacts")
