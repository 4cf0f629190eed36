"""``conveyor watch``: a real folder, real files landing, a real signal to stop."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

PIPELINE = """
import conveyor as cv
pipe = cv.Pipeline("watched")

@pipe.step
def words(item: cv.Item) -> int:
    return len(item.read_text().split())

@pipe.step
def doubled(words: int) -> int:
    return 2 * words
"""


def done_items(ledger: Path) -> dict[str, int]:
    """Item id -> number of finished `doubled` units (one per version)."""
    try:
        db = sqlite3.connect(ledger, timeout=10)
        rows = db.execute(
            "SELECT i.item_id, count(*) FROM units u JOIN items i ON i.run_id = u.run_id "
            "AND i.idx = u.item_idx WHERE u.step = 'doubled' AND u.state IN ('done', 'cached') "
            "GROUP BY i.item_id"
        ).fetchall()
        db.close()
    except sqlite3.OperationalError:
        return {}
    return dict(rows)


def wait_for(condition: object, ledger: Path, timeout: float = 30) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = done_items(ledger)
        if condition(state):  # type: ignore[operator]
            return state
        time.sleep(0.1)
    raise AssertionError(f"timed out; finished: {done_items(ledger)}")


@pytest.mark.slow
def test_watch_processes_existing_new_and_changed_files(tmp_path: Path) -> None:
    (tmp_path / "p.py").write_text(PIPELINE)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for i in range(3):
        (inbox / f"old{i}.txt").write_text("one two three")
    ledger = tmp_path / ".conveyor" / "conveyor.db"
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "watch", "p.py", "-i", "inbox", "-w", "1"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(lambda s: len(s) == 3, ledger)
        # A new file written under a temporary name, then renamed into place.
        (inbox / ".incoming.tmp").write_text("a b c d e")
        (inbox / ".incoming.tmp").rename(inbox / "new.txt")
        # An existing file changed: a new version of the same item.
        (inbox / "old1.txt").write_text("now there are five words")
        (inbox / "~lock.txt").write_text("ignored")
        state = wait_for(lambda s: s.get("new.txt") == 1 and s.get("old1.txt") == 2, ledger)
        assert set(state) == {"old0.txt", "old1.txt", "old2.txt", "new.txt"}
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "accepted new.txt" in err and "~lock" not in err and ".incoming" not in err
    assert "completed" in out
    results = subprocess.run(
        [sys.executable, "-m", "conveyor", "results"], cwd=tmp_path, env=env,
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    rows = {r["id"]: r for r in map(json.loads, results.stdout.splitlines())}
    assert rows == {
        "old0.txt": {"id": "old0.txt", "words": 3, "doubled": 6},
        "old1.txt": {"id": "old1.txt", "words": 5, "doubled": 10},  # the newest version
        "old2.txt": {"id": "old2.txt", "words": 3, "doubled": 6},
        "new.txt": {"id": "new.txt", "words": 5, "doubled": 10},
    }


def test_watch_needs_a_folder(tmp_path: Path) -> None:
    (tmp_path / "p.py").write_text(PIPELINE)
    result = subprocess.run(
        [sys.executable, "-m", "conveyor", "watch", "p.py", "-i", "missing"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2 and "is not a folder" in result.stderr
