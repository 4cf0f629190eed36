"""Per-group models: one ridge per group of a small table, each group a unit on two worker
processes, on both ledgers; the model set, a cached rerun, a failing group redriven."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from conveyor.core.units import RunState, UnitState
from conveyor.definition.loader import load_pipeline
from conveyor.errors import InputError, UsageError
from conveyor.ml.groups import fixed_params, load_model_set, redrive_groups, train_groups
from conveyor.scheduling.hooks import Hooks

RESOURCES = Path(__file__).resolve().parents[1] / "resources"
sys.path.insert(0, str(RESOURCES))
import grouped  # noqa: E402

pytestmark = pytest.mark.slow
Peek = Callable[[str, str], list[tuple[Any, ...]]]
RAN = "SELECT count(*) FROM units WHERE started_at IS NOT NULL"
GROUPS = {f"segment={s}/location={n}" for s in "abc" for n in range(2)}


@pytest.fixture
def sales(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("CONVEYOR_TEST_FAIL_SEGMENT", raising=False)
    monkeypatch.delenv("CONVEYOR_TEST_NONE_SEGMENT", raising=False)
    path = tmp_path / "sales.parquet"
    grouped.table().to_parquet(path)
    return path


def test_one_model_per_group_and_a_rerun_fits_none(
    store_location: str, sales: Path, tmp_path: Path, peek: Peek
) -> None:
    art = tmp_path / "artifacts"
    kwargs: dict[str, Any] = {"store": store_location, "artifacts": art, "workers": 2}
    first = train_groups(grouped.pipe, sales, ["segment", "location"], **kwargs)
    assert first.state is RunState.COMPLETED and not first.failed
    assert set(first.groups) == GROUPS and first.computed == 6 and first.cached == 0
    assert peek(store_location, RAN) == [(6,)]
    assert first.model_set is not None
    models = load_model_set(art, first.model_set)
    assert set(models) == GROUPS and models.complete and models.group_by == ("segment", "location")
    assert models.index["data_version"] == first.data_version
    assert set(models.index["code_versions"]) == {"ridge", "mae", "rows"}
    table = grouped.table()
    for segment, slope in (("a", 1.0), ("c", 3.5)):
        location = 0 if segment == "a" else 1
        model = models.model(models.group_id(segment=segment, location=location))
        assert model.coef_[0] == pytest.approx(slope, abs=0.1)  # each group its own model
        entry = models[f"segment={segment}/location={location}"]
        assert entry["rows"] == 30 and entry["train_rows"] + entry["valid_rows"] == 30
        assert entry["params"] == fixed_params(grouped.SPACE)
        rows = table[(table.segment == segment) & (table.location == location)]
        assert model.predict(rows[["x"]]).shape == (30,)

    again = train_groups(grouped.pipe, sales, ["segment", "location"], **kwargs)
    assert again.computed == 0 and again.cached == 6 and again.run_id != first.run_id
    assert again.model_set == first.model_set  # the same content: the same version
    assert peek(store_location, RAN) == [(6,)]  # nothing ran again


def test_a_failing_group_is_dead_lettered_and_redrive_completes_the_model_set(
    store_location: str, sales: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    art = tmp_path / "artifacts"
    monkeypatch.setenv("CONVEYOR_TEST_FAIL_SEGMENT", "b")  # inherited by the forked workers
    monkeypatch.setenv("CONVEYOR_TEST_NONE_SEGMENT", "c")
    broken = train_groups(grouped.pipe, sales, ["segment", "location"], store=store_location,
                          artifacts=art, workers=2)  # fmt: skip
    assert broken.state is RunState.COMPLETED_WITH_ERRORS
    assert set(broken.groups) == {"segment=a/location=0", "segment=a/location=1"}
    assert set(broken.failed) == GROUPS - set(broken.groups)
    assert "no prices for segment b today" in broken.failed["segment=b/location=0"]
    assert (
        "fit 'ridge' returned None for group 'segment=c/location=1'"
        in (broken.failed["segment=c/location=1"])
    )
    partial = load_model_set(art, broken.model_set or "")
    assert not partial.complete and set(partial.missing) == set(broken.failed)
    with pytest.raises(InputError, match="it failed in training"):
        partial.model("segment=b/location=1")

    monkeypatch.delenv("CONVEYOR_TEST_FAIL_SEGMENT")
    monkeypatch.delenv("CONVEYOR_TEST_NONE_SEGMENT")
    fixed = redrive_groups(grouped.pipe, broken.run_id, store=store_location, workers=2)
    assert fixed.run_id == broken.run_id and fixed.state is RunState.COMPLETED
    assert set(fixed.groups) == GROUPS and not fixed.failed
    whole = load_model_set(art, fixed.model_set or "")
    assert whole.complete and set(whole) == GROUPS and whole.version != partial.version
    assert whole.model("segment=b/location=1").coef_[0] == pytest.approx(2.5, abs=0.1)
    with pytest.raises(UsageError, match="no failed groups"):
        redrive_groups(grouped.pipe, broken.run_id, store=store_location, workers=2)


def test_buckets_pack_groups_into_units_and_a_search_per_group_is_seeded(
    store_path: Path, sales: Path, tmp_path: Path, peek: Peek
) -> None:
    art = tmp_path / "artifacts"
    columns = ["segment", "location"]
    packed = train_groups(grouped.pipe, sales, columns, buckets=2, store=store_path,
                          artifacts=art, workers=2)  # fmt: skip
    assert set(packed.groups) == GROUPS and packed.computed <= 2
    assert peek(str(store_path), RAN)[0][0] == packed.computed
    searched = train_groups(grouped.pipe, sales, columns, trials=4, store=tmp_path / "s.db",
                            artifacts=art, workers=2)  # fmt: skip
    assert all(g.trials == 4 for g in searched.groups.values())
    for gid, group in searched.groups.items():  # the first trial is the fixed parameters
        assert group.metrics["mae"] <= packed.groups[gid].metrics["mae"]
    assert any(g.params != fixed_params(grouped.SPACE) for g in searched.groups.values())
    # the same search again, inline, in another ledger: the same parameters for every group
    inline = train_groups(grouped.pipe, sales, columns, trials=4, store=tmp_path / "i.db",
                          artifacts=art, workers=0)  # fmt: skip
    assert {g: m.params for g, m in inline.groups.items()} == {
        g: m.params for g, m in searched.groups.items()
    }


def test_a_changed_fit_refits_every_group(sales: Path, tmp_path: Path, peek: Peek) -> None:
    copy = tmp_path / "grouped.py"
    copy.write_text((RESOURCES / "grouped.py").read_text())
    pipe, _ = load_pipeline(str(copy))
    store = tmp_path / "ledger.db"
    kwargs: dict[str, Any] = {"store": store, "artifacts": tmp_path / "a", "workers": 0}
    train_groups(pipe, sales, ["segment"], **kwargs)
    copy.write_text(copy.read_text().replace('alpha=params["alpha"]', "alpha=params['alpha'] * 2"))
    changed, _ = load_pipeline(str(copy))
    again = train_groups(changed, sales, ["segment"], **kwargs)
    assert again.computed == 3 and again.cached == 0
    assert peek(str(store), RAN) == [(6,)]


@pytest.mark.parametrize(
    ("group_by", "options", "error", "message"),
    [
        (
            ["segmnt"],
            {},
            UsageError,
            "--group-by 'segmnt': sales.parquet has no such column "
            "(did you mean 'segment'?); its columns are segment, "
            "location, x, y",
        ),
        (["segment"], {"buckets": 0}, UsageError, "--buckets 0: must be a whole number >= 1"),
        ([], {}, UsageError, "--group-by: name the column(s)"),
        (["segment"], {"trials": 0}, UsageError, "--group-trials 0"),
        (["segment"], {"model": "forest"}, UsageError, "no model 'forest'"),
    ],
)
def test_bad_input_is_refused_before_anything_runs(
    sales: Path, tmp_path: Path, group_by: list[str], options: dict[str, Any],
    error: type[Exception], message: str,
) -> None:  # fmt: skip
    store = tmp_path / "ledger.db"
    with pytest.raises(error) as raised:
        train_groups(grouped.pipe, sales, group_by, store=store, artifacts=tmp_path / "a",
                     **options)  # fmt: skip
    assert message in str(raised.value)
    assert not store.exists()


def test_an_empty_table_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.parquet"
    grouped.table().iloc[:0].to_parquet(empty)
    with pytest.raises(UsageError, match="the table has no rows"):
        train_groups(grouped.pipe, empty, ["segment"], store=tmp_path / "l.db")


def test_a_group_too_small_to_split_fails_alone(tmp_path: Path) -> None:
    table = grouped.table()
    small = pd.concat([table, table.iloc[:1].assign(segment="tiny")], ignore_index=True)
    path = tmp_path / "sales.csv"
    small.to_csv(path, index=False)
    result = train_groups(grouped.pipe, path, ["segment"], store=tmp_path / "l.db",
                          artifacts=tmp_path / "a", workers=0)  # fmt: skip
    assert set(result.groups) == {"segment=a", "segment=b", "segment=c"}
    assert "too few to split into train and valid" in result.failed["segment=tiny"]


class _StopAfter(Hooks):
    """Interrupts the run (as Ctrl-C would) once ``count`` units are done."""

    def __init__(self, count: int) -> None:
        self.count = count

    def units_advanced(self, step: str, state: UnitState, count: int) -> None:
        self.count -= count
        if self.count <= 0:
            raise KeyboardInterrupt


def test_an_interrupted_training_is_continued_and_refits_only_what_was_left(
    sales: Path, tmp_path: Path, peek: Peek
) -> None:
    store = tmp_path / "ledger.db"
    kwargs: dict[str, Any] = {"store": store, "artifacts": tmp_path / "a", "workers": 0}
    with pytest.raises(KeyboardInterrupt):
        train_groups(grouped.pipe, sales, ["segment", "location"], hooks=[_StopAfter(2)],
                     **kwargs)  # fmt: skip
    ran = peek(str(store), RAN)[0][0]
    assert 2 <= ran < 6
    resumed = train_groups(grouped.pipe, sales, ["segment", "location"], **kwargs)
    assert resumed.state is RunState.COMPLETED and set(resumed.groups) == GROUPS
    assert peek(str(store), "SELECT count(*) FROM runs") == [(1,)]  # the same run, continued
    assert peek(str(store), RAN) == [(6,)]
