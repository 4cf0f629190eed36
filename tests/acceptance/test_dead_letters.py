"""The dead-letter queue from the command line: errors, dlq list/show, redrive after a fix."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

Cli = Callable[..., subprocess.CompletedProcess[str]]

PIPELINE = """
import conveyor as cv
pipe = cv.Pipeline("dlq")

@pipe.step
def text(item: cv.Item) -> str:
    return item.read_text()

@pipe.step(retries=1, backoff="10ms")
def words(text: str) -> int:
    if "poison" in text{fixed}:
        raise ValueError(f"poisoned document of {{len(text)}} chars")
    return len(text.split())

@pipe.step
def double(words: int) -> int:
    return 2 * words
"""


def test_errors_dlq_and_redrive_after_a_fix(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "p.py").write_text(PIPELINE.format(fixed=""))
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(10):
        (docs / f"d{i}.txt").write_text("poison " * i if i in (3, 7) else "ok " * i)
    (docs / "binary.txt").write_bytes(b"\xff\xfe\x00garbage")

    first = cli("run", "p.py", "-i", "docs", "-w", "2")
    assert first.returncode == 1

    groups = json.loads(cli("errors", "--json").stdout)["groups"]
    assert [(g["step"], g["count"], sorted(g["samples"])) for g in groups] == [
        ("words", 2, ["d3.txt", "d7.txt"]),  # two messages that differ only in a number
        ("text", 1, ["binary.txt"]),
    ]
    words_signature = groups[0]["signature"]

    dead = json.loads(cli("dlq", "list", "--json").stdout)
    assert sorted((u["item"], u["step"], u["attempts"]) for u in dead) == [
        ("binary.txt", "text", 1),  # bad input is not retried
        ("d3.txt", "words", 2),
        ("d7.txt", "words", 2),
    ]
    d3 = next(u for u in dead if u["item"] == "d3.txt")
    shown = cli("dlq", "show", str(d3["unit"]))
    assert shown.returncode == 0
    assert "attempt 1: ValueError: poisoned document of 21 chars" in shown.stdout
    assert "give up (attempt 2 of 2: no retries left)" in shown.stdout
    assert 'raise ValueError(f"poisoned document' in shown.stdout
    detail = json.loads(cli("dlq", "show", str(d3["unit"]), "--json").stdout)
    assert detail["input"].endswith("docs/d3.txt") and len(detail["attempt_log"]) == 2

    missing = cli("redrive", "--step", "double")
    assert missing.returncode == 2 and "no dead units of step 'double'" in missing.stderr

    (tmp_path / "p.py").write_text(PIPELINE.format(fixed=" and False"))
    fixed = cli("redrive", "--error", words_signature[:6])
    assert fixed.returncode == 1, fixed.stderr  # binary.txt is still dead: not redriven
    rows = {r["id"]: r for r in map(json.loads, cli("results").stdout.splitlines())}
    assert rows["d3.txt"]["double"] == 6 and rows["d7.txt"]["words"] == 7
    assert rows["binary.txt"]["text"] is None
    state = json.loads(cli("status", "--json").stdout)
    counts = {s["step"]: s["counts"] for s in state["steps"]}
    assert counts == {
        "text": {"done": 10, "dead": 1},
        "words": {"done": 10, "skipped": 1},
        "double": {"done": 10, "skipped": 1},
    }
    assert len(json.loads(cli("dlq", "list", "--json").stdout)) == 1
