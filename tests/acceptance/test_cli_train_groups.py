"""``conveyor train --group-by`` and ``conveyor redrive`` as subprocesses: one model per group,
a failing group dead-lettered and finished by redrive, a rerun that fits nothing, and bad
input refused (exit 2) before anything runs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from conveyor.core.units import UnitState
from conveyor.definition.loader import load_pipeline
from conveyor.ml.groups import train_groups
from conveyor.scheduling.hooks import Hooks

RESOURCES = Path(__file__).resolve().parents[1] / "resources"
sys.path.insert(0, str(RESOURCES))
import grouped  # noqa: E402

Cli = Callable[..., subprocess.CompletedProcess[str]]
TRAIN = ("train", "grouped.py", "--input", "sales.parquet", "--workers", "2")


@pytest.fixture
def files(tmp_path: Path) -> Path:
    shutil.copy(RESOURCES / "grouped.py", tmp_path / "grouped.py")
    grouped.table().to_parquet(tmp_path / "sales.parquet")
    return tmp_path


@pytest.mark.slow
def test_a_failing_group_is_redriven_and_the_model_set_then_has_every_group(
    cli: Cli, files: Path
) -> None:
    broken = cli(*TRAIN, "--group-by", "segment,location",
                 env={"CONVEYOR_TEST_FAIL_SEGMENT": "b"})  # fmt: skip
    assert broken.returncode == 1, broken.stderr
    assert "completed_with_errors" in broken.stdout
    assert "4 groups trained, 2 failed" in broken.stdout
    assert "segment=b/location=0: ValueError: no prices for segment b today" in broken.stderr
    assert "after a fix, finish them with: conveyor redrive" in broken.stderr
    assert "(4 groups, missing 2)" in broken.stdout
    assert "mae on valid (minimize): median" in broken.stdout and "worst groups:" in broken.stdout

    fixed = cli("redrive", "--workers", "2")
    assert fixed.returncode == 0, fixed.stderr
    assert "completed" in fixed.stdout and "6 groups trained, 0 failed" in fixed.stdout
    assert "(6 groups, every group)" in fixed.stdout

    again = cli(*TRAIN, "--group-by", "segment,location", "--json")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["computed"] == 0 and report["cached"] == 6 and report["trained"] == 6
    assert f"model set: {report['model_set']}" in fixed.stdout  # the redriven set, same content
    index = (files / ".conveyor" / "artifacts" / "objects" / report["model_set"][:2]
             / report["model_set"][2:]).read_text()  # fmt: skip
    assert json.loads(index)["complete"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--group-by", "segmnt"],
            "--group-by 'segmnt': sales.parquet has no such column (did you mean 'segment'?); "
            "its columns are segment, location, x, y",
        ),
        (["--group-by", "segment", "--buckets", "0"], "--buckets 0: must be a whole number >= 1"),
        (["--buckets", "3"], "--buckets and --group-trials need --group-by COLUMNS"),
        (["--group-by", "segment", "--trials", "3"], "with --group-by give --group-trials N"),
        (["--group-by", "segment", "--group-trials", "0"], "--group-trials 0"),
        (["--group-by", "segment", "--input", "empty.parquet"], "the table has no rows"),
    ],
)
def test_bad_input_exits_2_before_anything_runs(
    cli: Cli, files: Path, args: list[str], message: str
) -> None:
    grouped.table().iloc[:0].to_parquet(files / "empty.parquet")
    result = cli(*TRAIN, *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not (files / ".conveyor" / "conveyor.db").exists()


class _Interrupt(Hooks):
    """Stops the run (as Ctrl-C would) after its first finished unit."""

    def units_advanced(self, step: str, state: UnitState, count: int) -> None:
        raise KeyboardInterrupt


@pytest.mark.slow
def test_resume_continues_an_interrupted_training(cli: Cli, files: Path) -> None:
    pipe, path = load_pipeline(str(files / "grouped.py"))
    with pytest.raises(KeyboardInterrupt):
        train_groups(pipe, files / "sales.parquet", ["segment"], workers=0,
                     store=files / ".conveyor" / "conveyor.db",
                     artifacts=files / ".conveyor" / "artifacts", pipeline_file=str(path),
                     hooks=[_Interrupt()])  # fmt: skip
    resumed = cli("resume", "--workers", "0")
    assert resumed.returncode == 0, resumed.stderr
    assert "3 groups trained, 0 failed" in resumed.stdout and "continuing run" in resumed.stderr
    finished = cli("resume")
    assert finished.returncode == 2 and "is finished" in finished.stderr


@pytest.mark.slow
def test_a_model_set_is_registered_and_becomes_champion_only_when_complete(
    cli: Cli, files: Path
) -> None:
    broken = cli(*TRAIN, "--group-by", "segment,location", "--promote",
                 env={"CONVEYOR_TEST_FAIL_SEGMENT": "b"})  # fmt: skip
    assert broken.returncode == 1, broken.stderr
    assert "ridge 1 registered (a model set of 4 groups)" in broken.stdout
    assert "alias champion" not in broken.stdout  # incomplete: never champion
    first = json.loads(cli("models", "show", "ridge", "1", "--json").stdout)
    assert (first["kind"], first["members"], first["aliases"]) == ("model_set", 4, [])
    assert first["lineage"]["complete"] is False and len(first["lineage"]["missing"]) == 2
    assert first["lineage"]["group_by"] == ["segment", "location"]

    fixed = cli("redrive", "--workers", "2")
    assert fixed.returncode == 0, fixed.stderr
    assert "ridge 2 registered (a model set of 6 groups)" in fixed.stdout
    second = json.loads(cli("models", "show", "ridge", "2", "--json").stdout)
    assert second["lineage"]["complete"] is True and second["members"] == 6
    assert second["run_id"] == first["run_id"]  # the same run, redriven

    again = cli(*TRAIN, "--group-by", "segment,location", "--promote", "--json")
    assert again.returncode == 0, again.stderr
    registered = json.loads(again.stdout)["registered"]
    assert registered == {"name": "ridge", "version": 2, "new": False, "champion": True}
    [move] = json.loads(cli("models", "history", "ridge", "--json").stdout)
    assert (move["alias"], move["from_version"], move["to_version"], move["actor"]) == (
        "champion",
        None,
        2,
        "gate",
    )
    assert "every group trained" in move["reason"]
