"""Training on a checked ``@pipe.dataset``: the checks run before any trial, the split (by
hash or by time) is recorded with a pinned golden split, ``cv.report`` feeds a pruner, and
the same search runs on Ray."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conveyor.errors import DataCheckFailed, UsageError
from conveyor.ml.artifacts import ArtifactStore
from conveyor.ml.training import train
from conveyor.store import open_store

RESOURCES = Path(__file__).resolve().parents[1] / "resources"
sys.path.insert(0, str(RESOURCES))
import trained_data  # noqa: E402

pytestmark = pytest.mark.slow
Peek = Callable[[str, str], list[tuple[Any, ...]]]
TRIALS = "SELECT count(*) FROM units WHERE step = 'trial'"


def test_a_dataset_is_built_checked_and_split_with_a_pinned_golden_part(
    store_location: str, tmp_path: Path, peek: Peek
) -> None:
    art = tmp_path / "artifacts"
    result = train(trained_data.pipe, None, store=store_location, artifacts=art, workers=2)
    ledger = open_store(store_location)
    try:
        [version] = ledger.dataset_versions("cancer")
    finally:
        ledger.close()
    assert result.data_version == version["version"]
    lineage = result.lineage
    assert lineage["dataset"] == "cancer" and lineage["split"]["by"] == "hash"
    golden = lineage["golden"]
    pinned = ArtifactStore(art).open_table(golden["version"])
    assert pinned.num_rows == golden["rows"] and 50 < golden["rows"] < 120  # 15% of 569
    assert len(result.trials) == 6 and peek(store_location, TRIALS) == [(6,)]


def test_a_failed_check_stops_the_training_before_any_trial(
    store_location: str, tmp_path: Path, peek: Peek, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_TEST_BREAK_DATA", "1")
    with pytest.raises(DataCheckFailed) as failed:
        train(trained_data.pipe, None, store=store_location, artifacts=tmp_path / "a")
    message = str(failed.value)
    assert "dataset 'cancer'" in message and "mean radius" in message and "7" in message
    assert peek(store_location, "SELECT count(*) FROM units") == [(0,)]
    assert peek(store_location, "SELECT count(*) FROM datasets") == [(1,)]  # recorded, failed


def test_a_time_split_takes_the_rows_before_each_cutoff(store_path: Path, tmp_path: Path) -> None:
    result = train(trained_data.pipe, None, store=store_path, artifacts=tmp_path / "a",
                   workers=0, trials=1, time_column="day",
                   cutoffs={"train": 400, "valid": 500})  # fmt: skip
    split = result.lineage["split"]
    assert split == {"by": "time", "column": "day",
                     "cutoffs": {"train": 400, "valid": 500, "golden": None}}  # fmt: skip
    assert result.lineage["golden"]["rows"] == 569 - 500
    with pytest.raises(UsageError, match="the valid split is empty"):
        train(trained_data.pipe, None, store=store_path, artifacts=tmp_path / "a", workers=0,
              trials=1, time_column="day", cutoffs={"train": 600, "valid": 700})  # fmt: skip


def test_reports_feed_the_pruner_and_pruned_trials_are_told_and_kept_out_of_the_best(
    store_path: Path, tmp_path: Path
) -> None:
    result = train(trained_data.pipe, None, store=store_path, artifacts=tmp_path / "a",
                   workers=2, trials=8, seed=3)  # fmt: skip
    pruned = [t for t in result.trials if t.pruned]
    complete = [t for t in result.trials if t.state == "complete"]
    assert pruned and complete and result.pruned == len(pruned) and result.failed == 0
    assert all(t.params["diverge"] is True for t in pruned)
    assert all(list(t.reports) == [0] and t.model is None for t in pruned)  # stopped at once
    assert all(list(t.reports) == [0, 1, 2, 3, 4] for t in complete)
    assert result.best is not None and result.best.params["diverge"] is False
    # the same call again: pruned trials come back from the ledger as pruned, none reruns
    again = train(trained_data.pipe, None, store=store_path, artifacts=tmp_path / "a",
                  workers=2, trials=8, seed=3)  # fmt: skip
    assert again.computed == 0 and again.pruned == len(pruned)


def test_the_search_runs_on_ray(store_path: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    result = train(trained_data.pipe, None, store=store_path, artifacts=tmp_path / "a",
                   workers=2, trials=3, backend="ray")  # fmt: skip
    assert len(result.trials) == 3 and result.best is not None and result.computed == 3
    model = ArtifactStore(tmp_path / "a").get_bytes(result.artifact or "")
    assert model  # written by a Ray worker into the same artifact store
