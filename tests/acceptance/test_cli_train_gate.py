"""``conveyor train`` as a subprocess, through the gate: the gate's table on a first model,
exit 4 when a worse challenger fails, the moves in ``conveyor models history``, a forced
promotion, ``--json``'s "registered" entry, and the ONNX and MLflow exports of a version that
``conveyor train`` registered (tests/resources/released.py: ``CONVEYOR_TEST_STRENGTH`` picks
how strong the model is)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conveyor.ml.export import golden_table
from conveyor.ml.registry import Registry

RESOURCES = Path(__file__).resolve().parents[1] / "resources"
sys.path.insert(0, str(RESOURCES))
import released  # noqa: E402

Cli = Callable[..., subprocess.CompletedProcess[str]]
TRAIN = ("train", "released.py", "--input", "data.csv", "--workers", "0")


@pytest.fixture
def files(tmp_path: Path) -> Path:
    shutil.copy(RESOURCES / "released.py", tmp_path / "released.py")
    released.table().to_csv(tmp_path / "data.csv", index=False)
    return tmp_path


def _as(strength: str, **env: str) -> dict[str, str]:
    return {"CONVEYOR_TEST_STRENGTH": strength, **{f"CONVEYOR_TEST_{k.upper()}": v
                                                   for k, v in env.items()}}  # fmt: skip


def _history(cli: Cli) -> list[dict[str, Any]]:
    shown = cli("models", "history", "scorer", "--json")
    assert shown.returncode == 0, shown.stderr
    moves: list[dict[str, Any]] = json.loads(shown.stdout)
    return moves


@pytest.mark.slow
def test_the_gate_passes_a_first_model_refuses_a_worse_one_and_force_is_recorded(
    cli: Cli, files: Path
) -> None:
    first = cli(*TRAIN, "--promote", env=_as("good"))
    assert first.returncode == 0, first.stderr
    assert "scorer 1 registered" in first.stdout
    assert "gate: passed vs no champion (rules alone) on golden" in first.stdout
    header = next(line for line in first.stdout.splitlines() if "challenger" in line)
    assert header.split()[:3] == ["metric", "challenger", "champion"] and "noise" in header
    assert "roc_auc ↑" in first.stdout and "pass" in first.stdout
    assert "alias challenger: nobody -> 1" in first.stdout
    assert "alias champion: nobody -> 1" in first.stdout

    worse = cli(*TRAIN, "--promote", env=_as("worse"))
    assert worse.returncode == 4, worse.stderr  # EXIT_GATE_FAILED
    assert "scorer 2 registered" in worse.stdout
    assert "gate: FAILED vs champion 1 on golden" in worse.stdout and "FAIL" in worse.stdout
    assert ("the challenger failed its gate: scorer 2 stays challenger; 'conveyor models "
            "promote scorer 2 --force' overrides") in worse.stderr  # fmt: skip
    assert "alias challenger: 1 -> 2" in worse.stdout and "alias champion" not in worse.stdout
    assert "Traceback" not in worse.stderr

    moves = _history(cli)
    assert [(m["alias"], m["from_version"], m["to_version"], m["actor"], m["forced"])
            for m in moves] == [
        ("challenger", None, 1, "gate", False), ("champion", None, 1, "gate", False),
        ("challenger", 1, 2, "gate", False),  # a failed candidate waits there: no override
    ]  # fmt: skip
    runs = [m["who"] for m in moves]
    assert runs[0] == runs[1] != runs[2]  # the training runs that moved them
    assert moves[1]["reason"].startswith("gate passed (no champion")
    table = cli("models", "history", "scorer")
    assert table.returncode == 0, table.stderr
    rows = [line.split() for line in table.stdout.splitlines()
            if line.split()[:1] in (["challenger"], ["champion"])]  # fmt: skip
    assert [(r[0], r[3], r[7], "(forced)" in r) for r in rows] == [
        ("challenger", "1", "gate", False), ("champion", "1", "gate", False),
        ("challenger", "2", "gate", False),
    ]  # fmt: skip

    refused = cli("models", "promote", "scorer", "2")
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: scorer 2 failed its gate (roc_auc: min_absolute, "
                                     "noise); promote it anyway with --force")  # fmt: skip
    assert _history(cli) == moves  # nothing moved
    forced = cli("models", "promote", "scorer", "2", "--force", "--reason", "ship it anyway")
    assert forced.returncode == 0, forced.stderr
    assert "alias champion of scorer: 1 → 2" in forced.stdout
    assert "forced past its failed gate" in forced.stdout
    last = _history(cli)[-1]
    assert (last["alias"], last["to_version"], last["actor"], last["forced"]) == (
        "champion",
        2,
        "user",
        True,
    )
    assert last["reason"] == "ship it anyway"

    # a better model, gated against the forced champion; --json has the registered entry
    better = cli(*TRAIN, "--promote", "--json", env=_as("better"))
    assert better.returncode == 0, better.stderr
    entry = json.loads(better.stdout)["registered"]
    assert (entry["name"], entry["version"], entry["new"], entry["passed"]) == (
        "scorer",
        3,
        True,
        True,
    )
    assert entry["gate"]["champion"] == 2 and entry["gate"]["rules"][0]["checks"]["noise"]
    assert {(m["alias"], m["from"], m["to"]) for m in entry["moved"]} == {
        ("challenger", 2, 3),
        ("champion", 2, 3),
    }
    assert entry["export"] is None and entry["held_back"] is None

    # the same training again: nothing new, no gate, nothing moved
    again = cli(*TRAIN, "--promote", "--json", env=_as("better"))
    assert again.returncode == 0, again.stderr
    entry = json.loads(again.stdout)["registered"]
    assert (entry["version"], entry["new"], entry["moved"]) == (3, False, [])
    assert len(_history(cli)) == 6


@pytest.mark.slow
def test_a_label_the_table_lacks_is_refused_and_the_registry_is_unchanged(
    cli: Cli, files: Path
) -> None:
    message = ("error: model 'scorer': label='rain' is not a column of its table (columns: x1, "
               "x2, x3, x4, y); fix @pipe.model(label=...)\n")  # fmt: skip
    result = cli(*TRAIN, "--promote", env=_as("good", label="rain"))
    assert result.returncode == 2 and result.stderr == message  # one line, before any trial
    assert not (files / ".conveyor" / "conveyor.db").exists()

    assert cli(*TRAIN, "--promote", env=_as("good")).returncode == 0
    before = [cli("models", *args, "--json").stdout
              for args in (("list",), ("list", "scorer"), ("history", "scorer"))]  # fmt: skip
    result = cli(*TRAIN, "--promote", env=_as("better", label="rain"))
    assert result.returncode == 2 and result.stderr == message
    after = [cli("models", *args, "--json").stdout
             for args in (("list",), ("list", "scorer"), ("history", "scorer"))]  # fmt: skip
    assert after == before and json.loads(after[1])[0]["version"] == 1


@pytest.mark.slow
def test_a_trained_version_exports_to_onnx_and_mlflow(cli: Cli, files: Path) -> None:
    pytest.importorskip("skl2onnx")
    pytest.importorskip("onnxruntime")
    pyfunc = pytest.importorskip("mlflow.pyfunc")
    trained = cli(*TRAIN, env=_as("good"))
    assert trained.returncode == 0, trained.stderr
    onnx = cli("models", "export", "scorer", "1", "--onnx")
    assert onnx.returncode == 0, onnx.stderr
    assert onnx.stdout.startswith("scorer 1 -> ONNX (opset ")
    assert "largest |difference| of a probability on" in onnx.stdout
    target = files / "exports" / "scorer-1"
    exported = cli("models", "export", "scorer", "challenger", "--mlflow", str(target))
    assert exported.returncode == 0, exported.stderr
    assert f"scorer 1 -> MLflow model at {target}" in exported.stdout
    again = cli("models", "export", "scorer", "1", "--mlflow", str(target))
    assert again.returncode == 2 and "exists and is not empty" in again.stderr

    shown = json.loads(cli("models", "show", "scorer", "1", "--json").stdout)
    onnx_export, mlflow_export = shown["exports"]
    assert onnx_export["format"] == "onnx" and onnx_export["details"]["parity"] < 1e-5
    assert mlflow_export["format"] == "mlflow"
    assert mlflow_export["details"]["path"] == str(target)

    with Registry(files / ".conveyor" / "conveyor.db") as reg:
        loaded = reg.get("scorer@1")
        golden = golden_table(loaded.record.lineage, reg.artifacts)
    assert golden is not None
    features = golden.to_pandas()[["x1", "x2"]]
    mlflow_model = pyfunc.load_model(str(target))
    assert np.array_equal(np.asarray(mlflow_model.predict(features)),
                          loaded.model.predict(features))  # fmt: skip
