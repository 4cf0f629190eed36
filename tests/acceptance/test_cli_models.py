"""``conveyor models`` as a user runs it, in a subprocess: list, show (lineage, metrics, the
gate's table), history, diff, promote and rollback, each with and without ``--json``; bad
input exits 2 with one clear line and leaves the registry as it was."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pytest
from sklearn.linear_model import LinearRegression

from conveyor.ml.artifacts import ArtifactStore
from conveyor.ml.registry import Registry

Cli = Callable[..., subprocess.CompletedProcess[str]]

LINEAGE = {
    "model": "rain", "dataset": "weather", "data_version": "d" * 64,
    "split": {"train": 0.7, "valid": 0.15, "golden": 0.15},
    "golden": {"version": "a" * 64, "rows": 2700}, "code_versions": {"rain": "c1", "rmse": "m1"},
    "run_id": "run-1", "seed": 0, "trial": 3, "trials": 20,
    "packages": {"python": "3.11", "scikit-learn": "1.9"},
}  # fmt: skip
RULE = {
    "metric": "rmse", "direction": "minimize", "challenger": 0.91, "champion": 0.9,
    "delta": 0.01, "relative": 0.0111, "interval": [-0.02, 0.04], "floor": 1.5,
    "min_absolute": 0.0, "min_relative": None,
    "checks": {"floor": True, "min_absolute": False, "min_relative": None, "noise": False},
    "passed": False,
}  # fmt: skip
GATE = {"passed": False, "champion": 1, "golden": {"version": "a" * 64, "rows": 2700},
        "rescored": True, "confidence": 0.95, "resamples": 1000, "seed": 0,
        "rules": [RULE]}  # fmt: skip


def fitted(slope: float) -> LinearRegression:
    x = np.arange(10, dtype=float).reshape(-1, 1)
    return LinearRegression().fit(x, slope * x.ravel())


@pytest.fixture
def ledger(tmp_path: Path) -> str:
    """The default ledger of ``tmp_path`` (where ``cli`` runs) with model rain: version 1,
    version 2 (its gate failed), version 3, champion 1."""
    artifacts = ArtifactStore(tmp_path / ".conveyor" / "artifacts")
    location = str(tmp_path / ".conveyor" / "conveyor.db")
    with Registry(location, artifacts.location) as reg:
        for slope in (1.0, 2.0, 3.0):
            extra: dict[str, Any] = {"gate": GATE} if slope == 2.0 else {}
            reg.register(
                name="rain", artifact=artifacts.put_bytes(cloudpickle.dumps(fitted(slope))),
                run_id=f"run-{int(slope)}", lineage={**LINEAGE, "params": {"alpha": slope}},
                metrics={"valid": {"rmse": 1 / slope}, "golden": {"rmse": 1.1 / slope}}, **extra,
            )  # fmt: skip
        reg.promote("rain", 1, reason="the first", who="ana")
    return location


def state(location: str) -> Any:
    """Everything the registry holds, to compare before and after a command."""
    with Registry(location) as reg:
        return (
            [m.to_dict() for m in reg.models()],
            [v.to_dict() for v in reg.versions("rain")],
            [m.to_dict() for m in reg.history("rain")],
        )


def test_list_show_and_diff(cli: Cli, ledger: str) -> None:
    listed = cli("models", "list")
    assert listed.returncode == 0, listed.stderr
    assert "rain" in listed.stdout and "champion=1" in listed.stdout
    [summary] = json.loads(cli("models", "list", "--json", "--store", ledger).stdout)
    assert summary == {**summary, "name": "rain", "versions": 3, "latest": 3,
                       "aliases": {"champion": 1}, "kind": "model"}  # fmt: skip
    versions = cli("models", "list", "rain")
    assert versions.returncode == 0, versions.stderr
    assert "FAILED" in versions.stdout and "rmse 0.5" in versions.stdout
    assert [v["version"] for v in json.loads(cli("models", "list", "rain", "--json").stdout)] == [
        3, 2, 1
    ]  # fmt: skip

    shown = cli("models", "show", "rain", "2", env={"COLUMNS": "120"})
    assert shown.returncode == 0, shown.stderr
    text = " ".join(shown.stdout.split())  # long lines wrap at 120 columns
    for expected in ("model rain version 2 (model)", "data: weather version dddddddddddd",
                     "split train 0.7, valid 0.15, golden 0.15", "golden: version aaaaaaaaaaaa, "
                     "2,700 rows", "trained: run run-2, trial 3 of 20, seed 0", "params: alpha=2",
                     "code: rain=c1, rmse=m1", "packages: python=3.11", "(cloudpickle) in ",
                     "gate: FAILED vs champion 1 on golden aaaaaaaaaaaa (2,700 rows, "
                     "rescored); 95% intervals, 1,000 resamples, seed 0",
                     "95% interval", "[-0.02, 0.04]", "1.5 ok", "0 FAIL"):  # fmt: skip
        assert expected in text, expected
    assert max(len(line) for line in shown.stdout.splitlines()) <= 120
    champion = json.loads(cli("models", "show", "rain", "champion", "--json").stdout)
    assert champion["version"] == 1 and champion["aliases"] == ["champion"]
    assert champion["lineage"]["params"] == {"alpha": 1.0} and champion["exports"] == []
    latest = json.loads(cli("models", "show", "rain", "--json").stdout)
    assert latest["version"] == 3 and latest["gate"] is None and latest["aliases"] == []

    diffed = cli("models", "diff", "rain", "1", "champion")
    assert diffed.returncode == 0 and "rain 1 → 1: 0 differences" in diffed.stdout
    diffed = cli("models", "diff", "rain", "1", "3")
    assert "rain 1 → 3: 3 differences" in diffed.stdout and "alpha" in diffed.stdout
    as_json = json.loads(cli("models", "diff", "rain", "1", "3", "--json").stdout)
    assert as_json == {
        "name": "rain", "versions": [1, 3], "params": {"alpha": [1.0, 3.0]},
        "metrics": {"valid.rmse": [1.0, 1 / 3], "golden.rmse": [1.1, 1.1 / 3]},
        "data": {}, "code": {},
    }  # fmt: skip


def test_promote_rollback_and_history(cli: Cli, ledger: str) -> None:
    promoted = cli("models", "promote", "rain", "3", "--reason", "better on golden")
    assert promoted.returncode == 0, promoted.stderr
    assert "alias champion of rain: 1 → 3 (promoted by " in promoted.stdout
    refused = cli("models", "promote", "rain", "2")
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: rain 2 failed its gate (rmse: min_absolute, noise)")
    forced = json.loads(
        cli("models", "promote", "rain", "2", "--force", "--reason", "hotfix", "--json").stdout
    )
    assert forced["forced"] is True and (forced["from_version"], forced["to_version"]) == (3, 2)
    staged = cli("models", "promote", "rain", "2", "--alias", "staging", "--force", "--json")
    assert json.loads(staged.stdout)["seq"] == 1
    rolled = cli("models", "rollback", "rain", "--reason", "worse in production")
    assert rolled.returncode == 0, rolled.stderr
    assert "alias champion of rain: 2 → 3 (rolled back by " in rolled.stdout
    assert "worse in production" in rolled.stdout
    back = json.loads(cli("models", "rollback", "rain", "--json").stdout)
    assert (back["action"], back["from_version"], back["to_version"]) == ("rollback", 3, 1)
    none_left = cli("models", "rollback", "rain")
    assert none_left.returncode == 2
    assert "alias champion of rain has no previous holder" in none_left.stderr

    history = cli("models", "history", "rain", "--alias", "champion")
    assert history.returncode == 0, history.stderr
    for expected in ("the first", "better on golden", "hotfix", "rollback", "(forced)", "ana"):
        assert expected in history.stdout, expected
    assert "staging" not in history.stdout
    moves = json.loads(cli("models", "history", "rain", "--json").stdout)
    assert [(m["alias"], m["seq"], m["from_version"], m["to_version"], m["action"], m["forced"])
            for m in moves] == [
        ("champion", 1, None, 1, "promote", False), ("champion", 2, 1, 3, "promote", False),
        ("champion", 3, 3, 2, "promote", True), ("staging", 1, None, 2, "promote", True),
        ("champion", 4, 2, 3, "rollback", False), ("champion", 5, 3, 1, "rollback", False),
    ]  # fmt: skip
    assert {m["actor"] for m in moves} == {"user"} and moves[2]["reason"] == "hotfix"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("show", "rian"), "no model 'rian' in the registry of"),
        (("show", "rian"), "(did you mean 'rain'?)"),
        (("show", "rain", "9"), "model 'rain' has no version 9: it has versions 1 to 3"),
        (("show", "rain", "champoin"), "no alias 'champoin' (did you mean 'champion'?)"),
        (("show", "rain", "Bad!"), "is neither a version number nor an alias"),
        (("promote", "rain", "7"), "model 'rain' has no version 7"),
        (("promote", "rain", "1"), "rain 1 holds alias champion already; nothing to move"),
        (("promote", "rain", "3", "--alias", "latest"), "alias 'latest' is reserved"),
        (("promote", "rain", "3", "--alias", "Prod"), "an alias is 1 to 64 lowercase letters"),
        (("promote", "rain", "2"), "rain 2 failed its gate"),
        (("rollback", "rain"), "alias champion of rain has no previous holder"),
        (("rollback", "rain", "--alias", "staging"), "model 'rain' has no alias 'staging'"),
        (("history", "rian"), "(did you mean 'rain'?)"),
        (("diff", "rain", "1", "12"), "has no version 12"),
        (("list", "snow"), "no model 'snow'"),
    ],
)
def test_bad_input_exits_2_and_changes_nothing(
    cli: Cli, ledger: str, args: tuple[str, ...], message: str
) -> None:
    before = state(ledger)
    for as_json in ((), ("--json",)):
        result = cli("models", *args, *as_json)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("error: ") and message in result.stderr
        assert "Traceback" not in result.stderr + result.stdout and result.stdout == ""
    assert state(ledger) == before


def test_without_a_ledger_nothing_is_created(cli: Cli, tmp_path: Path) -> None:
    result = cli("models", "list", "--store", str(tmp_path / "none.db"))
    assert result.returncode == 2 and "no ledger at" in result.stderr
    assert not (tmp_path / "none.db").exists()
    empty = tmp_path / "empty.db"
    Registry(str(empty)).close()
    listed = cli("models", "list", "--store", str(empty))
    assert listed.returncode == 0 and "no models yet" in listed.stdout
    assert json.loads(cli("models", "list", "--store", str(empty), "--json").stdout) == []
