"""Chaos: worker processes and the coordinator killed with SIGKILL at random while a run goes.
At the end nothing is lost, nothing is duplicated, and units that always fail are dead after
exactly their attempt limit. A worker killed from outside costs no unit its life; a unit that
kills every worker it runs on is dead after exactly its loss budget (``max_worker_losses``)."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ITEMS = 500
ALWAYS_FAILING = 10  # items whose step `check` always raises
CHECK_ATTEMPTS = 3  # retries=2

PIPELINE = f"""
import time
import conveyor as cv

pipe = cv.Pipeline("chaos")

@pipe.step(retries=8, backoff="10ms", backoff_max="50ms")
def parse(item: cv.Item) -> int:
    time.sleep(0.004)
    return int(item["value"])

@pipe.step(retries=8, backoff="10ms", backoff_max="50ms")
def square(parse: int) -> int:
    time.sleep(0.004)
    return parse * parse

@pipe.step(retries={CHECK_ATTEMPTS - 1}, backoff="10ms", backoff_max="50ms")
def check(parse: int) -> bool:
    time.sleep(0.002)
    if parse % {ITEMS // ALWAYS_FAILING} == 0:
        raise ValueError(f"{{parse}} is not allowed")
    return True
"""


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def query(ledger: Path, sql: str) -> list[tuple[object, ...]]:
    try:
        db = sqlite3.connect(ledger, timeout=10)
        try:
            return db.execute(sql).fetchall()
        finally:
            db.close()
    except sqlite3.OperationalError:
        return []


def finished_units(ledger: Path) -> int:
    rows = query(ledger, "SELECT count(*) FROM units WHERE state IN ('done', 'dead', 'skipped')")
    return int(rows[0][0]) if rows else 0


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find workers")
def test_chaos(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = random.Random(20261122)
    (tmp_path / "chaos.py").write_text(PIPELINE)
    rows = "\n".join(f'{{"id": "i{i:04d}", "value": {i}}}' for i in range(ITEMS))
    (tmp_path / "items.jsonl").write_text(rows + "\n")
    ledger = tmp_path / ".conveyor" / "conveyor.db"
    total = ITEMS * 3
    command = ["run", "chaos.py", "-i", "items.jsonl", "--id-field", "id", "-w", "2"]
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}

    def start(args: list[str]) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "conveyor", *args, "--no-progress"],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    worker_kills = coordinator_kills = 0
    coordinator_kill_at = [total // 4, total // 2]
    restarts = [command, ["resume"]]  # the same command again, then `conveyor resume`
    proc = start(command)
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(rng.uniform(0.03, 0.08))
        progress = finished_units(ledger)
        if coordinator_kill_at and progress >= coordinator_kill_at[0]:
            coordinator_kill_at.pop(0)
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=60)
            coordinator_kills += 1
            proc = start(restarts.pop(0))
            continue
        workers = children(proc.pid)
        if workers and worker_kills < 40:
            try:
                os.kill(rng.choice(workers), signal.SIGKILL)
                worker_kills += 1
            except ProcessLookupError:
                pass
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err  # completed, with the always-failing units dead

    states = dict(query(ledger, "SELECT state, count(*) FROM units GROUP BY state"))
    lost = total - sum(int(n) for n in states.values() if n)  # type: ignore[call-overload]
    unfinished = sum(
        int(states.get(s, 0) or 0)  # type: ignore[call-overload]
        for s in ("pending", "ready", "running")
    )
    runs = query(ledger, "SELECT count(*), min(state) FROM runs")
    result_rows = query(ledger, "SELECT count(*), count(DISTINCT key) FROM results")[0]
    duplicated = int(result_rows[0]) - int(result_rows[1])  # type: ignore[call-overload]
    # Attempts of their own: an attempt that lost its worker does not count against retries.
    dead = query(ledger, "SELECT step, attempts - losses, count(*) FROM units "
                         "WHERE state = 'dead' GROUP BY step, attempts - losses")  # fmt: skip
    reexecuted = query(ledger, "SELECT count(*) FROM units WHERE state = 'done' AND attempts > 1")
    exported = subprocess.run(
        [sys.executable, "-m", "conveyor", "results", "--format", "csv"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True,
    ).stdout.splitlines()[1:]  # fmt: skip
    ids = [line.split(",", 1)[0] for line in exported]
    with capsys.disabled():  # the counts are this test's report: show them in CI logs
        print(
            f"\nchaos: {total} units, {worker_kills} worker kills, {coordinator_kills} coordinator "
            f"kills; lost {lost + unfinished}, duplicated results {duplicated}, "
            f"duplicated rows {len(ids) - len(set(ids))}, retried {reexecuted[0][0]}, "
            f"dead {sum(int(n) for _, _, n in dead)}"  # type: ignore[call-overload]
        )
    assert worker_kills >= 20 and coordinator_kills == 2
    assert runs == [(1, "completed_with_errors")]
    assert lost == 0 and unfinished == 0
    assert duplicated == 0 and len(ids) == len(set(ids)) == ITEMS
    assert dead == [("check", CHECK_ATTEMPTS, ALWAYS_FAILING)]
    assert states.get("done") == total - ALWAYS_FAILING


# -- worker processes lost from outside, and units that kill every worker they run on -----------

KILLED_ITEMS = 800
OUTSIDE_KILLS = 6

KILLED_PIPELINE = """
import time
import conveyor as cv

pipe = cv.Pipeline("killed")

@pipe.step
def parse(item: cv.Item) -> int:
    time.sleep(0.002)
    return int(item["value"])

@pipe.step(timeout="1m")  # one unit per task: a worker killed mid-task is killed mid-unit
def square(parse: int) -> int:
    time.sleep(0.004)
    return parse * parse
"""

CRASHING_PIPELINE = """
import ctypes
import os
import conveyor as cv

pipe = cv.Pipeline("crashing")

@pipe.step(retries=2)  # for the step's own failures: they do not stretch the loss budget
def exits(item: cv.Item) -> str:
    if item["id"] == "exit":
        os._exit(3)
    return item["id"]

@pipe.step(max_worker_losses=2)
def crashes(item: cv.Item) -> str:
    if item["id"] == "segv":
        ctypes.string_at(0)
    return item["id"]
"""


def start_run(tmp_path: Path, pipeline: str, ids: list[str]) -> subprocess.Popen[str]:
    (tmp_path / "p.py").write_text(pipeline)
    rows = "".join(f'{{"id": "{i}", "value": {n}}}\n' for n, i in enumerate(ids))
    (tmp_path / "items.jsonl").write_text(rows)
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.Popen(
        [sys.executable, "-m", "conveyor", "run", "p.py", "-i", "items.jsonl", "--id-field", "id",
         "-w", "2", "--no-progress"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find workers")
def test_workers_killed_from_outside_cost_no_unit_its_life(tmp_path: Path) -> None:
    rng = random.Random(11)
    proc = start_run(tmp_path, KILLED_PIPELINE, [f"i{n:04d}" for n in range(KILLED_ITEMS)])
    ledger = tmp_path / ".conveyor" / "conveyor.db"
    kills = 0
    deadline = time.monotonic() + 120
    while proc.poll() is None and kills < OUTSIDE_KILLS and time.monotonic() < deadline:
        time.sleep(0.15)
        workers = children(proc.pid)
        if workers and finished_units(ledger) > 0:  # mid-run: the workers are busy
            try:
                os.kill(rng.choice(workers), signal.SIGKILL)  # the OOM killer, an operator
                kills += 1
            except ProcessLookupError:
                pass
    _, err = proc.communicate(timeout=120)
    assert kills == OUTSIDE_KILLS
    assert proc.returncode == 0, err  # completed: nothing dead
    states = dict(query(ledger, "SELECT state, count(*) FROM units GROUP BY state"))
    assert states == {"done": 2 * KILLED_ITEMS}  # nothing dead, nothing lost
    # The units running alone when their worker was killed lost an attempt, and ran again.
    losses = query(
        ledger,
        "SELECT a.decision, u.losses FROM attempts a JOIN units u ON u.id = a.unit_id "
        "WHERE a.error_type = 'WorkerLost'",
    )
    assert losses and all(str(d).startswith("retry in ") for d, _ in losses)
    assert all(int(n) >= 1 for _, n in losses)  # type: ignore[call-overload]
    assert query(ledger, "SELECT count(*) FROM attempts WHERE error_type != 'WorkerLost'") == [(0,)]


@pytest.mark.slow
def test_a_unit_that_kills_every_worker_is_dead_after_its_loss_budget(
    tmp_path: Path, cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    proc = start_run(tmp_path, CRASHING_PIPELINE, ["exit", "segv", *(f"ok{n}" for n in range(20))])
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err  # completed with errors: the two culprits are dead
    dead = json.loads(cli("dlq", "list", "--json").stdout)
    assert sorted((u["item"], u["step"], u["error_type"], u["attempts"]) for u in dead) == [
        ("exit", "exits", "WorkerLost", 3),  # max_worker_losses=3 by default; retries=2 apart
        ("segv", "crashes", "WorkerLost", 2),  # max_worker_losses=2
    ]
    for unit, budget, how in [(d, 3, "exited with code 3") if d["item"] == "exit"
                              else (d, 2, "was killed by SIGSEGV") for d in dead]:  # fmt: skip
        assert how in unit["error_message"]
        detail = json.loads(cli("dlq", "show", str(unit["unit"]), "--json").stdout)
        log = [(a["attempt"], a["error_type"], a["decision"]) for a in detail["attempt_log"]]
        assert [n for n, *_ in log] == list(range(1, budget + 1))
        assert {t for _, t, _ in log} == {"WorkerLost"}
        reasons = [f"worker lost {n} of max_worker_losses={budget} times" for n, *_ in log]
        assert [str(d).split(" (", 1)[1].rstrip(")") for *_, d in log] == reasons
        assert all(d.startswith("retry in ") for *_, d in log[:-1])
        assert log[-1][2].startswith("give up (")
        shown = cli("dlq", "show", str(unit["unit"])).stdout
        assert f"give up (worker lost {budget} of max_worker_losses={budget} times)" in shown
    counts = {s["step"]: s["counts"] for s in json.loads(cli("status", "--json").stdout)["steps"]}
    assert counts == {"exits": {"done": 21, "dead": 1}, "crashes": {"done": 21, "dead": 1}}
