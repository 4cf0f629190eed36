"""One executor contract: the same runs give the same results, cache, retries, timeouts, dead
letters and survival of lost workers on the local process pool, the thread executor and Ray.

Each test takes ``kind`` and runs through :func:`run`; ``thread`` moves every step onto threads,
``ray`` runs the process steps on the session's local Ray."""

from __future__ import annotations

import dataclasses
import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

import conveyor as cv
from conveyor.definition.loader import load_pipeline
from conveyor.interfaces.export import rows
from conveyor.store import open_store

RESOURCES = Path(__file__).parents[1] / "resources"
# Pipelines live at module level: worker processes are forked and inherit them; Ray workers
# get them pickled by value.
chain, _ = load_pipeline(str(RESOURCES / "chain_pipeline.py"))
WORKERS = 2


@pytest.fixture(
    scope="module",
    params=["process", "thread", pytest.param("ray", marks=pytest.mark.slow)],
)
def kind(request: pytest.FixtureRequest) -> str:
    """Which executor runs the steps; module-scoped, so the tests are grouped by executor."""
    if request.param == "ray":
        request.getfixturevalue("ray_session")
    return str(request.param)


def on_threads(pipe: cv.Pipeline) -> cv.Pipeline:
    """The same pipeline with every step on a thread pool of four."""
    threaded = cv.Pipeline(pipe.name)
    threaded.resources = dict(pipe.resources)
    threaded.steps = {
        name: dataclasses.replace(
            step, options=dataclasses.replace(step.options, executor="thread", concurrency=4)
        )
        for name, step in pipe.steps.items()
    }
    return threaded


def run(
    pipe: cv.Pipeline, kind: str, items: list[dict[str, Any]], store: Path, **options: Any
) -> cv.RunReport:
    """Run ``pipe`` over ``items`` on the executor ``kind``."""
    if kind == "thread":
        pipe = on_threads(pipe)
    executor = "ray" if kind == "ray" else "local"
    return pipe.run(items, store=store, workers=WORKERS, executor=executor, **options)


def records(n: int) -> list[dict[str, Any]]:
    return [{"id": f"r{i:03d}", "value": i} for i in range(n)]


def counts(report: cv.RunReport) -> dict[str, dict[str, int]]:
    return {s.step: s.counts for s in report.stats}


def no_thread(kind: str) -> None:
    if kind == "thread":
        pytest.skip("a unit that kills its process would kill the coordinator it runs in")


# -- results and failures -----------------------------------------------------------------------


def test_a_run_computes_every_unit_and_records_failures(kind: str, store_path: Path) -> None:
    report = run(chain, kind, records(20), store_path, id_field="id")

    assert report.state is cv.RunState.COMPLETED_WITH_ERRORS
    assert counts(report) == {
        "parsed": {"done": 20},
        "doubled": {"done": 19, "dead": 1},
        "described": {"done": 19, "skipped": 1},
        "squared": {"done": 20},
    }
    [failure] = report.failures
    assert failure["item"] == "r013" and failure["step"] == "doubled"
    assert failure["error_type"] == "ValueError" and failure["error_message"] == "unlucky 13"
    assert 'raise ValueError(f"unlucky {parsed}")' in failure["traceback"]
    store = open_store(store_path)
    exported = {r["id"]: r for r in rows(store, report.run_id, ["parsed", "doubled", "described"])}
    assert exported["r004"] == {"id": "r004", "parsed": 4, "doubled": 8, "described": "4->8"}
    assert exported["r013"] == {"id": "r013", "parsed": 13, "doubled": None, "described": None}


def test_every_executor_agrees_with_running_inline(
    kind: str, tmp_path: Path, store_path: Path
) -> None:
    report = run(chain, kind, records(15), store_path)
    inline = chain.run(records(15), store=tmp_path / "inline.db", workers=0)
    steps = list(chain.graph.order)
    got = list(rows(open_store(store_path), report.run_id, steps))
    expected = list(rows(open_store(tmp_path / "inline.db"), inline.run_id, steps))
    assert got == expected and len(got) == 15


# -- caching ------------------------------------------------------------------------------------


def test_running_again_recomputes_nothing_that_is_done(kind: str, store_path: Path) -> None:
    run(chain, kind, records(30), store_path, id_field="id")
    again = run(chain, kind, records(32), store_path, id_field="id")

    assert counts(again) == {
        "parsed": {"cached": 30, "done": 2},
        "doubled": {"cached": 29, "dead": 1, "done": 2},  # failures are retried, not cached
        "described": {"cached": 29, "skipped": 1, "done": 2},
        "squared": {"cached": 30, "done": 2},
    }


# -- retries and the dead-letter queue ----------------------------------------------------------

flaky = cv.Pipeline("flaky")


@flaky.step(retries=2, backoff="10ms")
def sometimes(item: cv.Item) -> str:
    # fails on the first attempt of every item: the marker file survives the attempt
    mark = Path(item["dir"]) / f"{item['value']}.seen"
    if not mark.exists():
        mark.write_text("x")
        raise ConnectionError("transient")
    return "ok"


@flaky.step(retries=1, backoff="10ms")
def never(item: cv.Item) -> str:
    raise RuntimeError("always broken")


def test_retries_recover_transient_failures_and_the_rest_are_dead_lettered(
    kind: str, tmp_path: Path, store_path: Path
) -> None:
    items = [{"value": i, "dir": str(tmp_path)} for i in range(6)]
    report = run(flaky, kind, items, store_path)

    assert counts(report) == {"sometimes": {"done": 6}, "never": {"dead": 6}}
    db = sqlite3.connect(store_path)
    attempts = dict(db.execute("SELECT step, max(attempts) FROM units GROUP BY step").fetchall())
    assert attempts == {"sometimes": 2, "never": 2}
    recorded = db.execute(
        "SELECT count(*), min(attempts.error_type) FROM attempts JOIN units ON units.id = unit_id "
        "WHERE step = 'never'"
    ).fetchone()
    assert recorded == (12, "RuntimeError")
    dead = open_store(store_path).dead_units(report.run_id)
    assert len(dead) == 6 and {u["step"] for u in dead} == {"never"}
    assert {u["error_type"] for u in dead} == {"RuntimeError"}


# -- resources and batches ----------------------------------------------------------------------


def counting(builds: Path) -> cv.Pipeline:
    """A batch step with a resource that notes each process that builds it in ``builds``."""
    pipe = cv.Pipeline("batched")

    @pipe.resource
    def model() -> dict[str, Any]:
        with builds.open("a") as fh:
            fh.write(f"{os.getpid()}\n")
        return {"scale": 3}

    @pipe.step
    def number(item: cv.Item) -> int:
        return int(item["value"])

    @pipe.step(batch_size=4)
    def scaled(number: list[int], model: dict[str, Any]) -> list[dict[str, int]]:
        return [{"value": n * model["scale"], "batch": len(number)} for n in number]

    return pipe


def test_batch_steps_get_lists_and_resources_are_built_once_per_worker(
    kind: str, tmp_path: Path, store_path: Path
) -> None:
    builds = tmp_path / "builds.txt"
    report = run(counting(builds), kind, [{"value": i} for i in range(41)], store_path)

    assert counts(report) == {"number": {"done": 41}, "scaled": {"done": 41}}
    out = list(rows(open_store(store_path), report.run_id, ["number", "scaled"]))
    assert all(r["scaled"]["value"] == 3 * r["number"] for r in out)
    assert all(1 <= r["scaled"]["batch"] <= 4 for r in out)
    pids = builds.read_text().split()
    # once per worker process or Ray actor; threads share one
    assert 1 <= len(pids) <= (1 if kind == "thread" else WORKERS)
    assert len(set(pids)) == len(pids)


# -- timeouts -----------------------------------------------------------------------------------

slow = cv.Pipeline("slow")
NAP = 5.0


@slow.step(timeout="300ms", retries=1, backoff="10ms")
def naps(item: cv.Item) -> int:
    if item["value"] == 2:
        time.sleep(NAP)  # blocked in C; a thread cannot be stopped, so keep it short
    return int(item["value"])


def test_a_unit_past_its_timeout_fails_with_a_timeout_and_the_run_goes_on(
    kind: str, store_path: Path
) -> None:
    started = time.monotonic()
    report = run(slow, kind, [{"value": i} for i in range(6)], store_path)

    assert counts(report) == {"naps": {"done": 5, "dead": 1}}
    [failure] = report.failures
    assert failure["error_type"] == "TimeoutError" and failure["attempts"] == 2
    assert "ran longer than its timeout of 0.3s" in failure["error_message"]
    assert time.monotonic() - started < 2 * NAP  # nobody waited for both naps to end


# -- lost workers -------------------------------------------------------------------------------

fragile = cv.Pipeline("fragile")


@fragile.step
def risky(item: cv.Item) -> int:
    if item["value"] == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return int(item["value"])


def test_a_unit_that_kills_its_worker_is_dead_lettered_and_the_run_goes_on(
    kind: str, store_path: Path
) -> None:
    no_thread(kind)
    # Enough units that tasks carry several: only the unit that kills its worker may fail.
    report = run(fragile, kind, [{"value": i} for i in range(400)], store_path)

    assert counts(report) == {"risky": {"done": 399, "dead": 1}}
    [failure] = report.failures
    assert failure["error_type"] == "WorkerLost"
    if kind == "process":
        assert "killed by SIGKILL" in failure["error_message"]
    db = sqlite3.connect(store_path)
    # the units that shared a task with the culprit were requeued without spending an attempt
    assert db.execute("SELECT max(attempts) FROM units WHERE state = 'done'").fetchone() == (1,)


killer_batch = cv.Pipeline("killer-batch")


@killer_batch.step(batch_size=8)
def batch_kill(item: list[cv.Item]) -> list[int]:
    if any(i["value"] == 5 for i in item):
        os.kill(os.getpid(), signal.SIGKILL)
    return [int(i["value"]) for i in item]


def test_a_batch_that_kills_its_worker_is_split_until_the_culprit_is_found(
    kind: str, store_path: Path
) -> None:
    no_thread(kind)
    report = run(killer_batch, kind, [{"value": i} for i in range(16)], store_path)
    assert counts(report) == {"batch_kill": {"done": 15, "dead": 1}}
    assert report.failures[0]["error_type"] == "WorkerLost"
