"""``conveyor worker``: more coordinators on one run's queue, through a shared ledger (SQLite on
one machine here, and PostgreSQL): no unit run twice, and a killed worker's leased units are
finished by the run's coordinator after the visibility timeout."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conveyor.store import open_store

PIPELINE = """
import time
import conveyor as cv
pipe = cv.Pipeline("shared")

@pipe.step
def slow(item: cv.Item) -> int:
    time.sleep(0.05)
    return item["n"] * 2
"""


def conveyor(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "conveyor", *args], cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_for_running_run(store: str, deadline: float = 30) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            ledger = open_store(store, create=False)
        except Exception:
            time.sleep(0.05)
            continue
        try:
            runs = ledger.list_runs(1)
            if runs and runs[0].planned and ledger.unfinished(runs[0].id) < 200:
                return
        finally:
            ledger.close()
        time.sleep(0.05)
    raise AssertionError("the run did not start")


def check_each_unit_done_once(store: str, units: int) -> None:
    ledger = open_store(store, create=False)
    try:
        run = ledger.list_runs(1)[0]
        [stats] = ledger.step_stats(run.id, ["slow"])
        assert stats.counts == {"done": units}, stats.counts
        assert ledger.failures(run.id) == []
        exported = list(ledger.export_rows(run.id))
        assert len(exported) == units
    finally:
        ledger.close()


def run_with_a_worker(
    tmp_path: Path, store: str, units: int, *options: str
) -> tuple[subprocess.Popen[str], subprocess.Popen[str]]:
    """A ``conveyor run`` of ``units`` slow units, and a ``conveyor worker`` joined to it."""
    (tmp_path / "p.py").write_text(PIPELINE)
    (tmp_path / "in.jsonl").write_text("".join(f'{{"n": {n}}}\n' for n in range(units)))
    coordinator = conveyor(tmp_path, "run", "p.py", "-i", "in.jsonl", "-w", "1",
                           "--store", store, "--no-progress", *options)  # fmt: skip
    wait_for_running_run(store)
    return coordinator, conveyor(tmp_path, "worker", "p.py", "--store", store, "-w", "1")


def ledger_of(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return str(tmp_path / "ledger.db")


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_worker_shares_the_queue_of_a_run(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    store = ledger_of(backend, tmp_path, request)
    coordinator, helper = run_with_a_worker(tmp_path, store, 200)
    out, err = helper.communicate(timeout=120)
    assert helper.returncode == 0, err
    done_here = int(out.split(": ")[1].split(" unit")[0])
    assert done_here > 0, out
    _, err = coordinator.communicate(timeout=120)
    assert coordinator.returncode == 0, err
    check_each_unit_done_once(store, 200)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_killed_worker_leaves_its_units_to_the_coordinator(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    store = ledger_of(backend, tmp_path, request)
    coordinator, helper = run_with_a_worker(tmp_path, store, 120, "--lease", "2s")
    time.sleep(1.0)  # it holds leases now
    helper.send_signal(signal.SIGKILL)
    helper.communicate(timeout=30)
    _, err = coordinator.communicate(timeout=120)
    assert coordinator.returncode == 0, err
    check_each_unit_done_once(store, 120)


def test_a_worker_refuses_other_code_and_missing_runs(tmp_path: Path) -> None:
    (tmp_path / "p.py").write_text(PIPELINE)
    (tmp_path / "in.jsonl").write_text('{"n": 1}\n')
    done = subprocess.run(
        [sys.executable, "-m", "conveyor", "run", "p.py", "-i", "in.jsonl", "--no-progress"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = subprocess.run(
        [sys.executable, "-m", "conveyor", "worker", "p.py", "--run",
         open_store(tmp_path / ".conveyor" / "conveyor.db").list_runs(1)[0].id],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2 and "is completed: there is nothing to join" in result.stderr
