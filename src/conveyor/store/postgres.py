"""The PostgreSQL ledger (psycopg 3), for several coordinators or machines sharing one store.
Units are leased with ``FOR UPDATE SKIP LOCKED``, so concurrent coordinators on one run never
get the same unit; every commit is fenced by the unit's lease exactly as in SQLite."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

from conveyor.core.units import Claim
from conveyor.errors import RunNotFound, StoreError, UsageError
from conveyor.store.relational import Cursor, Params, RelationalStore
from conveyor.store.rows import Done, Failed
from conveyor.store.sqlfiles import load_migrations, load_queries, split_statements

# This module is imported only when a postgresql:// store is opened: only those need psycopg.
try:
    import psycopg
except ImportError as exc:
    raise UsageError(
        "a postgresql:// store needs psycopg: pip install 'conveyor[postgres]'"
    ) from exc

_Q = load_queries("postgres")
#: The advisory lock migrations are applied under (any constant; this one spells "conveyor").
_MIGRATION_LOCK = 0x636F6E7665796F72
#: Transactions that lost a deadlock or a serialization race are run again this many times.
_RETRIES = 5
#: How long to wait for the server when connecting, in seconds.
_CONNECT_TIMEOUT = 10

P = ParamSpec("P")
R = TypeVar("R")


class PostgresStore(RelationalStore):
    """The ledger in a PostgreSQL database (the tables are created if missing). One
    connection; a lock lets threads share the object, one statement or transaction at a time."""

    queries = _Q

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.location = redact(url)
        self._lock = threading.RLock()
        try:
            self._conn: psycopg.Connection[tuple[Any, ...]] = psycopg.connect(
                url, autocommit=True, connect_timeout=_CONNECT_TIMEOUT
            )
        except psycopg.Error as exc:
            raise StoreError(_connect_failure(self.location, exc)) from exc
        try:
            self._migrate(create)
        except psycopg.Error as exc:
            self._conn.close()
            raise StoreError(
                f"cannot set up the ledger in {self.location}: {_one_line(exc)}; "
                "the user needs the right to create tables in the database"
            ) from exc
        except BaseException:
            self._conn.close()
            raise

    def _migrate(self, create: bool) -> None:
        migrations = load_migrations("postgres")
        if self._execute("migrations_table").fetchone()[0]:
            applied = {row[0] for row in self._execute("applied_migrations")}
            if applied >= {version for version, _, _ in migrations}:
                return  # the common case: nothing to do, no lock taken
        elif not create:
            raise RunNotFound(
                f"no ledger in {self.location}; start a run with 'conveyor run' or pass --store"
            )
        with self._write():
            # Processes starting together wait here for the first to finish, then find its
            # migrations applied.
            self._execute("migration_lock", (_MIGRATION_LOCK,))
            self._execute("create_schema_migrations")
            applied = {row[0] for row in self._execute("applied_migrations")}
            for version, name, sql in migrations:
                if version in applied:
                    continue
                for statement in split_statements(sql):
                    self._conn.execute(statement)
                self._execute("record_migration", (version, name, time.time()))

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # the dialect -------------------------------------------------------------------------------
    def _execute(self, name: str, params: Params = ()) -> Cursor:
        # A client-side cursor holds all its rows: it can be read after the lock is released.
        with self._lock:
            return self._conn.execute(_Q[name], params, binary=True)

    def _many(self, name: str, rows: Sequence[Sequence[Any]]) -> int:
        if not rows:
            return 0
        return self._execute(name, (_batch(rows),)).rowcount

    @contextmanager
    def _write(self) -> Iterator[None]:
        with self._lock, self._conn.transaction():
            yield

    def _mark_done(self, done: Sequence[Done], now: float) -> Sequence[Done]:
        if not done:
            return done
        rows = [(now, o.duration, o.started_at, c.unit_id, c.fence) for c, o, _ in done]
        marked = {row[0] for row in self._execute("unit_done", (_batch(rows),))}
        if len(marked) == len(done):
            return done
        return [entry for entry in done if entry[0].unit_id in marked]

    def _record_failure(self, run_id: str, entry: Failed, now: float) -> int:
        # PostgreSQL text cannot hold NUL characters, which an exception's message may.
        claim, outcome, state, not_before, descendants, decision = entry
        error = outcome.error
        if error is not None and "\x00" in error.type + error.message + error.traceback:
            error = error._replace(
                type=error.type.replace("\x00", "\\x00"),
                message=error.message.replace("\x00", "\\x00"),
                traceback=error.traceback.replace("\x00", "\\x00"),
            )
            outcome = outcome._replace(error=error)
            entry = Failed(claim, outcome, state, not_before, descendants, decision)
        return super()._record_failure(run_id, entry, now)

    # writes that may meet another coordinator's: run again if the server chose them to fail ---
    def claim(
        self, run_id: str, steps: Sequence[str], limit: int, *, owner: str, lease: float
    ) -> list[Claim]:
        return self._retrying(super().claim, run_id, steps, limit, owner=owner, lease=lease)

    def commit(
        self,
        run_id: str,
        done: Sequence[Done],
        failed: Sequence[Failed],
        requeue: Sequence[Claim] = (),
    ) -> int:
        return self._retrying(super().commit, run_id, done, failed, requeue)

    def heartbeat(self, run_id: str, coordinator: str, owner: str, lease: float) -> int:
        return self._retrying(super().heartbeat, run_id, coordinator, owner, lease)

    def adopt_run(self, run_id: str, coordinator: str) -> int:
        return self._retrying(super().adopt_run, run_id, coordinator)

    def release(self, run_id: str, owner: str) -> int:
        return self._retrying(super().release, run_id, owner)

    def _retrying(self, write: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run a write transaction, again if the server broke a deadlock by failing it (two
        coordinators' commits touching the same dependents in a different order)."""
        for attempt in range(_RETRIES):
            try:
                return write(*args, **kwargs)
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
                if attempt == _RETRIES - 1:
                    raise
                time.sleep(0.01 * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover


def _batch(rows: Sequence[Sequence[Any]]) -> str:
    """Rows as the one JSON parameter of a batch query (bytes in base64). The JSON encoder runs
    in C: several times cheaper for the coordinator than adapting one array per column."""
    return json.dumps(rows, default=_base64)


def _base64(value: object) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"cannot store a {type(value).__name__} in a batch")


def redact(url: str) -> str:
    """``url`` with its password, if any, masked (for messages and reports)."""
    return re.sub(r"^(\w+://[^/:@]*):[^/@]*@", r"\1:***@", url)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _connect_failure(location: str, exc: BaseException) -> str:
    """One line: what failed connecting to ``location``, and what to do about it."""
    reason = _one_line(exc)
    if "does not exist" in reason and "database" in reason:
        hint = "create it (createdb NAME) or name an existing database in the URL"
    elif "role" in reason and "does not exist" in reason:
        hint = "name an existing user in the URL (or create the role: createuser NAME)"
    elif "password" in reason or "authentication" in reason:
        hint = "check the user and password in the URL"
    elif "invalid" in reason or "missing" in reason:
        hint = "check the URL: postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
    else:
        hint = "check that the server is running and that host and port in the URL are right"
    return f"cannot connect to the ledger {location}: {reason}; {hint}"
