"""The model registry on every backend (a SQLite file, a PostgreSQL database): versions and
their lineage, aliases moved only by appending to their history, rollback as a stack, clear
errors, nothing ever updated or deleted, concurrent writers on PostgreSQL, and models whose
bytes are missing or changed refused."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pytest
from sklearn.linear_model import LinearRegression

import conveyor as cv
from conveyor.errors import (
    AliasConflict,
    ArtifactCorrupt,
    InputError,
    ModelNotFound,
    UsageError,
)
from conveyor.ml.artifacts import ArtifactStore
from conveyor.ml.groups import MODEL_SET_FORMAT, ModelSet
from conveyor.ml.registry import Registry, holders, parse_ref
from conveyor.store import Store, protocols
from conveyor.store.relational_registry import RelationalRegistry
from conveyor.store.rows import AliasMove
from conveyor.store.sqlfiles import load_queries

REPO = Path(__file__).resolve().parents[2]
LINEAGE = {
    "model": "rain", "format": "cloudpickle", "dataset": "weather", "data_version": "d" * 64,
    "split": {"train": 0.7, "valid": 0.15, "golden": 0.15},
    "golden": {"version": "g" * 64, "rows": 2700, "artifact": "/a/golden.parquet"},
    "params": {"max_depth": 4, "learning_rate": 0.1}, "code_versions": {"rain": "c1", "rmse": "m1"},
    "run_id": "run-1", "seed": 0, "trial": 3, "trials": 20,
    "packages": {"python": "3.11", "scikit-learn": "1.9"},
}  # fmt: skip
GATE = {
    "passed": False, "champion": 1, "golden": {"version": "g" * 64, "rows": 2700},
    "rescored": True, "confidence": 0.95, "resamples": 1000, "seed": 0,
    "rules": [{"metric": "rmse", "direction": "minimize", "challenger": 1.01, "champion": 1.0,
               "delta": 0.01, "relative": 0.01, "interval": [-0.02, 0.04], "floor": None,
               "min_absolute": 0.0, "min_relative": None,
               "checks": {"floor": None, "min_absolute": False, "min_relative": None,
                          "noise": False}, "passed": False}],
}  # fmt: skip


def fitted(slope: float) -> LinearRegression:
    x = np.arange(20, dtype=float).reshape(-1, 1)
    return LinearRegression().fit(x, slope * x.ravel() + 1.0)


class Models:
    """Registers small fitted models (each slope its own artifact) in a test's registry."""

    def __init__(self, registry: Registry, artifacts: ArtifactStore) -> None:
        self.registry, self.artifacts = registry, artifacts

    def put(self, slope: float) -> str:
        return self.artifacts.put_bytes(cloudpickle.dumps(fitted(slope)))

    def add(self, slope: float, name: str = "rain", **fields: Any) -> int:
        values: dict[str, Any] = {
            "run_id": f"run-{slope}", "lineage": {**LINEAGE, "params": {"slope": slope}},
            "metrics": {"valid": {"rmse": 1.0 / (1 + slope)},
                        "golden": {"rmse": 1.1 / (1 + slope)}},
        }  # fmt: skip
        record, new = self.registry.register(
            name=name, artifact=self.put(slope), **{**values, **fields}
        )
        assert new
        return record.version


@pytest.fixture
def artifacts(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


@pytest.fixture
def registry(ledger: Store, artifacts: ArtifactStore) -> Iterator[Registry]:
    with Registry(ledger, artifacts.location) as reg:
        yield reg


@pytest.fixture
def models(registry: Registry, artifacts: ArtifactStore) -> Models:
    return Models(registry, artifacts)


def moves(registry: Registry, name: str = "rain", alias: str | None = None) -> list[Any]:
    """The history without the time stamps: (alias, seq, from, to, action, actor, who, reason,
    forced)."""
    return [
        (m.alias, m.seq, m.from_version, m.to_version, m.action, m.actor, m.who, m.reason, m.forced)
        for m in registry.history(name, alias)
    ]


# -- versions --------------------------------------------------------------------------------------


def test_versions_are_numbered_and_resolved_by_number_alias_and_latest(
    registry: Registry, models: Models
) -> None:
    assert [models.add(s) for s in (1.0, 2.0, 3.0)] == [1, 2, 3]
    registry.promote("rain", 2)
    assert registry.resolve("rain").version == 3
    assert registry.resolve("rain@latest").version == 3
    assert registry.resolve("rain@1").version == 1
    assert registry.resolve("rain@champion").version == 2
    loaded = registry.get("rain@champion")
    assert loaded.record == registry.resolve("rain@2")
    assert loaded.model.predict(np.array([[10.0]])) == pytest.approx([21.0])
    assert [v.version for v in registry.versions("rain")] == [3, 2, 1]
    assert [v.version for v in registry.versions("rain", limit=1, offset=1)] == [2]
    assert registry.versions("rain", offset=5) == []
    [summary] = registry.models()
    assert (summary.name, summary.kind, summary.versions, summary.latest) == ("rain", "model", 3, 3)
    assert summary.aliases == {"champion": 2} == registry.aliases("rain")
    assert summary.updated_at >= registry.resolve("rain@3").created_at


def test_the_same_artifact_is_not_registered_twice(registry: Registry, models: Models) -> None:
    first = models.add(1.0)
    again, new = registry.register(name="rain", artifact=models.put(1.0), run_id="run-again")
    assert (again.version, again.run_id, new) == (first, "run-1.0", False)
    other, new = registry.register(name="snow", artifact=models.put(1.0))
    assert (other.version, new) == (1, True)  # another model may hold the same bytes
    assert [v.version for v in registry.versions("rain")] == [1]


def test_lineage_metrics_and_gate_round_trip(
    registry: Registry, models: Models, open_ledger: Any, artifacts: ArtifactStore
) -> None:
    models.add(1.0, gate=GATE, members=0)
    again = Registry(open_ledger(), artifacts.location).resolve("rain@1")  # another connection
    assert again.lineage == {**LINEAGE, "params": {"slope": 1.0}, "artifacts": artifacts.location}
    assert again.metrics == {"valid": {"rmse": 0.5}, "golden": {"rmse": 0.55}}
    assert again.gate == GATE and again.passed is False  # passed follows the gate's verdict
    assert (again.kind, again.format, again.run_id, again.members) == (
        "model",
        "cloudpickle",
        "run-1.0",
        0,
    )
    assert json.loads(json.dumps(again.to_dict()))["gate"] == GATE


def test_a_model_set_loads_as_a_model_set(registry: Registry, artifacts: ArtifactStore) -> None:
    groups = {f"segment={s}": {"model": artifacts.put_bytes(cloudpickle.dumps(fitted(s))),
                               "metrics": {"rmse": 0.1}, "rows": 20, "params": {}}
              for s in (1, 2)}  # fmt: skip
    index = {"format": MODEL_SET_FORMAT, "model": "prices", "group_by": ["segment"],
             "groups": groups, "missing": {}, "complete": True}  # fmt: skip
    digest = artifacts.put_bytes(json.dumps(index).encode())
    record, _ = registry.register(name="prices", artifact=digest, kind="model_set", members=2)
    assert (record.format, record.members) == ("model_set", 2)
    loaded = registry.get("prices@1").model
    assert isinstance(loaded, ModelSet) and len(loaded) == 2
    assert loaded.model("segment=2").predict(np.array([[1.0]])) == pytest.approx([3.0])


def test_registering_bad_fields_is_refused(registry: Registry, artifacts: ArtifactStore) -> None:
    with pytest.raises(UsageError, match="not a digest"):
        registry.register(name="rain", artifact="abc")
    with pytest.raises(InputError, match="is not in the artifact store"):
        registry.register(name="rain", artifact="0" * 64)
    with pytest.raises(UsageError, match="kind 'tree' is not one of model, model_set"):
        registry.register(name="rain", artifact="0" * 64, kind="tree")
    with pytest.raises(UsageError, match="without spaces or '@'"):
        registry.register(name="rain@1", artifact="0" * 64)
    assert registry.models() == []


# -- aliases ---------------------------------------------------------------------------------------


def test_promote_promote_promote_rollback_rollback_history_exactly(
    registry: Registry, models: Models
) -> None:
    for slope in (1.0, 2.0, 3.0):
        models.add(slope)
    started = time.time()
    registry.promote("rain", 1, reason="first", who="ana")
    registry.promote("rain", 2, reason="better", who="ben")
    registry.promote("rain", 3, reason="best", actor="gate", who="run-3")
    back = registry.rollback("rain", reason="alarm fired", actor="alarm", who="rmse-high")
    assert (back.from_version, back.to_version, registry.aliases("rain")) == (3, 2, {"champion": 2})
    registry.rollback("rain", reason="still bad", who="ana")
    assert registry.resolve("rain@champion").version == 1
    assert moves(registry) == [
        ("champion", 1, None, 1, "promote", "user", "ana", "first", False),
        ("champion", 2, 1, 2, "promote", "user", "ben", "better", False),
        ("champion", 3, 2, 3, "promote", "gate", "run-3", "best", False),
        ("champion", 4, 3, 2, "rollback", "alarm", "rmse-high", "alarm fired", False),
        ("champion", 5, 2, 1, "rollback", "user", "ana", "still bad", False),
    ]
    stamps = [m.at for m in registry.history("rain")]
    assert stamps == sorted(stamps) and started <= stamps[0] and stamps[-1] <= time.time()
    assert all(isinstance(m, AliasMove) and m.name == "rain" for m in registry.history("rain"))
    before = registry.history("rain")
    with pytest.raises(UsageError, match="alias champion of rain has no previous holder"):
        registry.rollback("rain")
    assert registry.history("rain") == before and registry.aliases("rain") == {"champion": 1}


def test_rollback_is_the_stack_of_promotions(registry: Registry, models: Models) -> None:
    for slope in (1.0, 2.0, 3.0):
        models.add(slope)
    registry.promote("rain", 1)
    with pytest.raises(UsageError, match="no previous holder"):
        registry.rollback("rain")
    registry.promote("rain", 2)
    registry.rollback("rain")  # back to 1
    registry.promote("rain", 3)  # 1, 3
    assert registry.rollback("rain").to_version == 1
    assert holders(registry.history("rain", "champion")) == [1]
    # Each alias has its own history and stack.
    registry.promote("rain", 3, alias="challenger")
    assert registry.aliases("rain") == {"challenger": 3, "champion": 1}
    with pytest.raises(UsageError, match="alias challenger of rain has no previous holder"):
        registry.rollback("rain", alias="challenger")
    # Promoting the challenger by its alias moves the champion to its version.
    assert registry.promote("rain", "challenger").to_version == 3
    assert [m[0] for m in moves(registry)][-2:] == ["challenger", "champion"]


def test_promoting_the_version_an_alias_holds_is_refused(
    registry: Registry, models: Models
) -> None:
    models.add(1.0)
    registry.promote("rain", 1)
    with pytest.raises(UsageError, match="rain 1 holds alias champion already; nothing to move"):
        registry.promote("rain", 1)
    assert len(registry.history("rain")) == 1


@pytest.mark.parametrize(
    ("alias", "message"),
    [
        ("latest", "alias 'latest' is reserved"),
        ("Champion", "lowercase letters"),
        ("1st", "starting with a letter"),
        ("", "1 to 64"),
        ("a" * 65, "1 to 64"),
        ("blue green", "lowercase letters"),
        ("prod.eu", "lowercase letters"),
    ],
)
def test_bad_alias_names_are_refused_and_nothing_moves(
    registry: Registry, models: Models, alias: str, message: str
) -> None:
    models.add(1.0)
    with pytest.raises(UsageError, match=message):
        registry.promote("rain", 1, alias=alias)
    with pytest.raises(UsageError, match=message):
        registry.rollback("rain", alias=alias)
    assert registry.history("rain") == [] and registry.aliases("rain") == {}


def test_a_version_that_failed_its_gate_is_promoted_only_with_force(
    registry: Registry, models: Models
) -> None:
    models.add(1.0)
    models.add(2.0, gate=GATE)
    registry.promote("rain", 1)
    with pytest.raises(UsageError, match=r"rain 2 failed its gate \(rmse: min_absolute, noise\)"):
        registry.promote("rain", 2)
    assert registry.aliases("rain") == {"champion": 1} and len(registry.history("rain")) == 1
    move = registry.promote("rain", 2, force=True, reason="hotfix")
    assert (move.forced, move.to_version) == (True, 2)
    models.add(3.0, gate={**GATE, "passed": True, "rules": []})
    assert registry.promote("rain", 3, force=True).forced is False  # nothing was overridden
    assert [m[-1] for m in moves(registry)] == [False, True, False]


def test_an_unknown_actor_is_refused(registry: Registry, models: Models) -> None:
    models.add(1.0)
    with pytest.raises(UsageError, match="actor 'robot' is not one of user, gate, alarm"):
        registry.promote("rain", 1, actor="robot")


def test_unknown_models_versions_and_aliases_name_the_closest(
    registry: Registry, models: Models
) -> None:
    with pytest.raises(ModelNotFound, match=r"no model 'rain' .* it has none yet"):
        registry.resolve("rain")
    models.add(1.0)
    models.add(2.0)
    models.add(1.0, name="snow")
    registry.promote("rain", 1)
    with pytest.raises(ModelNotFound, match=r"no model 'rian' .*\(did you mean 'rain'\?\)"):
        registry.resolve("rian@champion")
    with pytest.raises(ModelNotFound, match="'rain' has no version 7: it has versions 1 to 2"):
        registry.promote("rain", 7)
    with pytest.raises(ModelNotFound, match="model 'snow' has no version 2: it has version 1"):
        registry.promote("snow", 2)  # rain has a version 2, snow does not
    with pytest.raises(ModelNotFound, match=r"no alias 'champoin' \(did you mean 'champion'\?\)"):
        registry.resolve("rain@champoin")
    with pytest.raises(ModelNotFound, match=r"no alias 'staging'.*its aliases are champion"):
        registry.rollback("rain", alias="staging")
    with pytest.raises(ModelNotFound, match=r"no alias 'staging'.*it has no aliases yet"):
        registry.history("snow", alias="staging")
    with pytest.raises(ModelNotFound, match="did you mean 'rain'"):
        registry.history("rian")
    with pytest.raises(ModelNotFound, match="did you mean 'snow'"):
        registry.aliases("snw")
    assert len(registry.history("rain")) == 1


@pytest.mark.parametrize(
    ("ref", "parsed"),
    [("rain", ("rain", None)), ("rain@champion", ("rain", "champion")), ("rain@3", ("rain", "3")),
     ("rain@latest", ("rain", "latest")), (" rain@3 ", ("rain", "3"))],
)  # fmt: skip
def test_references_parse(ref: str, parsed: tuple[str, str | None]) -> None:
    assert parse_ref(ref) == parsed


@pytest.mark.parametrize("ref", ["", "@champion", "rain@", "rain@a@b", "my rain", "rain@Champ"])
def test_bad_references_are_usage_errors(ref: str) -> None:
    with pytest.raises(UsageError, match="model reference"):
        parse_ref(ref)


def test_diff_shows_only_what_differs(registry: Registry, models: Models) -> None:
    models.add(1.0)
    lineage = {**LINEAGE, "params": {"slope": 2.0, "extra": 1},
               "code_versions": {"rain": "c2", "rmse": "m1"}, "data_version": "e" * 64}  # fmt: skip
    models.add(2.0, lineage=lineage, run_id="run-1.0")
    assert registry.diff("rain", 1, 2) == {
        "params": {"slope": [1.0, 2.0], "extra": [None, 1]},
        "metrics": {"valid.rmse": [0.5, 1 / 3], "golden.rmse": [0.55, 1.1 / 3]},
        "data": {"data_version": ["d" * 64, "e" * 64]},
        "code": {"rain": ["c1", "c2"]},
    }
    registry.promote("rain", 2)
    assert registry.diff("rain", "champion", "2") == {
        "params": {},
        "metrics": {},
        "data": {},
        "code": {},
    }


def test_exports_are_recorded_per_version(registry: Registry, models: Models) -> None:
    models.add(1.0)
    onnx = registry.add_export("rain", 1, format="onnx", artifact="f" * 64,
                               details={"parity": 1.2e-7, "rows": 2700, "opset": 17})  # fmt: skip
    registry.add_export("rain", 1, format="mlflow", details={"path": "/tmp/m"})
    assert [e.format for e in registry.exports("rain", 1)] == ["onnx", "mlflow"]
    assert registry.exports("rain", 1)[0] == onnx
    with pytest.raises(ModelNotFound, match="has no version 2"):
        registry.add_export("rain", 2, format="onnx")
    with pytest.raises(UsageError, match="short lowercase word"):
        registry.add_export("rain", 1, format="ONNX!")


# -- append-only -----------------------------------------------------------------------------------


def test_the_registry_has_no_way_to_update_or_delete() -> None:
    words = ("update", "delete", "remove", "drop", "edit", "rename", "set_", "replace", "clear")
    api = set(protocols.ModelRegistry.__abstractmethods__)
    api |= {n for n, _ in inspect.getmembers(RelationalRegistry) if not n.startswith("__")}
    api |= {n for n, _ in inspect.getmembers(Registry) if not n.startswith("__")}
    assert not [n for n in api if any(w in n.lower() for w in words)]
    tables = ("model_versions", "alias_moves", "model_exports")
    for dialect in ("sqlite", "postgres"):
        for name, sql in load_queries(dialect).items():
            text = " ".join(sql.split()).lower()
            for table in tables:
                assert f"update {table}" not in text, (dialect, name)
                assert f"delete from {table}" not in text, (dialect, name)
                assert not (table in text and "do update" in text), (dialect, name)


def test_history_rows_never_change_after_further_moves(
    registry: Registry, models: Models, store_location: str, peek: Any
) -> None:
    for slope in (1.0, 2.0, 3.0):
        models.add(slope)
    registry.promote("rain", 1)
    registry.promote("rain", 2)
    query = "SELECT * FROM alias_moves ORDER BY alias, seq"
    numbered = "SELECT * FROM model_versions ORDER BY version"
    rows, versions = peek(store_location, query), peek(store_location, numbered)
    registry.rollback("rain")
    registry.promote("rain", 3, alias="challenger")
    registry.promote("rain", 3)
    models.add(4.0)
    later = peek(store_location, "SELECT * FROM alias_moves WHERE alias = 'champion' ORDER BY seq")
    assert later[: len(rows)] == rows and len(later) == 4
    assert peek(store_location, numbered)[: len(versions)] == versions


def test_a_move_that_does_not_follow_the_history_is_refused(
    registry: Registry, models: Models, ledger: Store
) -> None:
    models.add(1.0)
    models.add(2.0)
    registry.promote("rain", 1, who="ana")
    fields = {"name": "rain", "alias": "champion", "to_version": 2, "action": "promote",
              "actor": "user", "who": "ben", "reason": "", "forced": False}  # fmt: skip
    with pytest.raises(AliasConflict, match=r"champion of rain moved meanwhile \(to 1 by ana\)"):
        ledger.move_alias(seq=1, from_version=None, **fields)  # as a writer that read too early
    with pytest.raises(UsageError, match="does not follow its history"):
        ledger.move_alias(seq=2, from_version=2, **fields)
    with pytest.raises(UsageError, match="does not follow its history"):
        ledger.move_alias(seq=5, from_version=1, **fields)
    with pytest.raises(ModelNotFound, match="has no version 9"):
        ledger.move_alias(seq=2, from_version=1, **{**fields, "to_version": 9})
    assert len(registry.history("rain")) == 1


def test_the_queries_of_one_model_search_an_index(store_path: Path) -> None:
    """list, show and history stay fast on thousands of versions: no query of one model
    scans a table (SQLite's plans; PostgreSQL has the same indexes)."""
    import re
    import sqlite3

    Registry(str(store_path)).close()
    queries = load_queries("sqlite")
    names = ("model_version_by_artifact", "next_model_version", "model_version",
             "model_versions", "model_range", "model_aliases", "model_history", "alias_history",
             "last_alias_move", "alias_move", "model_exports")  # fmt: skip
    db = sqlite3.connect(store_path)
    for name in names:
        sql = queries[name]
        plan = db.execute(f"EXPLAIN QUERY PLAN {sql}", dict.fromkeys(re.findall(r":(\w+)", sql), 1))
        steps = [row[3] for row in plan if not row[3].startswith(("USE TEMP", "CORRELATED"))]
        assert steps and all(step.startswith("SEARCH") for step in steps), (name, steps)
    db.close()


# -- artifacts -------------------------------------------------------------------------------------


def _object(artifacts: ArtifactStore, digest: str) -> Path:
    return Path(artifacts.location) / "objects" / digest[:2] / digest[2:]


def test_a_changed_artifact_is_refused(
    registry: Registry, models: Models, artifacts: ArtifactStore
) -> None:
    models.add(1.0)
    record = registry.resolve("rain@1")
    _object(artifacts, record.artifact).write_bytes(cloudpickle.dumps(fitted(9.0)))
    with pytest.raises(
        ArtifactCorrupt, match=r"refusing to load rain 1: its artifact \w{64} .* corrupted"
    ):
        registry.get("rain@1")


def test_a_missing_artifact_is_refused(
    registry: Registry, models: Models, artifacts: ArtifactStore
) -> None:
    models.add(1.0)
    _object(artifacts, registry.resolve("rain").artifact).unlink()
    with pytest.raises(ArtifactCorrupt, match=r"refusing to load rain 1: .* is missing from"):
        registry.get("rain")


def test_a_version_loads_from_the_artifact_store_it_was_registered_from(
    models: Models, store_location: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models.add(1.0)
    monkeypatch.chdir(tmp_path)  # elsewhere, without artifacts=
    with cv.registry(store_location) as reg:
        assert reg.get("rain@latest").model.predict(np.array([[0.0]])) == pytest.approx([1.0])


# -- concurrent writers on PostgreSQL --------------------------------------------------------------

#: A child process: it waits for the others at a file barrier just before it writes (after the
#: registry read what it needs), so that every round all of them write at once.
CHILD = """
import json, os, sys, time
from conveyor.errors import AliasConflict
from conveyor.ml.registry import Registry
from conveyor.store.postgres import PostgresStore

url, artifacts, folder, me, children, task, payload = sys.argv[1:8]
children = int(children)
payload = json.loads(payload)
reg = Registry(url, artifacts)
rounds = iter(range(10**6))

def barrier():
    n = next(rounds)
    open(os.path.join(folder, f"ready-{n}-{me}"), "w").close()
    deadline = time.time() + 60
    while len([f for f in os.listdir(folder) if f.startswith(f"ready-{n}-")]) < children:
        if time.time() > deadline:
            raise SystemExit("the others never came")
        time.sleep(0.002)

move = reg.store.move_alias
def waiting_move(**kwargs):
    barrier()
    return move(**kwargs)
reg.store.move_alias = waiting_move

execute = PostgresStore._execute
def slow_numbering(self, name, params=()):
    cursor = execute(self, name, params)
    if name == "next_model_version":
        time.sleep(0.05)  # inside the transaction: both read the same last number
    return cursor
PostgresStore._execute = slow_numbering

results = []
for item in payload:
    if task == "promote":
        try:
            results.append(reg.promote("rain", item, who=f"child-{me}").to_version)
        except AliasConflict as exc:
            results.append(str(exc))
    else:
        barrier()
        record, new = reg.register(name="rain", artifact=item)
        results.append([record.version, new])
print(json.dumps(results))
"""


def _children(tmp_path: Path, url: str, artifacts: ArtifactStore, task: str,
              payloads: list[list[Any]]) -> list[list[Any]]:  # fmt: skip
    folder = tmp_path / f"barrier-{task}"
    folder.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    started = []
    for i, p in enumerate(payloads):
        child = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(CHILD), url, artifacts.location, str(folder),
             str(i), str(len(payloads)), task, json.dumps(p)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        started.append(child)
    found = []
    for child in started:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        found.append(json.loads(out))
    return found


@pytest.mark.slow
def test_concurrent_promotions_on_postgres_one_wins_and_the_history_is_a_chain(
    postgres_url: str, artifacts: ArtifactStore, tmp_path: Path
) -> None:
    with Registry(postgres_url, artifacts.location) as reg:
        models = Models(reg, artifacts)
        for slope in range(1, 8):
            models.add(float(slope))
        reg.promote("rain", 1)
        # Three rounds: each child promotes its own version, all at once.
        first, second = _children(
            tmp_path, postgres_url, artifacts, "promote", [[2, 4, 6], [3, 5, 7]]
        )
        for a, b in zip(first, second, strict=True):
            won = [r for r in (a, b) if isinstance(r, int)]
            lost = [r for r in (a, b) if isinstance(r, str)]
            assert len(won) == 1 and len(lost) == 1, (a, b)
            assert f"alias champion of rain moved meanwhile (to {won[0]} by child-" in lost[0]
        history = reg.history("rain", "champion")
        assert [m.seq for m in history] == [1, 2, 3, 4]
        assert [m.from_version for m in history[1:]] == [m.to_version for m in history[:-1]]
        assert reg.aliases("rain") == {"champion": history[-1].to_version}


@pytest.mark.slow
def test_concurrent_registrations_on_postgres_get_distinct_numbers(
    postgres_url: str, artifacts: ArtifactStore, tmp_path: Path
) -> None:
    digests = [artifacts.put_bytes(f"model {i}".encode()) for i in range(12)]
    shared = artifacts.put_bytes(b"the same model")
    results = _children(
        tmp_path, postgres_url, artifacts, "register",
        [[*digests[:6], shared], [*digests[6:], shared]],
    )  # fmt: skip
    numbers = [version for child in results for version, new in child if new]
    assert sorted(numbers) == list(range(1, 14))  # 12 models and the shared one, once
    [a], [b] = results[0][-1:], results[1][-1:]
    assert a[0] == b[0] and sorted([a[1], b[1]]) == [False, True]
    with Registry(postgres_url, artifacts.location) as reg:
        assert len(reg.versions("rain", limit=100)) == 13
