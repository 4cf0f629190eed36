"""The ``conveyor`` command run as a user runs it: a subprocess, real files, real signals."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

Cli = Callable[..., subprocess.CompletedProcess[str]]

PIPELINE = """
import time
import conveyor as cv

pipe = cv.Pipeline("words")

@pipe.step
def text(item: cv.Item) -> str:
    return item.read_text()

@pipe.step
def words(text: str) -> int:
    if "poison" in text:
        raise ValueError("poisoned document")
    time.sleep(float(__import__("os").environ.get("SLOW", "0")))
    return len(text.split())

@pipe.step
def shout(text: str) -> str:
    return text.upper()[:20]

@pipe.step
def report(words: int, shout: str) -> dict:
    return {"words": words, "head": shout}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A pipeline file and a folder of 30 text documents, one of them poisoned."""
    (tmp_path / "pipeline.py").write_text(PIPELINE)
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(30):
        (docs / f"doc{i:02d}.txt").write_text(" ".join(["word"] * (i + 1)))
    (docs / "doc07.txt").write_text("this one is poison")
    return tmp_path


def status(cli: Cli, *args: str) -> dict[str, object]:
    result = cli("status", "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_run_status_results_and_a_cached_rerun(cli: Cli, project: Path) -> None:
    first = cli("run", "pipeline.py", "--input", "docs", "--workers", "2")

    assert first.returncode == 1, first.stderr  # completed with a failed unit
    assert "completed_with_errors" in first.stdout
    assert "1x words: ValueError: poisoned document (e.g. doc07.txt; signature" in first.stderr
    assert "Traceback" not in first.stdout + first.stderr
    state = status(cli)
    steps = {s["step"]: s["counts"] for s in state["steps"]}  # type: ignore[union-attr,index]
    assert steps == {
        "text": {"done": 30},
        "words": {"done": 29, "dead": 1},
        "shout": {"done": 30},
        "report": {"done": 29, "skipped": 1},
    }

    human = cli("status")
    assert "words" in human.stdout and "poisoned document" in human.stdout

    exported = cli("results", "--format", "csv", "--out", "out.csv")
    assert exported.returncode == 0, exported.stderr
    lines = (project / "out.csv").read_text().splitlines()
    assert lines[0] == "id,text,words,shout,report"
    assert len(lines) == 31
    assert lines[3].startswith("doc02.txt,word word word,3,WORD WORD WORD,")

    again = cli("run", "pipeline.py", "--input", "docs", "--workers", "2")
    assert again.returncode == 1
    steps = {s["step"]: s["counts"] for s in status(cli)["steps"]}  # type: ignore[union-attr,index]
    assert steps["text"] == {"cached": 30} and steps["shout"] == {"cached": 30}
    assert steps["words"] == {"cached": 29, "dead": 1}


def test_a_run_on_a_postgres_ledger_reports_exports_and_caches_like_sqlite(
    cli: Cli, project: Path, postgres_url: str, peek: Callable[[str, str], list[tuple[Any, ...]]]
) -> None:
    first = cli("run", "pipeline.py", "--input", "docs", "--workers", "2", "--store", postgres_url)

    assert first.returncode == 1, first.stderr  # completed with a failed unit
    assert "completed_with_errors" in first.stdout
    assert "1x words: ValueError: poisoned document (e.g. doc07.txt; signature" in first.stderr
    assert not (project / ".conveyor").exists()
    assert peek(postgres_url, "SELECT state, count(*) FROM units GROUP BY state ORDER BY 1") == [
        ("dead", 1),
        ("done", 118),
        ("skipped", 1),
    ]
    env = {"CONVEYOR_STORE": postgres_url}
    steps = {s["step"]: s["counts"] for s in status(cli, "--store", postgres_url)["steps"]}  # type: ignore[union-attr,index]
    assert steps["words"] == {"done": 29, "dead": 1}
    exported = cli("results", "--format", "jsonl", env=env)
    assert exported.returncode == 0, exported.stderr
    rows = {row["id"]: row for row in map(json.loads, exported.stdout.splitlines())}
    assert len(rows) == 30
    assert rows["doc02.txt"]["report"] == {"words": 3, "head": "WORD WORD WORD"}
    assert rows["doc07.txt"]["words"] is None
    [dead] = json.loads(cli("dlq", "list", "--json", env=env).stdout)
    assert (dead["item"], dead["step"]) == ("doc07.txt", "words")
    shown = cli("dlq", "show", str(dead["unit"]), env=env)
    assert "ValueError: poisoned document" in shown.stdout, shown.stderr

    again = cli("run", "pipeline.py", "--input", "docs", "--workers", "2", env=env)
    assert again.returncode == 1, again.stderr
    steps = {s["step"]: s["counts"] for s in status(cli, "--store", postgres_url)["steps"]}  # type: ignore[union-attr,index]
    assert steps["text"] == {"cached": 30} and steps["words"] == {"cached": 29, "dead": 1}
    assert "completed" in cli("runs", env=env).stdout

    (project / "pipeline.py").write_text(PIPELINE.replace('"poison" in text', "False"))
    fixed = cli("redrive", env=env)
    assert fixed.returncode == 0, fixed.stderr
    rows = {r["id"]: r for r in map(json.loads, cli("results", env=env).stdout.splitlines())}
    assert rows["doc07.txt"]["report"] == {"words": 4, "head": "THIS ONE IS POISON"}


def test_a_clean_run_exits_zero_and_the_store_can_come_from_the_environment(
    cli: Cli, project: Path
) -> None:
    (project / "docs" / "doc07.txt").write_text("clean now")
    ledger = project / "elsewhere" / "ledger.db"
    result = cli("run", "pipeline.py", "-i", "docs", env={"CONVEYOR_STORE": str(ledger)})
    assert result.returncode == 0, result.stderr
    assert ledger.exists()
    assert not (project / ".conveyor").exists()
    runs = cli("runs", env={"CONVEYOR_STORE": str(ledger)})
    assert "words" in runs.stdout and "completed" in runs.stdout


def test_jsonl_input_with_a_malformed_line_fails_only_that_item(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "p.py").write_text(
        "import conveyor as cv\npipe = cv.Pipeline('rows')\n"
        "@pipe.step\ndef value(item):\n    return item['v'] * 2\n"
    )
    lines = ['{"id": "a", "v": 1}', '{"id": "b", "v": ', '{"id": "c", "v": 3}']
    (tmp_path / "rows.jsonl").write_text("\n".join(lines) + "\n")
    result = cli("run", "p.py", "--input", "rows.jsonl", "--id-field", "id", "--workers", "0")
    assert result.returncode == 1
    assert "line 2 is not valid JSON" in result.stderr
    out = cli("results", "--format", "jsonl")
    assert [json.loads(x) for x in out.stdout.splitlines()] == [
        {"id": "a", "value": 2},
        {"id": "line-2", "value": None},
        {"id": "c", "value": 6},
    ]


@pytest.mark.slow
def test_ctrl_c_stops_the_run_and_running_again_finishes_it(project: Path) -> None:
    env = {**os.environ, "SLOW": "0.5", "NO_COLOR": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "run", "pipeline.py", "-i", "docs", "-w", "2"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C as in a terminal, even when the tests themselves run as a background job
        # (which a shell starts with SIGINT ignored, and children inherit that).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    ledger = project / ".conveyor" / "conveyor.db"
    deadline = time.monotonic() + 30
    done = 0
    while time.monotonic() < deadline and done < 4:
        time.sleep(0.1)
        if ledger.exists():
            try:
                db = sqlite3.connect(ledger)
                done = db.execute("SELECT count(*) FROM units WHERE step='words' AND state='done'")
                done = done.fetchone()[0]
                db.close()
            except sqlite3.OperationalError:
                continue
    # Another terminal sees the run progress while it goes.
    watching = subprocess.run(
        [sys.executable, "-m", "conveyor", "status", "--json"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    live = json.loads(watching.stdout)
    assert live["state"] == "running"
    words = next(s for s in live["steps"] if s["step"] == "words")
    assert words["counts"].get("done", 0) >= 4 and words["total"] == 30
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    db = sqlite3.connect(ledger)
    (state,) = db.execute("SELECT state FROM runs").fetchone()
    assert state == "interrupted"
    assert db.execute("SELECT count(*) FROM units WHERE state = 'running'").fetchone()[0] == 0

    again = subprocess.run(
        [sys.executable, "-m", "conveyor", "status", "--json"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(again.stdout)["state"] == "interrupted"
    finished_before = dict(
        db.execute("SELECT id, finished_at FROM units WHERE state = 'done'").fetchall()
    )
    db.close()
    finish = subprocess.run(
        [sys.executable, "-m", "conveyor", "run", "pipeline.py", "-i", "docs", "-w", "2"],
        cwd=project,
        env={**env, "SLOW": "0"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finish.returncode == 1, finish.stderr
    assert "continuing run" in finish.stderr
    db = sqlite3.connect(ledger)
    # The same run went on: one run, finished, and no unit done before was run again.
    assert db.execute("SELECT count(*), min(state) FROM runs").fetchone() == (
        1,
        "completed_with_errors",
    )
    finished_after = dict(
        db.execute("SELECT id, finished_at FROM units WHERE state = 'done'").fetchall()
    )
    assert len(finished_before) >= done
    assert all(finished_after[unit] == at for unit, at in finished_before.items())
    words = dict(
        db.execute("SELECT state, count(*) FROM units WHERE step = 'words' GROUP BY state")
    )
    assert words == {"done": 29, "dead": 1}


def test_bad_notify_options_are_usage_errors(cli: Cli, project: Path) -> None:
    bad_url = cli("run", "pipeline.py", "-i", "docs", "--notify", "hooks.example")
    assert bad_url.returncode == 2
    assert "a webhook must be an http:// or https:// URL" in bad_url.stderr
    bad_format = cli(
        "run", "pipeline.py", "-i", "docs", "--notify", "http://127.0.0.1:9/", "--notify-format",
        "xml",
    )  # fmt: skip
    assert bad_format.returncode == 2 and "choose one of json, slack" in bad_format.stderr
    assert not (project / ".conveyor").exists()


def test_the_lease_is_an_option(cli: Cli, project: Path) -> None:
    bad = cli("run", "pipeline.py", "-i", "docs", "--lease", "forever")
    assert bad.returncode == 2 and "--lease 'forever' is not a duration" in bad.stderr
    too_short = cli("run", "pipeline.py", "-i", "docs", "--lease", "100ms")
    assert too_short.returncode == 2 and "must be at least 1s" in too_short.stderr
    ok = cli("run", "pipeline.py", "-i", "docs", "--lease", "2s", "-w", "1")
    assert ok.returncode == 1, ok.stderr  # the poisoned document, as always
