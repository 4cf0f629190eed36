"""What a SQL dialect gives the shared ledger code: named queries run on one connection, batches
of rows, and write transactions."""

from __future__ import annotations

import abc
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar, Protocol

#: Parameters of one statement: positional or by name, in the dialect's placeholder style.
Params = Sequence[Any] | Mapping[str, Any]


class Cursor(Protocol):
    """The part of a DB-API cursor the ledger reads: rows and how many rows changed."""

    @property
    def rowcount(self) -> int:
        """Rows changed by the statement."""

    def fetchone(self) -> Any:
        """The next row, or None."""

    def fetchall(self) -> list[Any]:
        """The remaining rows."""

    def __iter__(self) -> Iterator[Any]: ...


class SQLConnection(abc.ABC):
    """A ledger's connection to its database, as the shared SQL code uses it; the dialects
    (SQLite, PostgreSQL) implement it."""

    #: The dialect's named queries; every dialect has the same names with the same parameters.
    queries: ClassVar[dict[str, str]]
    location: str

    @abc.abstractmethod
    def _execute(self, name: str, params: Params = ()) -> Cursor:
        """Run the named query (outside a transaction: on its own)."""

    @abc.abstractmethod
    def _many(self, name: str, rows: Sequence[Sequence[Any]]) -> int:
        """Run the named query once per row (or as one statement over all of them); return how
        many rows it changed."""

    @abc.abstractmethod
    def _write(self) -> AbstractContextManager[None]:
        """A write transaction: committed at the end of the block, rolled back on an error."""

    @staticmethod
    def _list(values: Iterable[Any]) -> str:
        """``values`` as the one parameter a query reads a list from: a JSON array (SQLite
        reads it with json_each, PostgreSQL with json_array_elements_text)."""
        return json.dumps(list(values))

    def schema_version(self) -> int:
        """The number of the last migration applied."""
        return int(self._execute("schema_version").fetchone()[0] or 0)
