"""The SQLite ledger: one file in WAL mode, safe for one writer and many readers."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from conveyor.errors import RunNotFound, StoreError
from conveyor.store.relational import Params, RelationalStore
from conveyor.store.rows import Done
from conveyor.store.sqlfiles import load_migrations, load_queries, split_statements

_Q = load_queries("sqlite")


class SQLiteBase(RelationalStore):
    """A ledger in a SQLite database, wherever the database lives: the dialect, its
    migrations and transactions over one connection. Like any
    :class:`~conveyor.store.base.Store` object it may be used from one thread at a time."""

    queries = _Q

    def _open(
        self, target: str, *, uri: bool = False, wal: bool = True, create: bool = True
    ) -> None:
        """Connect to ``target`` (a path, or a ``file:`` URI) and bring its tables up to
        date; with ``create=False`` a database without them is an error."""
        self._db = sqlite3.connect(target, uri=uri, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout = 30000")
        if wal:
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.execute("PRAGMA foreign_keys = ON")
        self._migrate(create)

    def _migrate(self, create: bool) -> None:
        db = self._db
        db.execute(_Q["create_schema_migrations"])
        applied = {row[0] for row in db.execute(_Q["applied_migrations"])}
        if not applied and not create:
            db.close()
            raise RunNotFound(
                f"no ledger in {self.location}; start a run with 'conveyor run' or pass --store"
            )
        for version, name, sql in load_migrations("sqlite"):
            if version in applied:
                continue
            db.execute("BEGIN IMMEDIATE")
            try:
                # Another process may have applied it while this one waited for the lock.
                if version not in {r[0] for r in db.execute(_Q["applied_migrations"])}:
                    for statement in split_statements(sql):
                        db.execute(statement)
                    db.execute(_Q["record_migration"], (version, name, time.time()))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        self._db.close()

    # the dialect -------------------------------------------------------------------------------
    def _execute(self, name: str, params: Params = ()) -> sqlite3.Cursor:
        return self._db.execute(_Q[name], params)

    def _many(self, name: str, rows: Sequence[Sequence[Any]]) -> int:
        before = self._db.total_changes
        self._db.executemany(_Q[name], rows)
        return self._db.total_changes - before

    def _write(self) -> _Transaction:
        return _Transaction(self._db)

    def _mark_done(self, done: Sequence[Done], now: float) -> Sequence[Done]:
        if not done:
            return done
        db = self._db
        # Fast path: one statement for the batch; if any fence was stale, redo it row by row
        # to learn which.
        db.execute("SAVEPOINT mark_done")
        before = db.total_changes
        db.executemany(
            _Q["unit_done"],
            [(now, o.duration, o.started_at, c.unit_id, c.fence) for c, o, _ in done],
        )
        if db.total_changes - before == len(done):
            db.execute("RELEASE mark_done")
            return done
        db.execute("ROLLBACK TO mark_done")
        db.execute("RELEASE mark_done")
        return [
            entry
            for entry in done
            if db.execute(
                _Q["unit_done"],
                (now, entry[1].duration, entry[1].started_at, entry[0].unit_id, entry[0].fence),
            ).rowcount
            == 1
        ]


class SQLiteStore(SQLiteBase):
    """The ledger in a SQLite file in WAL mode (created with its folder if missing)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.location = str(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._open(str(path))
        except (sqlite3.DatabaseError, OSError) as exc:
            raise StoreError(
                f"cannot open the ledger {path}: {exc}; pass --store with a writable SQLite file"
            ) from exc


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any exception."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self._db.execute("COMMIT")
        else:
            self._db.execute("ROLLBACK")
