"""A timing guard: every read endpoint of the dashboard answers a run of 100,000 units in well
under a second (the measured numbers are in BENCHMARKS.md: bench/dashboard_api.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from conveyor.store import open_store

pytestmark = pytest.mark.slow
BENCH = Path(__file__).resolve().parents[2] / "bench" / "dashboard_api.py"


@pytest.mark.timeout(300)
def test_every_endpoint_answers_a_100k_unit_run_in_under_a_second(store_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("dashboard_bench", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    store = open_store(store_path)
    bench.build(store, "big", 50_000)
    assert sum(store.run_counts(["big"])["big"].values()) == 100_000
    unit = store.dead_units("big", limit=1)[0]["unit"]
    store.close()
    server, base = bench.serve(str(store_path))
    try:
        times = bench.time_calls(base, bench.endpoints("big", unit), 3)
    finally:
        server.should_exit = True
    slow = {name: f"{median:.2f}s" for name, (median, _) in times.items() if median > 0.8}
    assert not slow, f"dashboard endpoints too slow on 100,000 units: {slow}"
