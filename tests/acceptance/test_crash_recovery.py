"""The coordinator killed with SIGKILL mid-run: ``conveyor resume`` finishes the same run and
recomputes nothing that was committed."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

PIPELINE = """
import os, time
import conveyor as cv

pipe = cv.Pipeline("slow-words")

@pipe.step
def text(item: cv.Item) -> str:
    return item.read_text()

@pipe.step
def words(text: str) -> int:
    time.sleep(float(os.environ.get("SLOW", "0")))
    if "poison" in text:
        raise ValueError("poisoned")
    return len(text.split())
"""


def conveyor(*args: str, cwd: Path, slow: str = "0") -> subprocess.Popen[str]:
    env = {**os.environ, "SLOW": slow, "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.Popen(
        [sys.executable, "-m", "conveyor", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def count(db_path: Path, sql: str) -> int:
    db = sqlite3.connect(db_path)
    try:
        return int(db.execute(sql).fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


@pytest.mark.slow
def test_resume_after_the_coordinator_is_killed(tmp_path: Path) -> None:
    (tmp_path / "pipeline.py").write_text(PIPELINE)
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(60):
        (docs / f"d{i:02d}.txt").write_text("poison" if i == 17 else "a b c " * (i + 1))
    ledger = tmp_path / ".conveyor" / "conveyor.db"

    first = conveyor("run", "pipeline.py", "-i", "docs", "-w", "2", cwd=tmp_path, slow="0.2")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (
            ledger.exists()
            and count(ledger, "SELECT count(*) FROM units WHERE step = 'words' AND state = 'done'")
            >= 10
        ):
            break
        time.sleep(0.05)

    # A second coordinator may not take a run whose coordinator is alive.
    busy = conveyor("resume", cwd=tmp_path).communicate(timeout=60)
    assert "still running" in busy[1]

    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    assert first.returncode == -signal.SIGKILL
    db = sqlite3.connect(ledger)
    before = dict(db.execute("SELECT id, finished_at FROM units WHERE state = 'done'").fetchall())
    (state,) = db.execute("SELECT state FROM runs").fetchone()
    db.close()
    assert state == "running"  # nobody told the ledger: the coordinator just vanished
    assert 10 <= len(before) < 120

    second = conveyor("resume", cwd=tmp_path)
    _, err = second.communicate(timeout=120)
    assert second.returncode == 1, err  # completed with the poisoned document failed
    assert "continuing run" in err

    db = sqlite3.connect(ledger)
    assert db.execute("SELECT count(*), min(state) FROM runs").fetchone() == (
        1,
        "completed_with_errors",
    )
    states = dict(db.execute("SELECT state, count(*) FROM units GROUP BY state").fetchall())
    assert states == {"done": 119, "dead": 1}
    after = dict(db.execute("SELECT id, finished_at FROM units WHERE state = 'done'").fetchall())
    assert all(after[unit] == at for unit, at in before.items()), "a committed unit ran again"
    (poison_attempts,) = db.execute("SELECT attempts FROM units WHERE state = 'dead'").fetchone()
    assert poison_attempts == 1
    results = db.execute("SELECT count(*), count(DISTINCT key) FROM results").fetchone()
    assert results[0] == results[1]  # one result per cache key, never two
