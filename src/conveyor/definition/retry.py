"""Retry policy: which failures are retried, when, and the :class:`Retry` a step may raise.

A decision is a value: the worker classifies the exception (it has the exception object), the
scheduler turns the attempt number and the policy into a :class:`RetryDecision`, and the ledger
records it with the attempt."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from conveyor.core.durations import parse_duration
from conveyor.errors import InputError

#: Exceptions never retried unless a step lists them in ``retry_on``: the same input fails the
#: same way every time.
NEVER_RETRIED: tuple[type[BaseException], ...] = (InputError,)
#: Attempts of a unit that may lose their worker before it is dead, by default (Ray retries a
#: task after a system failure as often).
MAX_WORKER_LOSSES = 3
#: Seconds before a unit whose worker was lost runs again, per loss so far (at most 1 s).
LOSS_PAUSE = 0.1


class Retry(Exception):
    """Raise from a step to ask for another attempt, after ``delay`` if given (e.g. a rate
    limit's ``Retry-After``). Counts against the step's ``retries``."""

    def __init__(
        self, message: str = "retry requested", *, delay: str | float | timedelta | None = None
    ) -> None:
        super().__init__(message)
        self.delay = None if delay is None else parse_duration(delay)


@dataclass(frozen=True, slots=True)
class Classification:
    """What the worker found out about a failure: whether it may be retried at all, and the
    delay the step asked for."""

    retryable: bool
    delay: float | None = None


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """Retry after ``delay`` seconds, or give up (the unit is dead)."""

    retry: bool
    delay: float = 0.0
    reason: str = ""


def classify(
    exc: BaseException,
    retry_on: Sequence[type[BaseException]],
    give_up_on: Sequence[type[BaseException]],
) -> Classification:
    """Whether ``exc`` may be retried under a step's ``retry_on``/``give_up_on``."""
    if isinstance(exc, Retry):
        return Classification(True, exc.delay)
    if give_up_on and isinstance(exc, tuple(give_up_on)):
        return Classification(False)
    if retry_on:
        return Classification(isinstance(exc, tuple(retry_on)))
    return Classification(not isinstance(exc, NEVER_RETRIED))


def decide(
    *,
    attempt: int,
    retries: int,
    retryable: bool,
    requested_delay: float | None,
    backoff: float,
    backoff_max: float,
    rng: random.Random | None = None,
    losses: int = 0,
    lost: bool = False,
    max_losses: int = MAX_WORKER_LOSSES,
) -> RetryDecision:
    """The decision after failed attempt number ``attempt`` (1-based, counting every attempt),
    ``losses`` of the attempts before it having lost their worker.

    A failure of the step's own (``lost`` False) counts against ``retries``, losses not:
    exponential backoff ``backoff * 2**(n-1)`` after its ``n``-th such failure, capped at
    ``backoff_max``, with "full jitter" between half and all of it, unless the step asked for a
    delay. A lost worker (``lost``) counts against ``max_losses`` only: retried after a short
    pause until that many attempts were lost."""
    if not retryable:
        return RetryDecision(False, reason="not retryable")
    if lost:
        return _after_loss(losses + 1, max_losses)
    attempt -= losses  # this failure's number among the step's own
    if attempt > retries:
        return RetryDecision(False, reason=f"attempt {attempt} of {retries + 1}: no retries left")
    if requested_delay is not None:
        return RetryDecision(True, requested_delay, "the step asked to retry")
    ceiling = min(backoff_max, backoff * 2 ** (attempt - 1))
    delay = ceiling * (rng or random).uniform(0.5, 1.0)
    return RetryDecision(True, delay, f"backoff after attempt {attempt}")


def _after_loss(losses: int, max_losses: int) -> RetryDecision:
    """The decision after a unit's ``losses``-th lost worker."""
    budget = f"worker lost {losses} of max_worker_losses={max_losses} times"
    if losses >= max_losses:
        return RetryDecision(False, reason=budget)
    # A short pause, growing with the losses: a machine short of memory may need a moment.
    return RetryDecision(True, min(LOSS_PAUSE * losses, 1.0), budget)
