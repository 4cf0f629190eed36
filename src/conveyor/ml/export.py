"""Exports of a registered model: ONNX (skl2onnx, checked against the model on the golden rows)
and an MLflow model directory (the scikit-learn flavour), for teams that serve or track models
with those tools.

The ONNX model takes one float32 tensor ``X`` whose columns are the model's features in the
order it was fitted on (``feature_names_in_``, also stored in the ONNX model's metadata as
``conveyor.features``). skl2onnx computes trees in float32, so its predictions differ from
scikit-learn's in the last digits, and a value just above a tree's threshold that rounds onto
it takes the other branch: the export runs both on the golden rows and records the largest
difference as the version's *parity* figure, with how many rows differ past rounding.

skl2onnx, onnxruntime and mlflow are optional (``pip install 'conveyor[onnx]'``,
``'conveyor[mlflow]'``) and imported only here, inside the functions that use them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import uuid
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from conveyor.errors import InputError, UsageError
from conveyor.ml.artifacts import ArtifactStore
from conveyor.ml.tables import Table, to_pandas

if TYPE_CHECKING:
    from types import ModuleType

#: The name of the ONNX model's one input: the features as a float32 matrix.
INPUT = "X"
#: The ONNX model's metadata key holding the feature names (JSON), in the input's column order.
FEATURES_KEY = "conveyor.features"
#: How far apart (relative to the value, at least 1) two answers are to count as differing:
#: past float32's rounding of the inputs and of the trees' thresholds and leaves.
DIFFERS = 1e-5
#: The export formats, as ``add_export(format=...)`` records them.
FORMATS = ("onnx", "mlflow")
_ONNX_EXTRA = "pip install 'conveyor[onnx]'"
_MLFLOW_EXTRA = "pip install 'conveyor[mlflow]'"


class ExportRegistry(Protocol):
    """What an export needs of the registry (``conveyor.ml.registry.Registry``): load a
    version, record an export, and the artifact store the ONNX bytes go to."""

    @property
    def artifacts(self) -> ArtifactStore: ...

    def get(self, ref: str) -> Any: ...

    def exports(self, name: str, version: int) -> list[Any]: ...

    def add_export(
        self, *, name: str, version: int, format: str, artifact: str | None,
        details: dict[str, Any],
    ) -> Any: ...  # fmt: skip


@dataclass(frozen=True)
class OnnxExport:
    """A model converted to ONNX: its bytes, and how it compares with the original on ``rows``
    rows: ``parity`` is the largest absolute difference of the probabilities (classifiers with
    ``predict_proba``), of the predictions (regressors), or the share of rows whose label
    differs (other classifiers), as ``compared`` says; ``differing`` rows differ by more than
    float32's rounding (a value at a tree's threshold that rounds across it)."""

    data: bytes
    parity: float
    rows: int
    differing: int
    opset: int
    outputs: tuple[str, ...]
    features: tuple[str, ...]
    compared: str
    #: Share of rows whose predicted label is the same (classifiers; None for regressors).
    agreement: float | None = None
    packages: Mapping[str, str] = field(default_factory=dict)

    def details(self) -> dict[str, Any]:
        """What the registry records with the export."""
        return {
            "parity": self.parity, "compared": self.compared, "agreement": self.agreement,
            "rows": self.rows, "differing": self.differing, "opset": self.opset,
            "input": INPUT, "dtype": "float32",
            "outputs": list(self.outputs), "features": list(self.features),
            "bytes": len(self.data), "packages": dict(self.packages),
        }  # fmt: skip


@dataclass(frozen=True)
class MlflowExport:
    """An MLflow model directory written by :func:`to_mlflow`."""

    path: str
    details: Mapping[str, Any]


# ONNX


def to_onnx(model: object, features: Table, *, name: str = "the model") -> OnnxExport:
    """Convert a scikit-learn ``model`` with skl2onnx, run the ONNX model with onnxruntime on
    ``features`` (the golden rows) and compare it with the model itself. ``name`` names the
    model in errors (``"rain 3"``). A model skl2onnx cannot convert, or non-numeric features,
    raise UsageError; nothing is written."""
    skl2onnx = _require("skl2onnx", _ONNX_EXTRA)
    from skl2onnx.common.data_types import FloatTensorType

    frame = to_pandas(features)
    columns = _columns(model, frame, name)
    if len(frame) == 0:
        raise UsageError(f"model {name}: no rows to check the ONNX model against")
    _numeric(frame[columns], name)
    matrix = _matrix(frame, columns, f"model {name}")
    options = {id(model): {"zipmap": False}} if _is_classifier(model) else None
    try:
        with _quiet():
            # a graph name, not skl2onnx's random one: the same model gives the same bytes
            onx = skl2onnx.convert_sklearn(
                model, initial_types=[(INPUT, FloatTensorType([None, len(columns)]))],
                options=options, name=type(model).__name__,
            )  # fmt: skip
    except Exception as e:  # skl2onnx raises many kinds: the reason is what the user needs
        raise UsageError(_unconvertible(model, name, e)) from e
    import onnx

    onnx.helper.set_model_props(onx, {FEATURES_KEY: json.dumps(columns)})
    data = onx.SerializeToString()
    try:
        session = onnx_session(data)
        onnx_out = predict_onnx(session, matrix)
    except Exception as e:  # converted, but onnxruntime cannot run it
        raise UsageError(
            f"model {name} ({_class(model)}) was converted to ONNX but onnxruntime cannot run "
            f"it: {_reason(e)}; serve it natively or export another model"
        ) from e
    native = frame[columns] if hasattr(model, "feature_names_in_") else frame[columns].to_numpy()
    found = _compare(model, native, onnx_out, name)
    opset = next((o.version for o in onx.opset_import if o.domain in ("", "ai.onnx")), 0)
    return OnnxExport(
        data=data, parity=found.parity, rows=len(frame), differing=found.differing,
        opset=int(opset), outputs=tuple(o.name for o in onx.graph.output),
        features=tuple(columns), compared=found.compared, agreement=found.agreement,
        packages=_versions("skl2onnx", "onnxruntime"),
    )  # fmt: skip


def onnx_session(data: bytes, *, threads: int | None = None) -> Any:
    """An ``onnxruntime.InferenceSession`` of an ONNX model's bytes, on the CPU; ``threads``
    limits its intra-op threads (default: onnxruntime's, one per core)."""
    ort = _require("onnxruntime", _ONNX_EXTRA)
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: its warnings go to stderr unasked
    if threads is not None:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])


def session_features(session: Any) -> list[str] | None:
    """The feature names an exported model's session takes, in order (None if not recorded)."""
    text = session.get_modelmeta().custom_metadata_map.get(FEATURES_KEY)
    return None if text is None else list(json.loads(text))


def predict_onnx(session: Any, features: Table | np.ndarray[Any, Any]) -> dict[str, Any]:
    """Run an exported model: ``predictions`` (labels or values, one per row) and
    ``probabilities`` (rows x classes, None for a regressor). ``features`` is a table holding
    the model's feature columns (picked by name) or a matrix in their order."""
    if isinstance(features, np.ndarray):
        matrix = features.astype(np.float32, copy=False)
    else:
        frame = to_pandas(features)
        names = session_features(session)
        matrix = _matrix(frame, names if names is not None else list(frame.columns))
    width = session.get_inputs()[0].shape[1]
    if matrix.ndim != 2 or (isinstance(width, int) and matrix.shape[1] != width):
        raise InputError(
            f"the ONNX model takes {width} features a row; got an array of shape {matrix.shape}"
        )
    outputs = session.run(None, {session.get_inputs()[0].name: matrix})
    named = dict(zip((o.name for o in session.get_outputs()), outputs, strict=True))
    predictions = named.get("label", named.get("variable", outputs[0]))
    if predictions.ndim == 2 and predictions.shape[1] == 1:
        predictions = predictions.ravel()
    return {"predictions": predictions, "probabilities": named.get("probabilities")}


def feature_frame(model: object, table: Table, *, label: str | None = None) -> pd.DataFrame:
    """The columns of ``table`` (the golden split) that ``model`` takes: its
    ``feature_names_in_``, or every column but ``label`` when it has none."""
    frame = to_pandas(table)
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        wanted = [str(n) for n in names]
        missing = [n for n in wanted if n not in frame.columns]
        if missing:
            raise UsageError(
                f"the golden split lacks the model's feature columns {missing}; it has "
                f"{list(map(str, frame.columns))}"
            )
        return frame[wanted]
    rest = [c for c in frame.columns if c != label]
    width = getattr(model, "n_features_in_", None)
    if width is None:  # not a scikit-learn estimator: the conversion will say what it is
        return frame[rest]
    if label is None or width != len(rest):
        raise UsageError(
            "the model was fitted without column names (on a matrix), so its columns in the "
            "golden split are unknown; fit it on a DataFrame (it then has feature_names_in_)"
        )
    return frame[rest]


def _columns(model: object, frame: pd.DataFrame, name: str) -> list[str]:
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        width = getattr(model, "n_features_in_", None)
        if width is not None and width != frame.shape[1]:
            raise UsageError(
                f"model {name} takes {width} features; the rows have {frame.shape[1]} columns"
            )
        return [str(c) for c in frame.columns]
    wanted = [str(n) for n in names]
    missing = [n for n in wanted if n not in frame.columns]
    if missing:
        raise UsageError(f"model {name}: the rows lack its feature columns {missing}")
    return wanted


def _not_numeric(frame: pd.DataFrame) -> list[str]:
    return [
        f"{c!r} ({frame[c].dtype})"
        for c in frame.columns
        if not (pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c]))
    ]


def _numeric(frame: pd.DataFrame, name: str) -> None:
    bad = _not_numeric(frame)
    if bad:
        raise UsageError(
            f"model {name}: the ONNX export takes numeric features only (one float tensor "
            f"{INPUT!r}); column(s) {', '.join(bad)} are not numbers: encode them as numbers "
            f"before the model, or serve it natively"
        )


def _matrix(
    frame: pd.DataFrame, columns: Sequence[str], what: str = "the ONNX model"
) -> np.ndarray[Any, Any]:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"the features lack the columns {missing} that {what} takes")
    picked = frame[list(columns)]
    bad = _not_numeric(picked)
    if bad:
        raise InputError(f"{what} takes numbers; column(s) {', '.join(bad)} are not numbers")
    try:
        return picked.to_numpy(dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise InputError(f"{what}: the features are not all numbers: {e}") from e


@dataclass(frozen=True)
class _Comparison:
    parity: float
    compared: str
    agreement: float | None
    differing: int


def _compare(model: Any, native: Any, onnx_out: Mapping[str, Any], name: str) -> _Comparison:
    classifier = _is_classifier(model)
    agreement = None
    if classifier:
        labels = np.asarray(model.predict(native))
        same = labels == np.asarray(onnx_out["predictions"])
        agreement = float(np.mean(same))
    probabilities = onnx_out.get("probabilities")
    if classifier and hasattr(model, "predict_proba") and probabilities is not None:
        expected = np.asarray(model.predict_proba(native), dtype=np.float64)
        parity, differing = _gaps(expected, np.asarray(probabilities), name)
        return _Comparison(parity, "probabilities", agreement, differing)
    if classifier:
        return _Comparison(1.0 - (agreement or 0.0), "labels", agreement, int((~same).sum()))
    expected = np.asarray(model.predict(native), dtype=np.float64)
    got = np.asarray(onnx_out["predictions"], dtype=np.float64)
    if expected.size == got.size:
        expected = expected.reshape(got.shape)
    parity, differing = _gaps(expected, got, name)
    return _Comparison(parity, "predictions", None, differing)


def _gaps(
    expected: np.ndarray[Any, Any], got: np.ndarray[Any, Any], name: str
) -> tuple[float, int]:
    """The largest absolute difference, and how many rows differ by more than float32's
    rounding (relative to the value's size: :data:`DIFFERS`)."""
    if expected.shape != got.shape:
        raise UsageError(
            f"model {name}: the ONNX model answers shape {got.shape}, the model {expected.shape}; "
            f"serve it natively"
        )
    got = got.astype(np.float64)
    gap = np.abs(expected - got)
    gap = np.where(np.isnan(expected) & np.isnan(got), 0.0, np.nan_to_num(gap, nan=np.inf))
    if not gap.size:
        return 0.0, 0
    off = gap > DIFFERS * np.maximum(1.0, np.abs(np.nan_to_num(expected)))
    rows = off.reshape(len(off), -1).any(axis=1)
    return float(gap.max()), int(rows.sum())


def _is_classifier(model: object) -> bool:
    try:
        from sklearn.base import is_classifier
    except ImportError:  # no scikit-learn: skl2onnx would not convert it anyway
        return False
    try:
        return bool(is_classifier(model))
    except AttributeError:  # not an estimator (no __sklearn_tags__): skl2onnx will say so
        return False


def _unconvertible(model: object, name: str, error: BaseException) -> str:
    return (
        f"model {name} ({_class(model)}) cannot be converted to ONNX by skl2onnx: "
        f"{_reason(error)}; serve it natively or export another model"
    )


def _reason(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    first = lines[0] if lines else type(error).__name__
    return first if len(first) <= 300 else first[:297] + "..."


def _class(model: object) -> str:
    kind = type(model)
    return f"{kind.__module__}.{kind.__qualname__}"


# MLflow


def to_mlflow(
    model: object,
    directory: str | os.PathLike[str],
    *,
    params: Mapping[str, Any] | None,
    metrics: Mapping[str, Any] | None,
    lineage: Mapping[str, Any] | None,
    name: str,
    version: int,
    example: Table | None = None,
) -> MlflowExport:
    """Write ``model`` (a scikit-learn estimator) as an MLflow model directory with the
    scikit-learn flavour, loadable with ``mlflow.pyfunc.load_model``. Its MLmodel metadata
    holds the metrics, parameters and Conveyor lineage; ``example`` (golden rows) gives the
    signature and input example. A ``directory`` that exists and is not empty is refused
    (never overwritten); other models are refused too (the export writes the scikit-learn
    flavour only)."""
    target = Path(directory)
    check_mlflow_target(target)
    _check_sklearn(model, name, version)
    estimator: Any = model
    models = _require("mlflow.models", _MLFLOW_EXTRA)
    sklearn_flavour = _require("mlflow.sklearn", _MLFLOW_EXTRA)
    meta = _jsonable({
        "conveyor": {"name": name, "version": version, **_lineage_summary(lineage or {})},
        "metrics": dict(metrics or {}), "params": dict(params or {}),
    })  # fmt: skip
    signature = input_example = None
    if example is not None:
        frame = to_pandas(example)
        predicted = np.asarray(estimator.predict(frame))
        with _quiet():
            signature = models.infer_signature(frame, predicted)
        input_example = frame.head(5)
    # beside the target, then renamed: a failed write leaves no half directory
    staging = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with _quiet():
            sklearn_flavour.save_model(
                model, str(staging), serialization_format="cloudpickle", signature=signature,
                input_example=input_example, metadata=meta, pip_requirements=_requirements(),
            )  # fmt: skip
        if target.exists():
            target.rmdir()  # empty (checked above); rename needs it gone on some systems
        os.replace(staging, target)
    except OSError as e:
        raise UsageError(f"--mlflow {target}: cannot write the MLflow model there: {e}") from e
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    details = {
        "path": str(target.resolve()), "flavors": ["python_function", "sklearn"],
        "serialization": "cloudpickle", "signature": signature is not None,
        "packages": _versions("mlflow-skinny", "mlflow", "scikit-learn"),
    }  # fmt: skip
    return MlflowExport(path=str(target.resolve()), details=details)


def check_mlflow_target(directory: str | os.PathLike[str]) -> None:
    """Refuse (UsageError) a target that exists and is not an empty directory."""
    target = Path(directory)
    if not target.exists():
        return
    if not target.is_dir():
        raise UsageError(f"--mlflow {target}: is a file; give a new directory")
    if any(target.iterdir()):
        raise UsageError(
            f"--mlflow {target}: exists and is not empty; give a new directory "
            f"(an export never overwrites)"
        )


def _check_sklearn(model: object, name: str, version: int) -> None:
    try:
        from sklearn.base import BaseEstimator
    except ImportError as e:
        raise UsageError("the MLflow export needs scikit-learn: " + _MLFLOW_EXTRA) from e
    if not isinstance(model, BaseEstimator):
        raise UsageError(
            f"model {name} {version} ({_class(model)}) is not a scikit-learn estimator; the "
            f"MLflow export writes the scikit-learn flavour only: save it with mlflow.pyfunc "
            f"yourself (conveyor.ml.registry loads it)"
        )


def _lineage_summary(lineage: Mapping[str, Any]) -> dict[str, Any]:
    golden = lineage.get("golden") or {}
    return {
        "dataset": lineage.get("dataset"), "data_version": lineage.get("data_version"),
        "golden_version": golden.get("version") if isinstance(golden, Mapping) else None,
        "run_id": lineage.get("run_id"), "trial": lineage.get("trial"),
        "artifact": lineage.get("artifact"), "split": lineage.get("split"),
        "code_versions": lineage.get("code_versions"), "packages": lineage.get("packages"),
    }  # fmt: skip


def _requirements() -> list[str]:
    """The model's pip requirements, pinned to what is installed: given, so that MLflow does
    not infer them (it loads the model in a subprocess for that, seconds per export)."""
    pinned = _versions("scikit-learn", "cloudpickle", "numpy", "scipy", "pandas")
    return [f"{package}=={version}" for package, version in pinned.items()]


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


# the registry


def golden_table(lineage: Mapping[str, Any], artifacts: ArtifactStore) -> pa.Table | None:
    """The pinned golden split a version was trained with (None when it had none): from the
    artifact store by its version, else from the Parquet path the lineage names."""
    golden = lineage.get("golden")
    if not isinstance(golden, Mapping):
        return None
    digest, path = golden.get("version"), golden.get("artifact")
    if isinstance(digest, str) and artifacts.has(digest):
        return artifacts.open_table(digest)
    if isinstance(path, str) and "://" not in path and Path(path).is_file():
        return pq.read_table(path)
    raise UsageError(
        f"the golden split {digest} is not in {artifacts.location} (nor at {path}); give "
        f"--artifacts where the model was trained"
    )


def export_version(
    registry: ExportRegistry,
    name: str,
    version: str,
    *,
    mlflow: str | os.PathLike[str] | None = None,
    onnx: bool = False,
) -> list[Any]:
    """Export version ``version`` (a number or an alias) of model ``name`` to ONNX, to an
    MLflow directory, or both, and record each export in the registry; returns the recorded
    exports. Everything is checked before anything is recorded."""
    if not onnx and mlflow is None:
        raise UsageError("models export: give --onnx, --mlflow DIR, or both")
    if mlflow is not None:
        check_mlflow_target(mlflow)
    loaded = registry.get(f"{name}@{version}")
    record, model = loaded.record, loaded.model
    label = f"{record.name} {record.version}"
    if record.kind != "model":
        raise UsageError(
            f"{label} is a model set ({record.members} models, one per group); export its "
            f"groups' models one by one from conveyor.ml.groups.load_model_set"
        )
    lineage = dict(record.lineage or {})
    golden = golden_table(lineage, registry.artifacts)
    features = None if golden is None else feature_frame(model, golden, label=lineage.get("label"))
    converted = None
    if onnx:
        if features is None:
            raise UsageError(
                f"{label} has no golden split to check its ONNX model against; train it with "
                f"a golden split (the default shares keep one)"
            )
        converted = to_onnx(model, features, name=label)
    written = None
    if mlflow is not None:
        written = to_mlflow(
            model, mlflow, params=lineage.get("params"), metrics=record.metrics,
            lineage={**lineage, "run_id": record.run_id or lineage.get("run_id")},
            name=record.name, version=record.version,
            example=None if features is None else features.head(100),
        )  # fmt: skip
    exports = []
    if converted is not None:
        digest = registry.artifacts.put_bytes(converted.data)
        exports.append(registry.add_export(
            name=record.name, version=record.version, format="onnx", artifact=digest,
            details=converted.details(),
        ))  # fmt: skip
    if written is not None:
        exports.append(registry.add_export(
            name=record.name, version=record.version, format="mlflow", artifact=None,
            details=dict(written.details),
        ))  # fmt: skip
    return exports


def export_after_training(
    registry: ExportRegistry, record: Any, model: object, golden_table: Table | None
) -> Any:
    """After ``@pipe.model(export="onnx")`` registered ``record``: convert ``model``, check it on
    the golden rows and record the export. Returns the recorded export, or None for a model
    set (no per-group ONNX) or a cached rerun that has the export already. A model skl2onnx
    cannot convert raises UsageError (the version stays registered)."""
    if record.kind != "model":
        return None
    label = f"{record.name} {record.version}"
    if golden_table is None:
        raise UsageError(
            f"{label}: export='onnx' checks the ONNX model on the golden split, and this "
            f"training kept none; keep a golden share (or a golden cut-off)"
        )
    features = feature_frame(model, golden_table, label=(record.lineage or {}).get("label"))
    converted = to_onnx(model, features, name=label)
    digest = registry.artifacts.put_bytes(converted.data)
    for done in registry.exports(record.name, record.version):
        if done.format == "onnx" and done.artifact == digest:
            return None  # a cached rerun: the same bytes are recorded already
    return registry.add_export(
        name=record.name,
        version=record.version,
        format="onnx",
        artifact=digest,
        details=converted.details(),
    )


# optional packages


def _require(module: str, extra: str) -> ModuleType:
    import importlib
    import sys

    loaded = sys.modules.get(module)
    if loaded is not None:  # imported already: no need to touch the warning filters again
        return loaded
    try:
        with _quiet():
            return importlib.import_module(module)
    except ImportError as e:
        raise UsageError(f"the {module} package is not installed: {extra}") from e


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the warnings and log lines of skl2onnx and MLflow's own code: skl2onnx hands
    protobuf booleans as ints (a DeprecationWarning per tree), MLflow warns at import and about
    pickles (the registry's models are cloudpickles already): noise, not the user's to fix."""
    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _versions(*packages: str) -> dict[str, str]:
    found = {}
    for package in packages:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found
