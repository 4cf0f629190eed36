"""What the SQL ledgers answer about work that ended: the dead-letter queue (and putting its
units back), reports and metrics, and alarms, as named queries on a
:class:`~conveyor.store.dialect.SQLConnection`."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any, cast

from conveyor.core.units import AlarmWindow, LedgerMetrics, StepStats, UnitState
from conveyor.store.dialect import SQLConnection
from conveyor.store.rows import (
    AlarmRecord,
    AttemptRecord,
    DeadUnit,
    ErrorGroup,
    ExportRow,
    Failure,
    StateCounts,
    StepResult,
    ThroughputRow,
    UnitDetail,
    UnitOfItem,
    UnitReset,
)

_EXPORT_PAGE = 2000
#: How many duration buckets :meth:`RelationalReports.ledger_metrics` counts (its query has
#: one column per bucket).
METRIC_BUCKETS = 15

# The columns of the queries that fill these rows, in order: the rows' own keys.
_DEAD_UNIT = tuple(DeadUnit.__annotations__)
_UNIT_DETAIL = tuple(k for k in UnitDetail.__annotations__ if k != "attempt_log")
_ATTEMPT = tuple(AttemptRecord.__annotations__)
_FAILURE = tuple(Failure.__annotations__)
_ALARM = tuple(AlarmRecord.__annotations__)


def _named(names: tuple[str, ...], row: Sequence[Any]) -> dict[str, Any]:
    return dict(zip(names, row, strict=True))


class RelationalReports(SQLConnection):
    """Dead letters, reports and alarms of a SQL ledger."""

    # the dead-letter queue ----------------------------------------------------------------------
    def dead_units(
        self,
        run_id: str,
        *,
        step: str | None = None,
        signature: str | None = None,
        limit: int = -1,
        offset: int = 0,
    ) -> list[DeadUnit]:
        cursor = self._execute(
            "dead_units",
            {"run_id": run_id, "step": step, "signature": signature, "limit": limit,
             "offset": max(0, offset)},
        )  # fmt: skip
        return [cast(DeadUnit, _named(_DEAD_UNIT, row)) for row in cursor]

    def unit_detail(self, unit_id: int) -> UnitDetail | None:
        row = self._execute("unit_detail", {"id": unit_id}).fetchone()
        if row is None:
            return None
        detail = _named(_UNIT_DETAIL, row)
        detail["attempt_log"] = [
            cast(AttemptRecord, _named(_ATTEMPT, r))
            for r in self._execute("unit_attempts", {"id": unit_id})
        ]
        return cast(UnitDetail, detail)

    def failures(self, run_id: str, limit: int = 20) -> list[Failure]:
        cursor = self._execute("failures", {"run_id": run_id, "limit": limit})
        return [cast(Failure, _named(_FAILURE, row)) for row in cursor]

    def units_of_items(self, run_id: str, idxs: Sequence[int]) -> list[UnitOfItem]:
        cursor = self._execute("units_of_items", {"run_id": run_id, "idxs": self._list(idxs)})
        return [UnitOfItem(u, idx, step, UnitState(state), key, item_key)
                for u, idx, step, state, key, item_key in cursor]  # fmt: skip

    def reset_units(self, run_id: str, rows: Sequence[UnitReset], signature: str) -> None:
        now = time.time()
        with self._write():
            self._many(
                "reset_unit",
                [
                    (state.value, waiting, key, unit_id, run_id,
                     now if state is UnitState.READY else None)
                    for unit_id, state, waiting, key in rows
                ],
            )  # fmt: skip
            self._execute("set_signature", {"id": run_id, "signature": signature})

    # reports -----------------------------------------------------------------------------------
    def error_groups(self, run_id: str, limit: int = 50, samples: int = 3) -> list[ErrorGroup]:
        groups = []
        for sig, step, etype, count, first, last, message in self._execute(
            "error_groups", {"run_id": run_id, "limit": limit}
        ).fetchall():
            sample = [
                r[0]
                for r in self._execute(
                    "error_samples", {"run_id": run_id, "signature": sig, "limit": samples}
                )
            ]
            groups.append(ErrorGroup(
                signature=sig, step=step, error_type=etype, count=count,
                first_seen=first, last_seen=last, message=message, samples=sample,
            ))  # fmt: skip
        return groups

    def ledger_metrics(self, run_id: str, buckets: Sequence[float]) -> LedgerMetrics:
        args = {"run_id": run_id}
        units = {(step, state): int(n) for step, state, n in self._execute("metrics_units", args)}
        if len(buckets) != METRIC_BUCKETS:
            raise ValueError(
                f"the ledger counts {METRIC_BUCKETS} duration buckets, not {len(buckets)}"
            )
        bounds = {f"b{i}": bound for i, bound in enumerate(buckets)}
        durations: dict[str, tuple[list[int], float]] = {}
        for step, count, total, *within in self._execute("metrics_durations", {**args, **bounds}):
            durations[step] = ([*(int(n) for n in within), int(count)], float(total))
        retries = {step: int(n) for step, n in self._execute("metrics_retries", args)}
        items, oldest = self._execute("metrics_run", args).fetchone()
        return LedgerMetrics(units, durations, retries, int(items), oldest)

    def step_stats(self, run_id: str, steps: Sequence[str]) -> list[StepStats]:
        counts: dict[str, StateCounts] = {step: {} for step in steps}
        for step, state, n in self._execute("state_counts", {"run_id": run_id}):
            counts.setdefault(step, {})[state] = n
        stats = []
        for step in counts:
            n, first, last = self._execute(
                "step_timing", {"run_id": run_id, "step": step}
            ).fetchone()
            p50 = self._duration_at(run_id, step, n, 0.50)
            p95 = self._duration_at(run_id, step, n, 0.95)
            span = (last - first) if n and last is not None and first is not None else 0.0
            rate = n / span if n and span > 0 else None
            stats.append(StepStats(step, sum(counts[step].values()), counts[step], p50, p95, rate))
        return stats

    def _duration_at(self, run_id: str, step: str, n: int, quantile: float) -> float | None:
        if not n:
            return None
        offset = min(n - 1, int(quantile * n))
        row = self._execute(
            "step_duration_at", {"run_id": run_id, "step": step, "offset": offset}
        ).fetchone()
        return None if row is None else float(row[0])

    def run_counts(self, run_ids: Sequence[str]) -> dict[str, StateCounts]:
        counts: dict[str, StateCounts] = {run_id: {} for run_id in run_ids}
        if run_ids:
            for run_id, state, n in self._execute("run_counts", {"ids": self._list(run_ids)}):
                counts.setdefault(run_id, {})[state] = int(n)
        return counts

    def throughput(
        self, run_id: str, start: float, end: float, buckets: int
    ) -> list[ThroughputRow]:
        if buckets < 1:
            raise ValueError(f"buckets must be at least 1, not {buckets}")
        width = max(end - start, 1e-6) / buckets
        cursor = self._execute(
            "throughput", {"run_id": run_id, "start": start, "width": width, "buckets": buckets}
        )
        return [ThroughputRow(str(step), int(b), int(done), int(dead))
                for step, b, done, dead in cursor]  # fmt: skip

    def export_rows(self, run_id: str) -> Iterator[ExportRow]:
        top = self._execute("max_item_idx", {"run_id": run_id}).fetchone()[0]
        if top is None:
            return
        after = -1
        while after < top:
            current: tuple[int, str] | None = None
            values: dict[str, StepResult] = {}
            rows = self._execute(
                "export_page", {"run_id": run_id, "after": after, "page": _EXPORT_PAGE}
            ).fetchall()
            for idx, item_id, step, state, value in rows:
                if current is not None and current[0] != idx:
                    yield ExportRow(current[1], values)
                    values = {}
                current = (idx, item_id)
                values[step] = StepResult(state, value)
            if current is not None:
                yield ExportRow(current[1], values)
            after += _EXPORT_PAGE

    # alarms ------------------------------------------------------------------------------------
    def alarm_window(
        self, run_id: str, seconds: float, step: str | None = None, *, p95: bool = False
    ) -> AlarmWindow:
        args = {"run_id": run_id, "since": time.time() - seconds, "step": step}
        done, failed, waiting, oldest = self._execute("alarm_window", args).fetchone()
        percentile = None
        if done and p95:
            row = self._execute(
                "alarm_duration_at", {**args, "offset": min(done - 1, int(0.95 * done))}
            ).fetchone()
            percentile = None if row is None else float(row[0])
        age = None if oldest is None else max(0.0, time.time() - oldest)
        return AlarmWindow(int(done), int(failed), percentile, int(waiting), age)

    def set_alarm(
        self,
        run_id: str,
        name: str,
        state: str,
        value: float | None,
        threshold: float,
        message: str,
    ) -> None:
        with self._write():
            self._execute(
                "set_alarm",
                {"run_id": run_id, "name": name, "state": state, "value": value,
                 "threshold": threshold, "message": message, "changed_at": time.time()},
            )  # fmt: skip

    def alarms(self, run_id: str) -> list[AlarmRecord]:
        cursor = self._execute("alarms", {"run_id": run_id})
        return [cast(AlarmRecord, _named(_ALARM, row)) for row in cursor]
