"""What every source yields: a :class:`SourceItem` per item, as the ledger records it, and the
way back from a ledger row to the :class:`Item` a step receives."""

from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import dataclass

from conveyor.sources.item import Item, ItemKind


@dataclass(frozen=True, slots=True)
class SourceItem:
    """One item as the ledger records it: enough to rebuild the :class:`Item` in any worker."""

    id: str
    kind: ItemKind
    key: str
    payload: bytes
    error: str | None = None


def rebuild_item(kind: str, id: str, payload: bytes) -> Item:
    """The :class:`Item` for a ledger row (runs in workers)."""
    if kind == ItemKind.FILE:
        # a file's payload is its path's bytes: a name that is not UTF-8 comes back as it is
        return Item(id, ItemKind.FILE, path=os.fsdecode(payload))
    value = pickle.loads(payload)
    if isinstance(value, Item):
        return value
    if kind == ItemKind.GROUP:
        fields, frame = value
        return Item(id, ItemKind.GROUP, fields=fields, frame=frame)
    return Item(id, ItemKind.RECORD, fields=value)


def digest(*parts: bytes) -> str:
    """A content key: the hex blake2b-128 of ``parts``."""
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(part)
    return h.hexdigest()
