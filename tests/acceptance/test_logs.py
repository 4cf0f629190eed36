"""Structured logs: ``--log-format json`` writes one JSON object per event, each exception once."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

Cli = Callable[..., subprocess.CompletedProcess[str]]

PIPELINE = """
import os
import conveyor as cv
pipe = cv.Pipeline("logged")

@pipe.step(retries=1, backoff="10ms")
def words(item: cv.Item) -> int:
    text = item.read_text()
    if "poison" in text:
        raise ValueError("poisoned <script>alert(1)</script>")
    if "crash" in text:
        os.kill(os.getpid(), 9)
    return len(text.split())
"""


def write_docs(tmp_path: Path, **texts: str) -> None:
    (tmp_path / "p.py").write_text(PIPELINE)
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in texts.items():
        (docs / f"{name}.txt").write_text(text)


def test_json_logs_are_one_event_per_line_with_run_step_item_attempt(
    cli: Cli, tmp_path: Path
) -> None:
    write_docs(tmp_path, a="one two", b="poison", c="three")
    result = cli("--log-format", "json", "run", "p.py", "-i", "docs", "-w", "1", "--no-progress")
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("{")]
    events = [json.loads(line) for line in lines]
    names = [e["event"] for e in events]
    assert names[0] == "run.started" and names[-1] == "run.finished"
    run = events[0]["run"]
    assert all(e["run"] == run for e in events)
    retried = [e for e in events if e["event"] == "unit.retried"]
    dead = [e for e in events if e["event"] == "unit.dead_lettered"]
    assert [(e["step"], e["item"], e["attempt"], e["level"]) for e in retried] == [
        ("words", "b.txt", 1, "warning")
    ]
    assert [(e["step"], e["item"], e["attempt"], e["level"]) for e in dead] == [
        ("words", "b.txt", 2, "error")
    ]
    assert dead[0]["error_type"] == "ValueError" and "Traceback" in dead[0]["traceback"]
    assert "traceback" not in retried[0]  # each exception's traceback is logged once
    assert events[-1]["state"] == "completed_with_errors" and events[-1]["dead"] == 1


def test_a_lost_worker_is_an_event(cli: Cli, tmp_path: Path) -> None:
    write_docs(tmp_path, a="one", b="crash")
    result = cli("--log-format", "json", "run", "p.py", "-i", "docs", "-w", "1", "--no-progress")
    events = [json.loads(x) for x in result.stderr.splitlines() if x.startswith("{")]
    lost = [e for e in events if e["event"] == "worker.lost"]
    assert lost and "was killed by SIGKILL" in lost[0]["error"]


def test_text_logs_show_failures_as_they_happen(cli: Cli, tmp_path: Path) -> None:
    write_docs(tmp_path, a="poison")
    result = cli("run", "p.py", "-i", "docs", "-w", "1", "--no-progress")
    assert "unit.retried" in result.stderr and "step=words item=a.txt attempt=1" in result.stderr
    assert "run.started" not in result.stderr  # info events only from --log-level info


def test_bad_log_options_are_usage_errors(cli: Cli, tmp_path: Path) -> None:
    result = cli("--log-format", "xml", "runs")
    assert result.returncode == 2 and "use one of text, json" in result.stderr
    result = cli("--log-level", "loud", "runs")
    assert result.returncode == 2 and "use debug, info, warning or error" in result.stderr
