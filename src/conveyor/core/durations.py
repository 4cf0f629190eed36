"""Durations as users write them: ``"30s"``, ``"5m"``, ``"1h30m"``, ``"250ms"``, a number of
seconds, or a :class:`datetime.timedelta`."""

from __future__ import annotations

import math
import re
from datetime import timedelta

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(value: str | float | int | timedelta) -> float:
    """``value`` in seconds; :class:`ValueError` naming the accepted forms if unparseable."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration; write e.g. '30s', '5m' or '1h30m'")
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        pos, seconds = 0, 0.0
        for match in _PART.finditer(text):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _UNITS[match.group(2)]
            pos = match.end()
        if not text or pos != len(text):
            raise ValueError(
                f"{value!r} is not a duration; write e.g. '30s', '250ms', '5m' or '1h30m'"
            )
    else:
        raise ValueError(f"{value!r} is not a duration; write e.g. '30s', '5m' or a timedelta")
    if not math.isfinite(seconds):
        raise ValueError(f"{value!r} is not a finite duration; write e.g. '30s' or '5m'")
    if seconds < 0:
        raise ValueError(f"{value!r} is negative; a duration must be zero or more")
    return seconds
