"""Shared fixtures: a ledger per test on every store backend, a helper to run the CLI as a
subprocess, and one local Ray for the whole session."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from itertools import count
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from conveyor.store import Store, open_store

RESOURCES = Path(__file__).parent / "resources"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    """A fresh SQLite ledger path in this test's temporary folder."""
    return tmp_path / "ledger" / "conveyor.db"


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``conveyor ARGS`` in ``tmp_path`` as a real subprocess and return the result."""

    def run(
        *args: str, timeout: float = 120, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", **(env or {})}
        return subprocess.run(
            [sys.executable, "-m", "conveyor", *args],
            cwd=cwd or tmp_path,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


@pytest.fixture(scope="session")
def ray_session() -> Iterator[Any]:
    """One local Ray with two CPUs, started the first time a test needs it and shut down at the
    end of the session; Conveyor's Ray executor uses it rather than starting its own. Without
    Ray installed the test is skipped, except in CI, where it fails."""
    try:
        import ray
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip("Ray is not installed (pip install -e '.[dev]')")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


# -- ledgers on every backend ---------------------------------------------------------------------

#: The PostgreSQL server the tests use; each test gets a database of its own on it.
POSTGRES_URL = os.environ.get(
    "CONVEYOR_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)


class PostgresServer:
    """The tests' PostgreSQL server: fresh databases, copied from one migrated template (fast)
    or empty, each dropped after its test."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.url = url
        self._admin = psycopg.connect(url, autocommit=True, connect_timeout=5)
        self._names = (f"conveyor_test_{os.getpid()}_{uuid.uuid4().hex[:8]}_{i}" for i in count())
        self._drop_orphans()
        self._template = self._create("template0")
        from conveyor.store.postgres import PostgresStore

        PostgresStore(self.url_of(self._template)).close()

    def url_of(self, database: str) -> str:
        """The server's URL with ``database`` in it."""
        return urlsplit(self.url)._replace(path="/" + database).geturl()

    def database(self, *, migrated: bool = True) -> str:
        """The URL of a new database: with the ledger's tables, or empty."""
        return self.url_of(self._create(self._template if migrated else "template0"))

    def drop(self, url: str) -> None:
        """Drop the database of ``url``, closing any connection a test left open."""
        from psycopg import sql

        name = urlsplit(url).path.lstrip("/")
        self._admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )

    def close(self) -> None:
        """Drop the template and disconnect."""
        self.drop(self.url_of(self._template))
        self._admin.close()

    def _drop_orphans(self) -> None:
        """Drop the databases of test sessions that were killed before they could (their
        names carry the pid of a process that is gone, and nobody is connected to them)."""
        import psycopg
        from psycopg import sql

        rows = self._admin.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'conveyor\\_test\\_%'"
        )
        for (name,) in rows.fetchall():
            try:
                os.kill(int(name.split("_")[2]), 0)
                continue  # its session is still running
            except ProcessLookupError:
                pass
            except (PermissionError, ValueError):
                continue  # alive, or not a name this fixture made
            try:
                self._admin.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(name)))
            except psycopg.errors.ObjectInUse:
                pass  # someone is using it after all

    def _create(self, template: str) -> str:
        from psycopg import sql

        name = next(self._names)
        self._admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
        return name


def unavailable(reason: str) -> None:
    """Skip the test, or fail it in CI, where every backend must be tested."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (CI must test every store)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """The PostgreSQL server at ``CONVEYOR_TEST_POSTGRES`` (default 127.0.0.1:5432, user
    postgres); tests that need it are skipped without one, and fail in CI."""
    try:
        import psycopg
    except ImportError:
        unavailable("psycopg is not installed: pip install -e '.[dev]'")
        raise
    try:
        server = PostgresServer(POSTGRES_URL)
    except psycopg.OperationalError as exc:
        unavailable(f"no PostgreSQL server at {POSTGRES_URL}: {' '.join(str(exc).split())}")
        raise
    yield server
    server.close()


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> Iterator[str]:
    """The URL of a fresh PostgreSQL ledger database of this test's own."""
    url = postgres.database()
    yield url
    postgres.drop(url)


@pytest.fixture(params=["sqlite", "postgres"])
def store_location(request: pytest.FixtureRequest, store_path: Path) -> str:
    """A fresh ledger on each backend: a SQLite file path, or a PostgreSQL URL."""
    if request.param == "sqlite":
        return str(store_path)
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def open_ledger(store_location: str) -> Iterator[Callable[[], Store]]:
    """Open the test's ledger (again: each call is a connection of its own); all closed after
    the test."""
    opened: list[Store] = []

    def open_() -> Store:
        opened.append(open_store(store_location))
        return opened[-1]

    yield open_
    for store in opened:
        store.close()


@pytest.fixture
def ledger(open_ledger: Callable[[], Store]) -> Store:
    """The test's ledger, open, on each backend."""
    return open_ledger()


@pytest.fixture
def peek() -> Callable[[str, str], list[tuple[Any, ...]]]:
    """Run one SQL statement on a ledger behind the store's back, as a person inspecting it
    would: ``peek(location, "SELECT ...")``."""

    def run(location: str, statement: str) -> list[tuple[Any, ...]]:
        if "://" not in location:
            with closing(sqlite3.connect(location)) as db:
                return db.execute(statement).fetchall()
        import psycopg

        with psycopg.connect(location, autocommit=True) as conn:
            cursor = conn.execute(statement)
            return cursor.fetchall() if cursor.description else []

    return run
