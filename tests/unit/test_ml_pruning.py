"""Pruning decided in the worker: ``cv.report`` records a trial's progress, and the pruner
judges it against the reports of the trials finished before (its peers)."""

from __future__ import annotations

import math

import optuna
import pytest

import conveyor as cv
from conveyor.errors import DefinitionError
from conveyor.ml.pruning import Reporter, TrialPruned, make_pruner, peer_study, reporting


def _peers(count: int, value: float) -> list[dict[str, object]]:
    return [
        {"values": [[step, value] for step in range(4)], "state": "complete", "value": value}
        for _ in range(count)
    ]


def test_report_outside_a_trial_does_nothing_and_checks_its_arguments() -> None:
    cv.report(0, 0.5)  # fit called by hand, e.g. in a unit test
    for step, value, message in [
        (-1, 0.5, "step=-1 must be a whole number"),
        (1.5, 0.5, "step=1.5 must be a whole number"),
        (True, 0.5, "step=True must be a whole number"),
        (1, math.nan, "must be a finite number"),
        (1, "high", "value='high' at step 1 must be a finite number"),
        (1, False, "must be a finite number"),
    ]:
        with pytest.raises(ValueError, match=message):
            cv.report(step, value)  # type: ignore[arg-type]


def test_the_median_pruner_stops_a_trial_worse_than_its_peers() -> None:
    reporter = Reporter("median", "minimize", _peers(5, 0.1))
    with reporting(reporter):
        cv.report(0, 0.9)  # warm-up step: never pruned
        with pytest.raises(TrialPruned, match="pruned at step 1"):
            cv.report(1, 0.9)
    assert reporter.values == {0: 0.9, 1: 0.9}
    assert reporter.peer("pruned", 0.9) == {
        "values": [(0, 0.9), (1, 0.9)], "state": "pruned", "value": 0.9,
    }  # fmt: skip


def test_a_trial_as_good_as_its_peers_goes_on_and_too_few_peers_prune_nothing() -> None:
    good = Reporter("median", "minimize", _peers(5, 0.5))
    few = Reporter("median", "minimize", _peers(4, 0.1))  # n_startup_trials=5
    for reporter in (good, few):
        with reporting(reporter):
            for step in range(4):
                cv.report(step, 0.4 if reporter is good else 0.9)
    assert len(good.values) == len(few.values) == 4


def test_maximize_flips_the_verdict_and_a_step_reported_twice_keeps_its_first_value() -> None:
    reporter = Reporter("median", "maximize", _peers(5, 0.1))
    with reporting(reporter):
        for step in range(4):
            cv.report(step, 0.9)  # higher than the peers: fine when maximizing
        cv.report(3, 0.0)
    assert reporter.values[3] == 0.9


def test_without_a_pruner_reports_are_recorded_and_nothing_is_pruned() -> None:
    reporter = Reporter(None, "minimize", _peers(10, 0.0))
    with reporting(reporter):
        cv.report(1, 100.0)
    assert reporter.values == {1: 100.0}


def test_pruners_by_name_or_object_and_a_bad_one() -> None:
    assert isinstance(make_pruner("median"), optuna.pruners.MedianPruner)
    assert isinstance(make_pruner("percentile"), optuna.pruners.PercentilePruner)
    patient = optuna.pruners.ThresholdPruner(upper=1.0)
    assert make_pruner(patient) is patient and make_pruner(None) is None
    with pytest.raises(DefinitionError, match="must be 'median', 'percentile'"):
        make_pruner("hyperband")


def test_a_bad_pruner_option_names_the_model_and_the_fix() -> None:
    pipe = cv.Pipeline("p")
    with pytest.raises(DefinitionError, match=r"@pipe.model on 'fit': pruner='fast'.*cv.report"):

        @pipe.model(metric="m", pruner="fast")
        def fit(train: object, params: object) -> object:
            return train


def test_the_peer_study_holds_complete_and_pruned_trials() -> None:
    peers = [*_peers(2, 0.3), {"values": [[0, 5.0]], "state": "pruned", "value": 5.0}]
    study = peer_study(peers, "minimize")
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "COMPLETE", "PRUNED"]
    assert study.trials[2].intermediate_values == {0: 5.0}
