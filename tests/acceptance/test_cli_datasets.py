"""``conveyor datasets`` as a user runs it, in a subprocess: build (new, unchanged, changed),
list, show, diff, ``--json``, a failing check (exit 2, the report, no traceback) and bad input."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

Cli = Callable[..., subprocess.CompletedProcess[str]]

PIPELINE = str(Path(__file__).resolve().parents[1] / "resources" / "dataset_pipeline.py")
GOOD = "day,temperature,rain\n1,10.5,0\n2,12.0,1\n3,9.5,0\n4,11,1\n"
CHANGED = "day,temperature,rain,wind\n1,10.5,0,n\n2,12.0,1,s\n3,9.5,0,n\n"
BAD = "day,temperature,rain\n1,10.5,0\n2,12.0,1\n2,99,0\n4,,1\n"


@pytest.fixture
def weather(tmp_path: Path) -> Callable[[str], dict[str, str]]:
    def write(text: str) -> dict[str, str]:
        path = tmp_path / "weather.csv"
        path.write_text(text, encoding="utf-8")
        return {"WEATHER_CSV": str(path)}

    return write


def test_build_list_show_and_diff(cli: Cli, weather: Callable[[str], dict[str, str]],
                                  tmp_path: Path) -> None:  # fmt: skip
    first = cli("datasets", "build", PIPELINE, env=weather(GOOD))
    assert first.returncode == 0, first.stderr
    assert "dataset weather version" in first.stdout and "(new): 4 rows, 3 columns" in first.stdout
    assert "dataset stations version" in first.stdout and "checks: ok (4)" in first.stdout
    again = cli("datasets", "build", PIPELINE, "weather", "--json", env=weather(GOOD))
    [unchanged] = json.loads(again.stdout)
    assert unchanged["new"] is False and unchanged["ok"] is True
    parquet = list((tmp_path / ".conveyor" / "artifacts").rglob("*.parquet"))
    assert len(parquet) == 2  # weather and stations, each once
    changed = cli("datasets", "build", PIPELINE, "weather", env=weather(CHANGED))
    assert changed.returncode == 0, changed.stderr
    assert (
        "changes since" in changed.stdout and "column 'wind' (string) was added" in changed.stdout
    )

    listed = cli("datasets", "list")
    assert listed.returncode == 0 and "stations" in listed.stdout and "weather" in listed.stdout
    versions = json.loads(cli("datasets", "list", "weather", "--json").stdout)
    assert [v["rows"] for v in versions] == [3, 4]
    new, old = versions[0]["version"], versions[1]["version"]

    shown = cli("datasets", "show", "weather", old[:8])
    assert shown.returncode == 0, shown.stderr
    assert f"version {old}" in shown.stdout and "temperature" in shown.stdout
    assert "float" in shown.stdout and "checks: ok (4)" in shown.stdout
    record = json.loads(cli("datasets", "show", "weather", "--json").stdout)
    assert record["version"] == new and record["schema"]["wind"] == "string"
    assert record["profile"]["columns"][1]["name"] == "temperature"

    diffed = cli("datasets", "diff", "weather", old[:8], new[:8])
    assert diffed.returncode == 0, diffed.stderr
    assert "4 rows) →" in diffed.stdout and "added" in diffed.stdout
    as_json = json.loads(cli("datasets", "diff", "weather", old, new, "--json").stdout)
    assert [c["kind"] for c in as_json["changes"]] == ["added"]


def test_a_failing_check_exits_2_with_the_report(
    cli: Cli, weather: Callable[[str], dict[str, str]], tmp_path: Path
) -> None:
    result = cli("datasets", "build", PIPELINE, "weather", env=weather(BAD))
    assert result.returncode == 2
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr.startswith("error: dataset 'weather'")
    assert "ERROR no_nulls column 'temperature': 1 rows (25.00%) are null" in result.stderr
    assert "ERROR between column 'temperature'" in result.stderr
    assert "row 2: {'day': 2, 'temperature': 99.0, 'rain': 0}" in result.stderr
    assert "WARN  unique column 'day'" in result.stderr
    assert "ERROR" in result.stdout and "between" in result.stdout  # the checks table
    shown = json.loads(cli("datasets", "show", "weather", "--json").stdout)  # recorded anyway
    assert len(shown["report"]["failures"]) == 3


def test_flags_come_from_the_environment_too(
    cli: Cli, weather: Callable[[str], dict[str, str]], tmp_path: Path
) -> None:
    env = {**weather(GOOD), "CONVEYOR_STORE": str(tmp_path / "l" / "x.db"),
           "CONVEYOR_ARTIFACTS": str(tmp_path / "arts")}  # fmt: skip
    assert cli("datasets", "build", PIPELINE, "stations", env=env).returncode == 0
    assert len(list((tmp_path / "arts").rglob("*.parquet"))) == 1
    assert "stations" in cli("datasets", "list", env=env).stdout


def _error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("error: ")
    return line


def test_bad_input_is_one_clear_line(cli: Cli, weather: Callable[[str], dict[str, str]],
                                     tmp_path: Path) -> None:  # fmt: skip
    assert "no ledger" in _error_line(cli("datasets", "list"))
    missing = cli("datasets", "build", PIPELINE, "weather", env={"WEATHER_CSV": "nope.csv"})
    line = _error_line(missing)
    assert "dataset 'weather'" in line and "raised FileNotFoundError" in line
    assert "fix the function" in line
    assert "has no dataset 'rain'" in _error_line(
        cli("datasets", "build", PIPELINE, "rain", env=weather(GOOD))
    )
    cli("datasets", "build", PIPELINE, "stations")
    assert "no dataset 'weather'" in _error_line(cli("datasets", "show", "weather"))
    assert "has no version 'ff'" in _error_line(cli("datasets", "show", "stations", "ff"))
    steps_only = str(Path(__file__).resolve().parents[1] / "resources" / "good_pipeline.py")
    assert "has no datasets" in _error_line(cli("datasets", "build", steps_only))
