"""Training with a search whose trials are units of work: a real scikit-learn model on
scikit-learn's bundled breast-cancer table, on two worker processes, on both ledgers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from conveyor.ml.artifacts import ArtifactStore
from conveyor.ml.training import Trial, train

RESOURCES = Path(__file__).resolve().parents[1] / "resources"
sys.path.insert(0, str(RESOURCES))
import trained  # noqa: E402
import trial_cases  # noqa: E402

pytestmark = pytest.mark.slow
Peek = Callable[[str, str], list[tuple[Any, ...]]]
RAN = "SELECT count(*) FROM units WHERE step = 'trial' AND started_at IS NOT NULL"


@pytest.fixture
def no_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONVEYOR_TEST_FIT_FAILS", raising=False)


def test_trials_run_once_and_more_trials_run_only_the_new_ones(
    store_location: str, tmp_path: Path, peek: Peek, no_failures: None
) -> None:
    table = trained.table()
    art = tmp_path / "artifacts"
    first = train(trained.pipe, None, table, store=store_location, artifacts=art, workers=2)
    assert len(first.trials) == 8 and first.computed == 8 and first.failed == 0
    assert first.best is not None and first.best.value is not None and first.best.value > 0.95
    assert set(first.best.metrics) == {"roc_auc", "accuracy"}
    assert peek(store_location, RAN) == [(8,)]
    model = cloudpickle.loads(ArtifactStore(art).get_bytes(first.artifact or ""))
    assert model.predict(table.drop(columns="target")).shape == (len(table),)
    lineage = first.lineage
    assert lineage["data_version"] == first.data_version and lineage["run_id"] == first.run_id
    assert lineage["params"] == dict(first.best.params)
    assert set(lineage["code_versions"]) == {"logistic", "roc_auc", "accuracy"}
    assert "scikit-learn" in lineage["packages"]
    saved = json.loads(ArtifactStore(art).get_bytes(first.lineage_artifact or ""))
    assert saved == json.loads(json.dumps(lineage))  # the lineage artifact is the lineage
    assert saved["split"] == {"by": "hash", "id_column": None,
                              "shares": {"train": 0.7, "valid": 0.15, "golden": 0.15}}  # fmt: skip
    assert (
        saved["golden"]["rows"]
        == ArtifactStore(art).open_table(saved["golden"]["version"]).num_rows
    )
    assert saved["metrics"] == dict(first.best.metrics) and saved["format"] == "cloudpickle"
    assert saved["trial"] == first.best.number and saved["packages"]["optuna"]
    assert saved["code_versions"]["logistic"] == trained.pipe.models["logistic"].code_version

    again = train(trained.pipe, None, table, store=store_location, artifacts=art, workers=2)
    assert again.computed == 0 and again.best is not None
    assert (again.best.params, again.best.value) == (first.best.params, first.best.value)
    assert peek(store_location, RAN) == [(8,)]  # no trial ran again

    more = train(trained.pipe, None, table, store=store_location, artifacts=art, workers=2,
                 trials=12)  # fmt: skip
    assert len(more.trials) == 12 and more.computed == 4
    assert peek(store_location, RAN) == [(12,)]
    assert [t.number for t in more.trials] == list(range(12))


def test_a_fit_that_raises_is_a_failed_trial(
    store_location: str, tmp_path: Path, peek: Peek, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_TEST_FIT_FAILS", "1")  # inherited by the forked workers
    result = train(trained.pipe, None, trained.table(), store=store_location,
                   artifacts=tmp_path / "a", workers=2, trials=8, seed=5)  # fmt: skip
    failed = [t for t in result.trials if t.value is None]
    assert failed and len(result.trials) == 8
    assert all(t.params["intercept"] is False for t in failed)
    assert all("no intercept today" in (t.error or "") for t in failed)
    assert result.best is not None and result.best.params["intercept"] is True
    dead = peek(store_location, "SELECT count(*) FROM units WHERE state = 'dead'")
    assert dead == [(len(failed),)]


def test_an_interrupted_study_reruns_none_of_its_finished_trials(
    store_location: str, tmp_path: Path, peek: Peek, no_failures: None
) -> None:
    seen: list[Trial] = []

    def stop_after_three(trial: Trial) -> None:
        seen.append(trial)
        if len(seen) == 3:
            raise KeyboardInterrupt

    kwargs: dict[str, Any] = {"store": store_location, "artifacts": tmp_path / "a", "workers": 2}
    with pytest.raises(KeyboardInterrupt):
        train(trained.pipe, None, trained.table(), on_trial=stop_after_three, **kwargs)
    ran = peek(store_location, RAN)[0][0]
    assert 3 <= ran < 8
    resumed = train(trained.pipe, None, trained.table(), **kwargs)
    assert len(resumed.trials) == 8 and resumed.computed == 8 - ran
    assert peek(store_location, RAN) == [(8,)]


KILLED = """
import os, signal, sys
sys.path.insert(0, {resources!r})
import trained
from conveyor.ml.training import train
done = []
def kill(trial):
    done.append(trial)
    if len(done) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
train(trained.pipe, None, trained.table(), store={store!r}, artifacts={art!r}, workers=2,
      on_trial=kill)
"""


def test_a_killed_study_is_adopted_and_continued(
    store_location: str, tmp_path: Path, peek: Peek, no_failures: None
) -> None:
    art = str(tmp_path / "a")
    code = KILLED.format(resources=str(RESOURCES), store=store_location, art=art)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    killed = subprocess.run([sys.executable, "-c", code], env=env, timeout=120, check=False)
    assert killed.returncode == -9
    ran = peek(store_location, "SELECT count(*) FROM units WHERE step = 'trial' "
               "AND state = 'done'")[0][0]  # fmt: skip
    assert ran >= 3
    resumed = train(trained.pipe, None, trained.table(), store=store_location, artifacts=art,
                    workers=2)  # fmt: skip
    assert len(resumed.trials) == 8 and resumed.failed == 0
    assert resumed.computed <= 8 - ran  # finished trials are not rerun
    runs = peek(store_location, "SELECT count(*) FROM runs")
    assert runs == [(1,)]  # the killed run was adopted, not replaced


DEAD = "SELECT u.id, u.attempts, u.error_message FROM units u WHERE u.state = 'dead' ORDER BY u.id"
FAILED_ATTEMPTS = "SELECT unit_id, attempt, decision FROM attempts ORDER BY unit_id, attempt"


def test_a_failing_trial_is_retried_then_dead_lettered_and_the_study_goes_on(
    store_location: str, tmp_path: Path, peek: Peek, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_TEST_CASE", "raise")  # fit raises when intercept is False
    retries = trial_cases.pipe.models["logistic"].retries
    assert retries == 1
    result = train(trial_cases.pipe, None, trial_cases.table(), store=store_location,
                   artifacts=tmp_path / "a", workers=2, seed=3)  # fmt: skip
    failed = [t for t in result.trials if t.value is None]
    assert len(result.trials) == 6 and 0 < result.failed == len(failed) < 6
    assert all(t.params["intercept"] is False and t.computed for t in failed)
    assert all("ValueError: no intercept today (C=" in (t.error or "") for t in failed)
    assert result.best is not None and result.best.params["intercept"] is True
    dead = peek(store_location, DEAD)
    assert len(dead) == len(failed)
    assert all(attempts == retries + 1 and "no intercept today" in message
               for _, attempts, message in dead)  # fmt: skip
    decisions = [d for unit, _, d in peek(store_location, FAILED_ATTEMPTS)
                 if unit in {u for u, _, _ in dead}]  # fmt: skip
    assert len(decisions) == len(failed) * (retries + 1)
    assert sum(d.startswith("retry in") for d in decisions) == len(failed)
    assert sum("no retries left" in d for d in decisions) == len(failed)

    again = train(trial_cases.pipe, None, trial_cases.table(), store=store_location,
                  artifacts=tmp_path / "a", workers=2, seed=3)  # fmt: skip
    assert again.computed == 0 and again.failed == len(failed)  # dead trials are not rerun
    assert peek(store_location, DEAD) == dead
    # found again, a failed trial keeps the parameters it failed with (told to the new sampler)
    refound = [t for t in again.trials if t.state == "failed"]
    assert [t.params for t in refound] == [t.params for t in failed]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("none", "@pipe.model 'logistic': fit returned None; return the fitted model"),
        ("nan", "@pipe.metric 'roc_auc' returned nan (float); a metric must return a finite"),
        ("string", "@pipe.metric 'roc_auc' returned 'high' (str); a metric must return a"),
    ],
    ids=["fit-none", "metric-nan", "metric-string"],
)
def test_a_broken_trial_contract_is_dead_at_once_with_its_message(
    store_path: Path, tmp_path: Path, peek: Peek, monkeypatch: pytest.MonkeyPatch,
    case: str, message: str,
) -> None:  # fmt: skip
    monkeypatch.setenv("CONVEYOR_TEST_CASE", case)
    result = train(trial_cases.pipe, None, trial_cases.table(), store=store_path,
                   artifacts=tmp_path / "a", workers=2, trials=2)  # fmt: skip
    assert result.failed == 2 and result.best is None and result.artifact is None
    assert result.lineage_artifact is None
    assert all(message in (t.error or "") for t in result.trials)
    dead = peek(str(store_path), DEAD)
    assert len(dead) == 2  # not retried: it would fail the same way
    assert all(attempts == 1 and message in text for _, attempts, text in dead)
    decisions = [d for _, _, d in peek(str(store_path), FAILED_ATTEMPTS)]
    assert decisions == ["give up (not retryable)"] * 2
