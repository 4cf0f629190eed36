"""The gate's rules as values: checked when defined, their defaults, and MLflow's MetricThreshold
semantics (floor, minimum absolute and relative change) on small numbers, both directions."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pytest

import conveyor as cv
from conveyor.definition.gate import Policy, Rule, default_direction
from conveyor.definition.models import check_models, gate_policy
from conveyor.errors import DefinitionError
from conveyor.ml.gate import RuleResult, Verdict, evaluate, judge


def test_rules_and_policies_are_frozen_values_with_defaults() -> None:
    rule = cv.gate.rule("roc_auc", floor=0.7, min_absolute=0)
    assert rule == Rule("roc_auc", floor=0.7, min_absolute=0.0, noise=True, direction=None)
    assert isinstance(rule.min_absolute, float)
    chosen = cv.gate.policy(rule, cv.gate.rule("log_loss", noise=False))
    assert (chosen.confidence, chosen.resamples, chosen.seed) == (0.95, 1000, 0)
    assert cv.gate.policy([rule]) == Policy((rule,))
    assert chosen.rule_for("log_loss") == Rule("log_loss", noise=False)
    with pytest.raises(AttributeError):
        rule.floor = 0.8  # type: ignore[misc]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: cv.gate.rule(""), r"gate.rule\(''\): name the @pipe.metric"),
        (lambda: cv.gate.rule(3), "name the @pipe.metric it judges"),
        (lambda: cv.gate.rule("auc", floor="0.7"), "floor='0.7' must be a finite number"),
        (lambda: cv.gate.rule("auc", floor=float("nan")), "floor=nan must be a finite number"),
        (lambda: cv.gate.rule("auc", floor=True), "floor=True must be a finite number"),
        (lambda: cv.gate.rule("auc", min_absolute=-0.1), "min_absolute=-0.1 must be a number >= 0"),
        (lambda: cv.gate.rule("auc", min_relative=-0.01), "min_relative=-0.01 must be a number"),
        (lambda: cv.gate.rule("auc", min_relative=5), "write 0.05 for 5%"),
        (lambda: cv.gate.rule("auc", noise="yes"), "noise='yes' must be True"),
        (lambda: cv.gate.rule("auc", direction="up"), "direction='up' must be 'maximize'"),
        (lambda: cv.gate.policy(), r"gate.policy\(\): give at least one rule"),
        (lambda: cv.gate.policy("auc"), "'auc' is not a rule; make each with cv.gate.rule"),
        (
            lambda: cv.gate.policy(cv.gate.rule("auc"), cv.gate.rule("auc", floor=0.5)),
            "two rules on 'auc'; merge them",
        ),
        (lambda: cv.gate.policy(cv.gate.rule("a"), confidence=1), "confidence=1 must be"),
        (lambda: cv.gate.policy(cv.gate.rule("a"), confidence=0.0), "between 0 and 1"),
        (lambda: cv.gate.policy(cv.gate.rule("a"), confidence=95), "e.g. 0.95 for a 95%"),
        (lambda: cv.gate.policy(cv.gate.rule("a"), resamples=99), "at least 100"),
        (lambda: cv.gate.policy(cv.gate.rule("a"), resamples=500.0), "resamples=500.0 must"),
        (lambda: cv.gate.policy(cv.gate.rule("a"), seed=-1), "seed=-1 must be a whole number"),
    ],
)
def test_bad_rules_and_policies_say_what_to_fix(make: Any, message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        make()


def test_a_loss_is_minimised_by_default() -> None:
    assert default_direction("log_loss") == default_direction("rmse") == "minimize"
    assert default_direction("brier") == default_direction("churn_error") == "minimize"
    assert default_direction("roc_auc") == default_direction("accuracy") == "maximize"


def _model_pipe(**options: Any) -> cv.Pipeline:
    pipe = cv.Pipeline("gated")

    @pipe.model(**{"metric": "rmse", "direction": "minimize", **options})
    def forest(train: Any, params: dict[str, Any]) -> Any:
        return "model"

    @pipe.metric
    def rmse(forest: Any, valid: Any) -> float:
        return 1.0

    @pipe.metric
    def accuracy(forest: Any, valid: Any) -> float:
        return 0.5

    @pipe.metric
    def log_loss(forest: Any, valid: Any) -> float:
        return 0.5

    return pipe


def test_the_default_gate_is_not_worse_beyond_the_noise_on_the_models_metric() -> None:
    spec = _model_pipe().models["forest"]
    assert spec.gate is None and spec.label is None
    assert gate_policy(spec) == Policy(
        (Rule("rmse", min_absolute=0.0, noise=True, direction="minimize"),), 0.95, 1000, 0
    )


def test_a_gate_of_rules_fills_in_each_direction() -> None:
    rules = [cv.gate.rule("rmse", floor=2.0), cv.gate.rule("accuracy"), cv.gate.rule("log_loss")]
    spec = _model_pipe(gate=rules, label="y").models["forest"]
    assert spec.label == "y" and spec.gate == cv.gate.policy(*rules)
    chosen = gate_policy(spec)
    assert [(r.metric, r.direction) for r in chosen.rules] == [
        ("rmse", "minimize"),  # the model's own direction
        ("accuracy", "maximize"),
        ("log_loss", "minimize"),  # a loss
    ]
    given = cv.gate.policy(cv.gate.rule("accuracy", direction="minimize"), seed=7)
    spec = _model_pipe(gate=given).models["forest"]
    assert gate_policy(spec).rules[0].direction == "minimize" and gate_policy(spec).seed == 7
    assert _model_pipe(gate=cv.gate.rule("rmse")).models["forest"].gate is not None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"gate": "strict"}, "gate='strict' must be cv.gate.policy"),
        ({"gate": [cv.gate.rule("rmse"), 3]}, "3 is not a rule"),
        (
            {"gate": [cv.gate.rule("rmse", direction="maximize")]},
            "says direction='maximize' but the model's direction is 'minimize'",
        ),
        ({"label": ""}, "label='' must name the label column"),
        ({"label": 3}, "label=3 must name the label column"),
    ],
)
def test_bad_gate_options_fail_at_decoration(options: dict[str, Any], message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        _model_pipe(**options)


def test_a_gate_rule_must_name_a_metric_of_its_model() -> None:
    pipe = _model_pipe(gate=[cv.gate.rule("acuracy")])
    with pytest.raises(DefinitionError, match=r"rule on 'acuracy'.*did you mean 'accuracy'"):
        check_models(pipe.models, pipe.metrics)
    with pytest.raises(DefinitionError, match=r"not a @pipe\.metric of 'forest'"):
        pipe.validate()


def _checks(rule: Rule, direction: str, ours: float, theirs: float | None) -> dict[str, Any]:
    return judge(rule, direction, ours, theirs)[2]


@pytest.mark.parametrize(
    ("direction", "floor", "value", "passes"),
    [
        ("maximize", 0.7, 0.7, True),  # >= threshold
        ("maximize", 0.7, 0.69, False),
        ("minimize", 0.3, 0.3, True),  # <= threshold
        ("minimize", 0.3, 0.31, False),
        ("maximize", -1.0, -0.5, True),
    ],
)
def test_the_floor_is_mlflows_threshold(
    direction: str, floor: float, value: float, passes: bool
) -> None:
    assert _checks(Rule("m", floor=floor), direction, value, None)["floor"] is passes
    assert _checks(Rule("m", floor=floor), direction, value, 0.5)["floor"] is passes


@pytest.mark.parametrize(
    ("direction", "ours", "theirs", "passes"),
    [
        ("maximize", 0.3, 0.2, True),  # 0.2 + 0.1 rounds to 0.30000000000000004: still passes
        ("maximize", 0.29, 0.2, False),
        ("maximize", 0.2, 0.3, False),
        ("minimize", 0.1, 0.2, True),  # lower by at least 0.1
        ("minimize", 0.15, 0.2, False),
        ("minimize", 0.3, 0.2, False),
    ],
)
def test_min_absolute_is_the_gain_over_the_champion(
    direction: str, ours: float, theirs: float, passes: bool
) -> None:
    delta, _, checks = judge(Rule("m", min_absolute=0.1), direction, ours, theirs)
    assert checks["min_absolute"] is passes
    assert delta == pytest.approx((ours - theirs) * (1 if direction == "maximize" else -1))


def test_min_absolute_zero_means_not_worse() -> None:
    rule = Rule("m", min_absolute=0.0)
    assert _checks(rule, "maximize", 0.8, 0.8)["min_absolute"] is True
    assert _checks(rule, "maximize", 0.7999, 0.8)["min_absolute"] is False
    assert judge(rule, "minimize", 0.4, 0.4)[0] == 0.0  # not -0.0


@pytest.mark.parametrize(
    ("direction", "ours", "theirs", "passes"),
    [
        ("maximize", 0.84, 0.8, True),  # +5% of 0.8
        ("maximize", 0.83, 0.8, False),
        ("minimize", 0.19, 0.2, True),  # 5% lower
        ("minimize", 0.195, 0.2, False),
        ("maximize", -0.475, -0.5, True),  # r2 from -0.5: +0.025 is 5% of |-0.5|
        ("maximize", -0.525, -0.5, False),
    ],
)
def test_min_relative_is_a_fraction_of_the_champion(
    direction: str, ours: float, theirs: float, passes: bool
) -> None:
    _, relative, checks = judge(Rule("m", min_relative=0.05), direction, ours, theirs)
    assert checks["min_relative"] is passes
    sign = 1 if direction == "maximize" else -1
    assert relative == pytest.approx(sign * (ours - theirs) / abs(theirs))


def test_min_relative_against_a_champion_of_zero_asks_for_strictly_better() -> None:
    rule = Rule("m", min_relative=0.5)
    _, relative, checks = judge(rule, "maximize", 1e-6, 0.0)
    assert relative is None and checks["min_relative"] is True
    assert _checks(rule, "maximize", 0.0, 0.0)["min_relative"] is False
    assert _checks(rule, "minimize", -1e-6, 0.0)["min_relative"] is True


def test_without_a_champion_only_the_floor_is_judged() -> None:
    rule = Rule("m", floor=0.5, min_absolute=0.1, min_relative=0.1)
    assert judge(rule, "maximize", 0.6, None) == (
        None, None, {"floor": True, "min_absolute": None, "min_relative": None, "noise": None}
    )  # fmt: skip


class Constant:
    """A "model" that predicts one column of the table."""

    def __init__(self, column: str) -> None:
        self.column = column


def _metrics() -> list[Any]:
    pipe = cv.Pipeline("tiny")

    @pipe.model(metric="hits")
    def guess(train: Any, params: dict[str, Any]) -> Any:
        return None

    @pipe.metric
    def hits(guess: Constant, valid: pd.DataFrame) -> float:
        return float((valid[guess.column] == valid["y"]).mean())

    return list(pipe.metrics.values())


def test_a_verdict_is_json_and_back_and_reads_as_a_table() -> None:
    golden = pd.DataFrame({"y": [1, 0] * 20, "good": [1, 0] * 20, "bad": [1, 1] * 20})
    chosen = cv.gate.policy(cv.gate.rule("hits", floor=0.6, min_absolute=0.1), resamples=100)
    verdict = evaluate(chosen, _metrics(), Constant("good"), Constant("bad"), golden,
                       label=None, champion_version=3, golden_version="g1",
                       champion_golden="g0")  # fmt: skip
    assert verdict.passed and verdict.champion == 3 and verdict.rescored
    assert verdict.golden == {"version": "g1", "rows": 40}
    [result] = verdict.rules
    assert (result.challenger, result.champion, result.delta) == (1.0, 0.5, 0.5)
    assert result.bootstrap == "metric" and result.interval is not None
    assert result.interval[0] > 0
    assert Verdict.from_dict(json.loads(json.dumps(verdict.as_dict()))) == verdict
    assert RuleResult.from_dict(result.as_dict()) == result
    text = verdict.table()
    assert text.splitlines()[0].startswith("gate passed (champion v3, golden g1 40 rows")
    assert "ok 0.6" in text and "ok 0.1" in text and "pass" in text.splitlines()[-1]
    worse = evaluate(chosen, _metrics(), Constant("bad"), Constant("good"), golden, label=None)
    assert not worse.passed and worse.rescored  # no recorded golden version: rescored
    assert "hits 0.5 is below the floor 0.6" in worse.summary()
    assert "worse beyond the noise" in worse.summary()


def test_an_arrow_golden_table_is_resampled_as_arrow() -> None:
    import pyarrow as pa

    pipe = cv.Pipeline("arrow")

    @pipe.model(metric="hits")
    def guess(train: Any, params: dict[str, Any]) -> Any:
        return None

    @pipe.metric
    def hits(guess: Constant, valid: pa.Table) -> float:
        assert isinstance(valid, pa.Table)
        frame = valid.to_pandas()
        return float((frame[guess.column] == frame["y"]).mean())

    golden = pa.table({"y": [1, 0] * 20, "good": [1, 0] * 20, "bad": [1, 1] * 20})
    chosen = cv.gate.policy(cv.gate.rule("hits"), resamples=100)
    verdict = evaluate(chosen, list(pipe.metrics.values()), Constant("good"), Constant("bad"),
                       golden, label="y")  # fmt: skip
    assert verdict.passed and verdict.rules[0].bootstrap == "metric"
    with pytest.raises(cv.UsageError, match=r"no label column 'label' \(its columns: y, good"):
        evaluate(gate_policy(pipe.models["guess"]), list(pipe.metrics.values()),
                 Constant("good"), None, golden, label="label")  # fmt: skip
