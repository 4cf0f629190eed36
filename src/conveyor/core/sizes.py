"""Sizes in bytes as users write them: ``"2GB"``, ``"512MiB"``, ``"1.5GiB"`` or a whole number
of bytes."""

from __future__ import annotations

import math
import re

# Decimal units are powers of 1000 and binary ones powers of 1024, as their names say.
_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)([a-z]*)")
_FORMS = "write e.g. '2GB', '512MiB' or a whole number of bytes"


def parse_size(value: str | int) -> int:
    """``value`` in bytes; :class:`ValueError` naming the accepted forms if unparseable."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"{value!r} is not a size; {_FORMS}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value!r} is negative; a size must be zero or more")
        return value
    match = _SIZE.fullmatch(value.strip().lower().replace(" ", ""))
    if match is None or match.group(2) not in ("", *_UNITS):
        raise ValueError(f"{value!r} is not a size; {_FORMS}")
    size = float(match.group(1)) * _UNITS.get(match.group(2), 1)
    if not math.isfinite(size):
        raise ValueError(f"{value!r} is not a finite size; {_FORMS}")
    return int(size)
