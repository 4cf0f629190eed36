"""Batch sources: where items come from. Each yields :class:`SourceItem` values with a stable id
and a content key; a row or file that cannot be read becomes a bad item, not a crash."""

from __future__ import annotations

import csv
import dataclasses
import glob
import hashlib
import json
import os
import pickle
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.errors import InputError, UsageError
from conveyor.sources.item import Item, ItemKind

if TYPE_CHECKING:
    import pandas as pd

#: How a missing group key value (None, NaN, NA, NaT) is written in a group's id.
MISSING = "<missing>"
RECORD_SUFFIXES = (".jsonl", ".ndjson", ".csv", ".parquet")
_CHUNK = 1 << 20
_ESCAPED = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8, kept by surrogateescape


@dataclass(frozen=True, slots=True)
class SourceItem:
    """One item as the ledger records it: enough to rebuild the :class:`Item` in any worker."""

    id: str
    kind: ItemKind
    key: str
    payload: bytes
    error: str | None = None


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


def rebuild_item(kind: str, id: str, payload: bytes) -> Item:
    """The :class:`Item` for a ledger row (runs in workers)."""
    if kind == ItemKind.FILE:
        return Item(id, ItemKind.FILE, path=payload.decode())
    value = pickle.loads(payload)
    if isinstance(value, Item):
        return value
    if kind == ItemKind.GROUP:
        fields, frame = value
        return Item(id, ItemKind.GROUP, fields=fields, frame=frame)
    return Item(id, ItemKind.RECORD, fields=value)


def _digest(*parts: bytes) -> str:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(part)
    return h.hexdigest()


def _record_key(record: dict[str, Any]) -> str:
    return _digest(json.dumps(record, sort_keys=True, default=str).encode())


def check_spec(spec: SourceSpec) -> None:
    """Fail before anything runs when the whole input is unusable or the options contradict."""
    if spec.buckets is not None and spec.buckets < 1:
        raise UsageError(f"--buckets {spec.buckets}: must be a whole number >= 1")
    if spec.buckets is not None and not spec.group_by:
        raise UsageError("--buckets packs groups into batches; it needs --group-by COLUMNS")
    if _is_glob(spec.input):
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
    if _is_glob(spec.input):
        base = _glob_base(spec.input)
        paths = [Path(p) for p in sorted(glob.glob(spec.input, recursive=True))]
        files = [p for p in paths if p.is_file()]
        if not files:
            raise InputError(f"the glob {spec.input!r} matches no files")
        yield from _files(files, base)
        return
    path = Path(spec.input)
    if path.is_dir():
        yield from _files(_walk(path), path)
    elif spec.group_by:
        yield from _groups(_read_frame(path), spec.group_by, spec.buckets, path)
    else:
        yield from _records(path, spec.id_field)


def items_from_iterable(values: Iterable[Any], id_field: str | None = None) -> Iterator[SourceItem]:
    """Items from Python values: :class:`Item` objects as they are, dicts as records, anything
    else as a record ``{"value": x}``."""
    for index, value in enumerate(values):
        if isinstance(value, Item) and value.kind is ItemKind.FILE:
            [item] = _files([value.path], value.path.parent)
            yield dataclasses.replace(item, id=value.id)
            continue
        if isinstance(value, Item):
            payload = pickle.dumps(value)
            yield SourceItem(value.id, value.kind, _digest(payload), payload)
            continue
        record = value if isinstance(value, dict) else {"value": value}
        yield _record_item(record, id_field, f"#{index}")


def _is_glob(text: str) -> bool:
    return glob.has_magic(text)


def _glob_base(pattern: str) -> Path:
    parts = Path(pattern).parts
    base: list[str] = []
    for part in parts:
        if glob.has_magic(part):
            break
        base.append(part)
    return Path(*base) if base else Path(".")


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root, onerror=_raise_walk_error):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name


def _raise_walk_error(exc: OSError) -> None:
    raise InputError(f"cannot list {exc.filename}: {exc.strerror}")


def _files(paths: Iterable[Path], base: Path) -> Iterator[SourceItem]:
    for path in paths:
        item_id = path.relative_to(base).as_posix() if path.is_relative_to(base) else str(path)
        payload = str(path.resolve()).encode()
        try:
            h = hashlib.blake2b(digest_size=16)
            with path.open("rb") as fh:
                while chunk := fh.read(_CHUNK):
                    h.update(chunk)
        except OSError as exc:
            error = f"cannot read {path}: {exc.strerror or exc}"
            yield SourceItem(item_id, ItemKind.FILE, _digest(payload), payload, error)
            continue
        yield SourceItem(item_id, ItemKind.FILE, h.hexdigest(), payload)


def _record_item(record: dict[str, Any], id_field: str | None, where: str) -> SourceItem:
    payload = pickle.dumps(record)
    key = _record_key(record)
    if id_field is None:
        return SourceItem(key[:16], ItemKind.RECORD, key, payload)
    if id_field not in record or record[id_field] in (None, ""):
        return SourceItem(
            f"{where}",
            ItemKind.RECORD,
            key,
            payload,
            f"{where} has no value in --id-field {id_field!r}",
        )
    return SourceItem(str(record[id_field]), ItemKind.RECORD, key, payload)


def _records(path: Path, id_field: str | None) -> Iterator[SourceItem]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        yield from _parquet_records(path, id_field)
    elif suffix == ".csv":
        yield from _csv_records(path, id_field)
    else:
        yield from _jsonl_records(path, id_field)


def _bad(where: str, raw: bytes, message: str) -> SourceItem:
    """A row that could not be read: it fails alone, with ``message``, when the run starts."""
    return SourceItem(
        where, ItemKind.RECORD, _digest(where.encode(), raw), pickle.dumps({}), message
    )


def _jsonl_records(path: Path, id_field: str | None) -> Iterator[SourceItem]:
    for number, line, error in _lines(path):
        where = f"line-{number}"
        if error is not None:
            yield _bad(where, line.encode(), f"{path.name} line {number} {error}")
            continue
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            message = f"{path.name} line {number} is not valid JSON: {exc.msg} (column {exc.colno})"
            yield _bad(where, line.encode(), message)
            continue
        if not isinstance(record, dict):
            message = f"{path.name} line {number} is a JSON {type(record).__name__}, not an object"
            yield _bad(where, line.encode(), message)
            continue
        yield _record_item(record, id_field, where)


def _csv_records(path: Path, id_field: str | None) -> Iterator[SourceItem]:
    undecodable: dict[int, str] = {}

    def text_lines() -> Iterator[str]:
        for number, line, error in _lines(path):
            if error is not None:
                undecodable[number] = error
            yield line

    reader = csv.reader(text_lines())
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise InputError(f"{path}: the header line is not valid CSV ({exc})") from None
    if undecodable:
        raise InputError(f"{path}: the header line {undecodable[min(undecodable)]}")
    if id_field and id_field not in header:
        raise InputError(
            f"--id-field {id_field!r} is not a column of {path.name}; columns: {', '.join(header)}"
        )
    while True:
        first = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            where = f"line-{first}"
            yield _bad(where, b"", f"{path.name} line {first} is not valid CSV: {exc}")
            continue
        last = reader.line_num
        where = f"line-{last}"
        broken = [n for n in range(first, last + 1) if n in undecodable]
        if broken:
            yield _bad(
                where, repr(row).encode(), f"{path.name} line {broken[0]} {undecodable[broken[0]]}"
            )
            continue
        if not row:
            continue
        if len(row) != len(header):
            yield _bad(
                where,
                repr(row).encode(),
                f"{path.name} line {last} has {len(row)} fields, the header has {len(header)}",
            )
            continue
        yield _record_item(dict(zip(header, row, strict=True)), id_field, where)


def _parquet_records(path: Path, id_field: str | None) -> Iterator[SourceItem]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path} is not a readable Parquet file ({exc})") from None
    if id_field and id_field not in parquet.schema_arrow.names:
        raise InputError(
            f"--id-field {id_field!r} is not a column of {path.name}; "
            f"columns: {', '.join(parquet.schema_arrow.names)}"
        )
    row = 0
    try:
        for batch in parquet.iter_batches(batch_size=4096):
            for record in batch.to_pylist():
                row += 1
                yield _record_item(record, id_field, f"row-{row}")
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path} is damaged after row {row} ({exc})") from None


def _lines(path: Path) -> Iterator[tuple[int, str, str | None]]:
    """(number, text, error) for each line of a UTF-8 text file, whatever its line endings (a
    leading byte-order mark is dropped). A line that is not valid UTF-8 comes with the error and
    its text decoded with replacement characters, so that one bad line costs one item."""
    try:
        fh = path.open("r", encoding="utf-8-sig", errors="surrogateescape", newline="")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    with fh:
        number = 0
        while True:
            try:
                line = fh.readline()
            except OSError as exc:
                raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
            if not line:
                return
            number += 1
            if not _ESCAPED.search(line):
                yield number, line, None
                continue
            raw = line.encode("utf-8", "surrogateescape")
            try:
                raw.decode("utf-8")
                error = "is not valid UTF-8"
            except UnicodeDecodeError as exc:
                error = f"is not valid UTF-8 (byte {exc.start + 1}: {exc.reason}); re-encode it"
            yield number, raw.decode("utf-8", "replace"), error


def _read_frame(path: Path) -> pd.DataFrame:
    import pandas as pd

    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix == ".csv":
            return pd.read_csv(path)
        return pd.read_json(path, lines=True)
    except Exception as exc:  # pandas raises many types for bad files; all mean "unreadable"
        raise InputError(f"cannot read {path} as a table: {type(exc).__name__}: {exc}") from None


def _groups(
    frame: pd.DataFrame, columns: tuple[str, ...], buckets: int | None, path: Path
) -> Iterator[SourceItem]:
    import pandas as pd

    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(
            f"--group-by column(s) {', '.join(missing)} not in {path.name}; "
            f"columns: {', '.join(map(str, frame.columns))}"
        )
    grouped = frame.groupby(list(columns), sort=True, dropna=False)
    if not buckets:
        for values, group in grouped:
            fields = dict(zip(columns, _as_tuple(values), strict=True))
            yield _group_item(_group_id(columns, values), fields, group.reset_index(drop=True))
        return
    packed: dict[int, list[pd.DataFrame]] = {}
    for values, group in grouped:
        item_id = _group_id(columns, values)
        bucket = int(hashlib.blake2b(item_id.encode(), digest_size=8).hexdigest(), 16) % buckets
        packed.setdefault(bucket, []).append(group)
    width = len(str(buckets - 1))
    for bucket in sorted(packed):
        frames = packed[bucket]
        fields = {"bucket": bucket, "groups": len(frames)}
        merged = pd.concat(frames).reset_index(drop=True)
        yield _group_item(f"bucket-{bucket:0{width}d}", fields, merged)


def _group_id(columns: tuple[str, ...], values: Any) -> str:
    """``a=1/b=x``: stable whatever dtype pandas inferred (``1.0`` is written ``1``, a missing
    value ``<missing>``, apart from an empty string), so one empty cell does not rename every
    other group."""
    return "/".join(f"{c}={_key_text(v)}" for c, v in zip(columns, _as_tuple(values), strict=True))


def _key_text(value: Any) -> str:
    import pandas as pd

    if value is None or (not isinstance(value, str) and bool(pd.isna(value))):
        return MISSING
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _as_tuple(values: Any) -> tuple[Any, ...]:
    return values if isinstance(values, tuple) else (values,)


def _group_item(item_id: str, fields: dict[str, Any], frame: pd.DataFrame) -> SourceItem:
    import pandas as pd

    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()
    key = _digest(item_id.encode(), repr(list(frame.columns)).encode(), hashed)
    fields = {k: (v.item() if hasattr(v, "item") else v) for k, v in fields.items()}
    return SourceItem(item_id, ItemKind.GROUP, key, pickle.dumps((fields, frame)))
