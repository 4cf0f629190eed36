"""``conveyor run --executor ray`` on a three-node Ray cluster simulated on this machine: a
node removed mid-run, then the coordinator killed and the run resumed. No unit is lost, none is
committed twice, and no attempt is spent on what the lost node or coordinator was running."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

ITEMS = 160

PIPELINE = """
import os, time
from pathlib import Path
import conveyor as cv

LOG = Path(__file__).with_name("executions.log")
pipe = cv.Pipeline("spread")

@pipe.resource
def factor() -> int:
    return 3

@pipe.step
def work(item: cv.Item) -> int:
    time.sleep(0.05)
    import ray  # the node each execution ran on, so the test removes a node that is working
    node = ray.get_runtime_context().get_node_id()
    with LOG.open("a") as fh:
        fh.write(f"work {item.id} {node}\\n")
    return int(item["value"])

@pipe.step
def scaled(work: int, factor: int) -> int:
    time.sleep(0.01)
    return work * factor
"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A head node without CPUs and two worker nodes with one each, so that every node the
    test may remove is running work; no driver connects from this process."""
    try:
        from ray.cluster_utils import Cluster
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip("Ray is not installed (pip install -e '.[dev]')")
    nodes = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False}
    )
    try:
        nodes.add_node(num_cpus=1)
        nodes.add_node(num_cpus=1)
        nodes.wait_for_nodes()
        yield nodes
    finally:
        nodes.shutdown()


def conveyor(*args: str, cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.Popen(
        [sys.executable, "-m", "conveyor", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def done_units(db_path: Path) -> int:
    try:
        with sqlite3.connect(db_path, timeout=5) as db:
            return int(db.execute("SELECT count(*) FROM units WHERE state = 'done'").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def wait_for(db_path: Path, done: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 90
    while done_units(db_path) < done:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"fewer than {done} units done after 90s"
        time.sleep(0.05)


def wait_busy(log: Path, node_id: str, process: subprocess.Popen[str]) -> None:
    """Until one of the last few executions ran on ``node_id``: a node that has just been
    running work (under load, Ray may start a node's worker process late)."""
    deadline = time.monotonic() + 90
    while True:
        recent = log.read_text().splitlines()[-4:] if log.exists() else []
        if any(line.split()[-1] == node_id for line in recent):
            return
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"node {node_id} ran no work for 90s"
        time.sleep(0.02)


def test_a_node_lost_and_a_coordinator_killed_lose_and_duplicate_nothing(
    cluster: Any, tmp_path: Path
) -> None:
    (tmp_path / "pipeline.py").write_text(PIPELINE)
    with (tmp_path / "items.jsonl").open("w") as fh:
        for i in range(ITEMS):
            fh.write(json.dumps({"id": f"i{i:03d}", "value": i}) + "\n")
    store = tmp_path / "ledger.db"
    common = ["--store", str(store), "--no-progress"]
    worker = next(iter(cluster.worker_nodes))

    run = conveyor(
        "run", "pipeline.py", "-i", "items.jsonl", "--id-field", "id",
        "--executor", "ray", "--ray-address", cluster.address, *common, cwd=tmp_path,
    )  # fmt: skip
    try:
        wait_for(store, ITEMS // 4, run)
        wait_busy(tmp_path / "executions.log", worker.node_id, run)
        cluster.remove_node(worker)  # its raylet and workers die mid-task
        wait_for(store, ITEMS, run)
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=10)
    finally:
        if run.poll() is None:
            run.kill()
        _, run_err = run.communicate()
    assert "a Ray node" in run_err and "was lost" in run_err  # it held work when it went

    with sqlite3.connect(store) as db:
        options = json.loads(db.execute("SELECT options FROM runs").fetchone()[0])
    assert options["executor"] == "ray" and options["ray_address"] == cluster.address

    resumed = conveyor("resume", *common, cwd=tmp_path)  # on Ray, as the run was started
    _, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err

    with sqlite3.connect(store) as db:
        states = dict(db.execute("SELECT state, count(*) FROM units GROUP BY state").fetchall())
        assert states == {"done": 2 * ITEMS}
        # every unit committed once, on its first counted attempt: what a lost node or a dead
        # coordinator was running went back to the queue without spending one
        assert db.execute("SELECT min(attempts), max(attempts) FROM units").fetchone() == (1, 1)
        assert db.execute("SELECT count(*) FROM attempts").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM results").fetchone() == (2 * ITEMS,)
    export = subprocess.run(
        [sys.executable, "-m", "conveyor", "results", "--store", str(store)],
        cwd=tmp_path, capture_output=True, text=True, check=True,
    )  # fmt: skip
    results = [json.loads(line) for line in export.stdout.splitlines()]
    assert sorted(r["scaled"] for r in results) == [3 * i for i in range(ITEMS)]
    executed = (tmp_path / "executions.log").read_text().splitlines()
    assert {line.split()[1] for line in executed} == {f"i{i:03d}" for i in range(ITEMS)}
