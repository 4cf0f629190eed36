"""Pruning: ``cv.report(step, value)`` inside ``fit`` tells how a trial is doing as it goes,
and the model's pruner stops an unpromising trial early.

A trial runs in a worker process, far from the study. So the worker decides: each trial is
sent the reports of the trials finished before it (its *peers*), and an in-memory Optuna
study made of them asks the pruner (Median, Percentile, or any Optuna pruner that decides
from finished trials' reports) after each report. A pruned trial is not a failure: its unit
finishes with the last value it reported, and the search is told it was pruned.

    @pipe.model(metric="log_loss", direction="minimize", pruner="median", search=...)
    def boosted(train, params):
        model = SGDClassifier(...)
        for epoch in range(20):
            model.partial_fit(...)
            cv.report(epoch, validation_loss(model))   # may stop here: cv.TrialPruned
        return model
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, cast

from conveyor.errors import DefinitionError

#: One finished trial as a peer: {"values": [[step, value], ...], "state": "complete" |
#: "pruned", "value": its final value}.
Peer = Mapping[str, Any]


class TrialPruned(Exception):
    """Raised by :func:`report` inside ``fit`` when the pruner stops the trial; let it pass."""

    def __init__(self, step: int, value: float) -> None:
        super().__init__(f"pruned at step {step} (value {value:g})")
        self.step = step
        self.value = value


def make_pruner(option: object) -> Any:
    """The Optuna pruner of a model's ``pruner=`` option (None for none)."""
    if option is None:
        return None
    import optuna

    if option == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    if option == "percentile":
        return optuna.pruners.PercentilePruner(25.0, n_startup_trials=5, n_warmup_steps=1)
    if isinstance(option, optuna.pruners.BasePruner):
        return option
    raise DefinitionError(f"pruner={option!r} must be 'median', 'percentile' or an Optuna pruner")


class Reporter:
    """The reports of one running trial, and the pruner's verdict after each."""

    def __init__(self, pruner: object, direction: str, peers: Sequence[Peer]) -> None:
        self.values: dict[int, float] = {}
        self._pruner = make_pruner(pruner)
        self._direction = direction
        self._peers = peers
        self._trial: Any = None

    def report(self, step: int, value: float) -> None:
        """Record ``value`` at ``step``; raise :class:`TrialPruned` if the pruner says stop.
        A step reported twice keeps its first value, as in Optuna."""
        if step in self.values:
            return
        self.values[step] = value
        if self._pruner is None:
            return
        trial = self._running()
        trial.report(value, step)
        if trial.should_prune():
            raise TrialPruned(step, value)

    def peer(self, state: str, value: float | None) -> dict[str, Any]:
        """This trial as a peer of the trials after it."""
        return {"values": sorted(self.values.items()), "state": state, "value": value}

    def _running(self) -> Any:
        if self._trial is None:
            study = peer_study(self._peers, self._direction, self._pruner)
            self._trial = study.ask()
        return self._trial


def peer_study(peers: Sequence[Peer], direction: str, pruner: object = None) -> Any:
    """An in-memory Optuna study of finished trials and their reports."""
    import optuna
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=cast(Any, direction), pruner=cast(Any, pruner))
    for peer in peers:
        values = {int(step): float(value) for step, value in peer.get("values", ())}
        complete = peer.get("state") == "complete" and peer.get("value") is not None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an empty param set is fine here
            study.add_trial(
                create_trial(
                    state=TrialState.COMPLETE if complete else TrialState.PRUNED,
                    value=float(peer["value"]) if complete else None,
                    intermediate_values=values,
                )
            )
    return study


_current: ContextVar[Reporter | None] = ContextVar("conveyor_trial_reporter", default=None)


@contextmanager
def reporting(reporter: Reporter) -> Iterator[Reporter]:
    """Route :func:`report` calls of this thread to ``reporter`` while the block runs."""
    token = _current.set(reporter)
    try:
        yield reporter
    finally:
        _current.reset(token)


def report(step: int, value: float) -> None:
    """Tell the running trial's progress: its validation ``value`` after ``step`` (an epoch,
    a number of trees, ...). With a pruner on the model it may raise :class:`TrialPruned` to
    stop the trial early; let that exception pass. Outside a trial (``fit`` called by hand,
    e.g. in a unit test) it does nothing."""
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"cv.report: step={step!r} must be a whole number >= 0 (an epoch, ...)")
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number):
        raise ValueError(f"cv.report: value={value!r} at step {step} must be a finite number")
    reporter = _current.get()
    if reporter is not None:
        reporter.report(step, number)
