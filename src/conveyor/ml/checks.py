"""Data quality checks (``cv.checks``): each is a value built and validated when the pipeline is
defined; :func:`run_checks` evaluates every one of them and reports every failure at once."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pandas as pd

from conveyor.errors import DefinitionError
from conveyor.ml.report import CheckReport, Failure
from conveyor.ml.rules import (
    Allowed,
    Between,
    Check,
    Custom,
    Dtypes,
    NoNulls,
    PanderaCheck,
    Rows,
    Severity,
    Unique,
)
from conveyor.ml.tables import LOGICAL_TYPES, Table, require_table, to_pandas

__all__ = [
    "Check",
    "CheckReport",
    "Failure",
    "allowed",
    "between",
    "custom",
    "dtypes",
    "no_nulls",
    "rows",
    "run_checks",
    "schema",
    "unique",
]

#: Type names a dtypes check accepts besides the logical types: "number" is int or float.
TYPE_NAMES = (*LOGICAL_TYPES, "number")


def _columns(check: str, value: object) -> tuple[str, ...]:
    names = (value,) if isinstance(value, str) else tuple(value)  # type: ignore[arg-type]
    for n in names:
        if not isinstance(n, str) or not n:
            raise DefinitionError(f"{check}: column names must be non-empty strings, not {n!r}")
    return names


def _column(check: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise DefinitionError(f"{check}: the column must be a non-empty string, not {value!r}")
    return value


def _count(check: str, what: str, value: object) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise DefinitionError(f"{check}: {what} must be a whole number >= 0, not {value!r}")
    return value


def no_nulls(
    columns: str | Iterable[str] | None = None,
    tolerance: float = 0.0,
    *,
    severity: Severity = "error",
) -> Check:
    """No nulls in ``columns`` (all by default); a column may have ``tolerance`` (a share)."""
    cols = None if columns is None else _columns("no_nulls", columns)
    if (
        isinstance(tolerance, bool)
        or not isinstance(tolerance, int | float)
        or not 0 <= tolerance < 1
    ):
        raise DefinitionError(
            f"no_nulls: tolerance is a share in [0, 1), e.g. 0.01, not {tolerance!r}"
        )
    return NoNulls("no_nulls", severity, cols, float(tolerance))


def between(
    column: str, low: Any = None, high: Any = None, *, severity: Severity = "error"
) -> Check:
    """Every non-null value of ``column`` lies in [low, high]; one bound may be None."""
    _column("between", column)
    if low is None and high is None:
        raise DefinitionError("between: give low, high or both, e.g. between('age', 0, 120)")
    for bound in (low, high):
        if isinstance(bound, float) and math.isnan(bound):
            raise DefinitionError("between: a bound is NaN; give a number or None")
    if low is not None and high is not None:
        try:
            wrong = (
                bool(pd.Timestamp(low) > pd.Timestamp(high)) if isinstance(low, str) else low > high
            )
        except (TypeError, ValueError) as e:
            raise DefinitionError(f"between: cannot compare low {low!r} with high {high!r}") from e
        if wrong:
            raise DefinitionError(f"between: low ({low!r}) is above high ({high!r}); swap them")
    return Between("between", severity, column, low, high)


def allowed(column: str, values: Iterable[Any], *, severity: Severity = "error") -> Check:
    """Every non-null value of ``column`` is one of ``values``."""
    _column("allowed", column)
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise DefinitionError(
            f"allowed: values must be a list or set, e.g. ['a', 'b'], not {values!r}"
        )
    chosen = frozenset(values)
    if not chosen:
        raise DefinitionError("allowed: values is empty; list the values the column may take")
    return Allowed("allowed", severity, column, chosen)


def unique(*columns: str, severity: Severity = "error") -> Check:
    """No two rows share the same value of one column, or the same combination of several."""
    if not columns:
        raise DefinitionError("unique: name the column(s), e.g. unique('id') or unique('a', 'b')")
    return Unique("unique", severity, _columns("unique", columns))


def rows(min: int | None = None, max: int | None = None, *, severity: Severity = "error") -> Check:
    """The table has between ``min`` and ``max`` rows."""
    low, high = _count("rows", "min", min), _count("rows", "max", max)
    if low is None and high is None:
        raise DefinitionError("rows: give min, max or both, e.g. rows(min=1000)")
    if low is not None and high is not None and low > high:
        raise DefinitionError(f"rows: min ({low}) is above max ({high})")
    return Rows("rows", severity, low, high)


def dtypes(
    types: Mapping[str, str], *, strict: bool = False, severity: Severity = "error"
) -> Check:
    """The named columns have these logical types (``"int"``, ``"float"``, ``"number"``,
    ``"string"``, ``"bool"``, ``"datetime"``, ...); ``strict``: no other columns either."""
    name = "schema" if strict else "dtypes"
    if not isinstance(types, Mapping) or not types:
        raise DefinitionError(f"{name}: give a mapping of column to type, e.g. {{'age': 'int'}}")
    for column, kind in types.items():
        _column(name, column)
        if kind not in TYPE_NAMES:
            raise DefinitionError(
                f"{name}: column {column!r} has unknown type {kind!r}; "
                f"use one of {', '.join(TYPE_NAMES)}"
            )
    return Dtypes(name, severity, dict(types), strict)


def schema(types: Mapping[str, str], *, severity: Severity = "error") -> Check:
    """Exactly these columns with these logical types (``dtypes(..., strict=True)``)."""
    return dtypes(types, strict=True, severity=severity)


def custom(fn: Callable[[pd.DataFrame], Any], name: str | None = None, *,
           severity: Severity = "error") -> Check:  # fmt: skip
    """A check of your own: ``fn(df)`` returns True/False or a boolean per row (True: good)."""
    if not callable(fn):
        raise DefinitionError(f"custom: fn must be a function of the DataFrame, not {fn!r}")
    label = name or getattr(fn, "__name__", "") or "custom"
    if label == "<lambda>":
        raise DefinitionError(
            "custom: a lambda needs a name, e.g. custom(fn, name='positive_price')"
        )
    return Custom(label, severity, fn)


def _as_check(value: object, position: int) -> Check:
    if isinstance(value, Check):
        return value
    if type(value).__module__.split(".")[0] == "pandera" and hasattr(value, "validate"):
        label = getattr(value, "name", None) or "pandera"
        return PanderaCheck(str(label), "error", value)
    raise DefinitionError(
        f"checks[{position}] is {type(value).__name__}, not a check; use cv.checks.no_nulls(), "
        "between(), allowed(), unique(), rows(), dtypes(), custom() or a Pandera DataFrameSchema"
    )


def run_checks(table: Table, checks: Iterable[object]) -> CheckReport:
    """Evaluate every check on ``table`` and report every failure at once (none stops the
    others, as Pandera's ``lazy=True``); :attr:`CheckReport.failed` holds the errors."""
    chosen = [_as_check(c, i) for i, c in enumerate(checks)]
    df = to_pandas(require_table(table))
    failures: list[Failure] = []
    for check in chosen:
        try:
            failures += check.evaluate(df)
        except Exception as e:  # a check that breaks is a failure to report, not a crash
            failures.append(check._failure(f"the check itself failed: {type(e).__name__}: {e}"))
    return CheckReport(rows=len(df), checks=len(chosen), failures=tuple(failures))
