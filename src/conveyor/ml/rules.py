"""The checks' values: each holds its validated arguments and evaluates itself on a DataFrame,
returning its failures (built by :mod:`conveyor.ml.checks`, run by ``run_checks``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from conveyor.errors import DefinitionError
from conveyor.ml.report import EXAMPLES, Failure
from conveyor.ml.tables import jsonable
from conveyor.ml.tables import schema as table_schema

Severity = Literal["error", "warn"]
#: A wide table's examples show only the checked columns.
EXAMPLE_COLUMNS = 12


@dataclass(frozen=True)
class Check:
    """A check of a table; subclasses say what they check in :meth:`evaluate`."""

    name: str
    severity: Severity = "error"

    def __post_init__(self) -> None:
        if self.severity not in ("error", "warn"):
            raise DefinitionError(
                f"{self.name}: severity must be 'error' or 'warn', not {self.severity!r}"
            )

    def evaluate(self, df: pd.DataFrame) -> list[Failure]:
        """The failures of this check on ``df`` (empty when it passes)."""
        raise NotImplementedError

    # helpers for the subclasses
    def _failure(self, message: str, column: str | None = None) -> Failure:
        return Failure(check=self.name, column=column, severity=self.severity, message=message)

    def _rows_failure(
        self, df: pd.DataFrame, bad: np.ndarray, column: str | None, what: str,
        columns: Sequence[str] = (),
    ) -> list[Failure]:  # fmt: skip
        failing = int(bad.sum())
        if failing == 0:
            return []
        positions = tuple(int(i) for i in np.flatnonzero(bad)[:EXAMPLES])
        shown = list(df.columns) if len(df.columns) <= EXAMPLE_COLUMNS else list(columns)
        examples = tuple(_row(df, i, shown) for i in positions)
        share = failing / len(df) if len(df) else 0.0
        return [
            Failure(self.name, column, self.severity, f"{failing} rows ({share:.2%}) {what}",
                    failing, share, positions, examples)
        ]  # fmt: skip

    def _missing(self, df: pd.DataFrame, columns: Iterable[str]) -> list[Failure]:
        names = [str(c) for c in df.columns]
        return [
            self._failure(f"column {c!r} is not in the table (it has {', '.join(names)})", c)
            for c in columns
            if c not in names
        ]


def _row(df: pd.DataFrame, position: int, columns: Sequence[str]) -> dict[str, Any]:
    # column by column: a row read across columns takes one dtype (ints would show as floats)
    return {str(c): jsonable(df[c].iloc[position]) for c in columns}


@dataclass(frozen=True)
class NoNulls(Check):
    """No nulls (NaN counts as null) in the named columns, or all of them; ``tolerance`` is the
    share of nulls a column may have."""

    columns: tuple[str, ...] | None = None
    tolerance: float = 0.0

    def evaluate(self, df: pd.DataFrame) -> list[Failure]:
        """One failure per column with more nulls than tolerated."""
        columns = self.columns if self.columns is not None else tuple(map(str, df.columns))
        failures = self._missing(df, columns)
        for c in columns:
            if c not in df.columns:
                continue
            bad = df[c].isna().to_numpy()
            if len(df) and bad.sum() / len(df) > self.tolerance:
                failures += self._rows_failure(
                    df, bad, c, f"are null, tolerated {self.tolerance:.2%}",
                    [c],
                )  # fmt: skip
        return failures


@dataclass(frozen=True)
class Between(Check):
    """Every non-null value of ``column`` lies in [low, high] (either bound may be None)."""

    column: str = ""
    low: Any = None
    high: Any = None

    def evaluate(self, df: pd.DataFrame) -> list[Failure]:
        """The rows out of range; a column that cannot be compared is one failure."""
        if missing := self._missing(df, [self.column]):
            return missing
        values = df[self.column]
        low, high = self.low, self.high
        if pd.api.types.is_datetime64_any_dtype(values):
            low = None if low is None else pd.Timestamp(low)
            high = None if high is None else pd.Timestamp(high)
        try:
            bad = np.zeros(len(df), dtype=bool)
            if low is not None:
                bad |= (values < low).fillna(False).to_numpy(dtype=bool)
            if high is not None:
                bad |= (values > high).fillna(False).to_numpy(dtype=bool)
        except TypeError as e:
            return [self._failure(f"cannot compare {values.dtype} values with the bounds: {e}",
                                  self.column)]  # fmt: skip
        bad &= ~values.isna().to_numpy()
        return self._rows_failure(
            df, bad, self.column, f"are outside [{low}, {high}]",
            [self.column],
        )  # fmt: skip


@dataclass(frozen=True)
class Allowed(Check):
    """Every non-null value of ``column`` is one of ``values``."""

    column: str = ""
    values: frozenset[Any] = frozenset()

    def evaluate(self, df: pd.DataFrame) -> list[Failure]:
        """The rows whose value is not allowed."""
        if missing := self._missing(df, [self.column]):
            return missing
        series = df[self.column]
        bad = ~series.isin(list(self.values)).to_numpy() & ~series.isna().to_numpy()
        shown = sorted(map(repr, self.values))[:10]
        return self._rows_failure(
            df, bad, self.column,
            f"have a value not in {{{', '.join(shown)}}}",
            [self.column],
        )  # fmt: skip


@dataclass(frozen=True)
class Unique(Check):
    """No two rows share the same values in ``columns`` (one column, or a combined key)."""

    columns: tuple[str, ...] = ()

    def evaluate(self, df: pd.DataFrame) -> list[Failure]:
        """Every row of every duplicated key."""
        if missing := self._missing(df, self.columns):
            return missing
        bad = df.duplicated(subset=list(self.columns), keep=False).to_numpy()
        return self._rows_failure(
            df, bad, ",".join(self.columns), "share their key with another row",
            self.columns,
        )  # fmt: skip


@dataclass(frozen=True)
class Rows(Check):
    """The table has at least ``min`` and at most ``max`` rows."""

    min: int | None = None
    max: int | None = None

    def evaluate(self, df: pd.DataFrame) -> list[Failure]:
        """One failure when the row count is out of bounds."""
        n = len(df)
        if self.min is not None and n < self.min:
            return [self._failure(f"the table has {n:,} rows, needs at least {self.min:,}")]
        if self.max is not None and n > self.max:
            return [self._failure(f"the table has {n:,} rows, at most {self.max:,} allowed")]
        return []


@dataclass(frozen=True)
class Dtypes(Check):
    """The named columns have these logical types; ``strict``: and there are no other columns."""

    types: Mapping[str, str] = field(default_factory=dict)
    strict: bool = False

    def evaluate(self, df: pd.DataFrame) -> list[Failure]:
        """One failure per missing, mistyped or (strict) extra column."""
        actual = table_schema(df)
        failures = self._missing(df, self.types)
        for column, wanted in self.types.items():
            have = actual.get(column)
            ok = have in ("int", "float") if wanted == "number" else have == wanted
            if have is not None and not ok:
                failures.append(self._failure(f"column {column!r} is {have}, not {wanted}", column))
        if self.strict:
            for column in actual:
                if column not in self.types:
                    failures.append(
                        self._failure(f"column {column!r} is not in the schema", column)
                    )
        return failures


@dataclass(frozen=True)
class Custom(Check):
    """A function of the DataFrame returning True/False, or a boolean per row (True: good)."""

    fn: Callable[[pd.DataFrame], Any] | None = None

    def evaluate(self, df: pd.DataFrame) -> list[Failure]:
        """The rows the function marks bad, or one failure if it says False or raises."""
        if self.fn is None:
            return [self._failure("no function to call; build it with cv.checks.custom(fn)")]
        try:
            result = self.fn(df)
        except Exception as e:
            return [self._failure(f"the check raised {type(e).__name__}: {e}")]
        if isinstance(result, bool | np.bool_):
            return [] if result else [self._failure("the check returned False")]
        if isinstance(result, pd.Series | np.ndarray) and len(result) == len(df):
            mask = pd.Series(np.asarray(result)).fillna(False)
            if mask.dtype == bool:
                return self._rows_failure(df, ~mask.to_numpy(), None,
                                          "fail it")  # fmt: skip
        return [self._failure(
            f"the check returned {type(result).__name__}; return True/False, or a boolean "
            f"Series with one value per row ({len(df)})"
        )]  # fmt: skip


@dataclass(frozen=True)
class PanderaCheck(Check):
    """A Pandera DataFrameSchema, validated lazily so that every failure is reported."""

    pandera_schema: Any = None

    def evaluate(self, df: pd.DataFrame) -> list[Failure]:
        """Pandera's failure cases, one failure per (column, check)."""
        try:
            self.pandera_schema.validate(df, lazy=True)
        except Exception as e:
            cases = getattr(e, "failure_cases", None)
            if not isinstance(cases, pd.DataFrame) or cases.empty:
                return [self._failure(f"{type(e).__name__}: {e}")]
            failures = []
            for (column, check), group in cases.groupby(
                ["column", "check"], dropna=False, sort=False
            ):
                col = None if column is None or column != column else str(column)  # NaN: no column
                index = [int(i) for i in group.get("index", pd.Series()).dropna()[:EXAMPLES]]
                examples = tuple({col or "value": v} for v in group["failure_case"][:EXAMPLES])
                n = len(group)
                failures.append(Failure(
                    f"{self.name}:{check}", col, self.severity, f"{n} failure cases of {check}",
                    n, n / len(df) if len(df) else 0.0, tuple(index), examples,
                ))  # fmt: skip
            return failures
        return []
