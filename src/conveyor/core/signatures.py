"""Error signatures: failures that differ only in numbers, ids, paths or quoted values share a
signature, so a thousand failures read as the three problems they are."""

from __future__ import annotations

import hashlib
import re

_MASKS = [
    (re.compile(r"(?:[A-Za-z]:)?(?:[\w.~-]*[/\\])+[\w.~-]+"), "<path>"),  # paths
    (re.compile(r"'[^']*'|\"[^\"]*\""), "<str>"),  # quoted values
    (re.compile(r"\b[0-9a-f]{8,}\b|\b[0-9a-f]{8}-[0-9a-f-]{27,}\b", re.IGNORECASE), "<id>"),
    (re.compile(r"\b0x[0-9a-f]+\b", re.IGNORECASE), "<addr>"),
    (re.compile(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?"), "<n>"),
]


def normalise(message: str) -> str:
    """The first line of ``message`` with paths, quoted values, ids and numbers masked."""
    lines = message.strip().splitlines()
    text = lines[0] if lines else ""
    for pattern, mask in _MASKS:
        text = pattern.sub(mask, text)
    return text[:300]


def signature(step: str, error_type: str, message: str) -> str:
    """A short stable id of (step, exception type, normalised message)."""
    text = f"{step}\0{error_type}\0{normalise(message)}"
    return hashlib.blake2b(text.encode(), digest_size=5).hexdigest()
