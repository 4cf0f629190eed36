"""Retry decisions as values: classification of exceptions and backoff."""

from __future__ import annotations

import random

import pytest

import conveyor as cv
from conveyor.definition.retry import Retry, RetryDecision, classify, decide
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


def lose(attempt: int, losses: int, *, retries: int = 0, max_losses: int = 3) -> RetryDecision:
    return decide(
        attempt=attempt, retries=retries, retryable=True, requested_delay=None, backoff=1,
        backoff_max=9, losses=losses, lost=True, max_losses=max_losses,
    )  # fmt: skip


def test_a_lost_worker_spends_its_own_budget_not_the_retries() -> None:
    first, second, third = lose(1, 0), lose(2, 1), lose(3, 2)
    assert first.retry and second.retry and not third.retry
    assert first.delay < second.delay <= 1.0  # a short pause, not the step's backoff
    assert first.reason == "worker lost 1 of max_worker_losses=3 times"
    assert third.reason == "worker lost 3 of max_worker_losses=3 times"
    assert not lose(1, 0, retries=5, max_losses=1).retry  # retries do not stretch it
    assert lose(9, 0, retries=0, max_losses=3).retry  # nor do failures of the step's own


def test_the_retries_count_only_the_steps_own_failures() -> None:
    def fail(attempt: int, losses: int) -> RetryDecision:
        return decide(
            attempt=attempt, retries=1, retryable=True, requested_delay=None, backoff=1,
            backoff_max=9, losses=losses,
        )  # fmt: skip

    assert fail(3, 2).retry and fail(3, 2).reason == "backoff after attempt 1"
    assert not fail(4, 2).retry and "attempt 2 of 2" in fail(4, 2).reason


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "3"])
def test_max_worker_losses_must_be_a_whole_number_from_one(value: object) -> None:
    pipe = cv.Pipeline("p")
    with pytest.raises(DefinitionError) as info:

        @pipe.step(max_worker_losses=value)
        def fetch(item: cv.Item) -> None: ...

    message = str(info.value)
    assert f"step 'fetch': max_worker_losses={value!r} must be a whole number >= 1" in message
    assert "e.g. max_worker_losses=3" in message


def test_max_worker_losses_is_three_unless_given() -> None:
    pipe = cv.Pipeline("p")

    @pipe.step
    def fetch(item: cv.Item) -> None: ...

    @pipe.step(max_worker_losses=1)
    def parse(fetch: None) -> None: ...

    options = {name: step.options.max_worker_losses for name, step in pipe.steps.items()}
    assert options == {"fetch": 3, "parse": 1}


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
