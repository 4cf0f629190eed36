"""``conveyor train`` as a subprocess: the top trials and best parameters, a rerun that runs
no trial, and bad flags refused (exit 2) before anything runs."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

RESOURCES = Path(__file__).resolve().parents[1] / "resources"
Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def files(tmp_path: Path) -> Path:
    from sklearn.datasets import load_breast_cancer

    shutil.copy(RESOURCES / "trained.py", tmp_path / "trained.py")
    load_breast_cancer(as_frame=True).frame.to_csv(tmp_path / "bc.csv", index=False)
    (tmp_path / "empty.csv").write_bytes(b"")
    (tmp_path / "header.csv").write_text("mean radius,target\n")
    (tmp_path / "garbled.csv").write_bytes(b'\x00\xff"a,b\n"1,2,3\n\x00')
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
        (["--input", "bc.csv", "--workers", "-1"], "--workers -1: give 0 (inline) or more"),
        (["--input", "empty.csv"], "--input 'empty.csv' is empty; give a table with a header"),
        (["--input", "header.csv"], "--input 'header.csv' has no rows (only a header); give"),
        (["--input", "garbled.csv"], "--input 'garbled.csv' could not be read: Error tokenizing"),
    ],
)
def test_bad_flags_exit_2(cli: Cli, files: Path, args: list[str], message: str) -> None:
    result = cli("train", "trained.py", *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1  # one line
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


def test_a_pipeline_without_a_model_exits_2(cli: Cli, files: Path) -> None:
    result = cli("train", str(RESOURCES / "good_pipeline.py"), "--input", "bc.csv")
    assert result.returncode == 2
    assert (
        result.stderr
        == "error: pipeline 'good' has no @pipe.model; decorate 'def fit(train, params)'\n"
    )
    assert not (files / ".conveyor" / "conveyor.db").exists()


@pytest.mark.slow
def test_failed_trials_are_dead_letters_with_their_message(cli: Cli, files: Path) -> None:
    cases = str(RESOURCES / "trial_cases.py")
    env = {"CONVEYOR_TEST_CASE": "raise"}  # fit raises when intercept is False
    result = cli("train", cases, "--input", "bc.csv", "--workers", "2", "--seed", "3", env=env)
    assert result.returncode == 1, result.stderr  # completed with failed units
    failed = int(re.search(r"6 trials \(6 run now, 0 from the ledger, (\d) failed, 0 pruned\)",
                           result.stdout)[1])  # type: ignore[index]  # fmt: skip
    assert 0 < failed < 6 and "best params: C=" in result.stdout
    assert "intercept=True" in result.stdout
    assert f"{failed} failed trial(s), dead-lettered in run" in result.stderr
    dead = json.loads(cli("dlq", "list", "--json").stdout)
    assert len(dead) == failed
    assert all(u["step"] == "trial" and u["attempts"] == 2 for u in dead)  # retries=1
    assert all(u["error_message"].startswith("no intercept today (C=") for u in dead)
    listed = cli("dlq", "list").stdout
    assert "ValueError: no intercept today" in listed
    assert "no intercept today" in cli("errors").stdout
    [group] = json.loads(cli("errors", "--json").stdout)["groups"]
    assert group["count"] == failed and group["error_type"] == "ValueError"
    assert group["message"].startswith("no intercept today")


TRIAL_UNITS = "SELECT id, state, attempts, fence, finished_at FROM units WHERE step = 'trial'"


def _ledger(files: Path, statement: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(files / ".conveyor" / "conveyor.db", timeout=10)) as db:
        return db.execute(statement).fetchall()


def _kill_mid_study(files: Path, command: list[str], env: dict[str, str], done: int) -> None:
    """Start ``command`` in a session of its own, SIGKILL it once ``done`` trials finished
    (read from its ledger), then kill its workers if they linger (that session only)."""
    proc = subprocess.Popen(command, cwd=files, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                finished = _ledger(files, f"{TRIAL_UNITS} AND state = 'done'")
            except sqlite3.OperationalError:
                finished = []  # the ledger is not there yet
            if len(finished) >= done:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the study ended before it could be killed"
        assert len(finished) >= done, "no trials finished in time"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # worker processes left of the killed session


@pytest.mark.slow
@pytest.mark.parametrize("again", ["train", "resume"])
def test_a_killed_train_continues_and_reruns_no_finished_trial(
    cli: Cli, files: Path, again: str
) -> None:
    log = files / "fits.log"  # one line per execution of fit, by the workers
    extra = {"CONVEYOR_TEST_FIT_SLEEP": "0.3", "CONVEYOR_TEST_FIT_LOG": str(log)}
    env = {**os.environ, **extra}
    args = ["train", str(RESOURCES / "trial_cases.py"), "--input", "bc.csv", "--trials", "10",
            "--workers", "2"]  # fmt: skip
    _kill_mid_study(files, [sys.executable, "-m", "conveyor", *args], env, done=3)
    before = {row[0]: row for row in _ledger(files, TRIAL_UNITS)}
    finished = {unit: row for unit, row in before.items() if row[1] == "done"}
    in_flight = {unit for unit, row in before.items() if row[1] == "running"}
    assert 3 <= len(finished) < 10
    ran_before = log.read_text().splitlines()

    continued = cli(*args, env=extra) if again == "train" else cli("resume", env=extra)
    assert continued.returncode == 0, continued.stderr
    after = {row[0]: row for row in _ledger(files, TRIAL_UNITS)}
    assert len(after) == 10 and all(row[1] == "done" for row in after.values())
    for unit, row in finished.items():
        assert after[unit] == row  # same attempts, same lease fence, same finish: not rerun
    for unit in in_flight:
        # leased again (its fence moved on); the lease the kill lost is not counted as an attempt
        assert after[unit][3] > before[unit][3] and after[unit][2] == before[unit][2]
    assert _ledger(files, "SELECT count(*) FROM runs") == [(1,)]  # the killed run adopted
    ran = log.read_text().splitlines()
    assert len(ran) - len(ran_before) == 10 - len(finished)  # only the unfinished trials ran
    assert 10 <= len(ran) <= 10 + len(in_flight)

    rerun = cli(*args, "--json", env=extra)
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads(rerun.stdout)
    assert report["computed"] == 0 and len(report["trials"]) == 10 and report["failed"] == 0
    assert [t["number"] for t in report["trials"]] == list(range(10))
    assert len(log.read_text().splitlines()) == len(ran)  # the rerun ran no fit
