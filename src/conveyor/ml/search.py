"""A hyperparameter search over Optuna's ask/tell: Conveyor schedules the trials, Optuna only
suggests parameters. No Optuna storage: a study lives in memory, and a resumed one is told
its finished trials again from the ledger (:meth:`Search.replay`)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from conveyor.definition.search import Choice, Float, Int, Log, Space
from conveyor.errors import DefinitionError


@dataclass(frozen=True)
class TrialParams:
    """One asked trial: its number in the study and its parameters."""

    number: int
    params: dict[str, Any]
    _trial: Any = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class FinishedTrial:
    """A trial that ended: its parameters and value (None when it failed), the values it
    reported as it went (``cv.report``), and whether the pruner stopped it."""

    params: Mapping[str, Any]
    value: float | None
    reports: Mapping[int, float] = field(default_factory=dict)
    pruned: bool = False


def distribution(space: Space) -> Any:
    """The Optuna distribution of one of our spaces."""
    from optuna import distributions as d

    if isinstance(space, Int):
        return d.IntDistribution(space.low, space.high, step=space.step)
    if isinstance(space, Float):
        return d.FloatDistribution(space.low, space.high)
    if isinstance(space, Log):
        return d.FloatDistribution(space.low, space.high, log=True)
    if isinstance(space, Choice):
        return d.CategoricalDistribution(space.values)
    raise DefinitionError(f"unknown search space {space!r}; use cv.search.int/float/log/choice")


class Search:
    """Asks Optuna for parameters and tells it the results: TPE by default (with
    ``constant_liar`` so parallel asks spread out), or ``sampler="random"``; seeded."""

    def __init__(
        self,
        space: Mapping[str, Space],
        *,
        direction: str = "maximize",
        sampler: str = "tpe",
        seed: int | None = 0,
    ) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if sampler == "tpe":
            with warnings.catch_warnings():  # constant_liar is marked experimental
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                chosen: Any = optuna.samplers.TPESampler(seed=seed, constant_liar=True)
        elif sampler == "random":
            chosen = optuna.samplers.RandomSampler(seed=seed)
        else:
            raise DefinitionError(f"Search: sampler={sampler!r} must be 'tpe' or 'random'")
        self.direction = direction
        self.distributions = {name: distribution(s) for name, s in space.items()}
        self._study = optuna.create_study(direction=cast(Any, direction), sampler=chosen)

    def ask(self, n: int = 1) -> list[TrialParams]:
        """``n`` new trials' parameters (told later with :meth:`tell`)."""
        asked = []
        for _ in range(n):
            trial = self._study.ask(self.distributions)
            asked.append(TrialParams(trial.number, dict(trial.params), trial))
        return asked

    def tell(
        self,
        trial: TrialParams,
        value: float | None,
        *,
        reports: Mapping[int, float] | None = None,
        pruned: bool = False,
    ) -> None:
        """The result of an asked trial: its value, or None when it failed; the values it
        reported on the way, and whether it was pruned."""
        from optuna.trial import TrialState

        for step, reported in sorted((reports or {}).items()):
            trial._trial.report(reported, step)
        if pruned:
            self._study.tell(trial._trial, state=TrialState.PRUNED)
        elif value is None or not math.isfinite(value):
            self._study.tell(trial._trial, state=TrialState.FAIL)
        else:
            self._study.tell(trial._trial, value)

    def replay(self, finished: Iterable[FinishedTrial]) -> int:
        """Tell this (fresh) study trials that finished before, e.g. in a run that was
        killed; returns how many were told. Parameters outside today's space are kept out."""
        from optuna.trial import TrialState, create_trial

        told = 0
        for past in finished:
            params = dict(past.params)
            if set(params) != set(self.distributions) or not all(
                self.distributions[k]._contains(self.distributions[k].to_internal_repr(v))
                for k, v in params.items()
            ):
                params = {}
            ok = past.value is not None and math.isfinite(past.value) and bool(params)
            state = TrialState.COMPLETE if ok else TrialState.FAIL
            if past.pruned and params:
                state = TrialState.PRUNED
            self._study.add_trial(
                create_trial(
                    state=state,
                    value=past.value if state == TrialState.COMPLETE else None,
                    params=params,
                    distributions={k: self.distributions[k] for k in params},
                    intermediate_values={int(k): float(v) for k, v in past.reports.items()},
                )
            )
            told += 1
        return told

    @property
    def trials(self) -> Sequence[Any]:
        """The study's trials (Optuna's ``FrozenTrial``), in order."""
        return list(self._study.trials)

    @property
    def best(self) -> Any | None:
        """The best complete trial so far, or None."""
        done = [t for t in self._study.trials if t.value is not None]
        if not done:
            return None
        pick = max if self.direction == "maximize" else min
        return pick(done, key=lambda t: float(t.value or 0.0))
