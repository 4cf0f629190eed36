"""Prometheus metrics: the exposition parsed by prometheus-client's own parser, its values
checked against the ledger after a real run, and served over real HTTP while a run goes."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

import conveyor as cv
from conveyor.observability.metrics import RunMetrics
from conveyor.store import open_store


def build() -> cv.Pipeline:
    pipe = cv.Pipeline("metered")

    @pipe.step
    def length(item: cv.Item) -> int:
        return len(item["text"])

    @pipe.step(retries=1, backoff="1ms")
    def checked(length: int) -> int:
        if length == 4:
            raise ValueError("four is not allowed")
        return length

    return pipe


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_agree_with_the_ledger_after_a_real_run(store_path: Path) -> None:
    pipe = build()
    records = [{"text": t} for t in ("a", "bb", "cccc", "dd", "eeeee")]
    report = pipe.run(records, store=store_path, workers=0)
    metrics = RunMetrics("metered", store_path, lambda: report.run_id)
    try:
        found = samples(metrics.exposition().decode())
    finally:
        metrics.close()
    ledger = open_store(store_path)
    stats = {s.step: s.counts for s in ledger.step_stats(report.run_id, ["length", "checked"])}
    ledger.close()
    for step, counts in stats.items():
        for state, count in counts.items():
            assert (
                value(found, "conveyor_units", pipeline="metered", step=step, state=state) == count
            )
    assert value(found, "conveyor_dead_letter_units", pipeline="metered", step="checked") == 1
    assert value(found, "conveyor_retries_total", pipeline="metered", step="checked") == 1
    assert value(found, "conveyor_items_ingested_total", pipeline="metered") == 5
    assert value(found, "conveyor_step_duration_seconds_count", pipeline="metered",
                 step="length") == 5  # fmt: skip
    assert value(found, "conveyor_step_duration_seconds_bucket", pipeline="metered",
                 step="length", le="+Inf") == 5  # fmt: skip
    assert value(found, "conveyor_oldest_ready_unit_age_seconds", pipeline="metered") == 0
    assert not any("item" in dict(labels) for _, labels in found)  # bounded cardinality

    again = pipe.run(records, store=store_path, workers=0)
    metrics = RunMetrics("metered", store_path, lambda: again.run_id)
    try:
        found = samples(metrics.exposition().decode())
    finally:
        metrics.close()
    assert value(found, "conveyor_cache_hits_total", pipeline="metered", step="length") == 5


SLOW = """
import time
import conveyor as cv
pipe = cv.Pipeline("slow-metered")

@pipe.step
def nap(item: cv.Item) -> int:
    time.sleep(0.05)
    return len(item["text"])
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_a_batch_run_serves_its_metrics_while_it_runs(tmp_path: Path) -> None:
    (tmp_path / "p.py").write_text(SLOW)
    (tmp_path / "in.jsonl").write_text("".join(f'{{"text": "{"x" * i}"}}\n' for i in range(80)))
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "run", "p.py", "-i", "in.jsonl", "-w", "2",
         "--metrics-port", str(port), "--no-progress"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        seen = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    text = r.read().decode()
            except OSError:
                time.sleep(0.05)
                continue
            found = samples(text)
            if value(found, "conveyor_units", pipeline="slow-metered", step="nap",
                     state="done") > 0:  # fmt: skip
                seen = found
                break
            time.sleep(0.05)
        assert seen is not None, "no metrics while the run went"
        assert value(seen, "conveyor_workers", pipeline="slow-metered") == 2
        assert value(seen, "conveyor_items_ingested_total", pipeline="slow-metered") == 80
        assert ("conveyor_coordinator_process_resident_memory_bytes", ()) in seen
    finally:
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err


def test_bad_metrics_ports_are_usage_errors(tmp_path: Path) -> None:
    (tmp_path / "p.py").write_text(SLOW)
    (tmp_path / "in.jsonl").write_text('{"text": "x"}\n')
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for bad, message in ((str(port), "cannot serve metrics there"),
                             ("70000", "must be between 1 and 65535")):  # fmt: skip
            result = subprocess.run(
                [sys.executable, "-m", "conveyor", "run", "p.py", "-i", "in.jsonl",
                 "--metrics-port", bad, "--no-progress"],
                cwd=tmp_path, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert result.returncode == 2 and message in result.stderr, result.stderr
