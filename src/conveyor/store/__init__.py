"""The ledger: the only layer that speaks SQL. :func:`open_store` picks the backend from a URL
or path; every backend implements :class:`~conveyor.store.base.Store`."""

from __future__ import annotations

from pathlib import Path

from conveyor.errors import UsageError
from conveyor.store.base import Store

DEFAULT_PATH = Path(".conveyor") / "conveyor.db"

__all__ = ["DEFAULT_PATH", "Store", "open_store"]


def open_store(location: str | Path | None = None) -> Store:
    """Open (creating if needed) the ledger at ``location``: a SQLite file path or
    ``sqlite:///path``; the default is ``.conveyor/conveyor.db`` under the current folder."""
    from conveyor.store.sqlite import SQLiteStore

    text = str(location) if location is not None else str(DEFAULT_PATH)
    if text.startswith("sqlite:///"):
        text = text[len("sqlite:///") :]
    elif "://" in text:
        scheme = text.split("://", 1)[0]
        raise UsageError(
            f"--store {text!r}: the {scheme!r} store is not available; pass a SQLite file path"
        )
    return SQLiteStore(Path(text))
