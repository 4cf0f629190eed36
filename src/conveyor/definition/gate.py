"""The champion/challenger gate's rules: ``cv.gate.rule`` and ``cv.gate.policy``.

    @pipe.model(metric="roc_auc", label="rain",
                gate=cv.gate.policy(cv.gate.rule("roc_auc", floor=0.7, min_absolute=0.005),
                                    cv.gate.rule("log_loss", min_absolute=0.0, noise=False),
                                    confidence=0.95, resamples=1000, seed=0))
    def boosted(train, params): ...

A rule on one metric holds when every threshold it sets holds, as MLflow's ``MetricThreshold``:
``floor`` (the challenger's value must reach it), ``min_absolute`` (it must beat the champion's
value by at least that much) and ``min_relative`` (by at least that fraction of the champion's
value); with ``noise`` the improvement must also clear zero over a paired bootstrap of the
golden rows. The evaluation is :mod:`conveyor.ml.gate`; these are plain values, checked when the
decorator runs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from conveyor.errors import DefinitionError

__all__ = [
    "DIRECTIONS",
    "LOSSES",
    "MIN_RESAMPLES",
    "Policy",
    "Rule",
    "default_direction",
    "policy",
    "rule",
]

#: The directions a metric can be optimised in.
DIRECTIONS = ("maximize", "minimize")
#: Metric names that are minimised when a rule names no direction (as are names ending in
#: ``_loss`` or ``_error``); any other metric is maximised, unless it is the model's own
#: metric, which keeps the model's direction.
LOSSES = frozenset({
    "loss", "log_loss", "logloss", "cross_entropy", "brier", "brier_score", "brier_score_loss",
    "mse", "mean_squared_error", "rmse", "root_mean_squared_error", "mae",
    "mean_absolute_error", "median_absolute_error", "mape", "mean_absolute_percentage_error",
    "msle", "mean_squared_log_error", "rmsle", "hinge", "hinge_loss", "hamming_loss",
    "zero_one_loss", "pinball", "mean_pinball_loss", "error", "error_rate",
})  # fmt: skip
#: The fewest bootstrap resamples a policy may ask for: fewer give intervals too rough to read.
MIN_RESAMPLES = 100


def default_direction(metric: str) -> str:
    """``"minimize"`` for a known loss or error (:data:`LOSSES`), else ``"maximize"``."""
    loss = metric in LOSSES or metric.endswith(("_loss", "_error"))
    return "minimize" if loss else "maximize"


@dataclass(frozen=True)
class Rule:
    """What the challenger must show on one metric. ``direction`` None: the model's own
    direction for its metric, else :func:`default_direction`."""

    metric: str
    #: The absolute floor: the challenger's value must be at least this (at most, minimised).
    floor: float | None = None
    #: The challenger must beat the champion by at least this much (0: not worse).
    min_absolute: float | None = None
    #: The challenger must beat the champion by at least this fraction of ``|champion|``.
    min_relative: float | None = None
    #: The improvement's paired bootstrap interval over the golden rows must clear zero.
    noise: bool = True
    direction: str | None = None


@dataclass(frozen=True)
class Policy:
    """A gate: its rules (every one must hold) and the bootstrap's confidence, number of
    resamples and seed."""

    rules: tuple[Rule, ...]
    confidence: float = 0.95
    resamples: int = 1000
    seed: int = 0

    def rule_for(self, metric: str) -> Rule | None:
        """The rule on ``metric``, if any."""
        return next((r for r in self.rules if r.metric == metric), None)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def rule(
    metric: str,
    *,
    floor: float | None = None,
    min_absolute: float | None = None,
    min_relative: float | None = None,
    noise: bool = True,
    direction: str | None = None,
) -> Rule:
    """A rule on ``metric`` (a ``@pipe.metric`` of the model):
    ``cv.gate.rule("roc_auc", floor=0.7, min_absolute=0.005)``."""
    if not isinstance(metric, str) or not metric.isidentifier():
        raise DefinitionError(
            f"gate.rule({metric!r}): name the @pipe.metric it judges, e.g. gate.rule('roc_auc')"
        )
    where = f"gate.rule({metric!r})"
    if floor is not None and not _number(floor):
        raise DefinitionError(
            f"{where}: floor={floor!r} must be a finite number, the value the challenger "
            f"must reach, e.g. floor=0.7"
        )
    if min_absolute is not None and not (_number(min_absolute) and min_absolute >= 0):
        raise DefinitionError(
            f"{where}: min_absolute={min_absolute!r} must be a number >= 0, the least the "
            f"challenger must beat the champion by (0: not worse); for a value to reach, "
            f"use floor="
        )
    if min_relative is not None and not (_number(min_relative) and min_relative >= 0):
        raise DefinitionError(
            f"{where}: min_relative={min_relative!r} must be a number >= 0, the least "
            f"fraction of the champion's value to beat it by, e.g. 0.01 for 1%"
        )
    if min_relative is not None and min_relative > 1:
        raise DefinitionError(
            f"{where}: min_relative={min_relative!r} is a fraction of the champion's value, "
            f"between 0 and 1: write {min_relative / 100:g} for {min_relative:g}%"
        )
    if not isinstance(noise, bool):
        raise DefinitionError(
            f"{where}: noise={noise!r} must be True (the gain must clear the bootstrap "
            f"interval) or False"
        )
    if direction is not None and direction not in DIRECTIONS:
        raise DefinitionError(
            f"{where}: direction={direction!r} must be 'maximize' or 'minimize' (or leave it "
            f"out: the model's direction for its metric, 'minimize' for a loss)"
        )
    return Rule(
        metric=metric,
        floor=None if floor is None else float(floor),
        min_absolute=None if min_absolute is None else float(min_absolute),
        min_relative=None if min_relative is None else float(min_relative),
        noise=noise,
        direction=direction,
    )


def policy(
    *rules: Rule | Iterable[Rule], confidence: float = 0.95, resamples: int = 1000, seed: int = 0
) -> Policy:
    """A gate of ``rules`` (each a :func:`rule`; a list of them is accepted too), judged
    with a ``confidence`` bootstrap interval of ``resamples`` resamples drawn with ``seed``."""
    flat: list[Any] = []
    for given in rules:
        flat.extend(given if isinstance(given, list | tuple) else [given])
    if not flat:
        raise DefinitionError(
            "gate.policy(): give at least one rule, e.g. gate.policy(gate.rule('roc_auc'))"
        )
    seen: set[str] = set()
    for given in flat:
        if not isinstance(given, Rule):
            raise DefinitionError(
                f"gate.policy: {given!r} is not a rule; make each with cv.gate.rule('metric', ...)"
            )
        if given.metric in seen:
            raise DefinitionError(
                f"gate.policy: two rules on {given.metric!r}; merge them into one "
                f"gate.rule({given.metric!r}, ...)"
            )
        seen.add(given.metric)
    if not (_number(confidence) and 0 < confidence < 1):
        raise DefinitionError(
            f"gate.policy: confidence={confidence!r} must be a number between 0 and 1 "
            f"(exclusive), e.g. 0.95 for a 95% interval"
        )
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < MIN_RESAMPLES:
        raise DefinitionError(
            f"gate.policy: resamples={resamples!r} must be a whole number of at least "
            f"{MIN_RESAMPLES} (1000 is the default)"
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DefinitionError(f"gate.policy: seed={seed!r} must be a whole number >= 0")
    return Policy(tuple(flat), float(confidence), resamples, seed)
