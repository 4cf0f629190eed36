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
    assert "4 trials (4 run now, 0 from the ledger, 0 failed, 0 pruned)" in first.stdout
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
        ([], "give --input FILE, or define a @pipe.dataset"),
        (["--input", "missing.csv"], "no such file"),
        (["--input", "bc.csv", "--model", "nope"], "no model 'nope'"),
        (["--input", "bc.csv", "--split", "train=0.7"], "the shares add up to 0.7, not 1"),
        (["--input", "bc.csv", "--split", "train"], "give name=value pairs"),
        (["--input", "bc.csv", "--split", "train=a,valid=b"], "'a' is not a number"),
        (["--input", "bc.csv", "--cutoffs", "train=3"], "--cutoffs needs --time-column"),
        (["--input", "bc.csv", "--time-column", "x"], "needs --cutoffs"),
        (
            ["--input", "bc.csv", "--time-column", "nope", "--cutoffs", "train=1,valid=2"],
            "no column 'nope'",
        ),
        (["--input", "bc.csv", "--executor", "rey"], "--executor 'rey': must be one of"),
        (["--input", "bc.csv", "--dataset", "d"], "--input and --dataset both name the data"),
        (["--input", "bc.csv", "--id-field", "nope"], "no id column 'nope'"),
    ],
)
def test_bad_flags_exit_2(cli: Cli, files: Path, args: list[str], message: str) -> None:
    result = cli("train", "trained.py", *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not (files / ".conveyor" / "conveyor.db").exists()


@pytest.mark.slow
def test_train_on_a_checked_dataset_and_a_failed_check_stops_it(cli: Cli, tmp_path: Path) -> None:
    shutil.copy(RESOURCES / "trained_data.py", tmp_path / "trained_data.py")
    broken = cli("train", "trained_data.py", env={"CONVEYOR_TEST_BREAK_DATA": "1"})
    assert broken.returncode == 2, broken.stderr
    assert "dataset 'cancer'" in broken.stderr and "failed its checks" in broken.stderr
    assert "mean radius" in broken.stderr and "Traceback" not in broken.stderr
    assert "trial 0" not in broken.stderr  # no trial ran

    result = cli("train", "trained_data.py", "--time-column", "day", "--cutoffs",
                 "train=400,valid=500", "--trials", "3", "--workers", "2")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "data: dataset cancer version" in result.stdout
    assert "golden split pinned" in result.stdout and "(69 rows)" in result.stdout
    assert "trial 2:" in result.stderr and "best" in result.stderr  # progress, one line a trial
    listed = cli("datasets", "list", "--json")
    assert json.loads(listed.stdout)[0]["name"] == "cancer"
