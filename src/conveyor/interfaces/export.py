"""Export a run's results: one row per item, its ``id`` then one column per step."""

from __future__ import annotations

import csv
import json
import pickle
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from conveyor.errors import UsageError
from conveyor.sources.names import escape_name
from conveyor.store import Store

FORMATS = ("jsonl", "csv", "parquet")
_PAGE = 5000


def rows(store: Store, run_id: str, steps: Sequence[str]) -> Iterator[dict[str, Any]]:
    """Each item's row; a step that did not produce a value (failed, skipped) gives None."""
    for item_id, values in store.export_rows(run_id):
        row: dict[str, Any] = {"id": item_id}
        for step in steps:
            _state, blob = values.get(step, ("missing", None))
            value = pickle.loads(blob) if blob is not None else None
            # a str(item.path) of a name that is not UTF-8: written as its id is (\xff)
            row[step] = escape_name(value) if isinstance(value, str) else value
        yield row


def export(store: Store, run_id: str, steps: Sequence[str], fmt: str, out: Path | None) -> int:
    """Write the rows of ``run_id`` as ``fmt`` to ``out`` (stdout when None); return the count."""
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if fmt == "parquet":
        if out is None:
            raise UsageError("--format parquet writes a binary file; pass --out FILE.parquet")
        return _parquet(rows(store, run_id, steps), out)
    if out is None:
        return _text(rows(store, run_id, steps), fmt, steps, sys.stdout)
    with out.open("w", encoding="utf-8", newline="") as fh:
        return _text(rows(store, run_id, steps), fmt, steps, fh)


def _text(data: Iterator[dict[str, Any]], fmt: str, steps: Sequence[str], fh: IO[str]) -> int:
    count = 0
    if fmt == "jsonl":
        for row in data:
            fh.write(json.dumps(row, default=_json_default, ensure_ascii=False) + "\n")
            count += 1
        return count
    writer = csv.writer(fh)
    writer.writerow(["id", *steps])
    for row in data:
        writer.writerow([row["id"], *(_cell(row[s]) for s in steps)])
        count += 1
    return count


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return "" if value is None else value
    return json.dumps(value, default=_json_default, ensure_ascii=False)


def _json_default(value: Any) -> Any:
    for attr in ("tolist", "item", "isoformat"):  # numpy arrays and scalars, dates
        if hasattr(value, attr):
            return getattr(value, attr)()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return repr(value)


def _parquet(data: Iterator[dict[str, Any]], out: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    page: list[dict[str, Any]] = []
    count = 0
    for row in data:
        page.append(row)
        count += 1
        if len(page) == _PAGE:
            tables.append(_arrow(page))
            page = []
    if page or not tables:
        tables.append(_arrow(page))
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        table = pa.concat_tables([_jsonify(t) for t in tables], promote_options="permissive")
    pq.write_table(table, out)
    return count


def _arrow(page: list[dict[str, Any]]) -> Any:
    import pyarrow as pa

    try:
        return pa.Table.from_pylist(page)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError):
        # Mixed or exotic values in a column: keep the column as JSON text rather than fail.
        return pa.Table.from_pylist(
            [{k: (v if k == "id" else _as_json(v)) for k, v in row.items()} for row in page]
        )


def _jsonify(table: Any) -> Any:
    import pyarrow as pa

    columns = {}
    for name in table.column_names:
        values = table.column(name).to_pylist()
        columns[name] = values if name == "id" else [_as_json(v) for v in values]
    return pa.table(columns)


def _as_json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=_json_default, ensure_ascii=False)
