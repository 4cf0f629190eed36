"""The prices example end to end, as a person runs it: prepare the Gapminder table, train one
model per country with ``conveyor train --group-by country``, load the model set, rerun."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from conveyor.ml.groups import load_model_set

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "prices"
Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.mark.slow
def test_one_model_per_country_then_a_rerun_fits_none(cli: Cli, tmp_path: Path) -> None:
    pytest.importorskip("bokeh_sampledata")
    prepared = subprocess.run(
        [sys.executable, str(EXAMPLE / "prepare.py"), "data"], cwd=tmp_path,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert prepared.returncode == 0, prepared.stderr
    assert "202 countries" in prepared.stdout
    args = ("train", str(EXAMPLE / "pipeline.py"), "--input", "data/gapminder.parquet",
            "--group-by", "country", "--workers", "2")  # fmt: skip
    first = cli(*args)
    assert first.returncode == 0, first.stderr
    assert "202 groups trained, 0 failed" in first.stdout
    assert "mae on valid (minimize): median" in first.stdout

    again = cli(*args, "--json")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["computed"] == 0 and report["trained"] == 202
    models = load_model_set(tmp_path / ".conveyor" / "artifacts", report["model_set"])
    assert models.complete and len(models) == 202
    import pandas as pd

    table = pd.read_parquet(tmp_path / "data" / "gapminder.parquet")
    spec = importlib.util.spec_from_file_location("prices_example", EXAMPLE / "pipeline.py")
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    features = example.features

    japan = table[table.country == "Japan"]
    predicted = models.model(models.group_id(country="Japan")).predict(features(japan))
    assert abs(predicted - japan["life_expectancy"].to_numpy()).mean() < 2.0  # years
    assert models["country=Japan"]["metrics"]["mae"] < 2.0
