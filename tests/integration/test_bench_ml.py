"""bench/ml.py runs: its cached-rerun section at ``--quick`` size (one Conveyor search of 20
trials in a child process, then the same call again), with the numbers it writes."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"

pytestmark = pytest.mark.slow


def test_the_ml_benchmark_reruns_a_search_from_the_ledger(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("bench_ml", BENCH / "ml.py")
        assert spec is not None and spec.loader is not None
        bench = importlib.util.module_from_spec(spec)
        sys.modules["bench_ml"] = bench  # its dataclasses look their module up
        spec.loader.exec_module(bench)
        out = tmp_path / "ml.json"
        assert bench.main(["--quick", "--only", "rerun", "--json", str(out)]) == 0
    finally:
        sys.path.remove(str(BENCH))
        sys.modules.pop("bench_ml", None)
    found = json.loads(out.read_text())
    rerun = found["sections"]["rerun"]
    assert rerun["computed"] == [0] and rerun["same_best"] is True
    assert 0 < rerun["walls"][0] < rerun["first_walls"][0]
    [row] = found["summary"]
    assert row["section"] == "rerun" and row["metric"] == "same train() again / first run"
