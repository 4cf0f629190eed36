"""The SQLite ledger: one file in WAL mode, safe for one writer and many readers."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from conveyor.errors import StoreError
from conveyor.store.base import Done
from conveyor.store.relational import Params, RelationalStore
from conveyor.store.sqlfiles import load_migrations, load_queries, split_statements

_Q = load_queries("sqlite")


class SQLiteStore(RelationalStore):
    """The ledger in a SQLite file (created with its folder if missing). One connection; like
    any :class:`~conveyor.store.base.Store` object it may be used from one thread at a time."""

    queries = _Q

    def __init__(self, path: Path) -> None:
        self.path = path
        self.location = str(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA busy_timeout = 30000")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except (sqlite3.DatabaseError, OSError) as exc:
            raise StoreError(
                f"cannot open the ledger {path}: {exc}; pass --store with a writable SQLite file"
            ) from exc

    def _migrate(self) -> None:
        db = self._db
        db.execute(_Q["create_schema_migrations"])
        applied = {row[0] for row in db.execute(_Q["applied_migrations"])}
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
