"""Models and metrics of a pipeline: ``@pipe.model`` on ``fit(train, params) -> model`` and
``@pipe.metric`` on ``metric(<model name>, valid) -> float``.

    @pipe.model(metric="roc_auc", direction="maximize", trials=40,
                search={"C": cv.search.log(1e-3, 1e2)})
    def forest(train, params): ...

    @pipe.metric
    def roc_auc(forest, valid) -> float: ...

``gate=`` sets the rules a challenger must pass against the champion (``cv.gate``), and
``label=`` names the label column, with which the gate's bootstrap predicts once per model.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

from conveyor.definition.gate import DIRECTIONS, Policy, Rule, default_direction, policy
from conveyor.definition.search import Space, spaces
from conveyor.definition.step import code_version, did_you_mean, function_parameters
from conveyor.errors import DefinitionError

F = TypeVar("F", bound=Callable[..., Any])
#: The samplers a search can use.
SAMPLERS = ("tpe", "random")
#: The pruners a model can name (or pass an Optuna pruner that decides from finished trials).
PRUNERS = ("median", "percentile")
#: The formats a registered model can be exported to as it is registered.
EXPORTS = ("onnx",)
_OPTIONS = (
    "metric", "direction", "search", "trials", "sampler", "retries", "dataset", "pruner",
    "gate", "label", "export",
)  # fmt: skip


@dataclass(frozen=True)
class ModelSpec:
    """A model: its ``fit`` function, the metric it is chosen by, and its search."""

    name: str
    fn: Callable[..., Any]
    metric: str
    direction: str = "maximize"
    search: Mapping[str, Space] = field(default_factory=dict)
    trials: int = 20
    sampler: str = "tpe"
    retries: int = 0
    code_version: str = ""
    #: The ``@pipe.dataset`` it trains on when ``conveyor train`` is given no ``--input``.
    dataset: str | None = None
    #: Stops unpromising trials early from what ``cv.report`` tells: None, a name of
    #: :data:`PRUNERS`, or an Optuna pruner object.
    pruner: object = None
    #: The rules its challengers must pass against the champion; None: the default of
    #: :func:`gate_policy` (not worse on its metric, beyond the noise).
    gate: Policy | None = None
    #: The label column, with which the gate predicts once per model for its bootstrap.
    label: str | None = None
    #: Exported as it is registered: None or ``"onnx"`` (converted with skl2onnx, its
    #: parity with the model measured on the golden rows).
    export: str | None = None


@dataclass(frozen=True)
class MetricSpec:
    """A metric: scores the model it names on the ``valid`` table."""

    name: str
    fn: Callable[..., Any]
    model: str
    code_version: str = ""


def _plain_function(kind: str, fn: object) -> str:
    if not inspect.isfunction(fn) or fn.__name__ == "<lambda>":
        raise DefinitionError(
            f"@pipe.{kind} was applied to {getattr(fn, '__qualname__', type(fn).__name__)!r}; "
            f"decorate a named 'def' function"
        )
    return fn.__name__


def model_spec(fn: Callable[..., Any], options: Mapping[str, Any]) -> ModelSpec:
    """Validate ``@pipe.model(**options)`` on ``fn``."""
    name = _plain_function("model", fn)
    where = f"@pipe.model on {name!r}"
    unknown = set(options) - set(_OPTIONS)
    if unknown:
        raise DefinitionError(
            f"{where}: unknown option(s) {', '.join(sorted(unknown))}; the options are "
            f"{', '.join(_OPTIONS)}"
        )
    params = {p.name: p for p in function_parameters("model", fn)}
    missing = [p for p in ("train", "params") if p not in params]
    extra = [
        p for p, info in params.items() if p not in ("train", "params") and not info.has_default
    ]
    if missing or extra:
        raise DefinitionError(
            f"{where}: fit must be 'def {name}(train, params)' (got ({', '.join(params)})); "
            f"it takes the training table and a dict of the searched parameters"
        )
    metric = options.get("metric")
    if not isinstance(metric, str) or not metric:
        raise DefinitionError(
            f"{where}: metric= must name the @pipe.metric function that scores it, "
            f"e.g. @pipe.model(metric='roc_auc')"
        )
    direction = options.get("direction", "maximize")
    if direction not in DIRECTIONS:
        raise DefinitionError(f"{where}: direction={direction!r} must be 'maximize' or 'minimize'")
    trials = options.get("trials", 20)
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        raise DefinitionError(f"{where}: trials={trials!r} must be a whole number of at least 1")
    sampler = options.get("sampler", "tpe")
    if sampler not in SAMPLERS:
        raise DefinitionError(f"{where}: sampler={sampler!r} must be 'tpe' or 'random'")
    retries = options.get("retries", 0)
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise DefinitionError(f"{where}: retries={retries!r} must be a whole number >= 0")
    dataset = options.get("dataset")
    if dataset is not None and (not isinstance(dataset, str) or not dataset):
        raise DefinitionError(f"{where}: dataset={dataset!r} must name a @pipe.dataset function")
    label = options.get("label")
    if label is not None and (not isinstance(label, str) or not label):
        raise DefinitionError(
            f"{where}: label={label!r} must name the label column, e.g. label='rain'"
        )
    export = options.get("export")
    if export is not None and export not in EXPORTS:
        raise DefinitionError(
            f"{where}: export={export!r} is not a format it can be exported to as it is "
            f"registered; give export='onnx' (needs pip install 'conveyor[onnx]') or leave it out"
        )
    return ModelSpec(
        name=name, fn=fn, metric=metric, direction=direction,
        search=spaces(where, options.get("search")), trials=trials, sampler=sampler,
        retries=retries, code_version=code_version(fn), dataset=dataset,
        pruner=_pruner(where, options.get("pruner")),
        gate=_gate(where, options.get("gate"), metric, direction), label=label, export=export,
    )  # fmt: skip


def _gate(where: str, gate: object, metric: str, direction: str) -> Policy | None:
    """``gate=``: None, a :class:`Policy`, or a list of rules (a policy of its defaults)."""
    if gate is None:
        return None
    if isinstance(gate, Rule):
        gate = [gate]
    if isinstance(gate, list | tuple):
        chosen = policy(*gate)
    elif isinstance(gate, Policy):
        chosen = gate
    else:
        raise DefinitionError(
            f"{where}: gate={gate!r} must be cv.gate.policy(...) or a list of "
            f"cv.gate.rule(...), e.g. gate=[cv.gate.rule({metric!r}, floor=0.7)]"
        )
    own = chosen.rule_for(metric)
    if own is not None and own.direction not in (None, direction):
        raise DefinitionError(
            f"{where}: gate rule on {metric!r} says direction={own.direction!r} but the "
            f"model's direction is {direction!r}; leave the rule's direction out"
        )
    return chosen


def gate_policy(spec: ModelSpec) -> Policy:
    """The gate ``spec``'s challengers pass, every rule's direction filled in: its ``gate=``,
    or by default one rule on its metric: not worse (``min_absolute=0``) and better beyond
    the noise, at 95% confidence over 1000 resamples, seed 0."""
    if spec.gate is None:
        return Policy((Rule(spec.metric, min_absolute=0.0, noise=True,
                            direction=spec.direction),))  # fmt: skip
    rules = []
    for given in spec.gate.rules:
        if given.direction is None:
            own = given.metric == spec.metric
            direction = spec.direction if own else default_direction(given.metric)
            given = dataclasses.replace(given, direction=direction)
        rules.append(given)
    return dataclasses.replace(spec.gate, rules=tuple(rules))


def _pruner(where: str, pruner: object) -> object:
    """``pruner=``: None, a name of :data:`PRUNERS` or an Optuna pruner (known by its module,
    so that defining a pipeline does not import Optuna)."""
    if pruner is None or pruner in PRUNERS:
        return pruner
    if type(pruner).__module__.startswith("optuna.pruners") and hasattr(pruner, "prune"):
        return pruner
    raise DefinitionError(
        f"{where}: pruner={pruner!r} must be 'median', 'percentile' or an Optuna pruner "
        f"(e.g. optuna.pruners.MedianPruner(n_warmup_steps=5)); report progress from fit "
        f"with cv.report(step, value)"
    )


def metric_spec(fn: Callable[..., Any]) -> MetricSpec:
    """Validate ``@pipe.metric`` on ``fn``: it takes the model's name and ``valid``."""
    name = _plain_function("metric", fn)
    params = [p.name for p in function_parameters("metric", fn)]
    others = [p for p in params if p != "valid"]
    if "valid" not in params or len(params) != 2:
        raise DefinitionError(
            f"@pipe.metric on {name!r}: a metric must be 'def {name}(<model name>, valid)' "
            f"(got ({', '.join(params)})): the fitted model, named after its fit function, "
            f"and the validation table"
        )
    return MetricSpec(name=name, fn=fn, model=others[0], code_version=code_version(fn))


def fitted_model(spec: ModelSpec, fitted: object) -> object:
    """What ``spec``'s fit returned, refused when it is None (a fit that forgot to return):
    a :class:`DefinitionError`, which a trial does not retry (it would fail the same way)."""
    if fitted is None:
        raise DefinitionError(
            f"@pipe.model {spec.name!r}: fit returned None; return the fitted model "
            f"(e.g. 'return model.fit(X, y)')"
        )
    return fitted


def metric_value(metric: MetricSpec, value: object) -> float:
    """What ``metric`` returned, as a float; a :class:`DefinitionError` (not retried) unless
    it is a finite number."""
    number = float("nan")
    if not isinstance(value, bool | str | bytes):
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            pass
    if not math.isfinite(number):
        raise DefinitionError(
            f"@pipe.metric {metric.name!r} returned {value!r} ({type(value).__name__}); "
            f"a metric must return a finite number, e.g. 'return float(roc_auc_score(...))'"
        )
    return number


def check_models(
    models: Mapping[str, ModelSpec],
    metrics: Mapping[str, MetricSpec],
    datasets: Iterable[str] | None = None,
) -> None:
    """Each model's ``metric=`` names a metric of that model; each metric names a model; a
    model's ``dataset=`` names one of ``datasets`` (when given)."""
    known = None if datasets is None else list(datasets)
    for model in models.values():
        if known is not None and model.dataset is not None and model.dataset not in known:
            raise DefinitionError(
                f"model {model.name!r}: dataset={model.dataset!r} is not a @pipe.dataset "
                f"(datasets: {', '.join(known) or 'none'}); define "
                f"'@pipe.dataset def {model.dataset}()' or fix the name"
            )
    for metric in metrics.values():
        if metric.model not in models:
            raise DefinitionError(
                f"metric {metric.name!r} takes {metric.model!r}, which is not a @pipe.model "
                f"(models: {', '.join(models) or 'none'}); name its first parameter after "
                f"the model's fit function"
            )
    for model in models.values():
        chosen = metrics.get(model.metric)
        if chosen is None:
            raise DefinitionError(
                f"model {model.name!r}: metric={model.metric!r} is not a @pipe.metric "
                f"(metrics: {', '.join(metrics) or 'none'}); define "
                f"'@pipe.metric def {model.metric}({model.name}, valid)'"
            )
        if chosen.model != model.name:
            raise DefinitionError(
                f"model {model.name!r}: metric {model.metric!r} scores {chosen.model!r}; "
                f"rename its first parameter to {model.name!r}"
            )
        own = [m.name for m in metrics.values() if m.model == model.name]
        for gated in () if model.gate is None else model.gate.rules:
            if gated.metric not in own:
                raise DefinitionError(
                    f"model {model.name!r}: its gate has a rule on {gated.metric!r}, which "
                    f"is not a @pipe.metric of {model.name!r}"
                    f"{did_you_mean(gated.metric, own)} (its metrics: {', '.join(own)}); "
                    f"define '@pipe.metric def {gated.metric}({model.name}, valid)' or fix "
                    f"the rule's name"
                )


class ModelsMixin:
    """Adds ``@pipe.model`` and ``@pipe.metric`` to :class:`~conveyor.Pipeline`."""

    models: dict[str, ModelSpec]
    metrics: dict[str, MetricSpec]

    def _check_name(self, kind: str, name: str) -> None:
        taken = {**getattr(self, "steps", {}), **getattr(self, "resources", {})}
        if name in taken or name in self.models or name in self.metrics:
            raise DefinitionError(
                f"{kind} {name!r} is defined twice in this pipeline; rename one of the functions"
            )

    @overload
    def model(self, fn: F, /) -> F: ...

    @overload
    def model(self, fn: None = None, /, **options: Any) -> Callable[[F], F]: ...

    def model(self, fn: F | None = None, /, **options: Any) -> F | Callable[[F], F]:
        """Register ``fit(train, params) -> model``. Options: ``metric`` (a ``@pipe.metric``),
        ``direction`` (``"maximize"`` or ``"minimize"``), ``search`` (parameter name to
        ``cv.search`` space), ``trials``, ``sampler`` (``"tpe"`` or ``"random"``),
        ``retries`` (per trial), ``dataset`` (the ``@pipe.dataset`` it trains on), ``pruner``
        (``"median"``, ``"percentile"`` or an Optuna pruner, fed by ``cv.report``), ``gate``
        (``cv.gate.policy(...)`` or a list of ``cv.gate.rule(...)``: what a challenger must
        show against the champion), ``label`` (the label column) and ``export`` (``"onnx"``: also
        stored as ONNX when registered)."""

        def decorate(fn: F) -> F:
            spec = model_spec(fn, options)
            self._check_name("model", spec.name)
            self.models[spec.name] = spec
            return fn

        return decorate if fn is None else decorate(fn)

    def metric(self, fn: F, /) -> F:
        """Register ``metric(<model name>, valid) -> float``, scoring that model."""
        spec = metric_spec(fn)
        self._check_name("metric", spec.name)
        self.metrics[spec.name] = spec
        return fn
