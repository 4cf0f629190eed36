"""The ledger: the only layer that speaks SQL. :func:`open_store` picks the backend from a URL
or path; every backend implements :class:`~conveyor.store.base.Store`, the union of the
protocols by concern in :mod:`conveyor.store.protocols`, with the rows of
:mod:`conveyor.store.rows`."""

from __future__ import annotations

from pathlib import Path

from conveyor.errors import RunNotFound, UsageError
from conveyor.store.base import Store

DEFAULT_PATH = Path(".conveyor") / "conveyor.db"
#: URL schemes of PostgreSQL ledgers.
POSTGRES_SCHEMES = ("postgresql", "postgres")
#: The prefix of in-memory ledgers (:class:`~conveyor.store.memory.MemoryStore`).
MEMORY_SCHEME = "memory:"

__all__ = ["DEFAULT_PATH", "MEMORY_SCHEME", "Store", "open_store"]


def open_store(location: str | Path | None = None, *, create: bool = True) -> Store:
    """Open the ledger at ``location``: a SQLite file path or ``sqlite:///path``, a
    ``postgresql://user@host/db`` URL, or ``memory:`` (a new ledger in memory, for tests) or
    ``memory:NAME`` (the in-memory ledger of that name in this process); the default is
    ``.conveyor/conveyor.db`` under the current folder. With ``create=False`` a missing ledger
    is an error rather than a new empty one (for commands that only read)."""
    text = str(location) if location is not None else str(DEFAULT_PATH)
    if text.startswith(MEMORY_SCHEME):
        from conveyor.store.memory import MemoryStore

        return MemoryStore(text[len(MEMORY_SCHEME) :] or None, create=create)
    if text.startswith("sqlite:///"):
        text = text[len("sqlite:///") :]
    elif "://" in text:
        scheme = text.split("://", 1)[0]
        if scheme.lower() in POSTGRES_SCHEMES:
            from conveyor.store.postgres import PostgresStore

            return PostgresStore(text, create=create)
        raise UsageError(
            f"--store: the {scheme!r} store is not available; pass a SQLite file path "
            "(or sqlite:///PATH) or a postgresql://USER@HOST/DATABASE URL"
        )
    from conveyor.store.sqlite import SQLiteStore

    path = Path(text)
    if not create and not path.exists():
        raise RunNotFound(f"no ledger at {path}; start a run with 'conveyor run' or pass --store")
    return SQLiteStore(path)
