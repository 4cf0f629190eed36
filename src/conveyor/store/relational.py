"""What the SQL ledgers share: every :class:`~conveyor.store.base.Store` method as named
queries (``sql/<dialect>/queries.sql``) around one connection. A dialect supplies the
connection and its transactions, how a batch of rows is written, and how a batch of units is
marked done under their fences."""

from __future__ import annotations

import abc
import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar, Protocol

from conveyor.core.signatures import signature
from conveyor.core.units import (
    AlarmWindow,
    Claim,
    ErrorInfo,
    ItemRow,
    LedgerMetrics,
    QueueTimes,
    RunInfo,
    RunState,
    StepStats,
    UnitState,
)
from conveyor.errors import RunNotFound, WorkerLost
from conveyor.store.base import Done, Failed, Store, UnitRow

_EXPORT_PAGE = 2000
#: How many duration buckets :meth:`RelationalStore.ledger_metrics` counts (its query has
#: one column per bucket).
METRIC_BUCKETS = 15

#: Parameters of one statement: positional or by name, in the dialect's placeholder style.
Params = Sequence[Any] | Mapping[str, Any]


class Cursor(Protocol):
    """The part of a DB-API cursor the ledger reads: rows and how many rows changed."""

    @property
    def rowcount(self) -> int:
        """Rows changed by the statement."""

    def fetchone(self) -> Any:
        """The next row, or None."""

    def fetchall(self) -> list[Any]:
        """The remaining rows."""

    def __iter__(self) -> Iterator[Any]: ...


class RelationalStore(Store):
    """A ledger in a SQL database; subclasses bind it to a dialect and a connection."""

    #: The dialect's named queries; every dialect has the same names with the same parameters.
    queries: ClassVar[dict[str, str]]

    # what a dialect supplies ------------------------------------------------------------------
    @abc.abstractmethod
    def _execute(self, name: str, params: Params = ()) -> Cursor:
        """Run the named query (outside a transaction: on its own)."""

    @abc.abstractmethod
    def _many(self, name: str, rows: Sequence[Sequence[Any]]) -> int:
        """Run the named query once per row (or as one statement over all of them); return how
        many rows it changed."""

    @abc.abstractmethod
    def _write(self) -> AbstractContextManager[None]:
        """A write transaction: committed at the end of the block, rolled back on an error."""

    @staticmethod
    def _list(values: Iterable[Any]) -> str:
        """``values`` as the one parameter a query reads a list from: a JSON array (SQLite
        reads it with json_each, PostgreSQL with json_array_elements_text)."""
        return json.dumps(list(values))

    @abc.abstractmethod
    def _mark_done(self, done: Sequence[Done], now: float) -> Sequence[Done]:
        """Mark units done where their fence still holds (inside the commit's transaction);
        return those that were."""

    def schema_version(self) -> int:
        """The number of the last migration applied."""
        return int(self._execute("schema_version").fetchone()[0] or 0)

    # runs --------------------------------------------------------------------------------------
    def create_run(
        self,
        run_id: str,
        *,
        pipeline: str,
        pipeline_file: str | None,
        source: str,
        steps: Sequence[str],
        options: dict[str, Any],
        signature: str | None = None,
        coordinator: str | None = None,
    ) -> None:
        with self._write():
            self._execute(
                "insert_run",
                {
                    "id": run_id,
                    "pipeline": pipeline,
                    "pipeline_file": pipeline_file,
                    "source": source,
                    "state": RunState.RUNNING.value,
                    "steps": json.dumps(list(steps)),
                    "options": json.dumps(options, default=str),
                    "created_at": time.time(),
                    "signature": signature,
                    "coordinator": coordinator,
                },
            )

    def adopt_run(self, run_id: str, coordinator: str) -> int:
        with self._write():
            self._execute(
                "adopt_run", {"id": run_id, "coordinator": coordinator, "now": time.time()}
            )
            return self._execute("release_all_running", {"run_id": run_id}).rowcount

    def mark_planned(self, run_id: str) -> None:
        with self._write():
            self._execute("mark_planned", {"id": run_id})

    def heartbeat(self, run_id: str, coordinator: str, owner: str, lease: float) -> int:
        now = time.time()
        with self._write():
            self._execute("heartbeat_run", {"id": run_id, "coordinator": coordinator, "now": now})
            self._execute(
                "extend_leases", {"run_id": run_id, "owner": owner, "expires": now + lease}
            )
            return self._execute("expire_leases", {"run_id": run_id, "now": now}).rowcount

    def find_resumable(self, pipeline: str, source: str, signature: str) -> str | None:
        row = self._execute(
            "find_resumable", {"pipeline": pipeline, "source": source, "signature": signature}
        ).fetchone()
        return None if row is None else str(row[0])

    def set_run_state(self, run_id: str, state: RunState, message: str | None = None) -> None:
        finished = None if state is RunState.RUNNING else time.time()
        with self._write():
            self._execute(
                "set_run_state",
                {"id": run_id, "state": state.value, "message": message, "finished_at": finished},
            )

    def get_run(self, run_id: str | None = None) -> RunInfo:
        if run_id is None:
            row = self._execute("latest_run").fetchone()
            if row is None:
                raise RunNotFound(f"no runs in {self.location} yet; start one with 'conveyor run'")
            run_id = row[0]
        else:
            matches = [r[0] for r in self._execute("find_runs", {"prefix": run_id})]
            if not matches:
                raise RunNotFound(
                    f"no run {run_id!r} in {self.location}; 'conveyor runs' lists the runs"
                )
            if len(matches) > 1 and run_id not in matches:
                raise RunNotFound(f"run id prefix {run_id!r} is ambiguous; give more characters")
            run_id = run_id if run_id in matches else matches[0]
        return _run_info(self._execute("get_run", {"id": run_id}).fetchone())

    def list_runs(self, limit: int = 20) -> list[RunInfo]:
        return [_run_info(row) for row in self._execute("list_runs", {"limit": limit})]

    # planning ----------------------------------------------------------------------------------
    def add_items(
        self, run_id: str, items: Sequence[tuple[int, str, str, str, bytes, str | None]]
    ) -> int:
        with self._write():
            return self._many("insert_item", [(run_id, *row) for row in items])

    def add_units(self, run_id: str, units: Sequence[UnitRow]) -> None:
        now = time.time()
        rows = [
            (
                run_id,
                idx,
                step,
                key,
                state.value,
                waiting,
                now if state.final else None,
                error.type if error else None,
                error.message if error else None,
                signature(step, error.type, error.message)
                if error and state is UnitState.DEAD
                else None,
                now if state is UnitState.READY else None,
            )
            for idx, step, key, state, waiting, error in units
        ]
        with self._write():
            self._many("insert_unit", rows)

    def existing_results(self, keys: Sequence[str]) -> set[str]:
        if not keys:
            return set()
        return {row[0] for row in self._execute("existing_results", {"keys": self._list(keys)})}

    # execution ---------------------------------------------------------------------------------
    def claim(
        self, run_id: str, steps: Sequence[str], limit: int, *, owner: str, lease: float
    ) -> list[Claim]:
        return self._claim("claim", run_id, steps, limit, owner, lease)

    def claim_items(
        self, run_id: str, steps: Sequence[str], limit: int, *, owner: str, lease: float
    ) -> list[Claim]:
        return self._claim("claim_items", run_id, steps, limit, owner, lease)

    def _claim(
        self, query: str, run_id: str, steps: Sequence[str], limit: int, owner: str, lease: float
    ) -> list[Claim]:
        now = time.time()
        params = {
            "run_id": run_id,
            "steps": self._list(steps),
            "limit": limit,
            "owner": owner,
            "now": now,
            "expires": now + lease,
        }
        with self._write():
            rows = self._execute(query, params).fetchall()
        return [Claim(*row) for row in sorted(rows)]

    def load_items(self, run_id: str, idxs: Sequence[int]) -> dict[int, ItemRow]:
        cursor = self._execute("load_items", {"run_id": run_id, "idxs": self._list(idxs)})
        return {row[0]: ItemRow(*row) for row in cursor}

    def load_inputs(
        self, run_id: str, idxs: Sequence[int], steps: Sequence[str]
    ) -> dict[tuple[int, str], bytes]:
        if not steps or not idxs:
            return {}
        cursor = self._execute(
            "load_inputs",
            {"run_id": run_id, "idxs": self._list(idxs), "steps": self._list(steps)},
        )
        return {(row[0], row[1]): row[2] for row in cursor}

    def commit(
        self,
        run_id: str,
        done: Sequence[Done],
        failed: Sequence[Failed],
        requeue: Sequence[Claim] = (),
    ) -> int:
        now = time.time()
        stale = 0
        # Keyed by cache key: two units with the same key store one result (the last, as row
        # by row would); counted per dependent: a unit whose upstreams finish together waits
        # for as many fewer.
        stored: dict[str, tuple[str, str, bytes | None, int, float]] = {}
        promote: dict[tuple[str, int, str], int] = {}
        with self._write():
            accepted = self._mark_done(done, now)
            stale += len(done) - len(accepted)
            for claim, outcome, downstream in accepted:
                value = outcome.value
                stored[claim.key] = (claim.key, claim.step, value, len(value or b""), now)
                for step in downstream:
                    unit = (run_id, claim.item_idx, step)
                    promote[unit] = promote.get(unit, 0) + 1
            if stored:
                self._many("insert_result", list(stored.values()))
            for claim in requeue:
                stale += 1 - self._execute("requeue", (claim.unit_id, claim.fence)).rowcount
            if promote:
                # In one order everywhere, so that concurrent commits lock rows in one order.
                self._many("promote", [(*unit, n, now) for unit, n in sorted(promote.items())])
            for entry in failed:
                stale += self._record_failure(run_id, entry, now)
        return stale

    def _record_failure(self, run_id: str, entry: Failed, now: float) -> int:
        """Record one failed attempt, skipping descendants if it is final; 1 if it was stale."""
        claim, outcome, state, not_before, descendants, decision = entry
        error = outcome.error or ErrorInfo("Error", "unknown error", "")
        changed = self._execute(
            "unit_failed",
            {
                "id": claim.unit_id,
                "fence": claim.fence,
                "state": state.value,
                "finished_at": now if state.final else None,
                "duration": outcome.duration,
                "started_at": outcome.started_at,
                "not_before": not_before,
                "error_type": error.type,
                "error_message": error.message,
                "traceback": error.traceback,
                "signature": signature(claim.step, error.type, error.message)
                if state is UnitState.DEAD
                else None,
                # A lost worker counts against the step's max_worker_losses, not its retries.
                "lost": 1 if error.type == WorkerLost.__name__ else 0,
            },
        ).rowcount
        if changed != 1:
            return 1
        self._execute(
            "insert_attempt",
            {
                "id": claim.unit_id,
                "attempt": claim.attempt,
                "started_at": outcome.started_at,
                "duration": outcome.duration,
                "error_type": error.type,
                "error_message": error.message,
                "traceback": error.traceback,
                "decision": decision,
                "retry_at": not_before,
            },
        )
        if state.final and descendants:
            self._execute(
                "skip",
                {
                    "run_id": run_id,
                    "item_idx": claim.item_idx,
                    "steps": self._list(descendants),
                    "message": f"skipped because step {claim.step!r} failed",
                    "now": now,
                },
            )
        return 0

    def release(self, run_id: str, owner: str) -> int:
        with self._write():
            return self._execute("release_running", {"run_id": run_id, "owner": owner}).rowcount

    def unfinished(self, run_id: str) -> int:
        return int(self._execute("unfinished_count", {"run_id": run_id}).fetchone()[0])

    def next_retry_time(self, run_id: str) -> float | None:
        row = self._execute("next_not_before", {"run_id": run_id}).fetchone()
        return None if row[0] is None else float(row[0])

    def next_lease_expiry(self, run_id: str) -> float | None:
        row = self._execute("next_lease_expiry", {"run_id": run_id}).fetchone()
        return None if row[0] is None else float(row[0])

    def queue_times(self, run_id: str) -> QueueTimes:
        # One statement: both dialects read all of it from one snapshot.
        retry, expiry, unfinished = self._execute("queue_times", {"run_id": run_id}).fetchone()
        return QueueTimes(
            None if retry is None else float(retry),
            None if expiry is None else float(expiry),
            int(unfinished),
        )

    def unfinished_items(self, run_id: str) -> int:
        return int(self._execute("unfinished_items", {"run_id": run_id}).fetchone()[0])

    def next_item_index(self, run_id: str) -> int:
        top = self._execute("max_item_idx", {"run_id": run_id}).fetchone()[0]
        return 0 if top is None else int(top) + 1

    def item_units(
        self, run_id: str, item_id: str
    ) -> list[tuple[str, UnitState, bytes | None, str | None, str | None]]:
        cursor = self._execute("item_units", {"run_id": run_id, "item_id": item_id})
        return [(step, UnitState(state), value, etype, message)
                for step, state, value, etype, message in cursor]  # fmt: skip

    # the dead-letter queue ----------------------------------------------------------------------
    def dead_units(
        self,
        run_id: str,
        *,
        step: str | None = None,
        signature: str | None = None,
        limit: int = -1,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        cursor = self._execute(
            "dead_units",
            {"run_id": run_id, "step": step, "signature": signature, "limit": limit,
             "offset": max(0, offset)},
        )  # fmt: skip
        names = ("unit", "item", "item_idx", "step", "attempts", "error_type", "error_message",
                 "signature", "finished_at")  # fmt: skip
        return [dict(zip(names, row, strict=True)) for row in cursor]

    def unit_detail(self, unit_id: int) -> dict[str, Any] | None:
        row = self._execute("unit_detail", {"id": unit_id}).fetchone()
        if row is None:
            return None
        names = ("unit", "run", "item", "kind", "payload", "step", "state", "attempts", "key",
                 "error_type", "error_message", "traceback", "signature", "started_at",
                 "finished_at", "duration")  # fmt: skip
        detail = dict(zip(names, row, strict=True))
        attempt_names = ("attempt", "started_at", "duration", "error_type", "error_message",
                         "decision", "retry_at")  # fmt: skip
        detail["attempt_log"] = [
            dict(zip(attempt_names, r, strict=True))
            for r in self._execute("unit_attempts", {"id": unit_id})
        ]
        return detail

    def error_groups(self, run_id: str, limit: int = 50, samples: int = 3) -> list[dict[str, Any]]:
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
            groups.append({
                "signature": sig, "step": step, "error_type": etype, "count": count,
                "first_seen": first, "last_seen": last, "message": message, "samples": sample,
            })  # fmt: skip
        return groups

    def units_of_items(
        self, run_id: str, idxs: Sequence[int]
    ) -> list[tuple[int, int, str, UnitState, str, str]]:
        cursor = self._execute("units_of_items", {"run_id": run_id, "idxs": self._list(idxs)})
        return [(u, idx, step, UnitState(state), key, item_key)
                for u, idx, step, state, key, item_key in cursor]  # fmt: skip

    def reset_units(
        self, run_id: str, rows: Sequence[tuple[int, UnitState, int, str]], signature: str
    ) -> None:
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

    def item_index(self, run_id: str, item_id: str) -> int | None:
        row = self._execute("item_index", {"run_id": run_id, "item_id": item_id}).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def latest_run_with_item(self, pipeline: str, source: str, item_id: str) -> str | None:
        row = self._execute(
            "latest_run_with_item", {"pipeline": pipeline, "source": source, "item_id": item_id}
        ).fetchone()
        return None if row is None else str(row[0])

    def unfinished_runs(self, pipeline: str, source: str) -> list[str]:
        cursor = self._execute("unfinished_runs", {"pipeline": pipeline, "source": source})
        return [str(row[0]) for row in cursor]

    def unfinished_item_rows(self, run_id: str) -> list[tuple[str, str, str, bytes, str | None]]:
        cursor = self._execute("unfinished_item_rows", {"run_id": run_id})
        return [(item_id, kind, key, bytes(payload), error)
                for item_id, kind, key, payload, error in cursor]  # fmt: skip

    def supersede(self, run_id: str, message: str) -> None:
        with self._write():
            self._execute("supersede_units", {"run_id": run_id, "message": message})
            self._execute(
                "set_run_state",
                {"id": run_id, "state": RunState.COMPLETED_WITH_ERRORS.value,
                 "message": message, "finished_at": time.time()},
            )  # fmt: skip

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

    def alarms(self, run_id: str) -> list[dict[str, Any]]:
        names = ("name", "state", "value", "threshold", "message", "changed_at")
        cursor = self._execute("alarms", {"run_id": run_id})
        return [dict(zip(names, row, strict=True)) for row in cursor]

    # reports -----------------------------------------------------------------------------------
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
        counts: dict[str, dict[str, int]] = {step: {} for step in steps}
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

    def run_counts(self, run_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {run_id: {} for run_id in run_ids}
        if run_ids:
            for run_id, state, n in self._execute("run_counts", {"ids": self._list(run_ids)}):
                counts.setdefault(run_id, {})[state] = int(n)
        return counts

    def throughput(
        self, run_id: str, start: float, end: float, buckets: int
    ) -> list[tuple[str, int, int, int]]:
        if buckets < 1:
            raise ValueError(f"buckets must be at least 1, not {buckets}")
        width = max(end - start, 1e-6) / buckets
        cursor = self._execute(
            "throughput", {"run_id": run_id, "start": start, "width": width, "buckets": buckets}
        )
        return [(str(step), int(b), int(done), int(dead)) for step, b, done, dead in cursor]

    def failures(self, run_id: str, limit: int = 20) -> list[dict[str, Any]]:
        cursor = self._execute("failures", {"run_id": run_id, "limit": limit})
        names = ("item", "step", "state", "attempts", "error_type", "error_message", "traceback")
        return [dict(zip(names, row, strict=True)) for row in cursor]

    def export_rows(self, run_id: str) -> Iterator[tuple[str, dict[str, tuple[str, bytes | None]]]]:
        top = self._execute("max_item_idx", {"run_id": run_id}).fetchone()[0]
        if top is None:
            return
        after = -1
        while after < top:
            current: tuple[int, str] | None = None
            values: dict[str, tuple[str, bytes | None]] = {}
            rows = self._execute(
                "export_page", {"run_id": run_id, "after": after, "page": _EXPORT_PAGE}
            ).fetchall()
            for idx, item_id, step, state, value in rows:
                if current is not None and current[0] != idx:
                    yield current[1], values
                    values = {}
                current = (idx, item_id)
                values[step] = (state, value)
            if current is not None:
                yield current[1], values
            after += _EXPORT_PAGE


def _run_info(row: tuple[Any, ...]) -> RunInfo:
    (run_id, pipeline, pipeline_file, source, state, steps, created, finished, message,
     options, coordinator, heartbeat, planned, signature) = row  # fmt: skip
    return RunInfo(
        id=run_id,
        pipeline=pipeline,
        pipeline_file=pipeline_file,
        source=source,
        state=RunState(state),
        steps=tuple(json.loads(steps)),
        created_at=created,
        finished_at=finished,
        message=message,
        options=json.loads(options or "{}"),
        coordinator=coordinator,
        heartbeat_at=heartbeat,
        planned=bool(planned),
        signature=signature,
    )
