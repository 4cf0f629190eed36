"""Search spaces, the model and metric decorators, and the ask/tell search."""

from __future__ import annotations

import re
from typing import Any

import pytest

import conveyor as cv
from conveyor.definition.models import fitted_model, metric_value
from conveyor.definition.search import Choice, Int, Log
from conveyor.ml.search import FinishedTrial, Search, distribution

SPACE = {"n": cv.search.int(1, 9, step=2), "lr": cv.search.log(1e-3, 1.0),
         "drop": cv.search.float(0.0, 0.5), "kind": cv.search.choice(["a", "b"])}  # fmt: skip


def test_spaces_are_frozen_values() -> None:
    assert cv.search.int(1, 5) == Int(1, 5, 1)
    assert cv.search.log(0.1, 1) == Log(0.1, 1.0)
    assert cv.search.choice(["x", None, 3]) == Choice(("x", None, 3))
    with pytest.raises(AttributeError):
        cv.search.int(1, 5).low = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: cv.search.int(5, 1), r"search.int\(5, 1\): low is above high"),
        (lambda: cv.search.int(1.5, 3), "must be integers"),
        (lambda: cv.search.int(1, 3, step=0), "step must be >= 1"),
        (lambda: cv.search.float(1, float("nan")), "finite numbers"),
        (lambda: cv.search.log(0, 1), "above 0"),
        (
            lambda: cv.search.log(-1, 1),
            r"search.log\(-1, 1\): low and high must be numbers above 0",
        ),
        (lambda: cv.search.log(1, 0.5), "low is above high; swap them"),
        (lambda: cv.search.float(2, 1), r"search.float\(2, 1\): low is above high"),
        (lambda: cv.search.int(3, 3), r"search.int\(3, 3\): low equals high.*choice\(\[3\]\)"),
        (lambda: cv.search.float(0.5, 0.5), "low equals high, so there is nothing to search"),
        (lambda: cv.search.log(0.1, 0.1), "low equals high"),
        (lambda: cv.search.choice([]), "at least one value"),
        (lambda: cv.search.choice("ab"), "pass a list"),
        (lambda: cv.search.choice([object()]), "numbers, strings"),
    ],
)
def test_bad_spaces_say_what_to_fix(make: Any, message: str) -> None:
    with pytest.raises(cv.DefinitionError, match=message):
        make()


def test_model_and_metric_register_and_return_the_functions() -> None:
    pipe = cv.Pipeline("models")

    def forest(train: Any, params: dict[str, Any]) -> Any:
        return ("fitted", params)

    decorated = pipe.model(metric="auc", search={"n": cv.search.int(1, 3)}, trials=5)(forest)

    @pipe.metric
    def auc(forest: Any, valid: Any) -> float:
        return 0.5

    assert decorated is forest and forest(None, {"n": 1}) == ("fitted", {"n": 1})
    assert auc(None, None) == 0.5
    assert pipe.models["forest"].trials == 5 and pipe.metrics["auc"].model == "forest"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"metric": "m", "direction": "up"}, "direction='up' must be 'maximize' or 'minimize'"),
        ({"metric": "m", "trials": 0}, "trials=0 must be a whole number of at least 1"),
        ({"metric": "m", "search": {"n": (1, 2)}}, "'n' is \\(1, 2\\), an unknown kind"),
        ({"metric": "m", "sampler": "grid"}, "sampler='grid'"),
        ({"metric": "m", "epochs": 3}, "unknown option"),
        ({}, "metric= must name the @pipe.metric"),
    ],
)
def test_bad_model_options_name_the_function(options: dict[str, Any], message: str) -> None:
    pipe = cv.Pipeline("bad")
    with pytest.raises(cv.DefinitionError, match=f"@pipe.model on 'fit': .*{message}"):

        @pipe.model(**options)
        def fit(train: Any, params: dict[str, Any]) -> Any: ...


def test_fit_and_metric_signatures_are_checked() -> None:
    pipe = cv.Pipeline("signatures")
    with pytest.raises(cv.DefinitionError, match=r"'def fit\(train, params\)'"):

        @pipe.model(metric="m")
        def fit(data: Any) -> Any: ...

    with pytest.raises(cv.DefinitionError, match=r"'def m\(<model name>, valid\)'"):

        @pipe.metric
        def m(model: Any) -> float: ...


def test_the_metric_must_exist_when_the_graph_validates() -> None:
    pipe = cv.Pipeline("dangling")

    @pipe.model(metric="auc")
    def fit(train: Any, params: dict[str, Any]) -> Any: ...

    @pipe.step
    def noop(item: cv.Item) -> int:
        return 1

    with pytest.raises(cv.DefinitionError, match=r"metric='auc' is not a @pipe.metric"):
        pipe.validate()


def _objective(params: dict[str, Any]) -> float:
    return -((params["lr"] - 0.1) ** 2) - params["drop"] + params["n"] / 10


def test_the_search_is_seeded_and_tells_failures() -> None:
    def run(seed: int) -> list[dict[str, Any]]:
        search = Search(SPACE, seed=seed)
        asked = search.ask(4)
        for i, trial in enumerate(asked):
            search.tell(trial, None if i == 1 else _objective(trial.params))
        return [t.params for t in asked]

    first = run(3)
    assert first == run(3) and first != run(4)
    assert all(p["n"] in (1, 3, 5, 7, 9) and 1e-3 <= p["lr"] <= 1 for p in first)


def test_replay_continues_a_study_in_a_fresh_search() -> None:
    search = Search(SPACE, sampler="random", seed=1)
    asked = search.ask(5)
    finished = [FinishedTrial(t.params, _objective(t.params)) for t in asked]
    finished.append(FinishedTrial({}, None))  # a failed trial whose parameters are unknown
    fresh = Search(SPACE, sampler="random", seed=2)
    assert fresh.replay(finished) == 6
    assert len(fresh.trials) == 6 and fresh.trials[-1].state.name == "FAIL"
    assert fresh.best is not None
    assert fresh.best.value == max(f.value for f in finished if f.value is not None)
    [nxt] = fresh.ask(1)
    assert nxt.number == 6


def test_failed_and_nan_trials_are_told_as_failed() -> None:
    search = Search(SPACE, sampler="random", seed=0)
    asked = search.ask(3)
    search.tell(asked[0], None)
    search.tell(asked[1], float("nan"))
    search.tell(asked[2], _objective(asked[2].params))
    assert [t.state.name for t in search.trials] == ["FAIL", "FAIL", "COMPLETE"]
    assert search.best is not None and search.best.number == 2
    [nxt] = search.ask(1)  # the study goes on after failures
    assert nxt.number == 3


def test_a_search_value_that_is_not_a_space_is_refused() -> None:
    with pytest.raises(cv.DefinitionError, match=r"unknown search space \{'low': 1\}.*cv.search"):
        distribution({"low": 1})  # type: ignore[arg-type]


def _spec() -> tuple[Any, Any]:
    pipe = cv.Pipeline("contract")

    @pipe.model(metric="auc")
    def forest(train: Any, params: dict[str, Any]) -> Any: ...

    @pipe.metric
    def auc(forest: Any, valid: Any) -> float: ...

    return pipe.models["forest"], pipe.metrics["auc"]


def test_a_fit_that_returns_none_is_a_definition_error() -> None:
    model, _ = _spec()
    assert fitted_model(model, 0) == 0  # a falsy model is still a model
    with pytest.raises(cv.DefinitionError) as caught:
        fitted_model(model, None)
    assert str(caught.value) == (
        "@pipe.model 'forest': fit returned None; return the fitted model "
        "(e.g. 'return model.fit(X, y)')"
    )


@pytest.mark.parametrize(
    ("value", "shown"),
    [(float("nan"), "nan (float)"), ("high", "'high' (str)"), (None, "None (NoneType)"),
     (True, "True (bool)"), (float("inf"), "inf (float)"), ([0.9], "[0.9] (list)"),
     ("0.9", "'0.9' (str)")],
)  # fmt: skip
def test_a_metric_must_return_a_finite_number(value: object, shown: str) -> None:
    _, metric = _spec()
    message = f"@pipe.metric 'auc' returned {shown}; a metric must return a finite number"
    with pytest.raises(cv.DefinitionError, match=re.escape(message)):
        metric_value(metric, value)


def test_a_metric_may_return_any_real_number_type() -> None:
    import numpy as np

    _, metric = _spec()
    assert metric_value(metric, np.float32(0.5)) == 0.5 and metric_value(metric, 1) == 1.0
