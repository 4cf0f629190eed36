"""What a run of checks found: one :class:`Failure` per failed check and column, gathered in a
:class:`CheckReport` that a store can keep as JSON and a person can read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: How many failing rows a failure shows.
EXAMPLES = 5


@dataclass(frozen=True)
class Failure:
    """One failed check on one column (or on the whole table when ``column`` is None).

    ``failing`` and ``share`` are the rows that fail and their share of the table (None for a
    check of the whole table, such as a row count); ``rows`` are the positions of up to
    :data:`EXAMPLES` of them and ``examples`` their values.
    """

    check: str
    column: str | None
    severity: str
    message: str
    failing: int | None = None
    share: float | None = None
    rows: tuple[int, ...] = ()
    examples: tuple[Mapping[str, Any], ...] = ()

    def describe(self) -> str:
        """One line, then the example rows."""
        where = f" column {self.column!r}" if self.column else ""
        lines = [f"{self.severity.upper():<5} {self.check}{where}: {self.message}"]
        lines += [
            f"      row {r}: {dict(e)}" for r, e in zip(self.rows, self.examples, strict=False)
        ]
        if not self.rows:
            lines += [f"      {dict(e)}" for e in self.examples]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """This failure as JSON values."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["rows"] = list(self.rows)
        out["examples"] = [dict(e) for e in self.examples]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Failure:
        """The failure that :meth:`to_dict` wrote."""
        values = dict(data)
        values["rows"] = tuple(values.get("rows", ()))
        values["examples"] = tuple(dict(e) for e in values.get("examples", ()))
        return cls(**values)


@dataclass(frozen=True)
class CheckReport:
    """Every failure of every check run on a table of ``rows`` rows."""

    rows: int
    checks: int
    failures: tuple[Failure, ...] = ()

    @property
    def failed(self) -> tuple[Failure, ...]:
        """The failures of severity "error": any of them stops a training run."""
        return tuple(f for f in self.failures if f.severity == "error")

    @property
    def warnings(self) -> tuple[Failure, ...]:
        """The failures of severity "warn": reported, and the run goes on."""
        return tuple(f for f in self.failures if f.severity != "error")

    @property
    def ok(self) -> bool:
        """Whether no check of severity "error" failed."""
        return not self.failed

    def describe(self) -> str:
        """The report as text for a person: a summary line, then each failure."""
        errors, warnings = len(self.failed), len(self.warnings)
        head = (
            f"{self.checks} checks on {self.rows:,} rows: "
            f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}"
        )
        return "\n".join([head, *(f.describe() for f in (*self.failed, *self.warnings))])

    def to_dict(self) -> dict[str, Any]:
        """This report as JSON values."""
        return {
            "rows": self.rows,
            "checks": self.checks,
            "failures": [f.to_dict() for f in self.failures],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckReport:
        """The report that :meth:`to_dict` wrote."""
        failures = tuple(Failure.from_dict(f) for f in data.get("failures", ()))
        return cls(rows=int(data["rows"]), checks=int(data["checks"]), failures=failures)
