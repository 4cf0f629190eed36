"""Durations as users write them."""

from __future__ import annotations

from datetime import timedelta

import pytest

from conveyor.core.durations import parse_duration


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30s", 30.0),
        ("250ms", 0.25),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1h30m", 5400.0),
        ("1m30s500ms", 90.5),
        ("1.5s", 1.5),
        ("0s", 0.0),
        (" 2 M ", 120.0),
        ("1H 30M", 5400.0),
        (0, 0.0),
        (7, 7.0),
        (2.5, 2.5),
        (timedelta(minutes=2, milliseconds=5), 120.005),
        (timedelta(0), 0.0),
    ],
)
def test_accepted_forms_give_seconds(value: str | float | timedelta, seconds: float) -> None:
    result = parse_duration(value)
    assert isinstance(result, float)
    assert result == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    ["soon", "", "   ", "30", "s", "5 parsecs", "5s!", "1h 30x", "30s ago", "1,5s", "-5s", "m5"],
)
def test_unparseable_text_names_the_accepted_forms(value: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        parse_duration(value)
    assert str(excinfo.value) == (
        f"{value!r} is not a duration; write e.g. '30s', '250ms', '5m' or '1h30m'"
    )


@pytest.mark.parametrize("value", [True, False, None, [30], b"30s"])
def test_values_of_other_types_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match=r"is not a duration; write e\.g\. '30s'"):
        parse_duration(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [-1, -0.5, timedelta(seconds=-1)])
def test_negative_durations_are_refused(value: float | timedelta) -> None:
    with pytest.raises(ValueError, match="is negative; a duration must be zero or more"):
        parse_duration(value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_infinity_are_refused(value: float) -> None:
    with pytest.raises(ValueError) as excinfo:
        parse_duration(value)
    assert str(excinfo.value) == f"{value!r} is not a finite duration; write e.g. '30s' or '5m'"
