"""A ledger that lives in memory, for fast tests: the SQLite ledger in an in-memory database,
shared by name within one process and gone when its last connection closes.

It is SQLite's ``memdb`` file system (``file:/NAME?vfs=memdb``) rather than a temporary
file: nothing is written to disk, nothing is left behind when a test process is killed, and
it runs the very queries, migrations and fences of the file ledger. Unlike a plain
``:memory:`` database, every connection opened by name sees the same data and waits for the
others' transactions (a run's coordinator, its alarms, its metrics and a stream's ingest
thread each open one). What it does not do: journal in WAL mode (readers wait for a commit
rather than read beside it), or reach other processes (``conveyor worker`` and the CLI run in
their own, so they cannot join a run kept in memory).
"""

from __future__ import annotations

import re
import sqlite3
import uuid

from conveyor.errors import StoreError, UsageError
from conveyor.store.sqlite import SQLiteBase

#: The ``--store`` prefix of in-memory ledgers: ``memory:`` alone is a fresh one of its own,
#: ``memory:NAME`` the one of that name in this process.
SCHEME = "memory:"
_NAME = re.compile(r"[A-Za-z0-9_.-]+")


class MemoryStore(SQLiteBase):
    """A ledger in memory, named ``name`` (a new unique name when None); opened again by
    name (``open_store(store.location)``) it is the same ledger while any connection to it is
    open. With ``create=False`` a name nobody holds open is an error."""

    def __init__(self, name: str | None = None, *, create: bool = True) -> None:
        name = name or f"conveyor-{uuid.uuid4().hex}"
        if not _NAME.fullmatch(name):
            raise UsageError(
                f"--store {SCHEME}{name}: an in-memory ledger's name may hold only letters, "
                "digits, '.', '_' and '-'"
            )
        self.name = name
        self.location = SCHEME + name
        try:
            self._open(f"file:/{name}?vfs=memdb", uri=True, wal=False, create=create)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open the in-memory ledger {self.location}: {exc}") from exc
