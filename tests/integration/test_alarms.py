"""Alarms end to end: a run whose failure rate rises fires exactly one notification to a real
HTTP receiver on 127.0.0.1, and one 'resolved' when it recovers; ``conveyor alarms`` shows it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from webhooks import Receiver

PIPELINE = """
import time
import conveyor as cv
pipe = cv.Pipeline("alarmed")

@pipe.step
def checked(item: cv.Item) -> int:
    if item["n"] < 12:
        raise ValueError(f"bad record {item['n']}")
    time.sleep(0.04)
    return item["n"]
"""

ALARMS = """
alarms:
  - name: failing
    metric: failure_rate
    above: 50%
    window: 1s
    min_units: 4
    every: 100ms
"""


@pytest.mark.slow
def test_a_rising_failure_rate_fires_once_and_resolves_once(
    tmp_path: Path, receiver: Receiver
) -> None:
    (tmp_path / "p.py").write_text(PIPELINE)
    (tmp_path / "alarms.yaml").write_text(ALARMS)
    (tmp_path / "in.jsonl").write_text("".join(f'{{"n": {n}}}\n' for n in range(80)))
    result = subprocess.run(
        [sys.executable, "-m", "conveyor", "--log-format", "json", "run", "p.py",
         "-i", "in.jsonl", "-w", "1", "--alarms", "alarms.yaml", "--notify", receiver.url,
         "--no-progress"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr  # 12 dead units
    alarms = [b for b in receiver.bodies if b["event"].startswith("alarm.")]
    assert [b["event"] for b in alarms] == ["alarm.fired", "alarm.resolved"], alarms
    fired, resolved = alarms
    assert fired["alarm"] == "failing" and fired["value"] > 0.5 and fired["threshold"] == 0.5
    assert "failed attempts is" in fired["message"] and resolved["value"] <= 0.5
    logged = [json.loads(x)["event"] for x in result.stderr.splitlines() if x.startswith("{")]
    assert logged.count("alarm.fired") == 1 and logged.count("alarm.resolved") == 1

    shown = subprocess.run(
        [sys.executable, "-m", "conveyor", "alarms", "--json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    [state] = json.loads(shown.stdout)["alarms"]
    assert (state["name"], state["state"]) == ("failing", "resolved")
    table = subprocess.run(
        [sys.executable, "-m", "conveyor", "alarms"], cwd=tmp_path, capture_output=True,
        text=True, timeout=60, env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )  # fmt: skip
    assert "failing" in table.stdout and "resolved" in table.stdout


def test_a_bad_alarms_file_is_refused_before_the_run(tmp_path: Path) -> None:
    (tmp_path / "p.py").write_text(PIPELINE)
    (tmp_path / "alarms.yaml").write_text("alarms:\n  - {name: x, metric: throughput, above: 1}\n")
    (tmp_path / "in.jsonl").write_text('{"n": 20}\n')
    result = subprocess.run(
        [sys.executable, "-m", "conveyor", "run", "p.py", "-i", "in.jsonl",
         "--alarms", "alarms.yaml"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "throughput alarms fire below a threshold" in result.stderr
    assert not (tmp_path / ".conveyor").exists()  # nothing recorded
