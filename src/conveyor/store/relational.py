"""What the SQL ledgers share: every :class:`~conveyor.store.base.Store` method as named
queries (``sql/<dialect>/queries.sql``) around one connection. A dialect supplies the
connection and its transactions (:class:`~conveyor.store.dialect.SQLConnection`), how a
batch of rows is written, and how a batch of units is marked done under their fences. Runs,
items and the queue are here; dead letters, reports and alarms in
:mod:`conveyor.store.relational_reports`, datasets and the model registry in
:mod:`conveyor.store.relational_datasets` and :mod:`conveyor.store.relational_registry`."""

from __future__ import annotations

import abc
import json
import time
from collections.abc import Sequence
from typing import Any

from conveyor.core.signatures import signature
from conveyor.core.units import (
    Claim,
    ErrorInfo,
    ItemRow,
    QueueTimes,
    RunInfo,
    RunState,
    UnitState,
)
from conveyor.errors import RunNotFound, WorkerLost
from conveyor.store.base import Store
from conveyor.store.dialect import Cursor, Params
from conveyor.store.relational_datasets import RelationalDatasets
from conveyor.store.relational_registry import RelationalRegistry
from conveyor.store.relational_reports import METRIC_BUCKETS, RelationalReports
from conveyor.store.rows import CarriedItem, Done, Failed, ItemUnit, NewItem, NewUnit

__all__ = ["METRIC_BUCKETS", "Cursor", "Params", "RelationalStore"]


class RelationalStore(RelationalReports, RelationalDatasets, RelationalRegistry, Store):
    """A ledger in a SQL database; subclasses bind it to a dialect and a connection."""

    @abc.abstractmethod
    def _mark_done(self, done: Sequence[Done], now: float) -> Sequence[Done]:
        """Mark units done where their fence still holds (inside the commit's transaction);
        return those that were."""

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
    def add_items(self, run_id: str, items: Sequence[NewItem]) -> int:
        with self._write():
            return self._many("insert_item", [(run_id, *row) for row in items])

    def add_units(self, run_id: str, units: Sequence[NewUnit]) -> None:
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

    def item_units(self, run_id: str, item_id: str) -> list[ItemUnit]:
        cursor = self._execute("item_units", {"run_id": run_id, "item_id": item_id})
        return [ItemUnit(step, UnitState(state), value, etype, message)
                for step, state, value, etype, message in cursor]  # fmt: skip

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

    def unfinished_item_rows(self, run_id: str) -> list[CarriedItem]:
        cursor = self._execute("unfinished_item_rows", {"run_id": run_id})
        return [CarriedItem(item_id, kind, key, bytes(payload), error)
                for item_id, kind, key, payload, error in cursor]  # fmt: skip

    def supersede(self, run_id: str, message: str) -> None:
        with self._write():
            self._execute("supersede_units", {"run_id": run_id, "message": message})
            self._execute(
                "set_run_state",
                {"id": run_id, "state": RunState.COMPLETED_WITH_ERRORS.value,
                 "message": message, "finished_at": time.time()},
            )  # fmt: skip


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
