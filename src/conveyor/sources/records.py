"""Rows as items: one per line of a JSONL file, row of a CSV or Parquet file, or group of a
table's rows (``--group-by``, optionally packed into ``--buckets``). A row that cannot be read
is an item that fails alone with a message naming the file and line; a file that cannot be
read as a whole is an :class:`InputError` before anything runs."""

from __future__ import annotations

import csv
import hashlib
import json
import pickle
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.errors import InputError
from conveyor.sources.base import SourceItem, digest
from conveyor.sources.item import ItemKind

if TYPE_CHECKING:
    import pandas as pd

#: How a missing group key value (None, NaN, NA, NaT) is written in a group's id.
MISSING = "<missing>"
_ESCAPED = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8, kept by surrogateescape


def record_key(record: dict[str, Any]) -> str:
    """The content key of a record."""
    return digest(json.dumps(record, sort_keys=True, default=str).encode())


def record_item(record: dict[str, Any], id_field: str | None, where: str) -> SourceItem:
    """A record as an item: its id from ``id_field`` (else its content hash); ``where``
    (``line-3``, ``row-7``, ``#2``) names it when the id field is empty."""
    payload = pickle.dumps(record)
    key = record_key(record)
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


def records(path: Path, id_field: str | None) -> Iterator[SourceItem]:
    """The rows of a ``.parquet``, ``.csv`` or JSONL file as record items."""
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
        where, ItemKind.RECORD, digest(where.encode(), raw), pickle.dumps({}), message
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
        yield record_item(record, id_field, where)


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
        yield record_item(dict(zip(header, row, strict=True)), id_field, where)


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
                yield record_item(record, id_field, f"row-{row}")
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


def read_frame(path: Path) -> pd.DataFrame:
    """A table file as a pandas DataFrame; a file pandas cannot read is an :class:`InputError`."""
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


def groups(
    frame: pd.DataFrame, columns: tuple[str, ...], buckets: int | None, path: Path
) -> Iterator[SourceItem]:
    """One item per group of ``frame``'s rows by ``columns`` (id ``a=1/b=x``), or per bucket
    (id ``bucket-07``) of groups hashed into ``buckets``."""
    import pandas as pd

    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(
            f"--group-by column(s) {', '.join(missing)} not in {path.name}; "
            f"columns: {', '.join(map(str, frame.columns))}"
        )
    grouped = frame.groupby(list(columns), sort=True, dropna=False)
    if not buckets:
        # Each row's hash does not depend on the other rows: hashing the table once and taking
        # each group's rows gives the key hashing every group would, in a fraction of the time.
        frame = frame.reset_index(drop=True)
        grouped = frame.groupby(list(columns), sort=True, dropna=False)
        rows = pd.util.hash_pandas_object(frame, index=False).to_numpy()
        for values, group in grouped:
            fields = dict(zip(columns, _as_tuple(values), strict=True))
            hashed = rows[group.index.to_numpy()].tobytes()
            yield _group_item(
                group_id(columns, values), fields, group.reset_index(drop=True), hashed
            )
        return
    packed: dict[int, list[pd.DataFrame]] = {}
    for values, group in grouped:
        item_id = group_id(columns, values)
        bucket = int(hashlib.blake2b(item_id.encode(), digest_size=8).hexdigest(), 16) % buckets
        packed.setdefault(bucket, []).append(group)
    width = len(str(buckets - 1))
    for bucket in sorted(packed):
        frames = packed[bucket]
        fields = {"bucket": bucket, "groups": len(frames)}
        merged = pd.concat(frames).reset_index(drop=True)
        yield _group_item(f"bucket-{bucket:0{width}d}", fields, merged)


def group_id(columns: tuple[str, ...], values: Any) -> str:
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


def _group_item(
    item_id: str, fields: dict[str, Any], frame: pd.DataFrame, hashed: bytes | None = None
) -> SourceItem:
    import pandas as pd

    if hashed is None:
        hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()
    key = digest(item_id.encode(), repr(list(frame.columns)).encode(), hashed)
    fields = {k: (v.item() if hasattr(v, "item") else v) for k, v in fields.items()}
    return SourceItem(item_id, ItemKind.GROUP, key, pickle.dumps((fields, frame)))
