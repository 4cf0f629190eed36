"""The SQLite ledger: one file in WAL mode, safe for one writer and many readers."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from conveyor.errors import RunNotFound, StoreError
from conveyor.signatures import signature
from conveyor.store.base import Done, Failed, Store, UnitRow
from conveyor.store.sqlfiles import load_migrations, load_queries
from conveyor.units import (
    Claim,
    ErrorInfo,
    ItemRow,
    LedgerMetrics,
    RunInfo,
    RunState,
    StepStats,
    UnitState,
)

_Q = load_queries("sqlite")
_EXPORT_PAGE = 2000


class SQLiteStore(Store):
    """The ledger in a SQLite file (created with its folder if missing)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.location = str(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA busy_timeout = 30000")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except (sqlite3.DatabaseError, OSError) as exc:
            raise StoreError(
                f"cannot open the ledger {path}: {exc}; pass --store with a writable SQLite file"
            ) from exc

    def _migrate(self) -> None:
        db = self._db
        db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
        )
        applied = {row[0] for row in db.execute("SELECT version FROM schema_migrations")}
        for version, name, sql in load_migrations("sqlite"):
            if version in applied:
                continue
            db.execute("BEGIN IMMEDIATE")
            try:
                if version not in {
                    r[0] for r in db.execute("SELECT version FROM schema_migrations")
                }:
                    for statement in _statements(sql):
                        db.execute(statement)
                    db.execute(
                        "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                        (version, name, time.time()),
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def schema_version(self) -> int:
        """The number of the last migration applied."""
        row = self._db.execute("SELECT max(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0)

    def close(self) -> None:
        self._db.close()

    def _write(self) -> _Transaction:
        return _Transaction(self._db)

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
            self._db.execute(
                _Q["insert_run"],
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
            self._db.execute(
                _Q["adopt_run"], {"id": run_id, "coordinator": coordinator, "now": time.time()}
            )
            return self._db.execute(_Q["release_all_running"], {"run_id": run_id}).rowcount

    def mark_planned(self, run_id: str) -> None:
        with self._write():
            self._db.execute(_Q["mark_planned"], {"id": run_id})

    def heartbeat(self, run_id: str, coordinator: str, owner: str, lease: float) -> int:
        now = time.time()
        with self._write():
            self._db.execute(
                _Q["heartbeat_run"], {"id": run_id, "coordinator": coordinator, "now": now}
            )
            self._db.execute(
                _Q["extend_leases"], {"run_id": run_id, "owner": owner, "expires": now + lease}
            )
            return self._db.execute(_Q["expire_leases"], {"run_id": run_id, "now": now}).rowcount

    def find_resumable(self, pipeline: str, source: str, signature: str) -> str | None:
        row = self._db.execute(
            _Q["find_resumable"], {"pipeline": pipeline, "source": source, "signature": signature}
        ).fetchone()
        return None if row is None else str(row[0])

    def set_run_state(self, run_id: str, state: RunState, message: str | None = None) -> None:
        finished = None if state is RunState.RUNNING else time.time()
        with self._write():
            self._db.execute(
                _Q["set_run_state"],
                {"id": run_id, "state": state.value, "message": message, "finished_at": finished},
            )

    def get_run(self, run_id: str | None = None) -> RunInfo:
        if run_id is None:
            row = self._db.execute(_Q["latest_run"]).fetchone()
            if row is None:
                raise RunNotFound(f"no runs in {self.location} yet; start one with 'conveyor run'")
            run_id = row[0]
        else:
            matches = [r[0] for r in self._db.execute(_Q["find_runs"], {"prefix": run_id})]
            if not matches:
                raise RunNotFound(
                    f"no run {run_id!r} in {self.location}; 'conveyor runs' lists the runs"
                )
            if len(matches) > 1 and run_id not in matches:
                raise RunNotFound(f"run id prefix {run_id!r} is ambiguous; give more characters")
            run_id = run_id if run_id in matches else matches[0]
        return _run_info(self._db.execute(_Q["get_run"], {"id": run_id}).fetchone())

    def list_runs(self, limit: int = 20) -> list[RunInfo]:
        return [_run_info(row) for row in self._db.execute(_Q["list_runs"], {"limit": limit})]

    # planning ----------------------------------------------------------------------------------
    def add_items(
        self, run_id: str, items: Sequence[tuple[int, str, str, str, bytes, str | None]]
    ) -> int:
        with self._write():
            before = self._db.total_changes
            self._db.executemany(_Q["insert_item"], [(run_id, *row) for row in items])
            return self._db.total_changes - before

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
            self._db.executemany(_Q["insert_unit"], rows)

    def existing_results(self, keys: Sequence[str]) -> set[str]:
        if not keys:
            return set()
        cursor = self._db.execute(_Q["existing_results"], {"keys": json.dumps(list(keys))})
        return {row[0] for row in cursor}

    # execution ---------------------------------------------------------------------------------
    def claim(
        self, run_id: str, steps: Sequence[str], limit: int, *, owner: str, lease: float
    ) -> list[Claim]:
        now = time.time()
        params = {
            "run_id": run_id,
            "steps": json.dumps(list(steps)),
            "limit": limit,
            "owner": owner,
            "now": now,
            "expires": now + lease,
        }
        with self._write():
            rows = self._db.execute(_Q["claim"], params).fetchall()
        return [Claim(*row) for row in sorted(rows)]

    def load_items(self, run_id: str, idxs: Sequence[int]) -> dict[int, ItemRow]:
        cursor = self._db.execute(
            _Q["load_items"], {"run_id": run_id, "idxs": json.dumps(list(idxs))}
        )
        return {row[0]: ItemRow(*row) for row in cursor}

    def load_inputs(
        self, run_id: str, idxs: Sequence[int], steps: Sequence[str]
    ) -> dict[tuple[int, str], bytes]:
        if not steps or not idxs:
            return {}
        cursor = self._db.execute(
            _Q["load_inputs"],
            {"run_id": run_id, "idxs": json.dumps(list(idxs)), "steps": json.dumps(list(steps))},
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
        db = self._db
        stale = 0
        stored: list[tuple[str, str, bytes | None, int, float]] = []
        promote: list[tuple[float, str, int, str]] = []
        with self._write():
            accepted = self._mark_done(done, now)
            stale += len(done) - len(accepted)
            for claim, outcome, downstream in accepted:
                stored.append(
                    (claim.key, claim.step, outcome.value, len(outcome.value or b""), now)
                )
                promote.extend((now, run_id, claim.item_idx, step) for step in downstream)
            if stored:
                db.executemany(_Q["insert_result"], stored)
            for claim in requeue:
                stale += 1 - db.execute(_Q["requeue"], (claim.unit_id, claim.fence)).rowcount
            if promote:
                db.executemany(_Q["promote"], promote)
            for claim, outcome, state, not_before, descendants, decision in failed:
                error = outcome.error or ErrorInfo("Error", "unknown error", "")
                changed = db.execute(
                    _Q["unit_failed"],
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
                    },
                ).rowcount
                if changed != 1:
                    stale += 1
                    continue
                db.execute(
                    _Q["insert_attempt"],
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
                    db.execute(
                        _Q["skip"],
                        {
                            "run_id": run_id,
                            "item_idx": claim.item_idx,
                            "steps": json.dumps(list(descendants)),
                            "message": f"skipped because step {claim.step!r} failed",
                            "now": now,
                        },
                    )
        return stale

    def _mark_done(self, done: Sequence[Done], now: float) -> Sequence[Done]:
        """Mark units done where their fence still holds; return those that were."""
        if not done:
            return done
        db = self._db
        # Fast path: one statement for the batch; if any fence was stale, redo it row by row
        # to learn which.
        db.execute("SAVEPOINT mark_done")
        before = db.total_changes
        db.executemany(
            _Q["unit_done"],
            [(now, o.duration, o.started_at, c.unit_id, c.fence) for c, o, _ in done],
        )
        if db.total_changes - before == len(done):
            db.execute("RELEASE mark_done")
            return done
        db.execute("ROLLBACK TO mark_done")
        db.execute("RELEASE mark_done")
        return [
            entry
            for entry in done
            if db.execute(
                _Q["unit_done"],
                (now, entry[1].duration, entry[1].started_at, entry[0].unit_id, entry[0].fence),
            ).rowcount
            == 1
        ]

    def release(self, run_id: str, owner: str) -> int:
        with self._write():
            return self._db.execute(
                _Q["release_running"], {"run_id": run_id, "owner": owner}
            ).rowcount

    def unfinished(self, run_id: str) -> int:
        return int(self._db.execute(_Q["unfinished_count"], {"run_id": run_id}).fetchone()[0])

    def next_retry_time(self, run_id: str) -> float | None:
        row = self._db.execute(_Q["next_not_before"], {"run_id": run_id}).fetchone()
        return None if row[0] is None else float(row[0])

    def unfinished_items(self, run_id: str) -> int:
        return int(self._db.execute(_Q["unfinished_items"], {"run_id": run_id}).fetchone()[0])

    def next_item_index(self, run_id: str) -> int:
        top = self._db.execute(_Q["max_item_idx"], {"run_id": run_id}).fetchone()[0]
        return 0 if top is None else int(top) + 1

    def item_units(
        self, run_id: str, item_id: str
    ) -> list[tuple[str, UnitState, bytes | None, str | None, str | None]]:
        cursor = self._db.execute(_Q["item_units"], {"run_id": run_id, "item_id": item_id})
        return [(step, UnitState(state), value, etype, message)
                for step, state, value, etype, message in cursor]  # fmt: skip

    def latest_run_with_item(self, pipeline: str, source: str, item_id: str) -> str | None:
        row = self._db.execute(
            _Q["latest_run_with_item"],
            {"pipeline": pipeline, "source": source, "item_id": item_id},
        ).fetchone()
        return None if row is None else str(row[0])

    def unfinished_runs(self, pipeline: str, source: str) -> list[str]:
        cursor = self._db.execute(_Q["unfinished_runs"], {"pipeline": pipeline, "source": source})
        return [str(row[0]) for row in cursor]

    def unfinished_item_rows(self, run_id: str) -> list[tuple[str, str, str, bytes, str | None]]:
        cursor = self._db.execute(_Q["unfinished_item_rows"], {"run_id": run_id})
        return [(item_id, kind, key, payload, error)
                for item_id, kind, key, payload, error in cursor]  # fmt: skip

    def supersede(self, run_id: str, message: str) -> None:
        with self._write():
            self._db.execute(_Q["supersede_units"], {"run_id": run_id, "message": message})
            self._db.execute(
                _Q["set_run_state"],
                {"id": run_id, "state": RunState.COMPLETED_WITH_ERRORS.value,
                 "message": message, "finished_at": time.time()},
            )  # fmt: skip

    # the dead-letter queue ----------------------------------------------------------------------
    def dead_units(
        self,
        run_id: str,
        *,
        step: str | None = None,
        signature: str | None = None,
        limit: int = -1,
    ) -> list[dict[str, Any]]:
        cursor = self._db.execute(
            _Q["dead_units"],
            {"run_id": run_id, "step": step, "signature": signature, "limit": limit},
        )
        names = ("unit", "item", "item_idx", "step", "attempts", "error_type", "error_message",
                 "signature", "finished_at")  # fmt: skip
        return [dict(zip(names, row, strict=True)) for row in cursor]

    def unit_detail(self, unit_id: int) -> dict[str, Any] | None:
        row = self._db.execute(_Q["unit_detail"], {"id": unit_id}).fetchone()
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
            for r in self._db.execute(_Q["unit_attempts"], {"id": unit_id})
        ]
        return detail

    def error_groups(self, run_id: str, limit: int = 50, samples: int = 3) -> list[dict[str, Any]]:
        groups = []
        for sig, step, etype, count, first, last, message in self._db.execute(
            _Q["error_groups"], {"run_id": run_id, "limit": limit}
        ).fetchall():
            sample = [
                r[0]
                for r in self._db.execute(
                    _Q["error_samples"], {"run_id": run_id, "signature": sig, "limit": samples}
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
        cursor = self._db.execute(
            _Q["units_of_items"], {"run_id": run_id, "idxs": json.dumps(list(idxs))}
        )
        return [(u, idx, step, UnitState(state), key, item_key)
                for u, idx, step, state, key, item_key in cursor]  # fmt: skip

    def reset_units(
        self, run_id: str, rows: Sequence[tuple[int, UnitState, int, str]], signature: str
    ) -> None:
        now = time.time()
        with self._write():
            self._db.executemany(
                _Q["reset_unit"],
                [
                    (state.value, state.value, now, waiting, key, unit_id, run_id)
                    for unit_id, state, waiting, key in rows
                ],
            )
            self._db.execute(_Q["set_signature"], {"id": run_id, "signature": signature})

    # reports -----------------------------------------------------------------------------------
    def ledger_metrics(self, run_id: str, buckets: Sequence[float]) -> LedgerMetrics:
        args = {"run_id": run_id}
        units = {(step, state): n for step, state, n in self._db.execute(_Q["metrics_units"], args)}
        durations: dict[str, tuple[list[int], float]] = {}
        rows = self._db.execute(_Q["metrics_durations"], {**args, "bounds": json.dumps(buckets)})
        for step, bucket, count, total in rows:
            counts, so_far = durations.get(step, ([0] * (len(buckets) + 1), 0.0))
            for i in range(bucket, len(counts)):
                counts[i] += count  # cumulative: every bucket from the first that holds it
            durations[step] = (counts, so_far + total)
        retries = dict(self._db.execute(_Q["metrics_retries"], args).fetchall())
        items, oldest = self._db.execute(_Q["metrics_run"], args).fetchone()
        return LedgerMetrics(units, durations, retries, items, oldest)

    def step_stats(self, run_id: str, steps: Sequence[str]) -> list[StepStats]:
        counts: dict[str, dict[str, int]] = {step: {} for step in steps}
        for step, state, n in self._db.execute(_Q["state_counts"], {"run_id": run_id}):
            counts.setdefault(step, {})[state] = n
        stats = []
        for step in counts:
            n, first, last = self._db.execute(
                _Q["step_timing"], {"run_id": run_id, "step": step}
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
        row = self._db.execute(
            _Q["step_duration_at"], {"run_id": run_id, "step": step, "offset": offset}
        ).fetchone()
        return None if row is None else float(row[0])

    def failures(self, run_id: str, limit: int = 20) -> list[dict[str, Any]]:
        cursor = self._db.execute(_Q["failures"], {"run_id": run_id, "limit": limit})
        names = ("item", "step", "state", "attempts", "error_type", "error_message", "traceback")
        return [dict(zip(names, row, strict=True)) for row in cursor]

    def export_rows(self, run_id: str) -> Iterator[tuple[str, dict[str, tuple[str, bytes | None]]]]:
        top = self._db.execute(_Q["max_item_idx"], {"run_id": run_id}).fetchone()[0]
        if top is None:
            return
        after = -1
        while after < top:
            current: tuple[int, str] | None = None
            values: dict[str, tuple[str, bytes | None]] = {}
            cursor = self._db.execute(
                _Q["export_page"], {"run_id": run_id, "after": after, "page": _EXPORT_PAGE}
            )
            for idx, item_id, step, state, value in cursor.fetchall():
                if current is not None and current[0] != idx:
                    yield current[1], values
                    values = {}
                current = (idx, item_id)
                values[step] = (state, value)
            if current is not None:
                yield current[1], values
            after += _EXPORT_PAGE


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any exception."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self._db.execute("COMMIT")
        else:
            self._db.execute("ROLLBACK")


def _statements(sql: str) -> list[str]:
    """Split a migration into statements (comments dropped; migrations hold no ';' in strings)."""
    code = "\n".join(line.split("--", 1)[0] for line in sql.splitlines())
    return [s.strip() for s in code.split(";") if s.strip()]


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
