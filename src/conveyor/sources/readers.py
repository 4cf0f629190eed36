"""Batch sources: where items come from. :func:`read_source` reads a folder, a glob, or a table
file (:mod:`~conveyor.sources.files`, :mod:`~conveyor.sources.records`); each yields
:class:`SourceItem` values with a stable id and a content key, and a row or file that cannot be
read becomes a bad item, not a crash."""

from __future__ import annotations

import dataclasses
import os
import pickle
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.errors import InputError, UsageError
from conveyor.sources.base import SourceItem, digest, rebuild_item
from conveyor.sources.files import file_items, folder_files, glob_files, is_glob
from conveyor.sources.item import Item, ItemKind
from conveyor.sources.names import escape_name
from conveyor.sources.records import groups, read_frame, record_item, records

__all__ = [
    "RECORD_SUFFIXES",
    "SourceItem",
    "SourceSpec",
    "check_spec",
    "items_from_iterable",
    "read_source",
    "rebuild_item",
]

RECORD_SUFFIXES = (".jsonl", ".ndjson", ".csv", ".parquet")


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """What to read and how: a path or glob, plus the tabular options."""

    input: str
    id_field: str | None = None
    group_by: tuple[str, ...] = ()
    buckets: int | None = None

    def describe(self) -> str:
        """A one-line description for the ledger and the summary."""
        parts = [self.input]
        if self.id_field:
            parts.append(f"--id-field {self.id_field}")
        if self.group_by:
            parts.append(f"--group-by {','.join(self.group_by)}")
        if self.buckets:
            parts.append(f"--buckets {self.buckets}")
        return " ".join(parts)


def check_spec(spec: SourceSpec) -> None:
    """Fail before anything runs when the whole input is unusable or the options contradict."""
    if spec.buckets is not None and spec.buckets < 1:
        raise UsageError(f"--buckets {spec.buckets}: must be a whole number >= 1")
    if spec.buckets is not None and not spec.group_by:
        raise UsageError("--buckets packs groups into batches; it needs --group-by COLUMNS")
    if is_glob(spec.input):
        return
    path = Path(spec.input)
    if not path.exists():
        raise InputError(f"input {spec.input!r} does not exist; pass a folder, a glob or a file")
    if path.is_file() and path.suffix.lower() not in RECORD_SUFFIXES:
        raise InputError(
            f"input {spec.input!r} is a {path.suffix or 'suffix-less'} file; a single-file input "
            f"must be {', '.join(RECORD_SUFFIXES)} (one item per row); to process files "
            f"themselves pass their folder or a glob"
        )
    if spec.group_by and not path.is_file():
        raise UsageError(
            "--group-by splits a table; --input must be a .csv, .parquet or .jsonl file"
        )
    if spec.id_field and not path.is_file():
        raise UsageError("--id-field names a column of a table; --input must be a table file")
    if path.is_dir() and not os.access(path, os.R_OK | os.X_OK):
        raise InputError(f"input folder {spec.input!r} is not readable")


def read_source(spec: SourceSpec) -> Iterator[SourceItem]:
    """Iterate the items of ``spec`` lazily (tables in batches, files one by one)."""
    check_spec(spec)
    if is_glob(spec.input):
        yield from glob_files(spec.input)
        return
    path = Path(spec.input)
    if path.is_dir():
        yield from folder_files(path)
    elif spec.group_by:
        yield from groups(read_frame(path), spec.group_by, spec.buckets, path)
    else:
        yield from records(path, spec.id_field)


def items_from_iterable(values: Iterable[Any], id_field: str | None = None) -> Iterator[SourceItem]:
    """Items from Python values: :class:`Item` objects as they are, dicts as records, anything
    else as a record ``{"value": x}``."""
    for index, value in enumerate(values):
        if isinstance(value, Item) and value.kind is ItemKind.FILE:
            [item] = file_items([value.path], value.path.parent)
            yield dataclasses.replace(item, id=escape_name(value.id))
            continue
        if isinstance(value, Item):
            payload = pickle.dumps(value)
            yield SourceItem(escape_name(value.id), value.kind, digest(payload), payload)
            continue
        record = value if isinstance(value, dict) else {"value": value}
        yield record_item(record, id_field, f"#{index}")
