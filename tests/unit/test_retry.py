"""Retry decisions as values: classification of exceptions and backoff."""

from __future__ import annotations

import random

import pytest

import conveyor as cv
from conveyor.definition.retry import Retry, classify, decide
from conveyor.errors import DefinitionError, InputError


def test_by_default_everything_but_bad_input_is_retryable() -> None:
    assert classify(ValueError("x"), (), ()).retryable
    assert not classify(InputError("bad bytes"), (), ()).retryable


def test_retry_on_and_give_up_on_pick_exceptions_by_type() -> None:
    assert classify(TimeoutError(), (TimeoutError,), ()).retryable
    assert not classify(ValueError(), (TimeoutError,), ()).retryable
    assert not classify(PermissionError(), (), (PermissionError,)).retryable
    assert classify(InputError("x"), (InputError,), ()).retryable  # explicitly asked for


def test_a_step_can_ask_for_a_retry_after_a_delay() -> None:
    verdict = classify(Retry(delay="30s"), (), (ValueError,))
    assert verdict.retryable and verdict.delay == 30.0
    decision = decide(
        attempt=1, retries=3, retryable=True, requested_delay=30.0, backoff=1, backoff_max=60
    )
    assert decision.retry and decision.delay == 30.0


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    rng = random.Random(7)
    delays = [
        decide(
            attempt=n,
            retries=10,
            retryable=True,
            requested_delay=None,
            backoff=1.0,
            backoff_max=8.0,
            rng=rng,
        ).delay
        for n in range(1, 7)
    ]
    ceilings = [1, 2, 4, 8, 8, 8]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))


def test_no_retries_left_or_not_retryable_gives_up() -> None:
    spent = decide(
        attempt=3, retries=2, retryable=True, requested_delay=None, backoff=1, backoff_max=9
    )
    assert not spent.retry and "no retries left" in spent.reason
    refused = decide(
        attempt=1, retries=5, retryable=False, requested_delay=None, backoff=1, backoff_max=9
    )
    assert not refused.retry and refused.reason == "not retryable"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"retry_on": "TimeoutError"}, "retry_on must be exception classes"),
        ({"give_up_on": [ValueError, 3]}, "give_up_on must be exception classes"),
        ({"backoff": "soon"}, "backoff='soon' is not a duration"),
        ({"backoff": "10s", "backoff_max": "1s"}, "backoff_max=1s is shorter than backoff=10s"),
    ],
)
def test_bad_retry_options_are_refused_when_the_decorator_runs(
    options: dict[str, object], message: str
) -> None:
    pipe = cv.Pipeline("p")
    with pytest.raises(DefinitionError, match="step 'fetch'") as info:

        @pipe.step(**options)
        def fetch(item: cv.Item) -> None: ...

    assert message in str(info.value)
