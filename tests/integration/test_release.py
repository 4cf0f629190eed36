"""The end of a training, on both ledgers: the best model gated against the champion on the
golden split, registered with its lineage and verdict, aliased challenger, and promoted to
champion when asked and the gate passes (tests/resources/released.py: a logistic regression
whose strength an environment variable picks)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from conveyor.definition.loader import load_pipeline
from conveyor.errors import ArtifactCorrupt, UsageError
from conveyor.ml.artifacts import ArtifactStore
from conveyor.ml.groups import GroupTraining, redrive_groups, train_groups
from conveyor.ml.registry import Registry
from conveyor.ml.release import Release, release_model_set
from conveyor.ml.training import TrainingResult, train

RESOURCES = Path(__file__).resolve().parents[1] / "resources"
sys.path.insert(0, str(RESOURCES))
import grouped  # noqa: E402
import released  # noqa: E402

Peek = Callable[[str, str], list[tuple[Any, ...]]]
ENV = ("CONVEYOR_TEST_STRENGTH", "CONVEYOR_TEST_GATE", "CONVEYOR_TEST_LABEL",
       "CONVEYOR_TEST_EXPORT")  # fmt: skip


class Trainer:
    """Trains released.py's model (the variant the environment picks) on one ledger and
    artifact store, and reads the registry back."""

    def __init__(self, store: str, artifacts: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.store, self.artifacts, self.monkeypatch = store, artifacts, monkeypatch
        for name in ENV:
            monkeypatch.delenv(name, raising=False)

    def __call__(
        self, strength: str = "good", *, table: pd.DataFrame | None = None,
        promote: bool = False, workers: int = 0, **env: str,
    ) -> TrainingResult:  # fmt: skip
        self.monkeypatch.setenv("CONVEYOR_TEST_STRENGTH", strength)
        for name in ENV[1:]:
            self.monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            self.monkeypatch.setenv(f"CONVEYOR_TEST_{name.upper()}", value)
        self.pipe, _ = load_pipeline(str(RESOURCES / "released.py"))  # the variant, freshly
        table = released.table() if table is None else table
        return train(self.pipe, None, table, store=self.store, artifacts=self.artifacts,
                     workers=workers, promote=promote)  # fmt: skip

    def registry(self) -> Registry:
        return Registry(self.store, self.artifacts)

    def state(self) -> Any:
        """Everything the registry holds (to compare before and after a refusal)."""
        with self.registry() as reg:
            found = reg.models()
            if not found:
                return []
            return ([m.to_dict() for m in found],
                    [v.to_dict() for v in reg.versions("scorer")],
                    [m.to_dict() for m in reg.history("scorer")])  # fmt: skip


@pytest.fixture
def trainer(store_location: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Trainer:
    return Trainer(store_location, tmp_path / "artifacts", monkeypatch)


def _released(result: TrainingResult) -> Release:
    assert result.release is not None
    return result.release


@pytest.mark.slow
def test_a_first_model_is_registered_with_its_lineage_and_champion_only_when_promoted(
    trainer: Trainer,
) -> None:
    result = trainer(workers=2)  # real worker processes, once
    done = _released(result)
    record = done.version
    assert (record.name, record.version, record.kind, done.created) == ("scorer", 1, "model", True)
    assert done.verdict is not None and done.verdict.passed and done.passed is True
    assert done.verdict.champion is None and not done.verdict.rescored  # a first model
    [rule] = done.verdict.rules
    assert rule.metric == "roc_auc" and rule.champion is None and rule.interval is None
    assert rule.checks == {"floor": None, "min_absolute": None, "min_relative": None,
                           "noise": None}  # fmt: skip
    assert done.promoted is None and done.challenger is not None
    with trainer.registry() as reg:
        assert reg.aliases("scorer") == {"challenger": 1}  # champion only when promoted
        [move] = reg.history("scorer")
        assert (move.alias, move.to_version, move.actor, move.who) == (
            "challenger",
            1,
            "gate",
            result.run_id,
        )
        # the lineage: data, split, golden set, parameters, code, metrics, run, packages
        assert reg.get("scorer@1").model.predict(released.table()[["x1", "x2"]]).shape == (1200,)
    assert record.artifact == result.artifact and record.format == "cloudpickle"
    assert record.run_id == result.run_id
    lin = record.lineage
    assert lin["data_version"] == result.data_version and lin["dataset"] is None
    assert lin["split"] == {"by": "hash", "id_column": None,
                            "shares": {"train": 0.7, "valid": 0.15, "golden": 0.15}}  # fmt: skip
    golden = ArtifactStore(trainer.artifacts).open_table(lin["golden"]["version"])
    assert lin["golden"]["rows"] == golden.num_rows > 100
    assert result.best is not None and lin["params"] == dict(result.best.params)
    pipe = trainer.pipe
    assert lin["code_versions"] == {"scorer": pipe.models["scorer"].code_version,
                                    "roc_auc": pipe.metrics["roc_auc"].code_version,
                                    "accuracy": pipe.metrics["accuracy"].code_version}  # fmt: skip
    assert lin["run_id"] == result.run_id and lin["trials"] == 2
    assert lin["trial"] == result.best.number and lin["label"] == "y"
    assert {"python", "conveyor", "scikit-learn", "numpy"} <= set(lin["packages"])
    assert lin["artifact"] == record.artifact and lin["format"] == "cloudpickle"
    assert lin["artifacts"] == ArtifactStore(trainer.artifacts).location
    assert record.metrics["valid"] == dict(result.best.metrics)
    assert set(record.metrics["golden"]) == {"roc_auc", "accuracy"}
    assert record.metrics["golden"]["roc_auc"] == pytest.approx(rule.challenger)
    assert record.gate == done.verdict.as_dict() and record.passed is True

    again = _released(trainer(promote=True))  # cached: registers nothing, promotes what passed
    assert (again.version.version, again.created, again.verdict) == (1, False, None)
    assert again.promoted is not None and again.promoted.to_version == 1
    with trainer.registry() as reg:
        assert reg.aliases("scorer") == {"challenger": 1, "champion": 1}
        assert len(reg.versions("scorer")) == 1


def test_a_better_model_is_promoted_a_worse_one_stays_challenger_and_reruns_register_nothing(
    trainer: Trainer,
) -> None:
    first = _released(trainer(promote=True))
    assert first.promoted is not None and first.promoted.from_version is None
    better = _released(trainer("better", promote=True))
    assert better.version.version == 2 and better.created and better.passed is True
    verdict = better.verdict
    assert verdict is not None and verdict.champion == 1 and not verdict.rescored
    [rule] = verdict.rules
    assert rule.champion == pytest.approx(first.version.metrics["golden"]["roc_auc"])
    assert rule.delta is not None and rule.delta > 0.03 and rule.interval is not None
    assert rule.interval[0] > 0 and rule.bootstrap == "predictions"
    assert rule.checks["min_absolute"] is True and rule.checks["noise"] is True
    assert better.promoted is not None
    assert (better.promoted.from_version, better.promoted.to_version) == (1, 2)
    assert better.promoted.reason == verdict.summary()

    worse = _released(trainer("worse", promote=True))
    assert worse.version.version == 3 and worse.created and worse.passed is False
    assert worse.verdict is not None and worse.verdict.champion == 2
    assert worse.verdict.rules[0].checks["min_absolute"] is False
    assert worse.verdict.rules[0].checks["noise"] is False
    assert any("worse beyond the noise" in r for r in worse.verdict.reasons())
    assert worse.promoted is None and worse.version.gate == worse.verdict.as_dict()
    assert worse.challenger is not None and worse.challenger.forced is False  # no override
    with trainer.registry() as reg:
        assert reg.aliases("scorer") == {"challenger": 3, "champion": 2}
        with pytest.raises(UsageError, match="failed its gate"):
            reg.promote("scorer", 3)
    before = trainer.state()

    cached = _released(trainer("worse", promote=True))
    assert (cached.version.version, cached.created, cached.verdict) == (3, False, None)
    assert cached.promoted is None and cached.challenger is None and cached.passed is False
    assert trainer.state() == before  # nothing registered, gated or moved

    # the first model again: it passed against no champion, not against champion 2
    stale = _released(trainer("good", promote=True))
    assert (stale.version.version, stale.created, stale.promoted) == (1, False, None)
    assert stale.held_back is not None
    assert "gated against no champion, and the champion is 2 now" in stale.held_back
    with trainer.registry() as reg:
        assert reg.aliases("scorer")["champion"] == 2
        assert len(reg.versions("scorer")) == 3


def test_a_floor_above_reach_refuses_a_first_model(trainer: Trainer) -> None:
    done = _released(trainer(promote=True, gate="floor"))
    assert done.version.version == 1 and done.passed is False and done.promoted is None
    assert done.verdict is not None and done.verdict.champion is None
    [rule] = done.verdict.rules
    assert rule.checks["floor"] is False and rule.floor == 0.999
    assert done.verdict.reasons() == [f"roc_auc {rule.challenger:.6g} is below the floor 0.999"]
    with trainer.registry() as reg:
        assert reg.aliases("scorer") == {"challenger": 1}


def test_a_changed_golden_split_rescores_the_champion(trainer: Trainer) -> None:
    first = _released(trainer(promote=True))
    more = released.table(rows=1500, seed=4)  # more data: another golden split
    later = _released(trainer("better", table=more, promote=True))
    verdict = later.verdict
    assert verdict is not None and verdict.champion == 1 and verdict.rescored
    old, new = first.version.lineage["golden"], later.version.lineage["golden"]
    assert verdict.golden == {"version": new["version"], "rows": new["rows"]}
    assert new["version"] != old["version"]
    [rule] = verdict.rules
    # the champion scored on the new golden rows, not its recorded score on the old ones
    assert rule.champion != pytest.approx(first.version.metrics["golden"]["roc_auc"], abs=1e-9)
    assert "champion rescored" in verdict.summary() and later.passed is True


def test_a_golden_table_without_the_label_column_is_refused_and_nothing_registered(
    trainer: Trainer, store_location: str, peek: Peek
) -> None:
    with pytest.raises(UsageError) as first:
        trainer(promote=True, label="rain")
    assert first.value.exit_code == 2
    assert str(first.value) == (
        "model 'scorer': label='rain' is not a column of its table "
        "(columns: x1, x2, x3, x4, y); fix @pipe.model(label=...)"
    )
    assert trainer.state() == []  # nothing registered
    assert peek(store_location, "SELECT count(*) FROM units") == [(0,)]  # before any trial

    trainer(promote=True)
    before = trainer.state()
    with pytest.raises(UsageError, match=r"label='yy' is not a column .*did you mean 'y'"):
        trainer("better", promote=True, label="yy")
    assert trainer.state() == before


def test_a_corrupted_champion_artifact_refuses_the_gate(trainer: Trainer) -> None:
    champion = _released(trainer(promote=True)).version
    path = trainer.artifacts / "objects" / champion.artifact[:2] / champion.artifact[2:]
    path.write_bytes(path.read_bytes()[:-10] + b"tampered!!")
    before = trainer.state()
    with pytest.raises(ArtifactCorrupt) as caught:
        trainer("better", promote=True)
    assert caught.value.exit_code == 2
    message = str(caught.value)
    assert message.startswith(f"refusing to load scorer 1: its artifact {champion.artifact}")
    assert "is corrupted (hash mismatch)" in message
    assert trainer.state() == before  # nothing registered, nothing moved


def test_an_onnx_export_is_recorded_with_its_parity(trainer: Trainer) -> None:
    pytest.importorskip("skl2onnx")
    pytest.importorskip("onnxruntime")
    done = _released(trainer(promote=True, export="onnx"))
    assert done.export is not None and done.export.format == "onnx"
    details = done.export.details
    golden_rows = done.version.lineage["golden"]["rows"]
    assert 0 <= details["parity"] < 1e-5 and details["rows"] == golden_rows
    assert details["compared"] == "probabilities" and details["features"] == ["x1", "x2"]
    assert done.export.artifact is not None
    with trainer.registry() as reg:
        [recorded] = reg.exports("scorer", 1)
        assert recorded.artifact == done.export.artifact
        assert recorded.details["parity"] == details["parity"]
        assert reg.artifacts.has(recorded.artifact or "")
    again = _released(trainer(promote=True, export="onnx"))
    assert again.created is False and again.export is None
    with trainer.registry() as reg:
        assert len(reg.exports("scorer", 1)) == 1  # a cached rerun exports nothing again


def _release_set(store: str, result: GroupTraining, promote: bool) -> Release:
    """Register a per-group training's model set, as ``conveyor train --group-by`` does."""
    assert result.model_set is not None
    index = json.loads(ArtifactStore(result.artifacts).get_bytes(result.model_set))
    with Registry(store, result.artifacts) as reg:
        return release_model_set(reg, result.model, result.model_set, index,
                                 run_id=result.run_id, promote=promote)  # fmt: skip


def test_a_model_set_is_registered_and_champion_only_when_complete(
    store_location: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sales = tmp_path / "sales.parquet"
    grouped.table().to_parquet(sales)
    art = tmp_path / "artifacts"
    monkeypatch.delenv("CONVEYOR_TEST_NONE_SEGMENT", raising=False)
    monkeypatch.setenv("CONVEYOR_TEST_FAIL_SEGMENT", "b")
    columns = ["segment", "location"]
    broken = train_groups(grouped.pipe, sales, columns, store=store_location, artifacts=art,
                          workers=0)  # fmt: skip
    partial = _release_set(store_location, broken, promote=True)
    record = partial.version
    assert (record.name, record.version, record.kind, record.members) == (
        "ridge",
        1,
        "model_set",
        4,
    )
    assert partial.created and partial.promoted is None and record.passed is None
    assert record.artifact == broken.model_set and record.format == "model_set"
    assert record.lineage["complete"] is False and set(record.lineage["missing"]) == set(
        broken.failed
    )
    assert record.lineage["group_by"] == columns and record.run_id == broken.run_id
    assert record.lineage["data_version"] == broken.data_version
    assert set(record.metrics["valid"]) == {"mae median", "mae min", "mae max"}
    with Registry(store_location) as reg:
        assert reg.aliases("ridge") == {}  # an incomplete set is never champion
        assert len(reg.get("ridge@1").model) == 4

    monkeypatch.delenv("CONVEYOR_TEST_FAIL_SEGMENT")
    fixed = redrive_groups(grouped.pipe, broken.run_id, store=store_location, workers=0)
    whole = _release_set(store_location, fixed, promote=True)
    assert (whole.version.version, whole.version.members, whole.created) == (2, 6, True)
    assert whole.version.lineage["complete"] is True and whole.version.lineage["missing"] == {}
    assert whole.promoted is not None and whole.promoted.to_version == 2
    assert whole.promoted.actor == "gate" and "6 groups" in whole.promoted.reason
    again = train_groups(grouped.pipe, sales, columns, store=store_location, artifacts=art,
                         workers=0)  # fmt: skip
    cached = _release_set(store_location, again, promote=True)
    assert (cached.version.version, cached.created, cached.promoted) == (2, False, None)
    with Registry(store_location) as reg:
        assert reg.aliases("ridge") == {"champion": 2}
        assert [v.version for v in reg.versions("ridge")] == [2, 1]
