"""The champion/challenger gate: the challenger and the champion scored on the same pinned golden
version, every rule of the model's :class:`~conveyor.definition.gate.Policy` judged, and a
:class:`Verdict` that is recorded with the version and printed as a table.

Per rule, as MLflow's ``MetricThreshold`` (``greater_is_better`` is the rule's direction):

* ``floor``: the challenger's value is at least the floor (at most, for a minimised metric);
* ``min_absolute``: its gain over the champion is at least that much;
* ``min_relative``: its gain is at least that fraction of ``|champion|`` (MLflow divides by
  the champion's signed value; the absolute value keeps the rule right for a negative r2).
  A champion of exactly 0 falls back, as in MLflow, to "strictly better";
* ``noise``: the ``confidence`` interval of the gain over a paired bootstrap of the golden
  rows (:mod:`conveyor.ml.bootstrap`) lies above zero, so that a lucky gain is not promoted.

The gain is oriented so that positive is better: challenger minus champion for a maximised
metric, champion minus challenger for a minimised one. Comparisons allow a relative 1e-9 of
float rounding, so that 0.3 beats 0.2 by min_absolute=0.1 (MLflow's sum rounds it away).
A first model (no champion) is judged on its floors alone; the other checks are None.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from conveyor.core.logs import event
from conveyor.definition.gate import Policy, Rule, default_direction
from conveyor.definition.models import MetricSpec, metric_value
from conveyor.definition.step import did_you_mean
from conveyor.errors import DefinitionError, UsageError
from conveyor.ml.bootstrap import (
    KNOWN_METRICS,
    MetricScorer,
    NoPredictionPath,
    Pair,
    Predictions,
    PredictionScorer,
    Scorer,
    golden_frame,
    paired_intervals,
)
from conveyor.ml.tables import Table, num_rows

#: The checks of a rule, in the order they are shown.
CHECKS = ("floor", "min_absolute", "min_relative", "noise")
#: How a point value computed from predictions may differ from the metric function's before
#: the gate stops trusting the prediction path for that metric.
_AGREE = 1e-9
_ROUNDING = 1e-9


@dataclass(frozen=True)
class RuleResult:
    """One rule judged: both values, the gain (positive is better), the gain relative to
    ``|champion|``, the bootstrap interval of the gain, each check (None: not set, or no
    champion to compare with), and the rule's thresholds. ``bootstrap`` says how the interval
    was computed: ``"predictions"`` (one prediction per model) or ``"metric"`` (the metric
    function on every resample)."""

    metric: str
    direction: str
    challenger: float
    champion: float | None
    delta: float | None
    relative: float | None
    interval: tuple[float, float] | None
    checks: Mapping[str, bool | None]
    passed: bool
    floor: float | None = None
    min_absolute: float | None = None
    min_relative: float | None = None
    noise: bool = True
    bootstrap: str | None = None

    def reasons(self, confidence: float) -> list[str]:
        """Why this rule failed, one line per failed check."""
        out = []
        worse = "above" if self.direction == "minimize" else "below"
        if self.checks.get("floor") is False:
            out.append(f"{self.metric} {self.challenger:.6g} is {worse} the floor {self.floor:g}")
        if self.checks.get("min_absolute") is False:
            out.append(f"{self.metric} gains {self.delta:+.6g} over the champion, less than "
                       f"min_absolute {self.min_absolute:g}")  # fmt: skip
        if self.checks.get("min_relative") is False:
            gain = "nothing" if self.relative is None else f"{self.relative:+.4%}"
            out.append(f"{self.metric} gains {gain} over the champion, less than "
                       f"min_relative {self.min_relative:.4%}")  # fmt: skip
        if self.checks.get("noise") is False and self.interval is not None:
            low, high = self.interval
            where = "worse beyond the noise" if high < 0 else "within the noise"
            out.append(f"{self.metric}'s gain {self.delta:+.6g} is {where}: its "
                       f"{confidence:.0%} bootstrap interval [{low:+.6g}, {high:+.6g}] does "
                       f"not clear 0")  # fmt: skip
        return out

    def as_dict(self) -> dict[str, Any]:
        """This result as JSON values."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["interval"] = None if self.interval is None else list(self.interval)
        out["checks"] = dict(self.checks)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RuleResult:
        """The result that :meth:`as_dict` wrote."""
        values = dict(data)
        interval = values.get("interval")
        values["interval"] = None if interval is None else (interval[0], interval[1])
        values["checks"] = dict(values.get("checks", {}))
        return cls(**values)


@dataclass(frozen=True)
class Verdict:
    """The gate's outcome: passed or not, against which champion version (None for a first
    model), on which golden version and how many rows, whether the champion was rescored on
    it (its recorded scores were on another golden version), the bootstrap's settings, and
    every rule's result."""

    passed: bool
    champion: int | None
    golden: Mapping[str, Any]
    rescored: bool
    confidence: float
    resamples: int
    seed: int
    rules: tuple[RuleResult, ...] = field(default_factory=tuple)

    def reasons(self) -> list[str]:
        """Why the gate refused, one line per failed check (empty when it passed)."""
        return [line for r in self.rules for line in r.reasons(self.confidence)]

    def summary(self) -> str:
        """One line: the verdict, against what, and why it refused."""
        against = "no champion" if self.champion is None else f"champion v{self.champion}"
        rescored = ", champion rescored" if self.rescored else ""
        golden = f"golden {str(self.golden.get('version', ''))[:12]} {self.golden.get('rows', 0)}"
        head = f"gate {'passed' if self.passed else 'refused'} ({against}, {golden} rows{rescored})"
        reasons = self.reasons()
        return head + (": " + "; ".join(reasons) if reasons else "")

    def rows(self) -> list[dict[str, str]]:
        """The table's rows as text cells, one per rule (for any renderer)."""
        out = []
        for r in self.rules:
            interval = "-"
            if r.interval is not None:
                interval = f"[{r.interval[0]:+.4f}, {r.interval[1]:+.4f}]"
            out.append({
                "metric": r.metric,
                "direction": r.direction,
                "challenger": f"{r.challenger:.4f}",
                "champion": "-" if r.champion is None else f"{r.champion:.4f}",
                "gain": "-" if r.delta is None else f"{r.delta:+.4f}",
                "relative": "-" if r.relative is None else f"{r.relative:+.2%}",
                f"{self.confidence:.0%} interval": interval,
                "floor": _cell(r.checks.get("floor"), None if r.floor is None else f"{r.floor:g}"),
                "min_absolute": _cell(r.checks.get("min_absolute"),
                                      None if r.min_absolute is None else f"{r.min_absolute:g}"),
                "min_relative": _cell(r.checks.get("min_relative"),
                                      None if r.min_relative is None else f"{r.min_relative:.2%}"),
                "noise": _cell(r.checks.get("noise"), None),
                "result": "pass" if r.passed else "FAIL",
            })  # fmt: skip
        return out

    def table(self) -> str:
        """The verdict as plain text: the summary line, then one row per rule."""
        rows = self.rows()
        if not rows:
            return self.summary()
        names = list(rows[0])
        widths = {n: max(len(n), *(len(row[n]) for row in rows)) for n in names}
        lines = [self.summary(), "  ".join(n.ljust(widths[n]) for n in names)]
        lines += ["  ".join(row[n].ljust(widths[n]) for n in names) for row in rows]
        return "\n".join(line.rstrip() for line in lines)

    def as_dict(self) -> dict[str, Any]:
        """The verdict as JSON values (what the registry records with the version)."""
        return {
            "passed": self.passed, "champion": self.champion, "golden": dict(self.golden),
            "rescored": self.rescored, "confidence": self.confidence,
            "resamples": self.resamples, "seed": self.seed,
            "rules": [r.as_dict() for r in self.rules],
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Verdict:
        """The verdict that :meth:`as_dict` wrote."""
        values = dict(data)
        values["golden"] = dict(values.get("golden", {}))
        values["rules"] = tuple(RuleResult.from_dict(r) for r in values.get("rules", ()))
        return cls(**values)


def _cell(check: bool | None, threshold: str | None) -> str:
    if check is None:
        return "-" if threshold is None else f"n/a {threshold}"
    word = "ok" if check else "FAIL"
    return word if threshold is None else f"{word} {threshold}"


def _at_least(value: float, bound: float) -> bool:
    """``value >= bound``, forgiving float rounding (a relative 1e-9)."""
    return value >= bound or math.isclose(value, bound, rel_tol=_ROUNDING, abs_tol=1e-12)


def judge(
    rule: Rule, direction: str, challenger: float, champion: float | None
) -> tuple[float | None, float | None, dict[str, bool | None]]:
    """The gain, the relative gain and the threshold checks (floor, min_absolute,
    min_relative) of ``rule`` for these values, with MLflow's MetricThreshold semantics.
    The noise check is left None (it needs the rows)."""
    sign = 1.0 if direction == "maximize" else -1.0
    checks: dict[str, bool | None] = dict.fromkeys(CHECKS)
    if rule.floor is not None:
        checks["floor"] = _at_least(sign * challenger, sign * rule.floor)
    if champion is None:
        return None, None, checks
    delta = sign * (challenger - champion) + 0.0  # no -0.0 for equal values
    relative = None if champion == 0 else delta / abs(champion)
    if rule.min_absolute is not None:
        checks["min_absolute"] = _at_least(delta, rule.min_absolute)
    if rule.min_relative is not None:
        # as MLflow: against a champion of 0 the relative rule asks for strictly better
        checks["min_relative"] = (
            delta >= 1e-10 if relative is None else _at_least(relative, rule.min_relative)
        )
    return delta, relative, checks


def evaluate(
    policy: Policy,
    metrics: Sequence[MetricSpec],
    challenger: object,
    champion: object | None,
    golden: Table,
    *,
    label: str | None,
    champion_version: int | None = None,
    golden_version: str = "",
    champion_golden: str | None = None,
) -> Verdict:
    """Judge ``challenger`` against ``champion`` (None: a first model, judged on its floors)
    on the ``golden`` table by every rule of ``policy`` (give it
    :func:`~conveyor.definition.models.gate_policy`'s, whose directions are filled in). The
    point values are the ``metrics`` functions on the whole table; ``label`` (the model's
    label column) lets the bootstrap predict once per model. ``champion_golden`` is the
    golden version the champion's recorded scores are on: when it is not ``golden_version``
    the verdict says the champion was rescored (it is always scored here, on this table)."""
    by_name = {m.name: m for m in metrics}
    for given in policy.rules:
        if given.metric not in by_name:
            raise DefinitionError(
                f"gate: a rule judges {given.metric!r}, which is not a metric of the model"
                f"{did_you_mean(given.metric, by_name)} (metrics: {', '.join(by_name)})"
            )
    rows = num_rows(golden)
    if rows == 0:
        raise UsageError("gate: the golden table has no rows; a gate needs a golden split")
    frame = None if label is None else golden_frame(golden, label)
    noisy = champion is not None and any(r.noise for r in policy.rules)
    predictions = _models_predictions(frame, label, challenger, champion) if noisy else None
    scored: list[tuple[Rule, str, float, float | None]] = []
    pairs: list[Pair] = []
    methods: dict[str, str] = {}
    for given in policy.rules:
        metric = by_name[given.metric]
        direction = given.direction or default_direction(given.metric)
        ours = _point(metric, challenger, golden)
        theirs = None if champion is None else _point(metric, champion, golden)
        scored.append((given, direction, ours, theirs))
        if given.noise and champion is not None and theirs is not None:
            scorers = None if predictions is None else _fast_pair(metric, predictions, ours, theirs)
            methods[metric.name] = "metric" if scorers is None else "predictions"
            if scorers is None:
                scorers = (MetricScorer(metric, challenger, golden),
                           MetricScorer(metric, champion, golden))  # fmt: skip
            sign = 1.0 if direction == "maximize" else -1.0
            pairs.append(Pair(metric.name, sign, *scorers))
    intervals = dict(zip(
        (p.metric for p in pairs),
        paired_intervals(pairs, rows, resamples=policy.resamples, seed=policy.seed,
                         confidence=policy.confidence),
        strict=True,
    ))  # fmt: skip
    results = []
    for given, direction, ours, theirs in scored:
        delta, relative, checks = judge(given, direction, ours, theirs)
        interval = intervals.get(given.metric)
        if interval is not None:
            checks["noise"] = interval[0] > 0
        results.append(RuleResult(
            metric=given.metric, direction=direction, challenger=ours, champion=theirs,
            delta=delta, relative=relative, interval=interval, checks=checks,
            passed=all(c is not False for c in checks.values()), floor=given.floor,
            min_absolute=given.min_absolute, min_relative=given.min_relative,
            noise=given.noise, bootstrap=methods.get(given.metric),
        ))  # fmt: skip
    return Verdict(
        passed=all(r.passed for r in results), champion=champion_version,
        golden={"version": golden_version, "rows": rows},
        rescored=champion is not None and champion_golden != golden_version,
        confidence=policy.confidence, resamples=policy.resamples, seed=policy.seed,
        rules=tuple(results),
    )  # fmt: skip


def _point(metric: MetricSpec, model: object, golden: Table) -> float:
    """The metric function on the whole golden table."""
    return metric_value(metric, metric.fn(**{metric.model: model, "valid": golden}))


def _models_predictions(
    frame: Any, label: str | None, challenger: object, champion: object | None
) -> tuple[Predictions, Predictions] | None:
    if frame is None or label is None or champion is None:
        return None
    try:
        return Predictions(challenger, frame, label), Predictions(champion, frame, label)
    except NoPredictionPath as why:
        event("gate.bootstrap_by_metric", logging.INFO, reason=str(why))
        return None


def _fast_pair(
    metric: MetricSpec, predictions: tuple[Predictions, Predictions], ours: float, theirs: float
) -> tuple[Scorer, Scorer] | None:
    """Scorers from one prediction per model for a known metric, when they give the metric
    function's own values on the whole golden table; else None (the metric function is
    called on every resample)."""
    if metric.name not in KNOWN_METRICS:
        return None
    scorers = []
    try:
        for model, point in zip(predictions, (ours, theirs), strict=True):
            scorer = PredictionScorer(metric.name, model)
            rows = len(model.y)
            value = float(scorer(np.arange(rows)[None, :], np.ones((1, rows)))[0])
            if not math.isclose(value, point, rel_tol=_AGREE, abs_tol=1e-12):
                raise NoPredictionPath(
                    f"from the predictions it is {value!r}, the metric function says {point!r}"
                )
            scorers.append(scorer)
    except NoPredictionPath as why:
        event("gate.bootstrap_by_metric", logging.INFO, metric=metric.name, reason=str(why))
        return None
    return scorers[0], scorers[1]
