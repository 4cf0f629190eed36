"""A joined coordinator (``conveyor worker``) waiting for work while the run's coordinator
commits: what it reads of the queue while it waits must be one snapshot, or a commit that lands
between two reads looks like a queue with unfinished units that nothing can run ("the ledger is
inconsistent", exit 3). Each ledger read made while waiting is followed by a 50 ms pause here (a
descheduled thread on a busy machine), so that commits land between them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conveyor.errors import StoreError
from conveyor.store import open_store

STEPS = 10


def _step(i: int) -> str:
    takes, value = (
        ("item: cv.Item", "int(item['n'])") if i == 0 else (f"s{i - 1}: int", f"s{i - 1} + 1")
    )
    return f"@pipe.step\ndef s{i}({takes}) -> int:\n    time.sleep(0.1)\n    return {value}\n"


#: Ten chained steps of 100 ms each.
PIPELINE = "import time\nimport conveyor as cv\npipe = cv.Pipeline('chained')\n" + "".join(
    _step(i) for i in range(STEPS)
)

#: Runs the CLI with a pause after each read the waiting scheduler makes of the queue.
PAUSED = """
import time
from conveyor.store.relational import RelationalStore

def paused(name):
    read = getattr(RelationalStore, name, None)
    if read is None:
        return
    def slow(self, *args, **kwargs):
        value = read(self, *args, **kwargs)
        time.sleep(0.05)
        return value
    setattr(RelationalStore, name, slow)

for name in ("next_retry_time", "next_lease_expiry", "queue_times"):
    paused(name)

from conveyor.interfaces.cli import main
main()
"""


def start(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.Popen(
        [sys.executable, "paused.py", *args], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_until_planned(store: str) -> None:
    end = time.monotonic() + 30
    while time.monotonic() < end:
        if Path(store).exists():
            ledger = open_store(store, create=False)
            try:
                runs = ledger.list_runs(1)
                if runs and runs[0].planned:
                    return
            except StoreError:
                pass  # the run's coordinator is creating the ledger
            finally:
                ledger.close()
        time.sleep(0.02)
    raise AssertionError("the run did not start")


@pytest.mark.slow
def test_a_joined_coordinator_waits_through_the_other_ones_commits(tmp_path: Path) -> None:
    (tmp_path / "p.py").write_text(PIPELINE)
    (tmp_path / "paused.py").write_text(PAUSED)
    (tmp_path / "in.jsonl").write_text('{"n": 0}\n{"n": 10}\n')
    for attempt in range(3):  # a few rounds: each gives the race many chances
        store = str(tmp_path / f"ledger{attempt}.db")
        coordinator = start(tmp_path, "run", "p.py", "-i", "in.jsonl", "-w", "1",
                            "--store", store, "--no-progress")  # fmt: skip
        wait_until_planned(store)
        helper = start(tmp_path, "worker", "p.py", "--store", store, "-w", "1")
        out, err = helper.communicate(timeout=120)
        assert helper.returncode == 0, (attempt, out, err)
        _, err = coordinator.communicate(timeout=120)
        assert coordinator.returncode == 0, (attempt, err)
        ledger = open_store(store, create=False)
        try:
            [run] = ledger.list_runs()
            counts = {s.step: s.counts for s in ledger.step_stats(run.id, list(run.steps))}
        finally:
            ledger.close()
        assert counts == {f"s{i}": {"done": 2} for i in range(STEPS)}
