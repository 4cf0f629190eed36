"""``conveyor train`` as a subprocess: the top trials and best parameters, a rerun that runs
no trial, and bad flags refused (exit 2) before anything runs."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

RESOURCES = Path(__file__).resolve().parents[1] / "resources"
Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def files(tmp_path: Path) -> Path:
    from sklearn.datasets import load_breast_cancer

    shutil.copy(RESOURCES / "trained.py", tmp_path / "trained.py")
    load_breast_cancer(as_frame=True).frame.to_csv(tmp_path / "bc.csv", index=False)
    return tmp_path


@pytest.mark.slow
def test_train_prints_the_top_trials_and_a_rerun_runs_none(cli: Cli, files: Path) -> None:
    first = cli("train", "trained.py", "--input", "bc.csv", "--trials", "4", "--workers", "2")
    assert first.returncode == 0, first.stderr
    assert "4 trials (4 run now, 0 from the ledger, 0 failed)" in first.stdout
    assert "top trials" in first.stdout and "best params: C=" in first.stdout
    again = cli("train", "trained.py", "--input", "bc.csv", "--trials", "4", "--json")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["computed"] == 0 and len(report["trials"]) == 4
    assert report["best"]["params"]["C"] > 0 and report["lineage"]["format"] == "cloudpickle"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--input", "bc.csv", "--trials", "0"], "--trials 0: give at least 1 trial"),
        ([], "--input is required"),
        (["--input", "missing.csv"], "no such file"),
        (["--input", "bc.csv", "--model", "nope"], "no model 'nope'"),
    ],
)
def test_bad_flags_exit_2(cli: Cli, files: Path, args: list[str], message: str) -> None:
    result = cli("train", "trained.py", *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not (files / ".conveyor" / "conveyor.db").exists()
