"""The tables ``conveyor datasets`` prints: versions, a version's schema and statistics, its
checks, and what changed between two versions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from rich import box
from rich.markup import escape
from rich.table import Table

from conveyor.store.rows import DatasetRecord


def plain_table(*columns: str, right: Iterable[str] = ()) -> Table:
    """A table of ``columns`` with a rule under its bold head, the ``right`` ones right-aligned
    (numbers), every column at least as wide as its name."""
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    numbers = set(right)
    for name in columns:
        justify: Literal["right", "left"] = "right" if name in numbers else "left"
        table.add_column(name, justify=justify, no_wrap=True, min_width=len(name))
    return table


def when(stamp: float) -> str:
    """A time stamp for people, to the second, in local time."""
    return datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M:%S")


def value(v: Any, digits: int = 4) -> str:
    """A statistic in a cell: numbers to a few significant digits, '-' for none."""
    if v is None:
        return "-"
    if isinstance(v, float):
        if abs(v) >= 1000 and abs(v) < 1e9:
            return f"{v:.0f}"  # 11999, not 1.2e+04
        return f"{v:.{digits}g}"
    return escape(str(v))


def checks_status(report: Mapping[str, Any]) -> str:
    """``ok``, or how many errors and warnings the report holds."""
    failures = report.get("failures", [])
    errors = sum(f["severity"] == "error" for f in failures)
    warnings = len(failures) - errors
    if not failures:
        return f"ok ({report.get('checks', 0)})"
    return f"{errors} failed, {warnings} warned"


def versions_table(records: Sequence[DatasetRecord]) -> Table:
    """One row per version (or per dataset's latest version), the latest built first."""
    table = plain_table(
        "dataset",
        "version",
        "rows",
        "columns",
        "checks",
        "changes",
        "built",
        right=("rows", "columns", "changes"),
    )
    for r in records:
        table.add_row(
            escape(r["name"]),
            r["version"][:12],
            f"{r['rows']:,}",
            str(r["columns"]),
            checks_status(r["report"]),
            str(len(r["changes"])),
            when(r["seen_at"]),
        )
    return table


def columns_table(profile: Mapping[str, Any]) -> Table:
    """The schema and per-column statistics of a version's profile."""
    table = plain_table(
        "column",
        "type",
        "nulls",
        "distinct",
        "min",
        "max",
        "mean",
        "std",
        "p50",
        "top",
        right=("nulls", "distinct", "min", "max", "mean", "std", "p50"),
    )
    # Long names and top values give way first, so that the numbers stay whole on 120 columns
    # (the count is the rows less the nulls; --json has every statistic in full).
    for column, width in ((table.columns[0], 20), (table.columns[-1], 22)):
        column.max_width, column.overflow = width, "ellipsis"
    for column in table.columns[1:-1]:
        column.min_width = max(column.min_width or 0, 7)
    for c in profile.get("columns", []):
        top = ", ".join(f"{value(v, 3)} ({n})" for v, n in c.get("top", [])[:2])
        stats = [c.get(k) for k in ("min", "max", "mean", "std")]
        table.add_row(
            escape(c["name"]),
            c["type"],
            f"{c['nulls']:,}",
            value(c.get("distinct")),
            *(value(v, 3) for v in stats),
            value((c.get("quantiles") or {}).get("p50"), 3),
            top,
        )
    return table


def checks_table(report: Mapping[str, Any]) -> Table:
    """One row per failed check and column: severity, failing rows, their share, an example."""
    table = plain_table(
        "severity", "check", "column", "failing", "share", "message", right=("failing", "share")
    )
    for f in report.get("failures", []):
        share = "-" if f.get("share") is None else f"{f['share']:.2%}"
        failing = "-" if f.get("failing") is None else f"{f['failing']:,}"
        table.add_row(
            f["severity"].upper(),
            escape(f["check"]),
            escape(f["column"] or "-"),
            failing,
            share,
            escape(f["message"]),
        )
    return table


def changes_table(changes: Sequence[Mapping[str, Any]]) -> Table:
    """One row per change: a column added, removed or retyped, or a distribution that moved."""
    table = plain_table("change", "column", "before", "after", "score", "message", right=("score",))
    for c in changes:
        table.add_row(
            c["kind"],
            escape(c["column"]),
            c.get("before") or "-",
            c.get("after") or "-",
            value(c.get("score"), 3),
            escape(c["message"]),
        )
    return table


def moves_table(before: Mapping[str, Any], after: Mapping[str, Any]) -> Table:
    """The columns both versions have, their nulls and mean (or distinct values) before and
    after: how the distributions moved."""
    table = plain_table("column", "type", "nulls", "mean / distinct", "p50", right=("nulls",))
    old = {c["name"]: c for c in before.get("columns", [])}
    for c in after.get("columns", []):
        o = old.get(c["name"])
        if o is None:
            continue
        numeric = c.get("mean") is not None or o.get("mean") is not None
        key = "mean" if numeric else "distinct"
        p50 = [(x.get("quantiles") or {}).get("p50") for x in (o, c)]
        table.add_row(
            escape(c["name"]),
            c["type"],
            f"{o['nulls']} → {c['nulls']}",
            f"{value(o.get(key))} → {value(c.get(key))}",
            f"{value(p50[0])} → {value(p50[1])}" if numeric else "-",
        )
    return table
