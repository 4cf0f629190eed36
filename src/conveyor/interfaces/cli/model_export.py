"""``conveyor models export NAME VERSION --onnx | --mlflow DIR``: a registered version as an
ONNX model (checked against the model on its golden rows) or an MLflow model directory."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape

from conveyor.interfaces.cli.app import handled, out
from conveyor.interfaces.cli.options import ArtifactsOpt, JsonOpt, StoreOpt

NameArg = Annotated[str, typer.Argument(help="The model (its function's name).")]
VersionArg = Annotated[str, typer.Argument(help="The version: a number, an alias, or latest.")]
MlflowOpt = Annotated[
    str | None,
    typer.Option("--mlflow", metavar="DIR", envvar="CONVEYOR_MLFLOW",
                 help="Write an MLflow model (scikit-learn flavour) to DIR, a new or empty "
                      "directory; load it with mlflow.pyfunc.load_model(DIR)."),
]  # fmt: skip
OnnxOpt = Annotated[
    bool,
    typer.Option("--onnx", envvar="CONVEYOR_ONNX",
                 help="Convert to ONNX (skl2onnx), check it on the golden rows and store it in "
                      "the artifact store with its parity figure."),
]  # fmt: skip


_COMPARED = {
    "probabilities": "largest |difference| of a probability",
    "predictions": "largest |difference| of a prediction",
    "labels": "share of labels that differ",
}


@handled
def export(
    name: NameArg,
    version: VersionArg,
    mlflow: MlflowOpt = None,
    onnx: OnnxOpt = False,
    store: StoreOpt = None,
    artifacts: ArtifactsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Export a model version to ONNX and/or an MLflow directory; each export is recorded
    with the version (exit 2 if the model cannot be exported: nothing is recorded)."""
    from conveyor.ml.export import export_version
    from conveyor.ml.registry import Registry

    with Registry(store, artifacts) as registry:
        exports = export_version(registry, name, version, mlflow=mlflow, onnx=onnx)
    if as_json:
        print(json.dumps([as_dict(e) for e in exports], indent=2, default=str))
        return
    for e in exports:
        out.print(describe(e), soft_wrap=True)  # one line: the path and digest stay whole


def as_dict(export: Any) -> dict[str, Any]:
    """An export record as JSON."""
    return {
        "name": export.name, "version": export.version, "format": export.format,
        "artifact": export.artifact, "details": dict(export.details),
        "at": getattr(export, "at", None),
    }  # fmt: skip


def describe(export: Any) -> str:
    """One line on an export: its parity and artifact (ONNX) or its directory (MLflow)."""
    d = export.details
    head = f"{escape(export.name)} {export.version}"
    if export.format == "onnx":
        what = _COMPARED.get(d.get("compared"), "difference")
        return (
            f"{head} -> [bold]ONNX[/] (opset {d.get('opset')}, {d.get('bytes', 0) / 1024:.0f} KiB)"
            f": parity [bold]{d['parity']:.3g}[/] ({what} on {d['rows']} golden rows; "
            f"{d.get('differing', 0)} rows past float32 rounding), artifact {export.artifact}"
        )
    path = escape(str(d.get("path")))
    return f"{head} -> [bold]MLflow[/] model at {path}: mlflow.pyfunc.load_model({path!r})"
