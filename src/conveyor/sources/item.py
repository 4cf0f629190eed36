"""The :class:`Item`: one input to a pipeline, a file, a record or a group of rows."""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.errors import InputError
from conveyor.sources.names import escape_name

if TYPE_CHECKING:
    import pandas as pd


class ItemKind(enum.StrEnum):
    """What an item stands for."""

    FILE = "file"
    RECORD = "record"
    GROUP = "group"


class Item(Mapping[str, Any]):
    """One input. ``item.id`` is stable across runs; files offer ``path``/``read_text()``,
    records and groups offer ``item["field"]``, ``fields`` and (groups) ``frame``."""

    __slots__ = ("_fields", "_frame", "_path", "id", "kind")

    def __init__(
        self,
        id: str,
        kind: ItemKind,
        *,
        path: Path | str | None = None,
        fields: Mapping[str, Any] | None = None,
        frame: pd.DataFrame | None = None,
    ) -> None:
        self.id = id
        self.kind = ItemKind(kind)
        self._path = Path(path) if path is not None else None
        self._fields: dict[str, Any] = dict(fields or {})
        self._frame = frame

    # files ---------------------------------------------------------------------------------
    @property
    def path(self) -> Path:
        """The file this item reads (file items only)."""
        if self._path is None:
            raise InputError(f"item {self.id!r} is a {self.kind} item, not a file: it has no path")
        return self._path

    def read_bytes(self) -> bytes:
        """The file's bytes; an unreadable file raises :class:`InputError` naming it."""
        try:
            return self.path.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read {self._shown}: {exc.strerror or exc}") from exc

    def read_text(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        """The file decoded as text; bad bytes raise :class:`InputError` saying where and why."""
        data = self.read_bytes()
        try:
            return data.decode(encoding, errors)
        except UnicodeDecodeError as exc:
            raise InputError(
                f"{self._shown} is not valid {encoding} (byte {exc.start}: {exc.reason}); "
                f"pass read_text(encoding=...) or errors='replace'"
            ) from exc
        except LookupError as exc:
            raise InputError(f"unknown encoding {encoding!r} for {self._shown}") from exc

    @property
    def _shown(self) -> str:
        return escape_name(self.path)  # messages go to the ledger and the terminal: plain text

    # records and groups ------------------------------------------------------------------------
    @property
    def fields(self) -> dict[str, Any]:
        """The record's fields (for groups: the group-by columns and their values)."""
        return self._fields

    @property
    def frame(self) -> pd.DataFrame:
        """The rows of this group as a pandas DataFrame (group items only)."""
        if self._frame is None:
            raise InputError(
                f"item {self.id!r} is a {self.kind} item, not a group: it has no frame"
            )
        return self._frame

    def __getitem__(self, key: str) -> Any:
        try:
            return self._fields[key]
        except KeyError:
            known = ", ".join(sorted(self._fields)) or "none"
            raise KeyError(f"item {self.id!r} has no field {key!r} (fields: {known})") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Item) and (other.id, other.kind) == (self.id, self.kind)

    def __hash__(self) -> int:
        return hash((self.id, self.kind))

    def __repr__(self) -> str:
        return f"Item({self.id!r}, {self.kind.value})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.id, self.kind.value, self._path, self._fields, self._frame))


def _rebuild(
    id: str, kind: str, path: Path | None, fields: dict[str, Any], frame: pd.DataFrame | None
) -> Item:
    return Item(id, ItemKind(kind), path=path, fields=fields, frame=frame)
