"""Tables as the ML layer sees them: a pandas DataFrame or a pyarrow Table, read one column at a
time as Arrow, with one vocabulary of logical types shared by datasets, checks and splits."""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Iterator
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa

from conveyor.errors import InputError

#: What the ML layer accepts as a table.
Table: TypeAlias = pd.DataFrame | pa.Table

#: The logical types a column can have; the physical width (int32, int64, ...) and encoding
#: (dictionary, large_string, view) do not change it.
LOGICAL_TYPES = (
    "int",
    "float",
    "bool",
    "string",
    "binary",
    "datetime",
    "date",
    "time",
    "duration",
    "decimal",
    "list",
    "struct",
    "null",
    "other",
)

#: Numeric logical types: the ones with means, quantiles and histograms.
NUMERIC_TYPES = frozenset({"int", "float"})


def require_table(value: object, what: str = "the table") -> Table:
    """Return ``value`` if it is a table (a RecordBatch becomes a Table); else raise InputError."""
    if isinstance(value, pa.RecordBatch):
        return pa.Table.from_batches([value])
    if isinstance(value, pd.DataFrame | pa.Table):
        column_names(value)  # duplicate names are refused here, once for every caller
        return value
    raise InputError(
        f"{what} must be a pandas DataFrame or a pyarrow Table, not {type(value).__name__}; "
        "return one (e.g. pd.DataFrame(records))"
    )


def column_names(table: Table) -> list[str]:
    """The table's column names as strings, in order; duplicate names raise InputError."""
    names = (
        [str(c) for c in table.columns] if isinstance(table, pd.DataFrame) else table.column_names
    )
    if len(set(names)) != len(names):
        twice = sorted(n for n, k in Counter(names).items() if k > 1)
        raise InputError(f"the table has duplicate column names {twice}; rename them")
    return list(names)


def num_rows(table: Table) -> int:
    """The number of rows."""
    return len(table) if isinstance(table, pd.DataFrame) else table.num_rows


def arrow_column(table: Table, index: int) -> pa.ChunkedArray:
    """Column ``index`` as Arrow. A pandas column is converted alone (zero-copy for numbers), so a
    large table is never copied whole; NaN in a pandas float column becomes null, as in Arrow's own
    ``from_pandas``. A column of mixed Python types raises InputError naming it."""
    if isinstance(table, pa.Table):
        return table.column(index)
    series = table.iloc[:, index]
    try:
        array = pa.array(series, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as e:
        kinds = sorted({type(v).__name__ for v in series.dropna().head(10_000)})
        raise InputError(
            f"column {str(table.columns[index])!r} mixes types ({', '.join(kinds)}); give it one "
            f"type, e.g. df[{str(table.columns[index])!r}].astype(str)"
        ) from e
    return pa.chunked_array([array])


def arrow_columns(table: Table) -> Iterator[tuple[str, pa.ChunkedArray]]:
    """(name, column as Arrow) for every column, in order, converted one at a time."""
    for index, name in enumerate(column_names(table)):
        yield name, arrow_column(table, index)


def to_arrow(table: Table) -> pa.Table:
    """The whole table as Arrow (the pandas index is not data and is dropped)."""
    if isinstance(table, pa.Table):
        return table
    names = column_names(table)
    return pa.table([arrow_column(table, i) for i in range(len(names))], names=names)


def to_pandas(table: Table) -> pd.DataFrame:
    """The table as pandas (an Arrow table is converted; a DataFrame is returned as it is)."""
    return table if isinstance(table, pd.DataFrame) else table.to_pandas()


def logical_type(arrow_type: pa.DataType) -> str:
    """The logical type (one of :data:`LOGICAL_TYPES`) of an Arrow type."""
    t = pa.types
    if t.is_dictionary(arrow_type):
        return logical_type(arrow_type.value_type)
    checks = (
        (t.is_boolean, "bool"),
        (t.is_integer, "int"),
        (t.is_floating, "float"),
        (lambda x: t.is_string(x) or t.is_large_string(x) or _is_view(x, "string"), "string"),
        (lambda x: t.is_binary(x) or t.is_large_binary(x) or t.is_fixed_size_binary(x), "binary"),
        (t.is_timestamp, "datetime"),
        (t.is_date, "date"),
        (t.is_time, "time"),
        (t.is_duration, "duration"),
        (t.is_decimal, "decimal"),
        (lambda x: t.is_list(x) or t.is_large_list(x) or t.is_fixed_size_list(x), "list"),
        (lambda x: t.is_struct(x) or t.is_map(x), "struct"),
        (t.is_null, "null"),
    )
    for test, name in checks:
        if test(arrow_type):
            return name
    return "other"


def _is_view(arrow_type: pa.DataType, kind: str) -> bool:
    return str(arrow_type) == f"{kind}_view"


def schema(table: Table) -> dict[str, str]:
    """Column name -> logical type, in column order (a pandas column of mixed types is "mixed")."""
    out: dict[str, str] = {}
    for index, name in enumerate(column_names(table)):
        if isinstance(table, pa.Table):
            out[name] = logical_type(table.schema.field(index).type)
            continue
        try:
            out[name] = logical_type(arrow_column(table, index).type)
        except InputError:
            out[name] = "mixed"
    return out


def jsonable(value: Any) -> Any:
    """A cell as a JSON value: numpy scalars as Python, NaN as None, times as ISO strings."""
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, pd.Timedelta | dt.timedelta):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass  # a list or dict cell: pd.isna answers per element
    return str(value)
