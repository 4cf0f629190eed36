"""File names as text. A name that is not valid UTF-8 (old shares, unpacked archives) reaches
Python with each undecodable byte kept as a lone surrogate (``surrogateescape``), which the
ledger, JSON and the terminal refuse; :func:`escape_name` writes those bytes as ``\\xff`` so
that the id and the messages are plain text, while the path itself keeps the real bytes."""

from __future__ import annotations

import re
from pathlib import Path

_SURROGATE = re.compile("[\ud800-\udfff]")


def escape_name(text: str | Path) -> str:
    """``text`` with each byte that was not UTF-8 written ``\\xNN`` (as Python writes bytes), any
    other lone surrogate ``\\uNNNN``; text without them comes back unchanged, so the ids of
    UTF-8 names are what they always were."""
    return _SURROGATE.sub(_escape, str(text))


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape's stand-in for the byte code - 0xDC00
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"
