"""The ledger's contract, one small protocol per concern, so that a caller types what it
needs: the metrics read :class:`Reports`, the alarm evaluation :class:`AlarmLog`, the CLI's
``dlq`` commands :class:`DeadLetters`. :class:`~conveyor.store.base.Store` is their union and
what every backend implements.

The protocols are structural (anything with these methods fits) and their methods abstract
(a backend that derives from ``Store`` and misses one cannot be built). The concerns still to
come join here the same way, each a protocol of its own that ``Store`` then derives from, as
datasets (:class:`DatasetLedger`) and the model registry (:class:`ModelRegistry`: versions,
aliases, exports) did. A new method goes into the protocol of its concern;
a test checks that every method of ``Store`` belongs to exactly one.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from conveyor.core.units import (
    AlarmWindow,
    Claim,
    ItemRow,
    LedgerMetrics,
    QueueTimes,
    RunInfo,
    RunState,
    StepStats,
)
from conveyor.store.rows import (
    AlarmRecord,
    AliasMove,
    CarriedItem,
    DatasetRecord,
    DeadUnit,
    Done,
    ErrorGroup,
    ExportRow,
    Failed,
    Failure,
    ItemUnit,
    ModelExport,
    ModelSummary,
    ModelVersion,
    NewItem,
    NewUnit,
    StateCounts,
    ThroughputRow,
    UnitDetail,
    UnitOfItem,
    UnitReset,
)


class RunLedger(Protocol):
    """Runs: created or adopted by a coordinator, kept alive by its heartbeat, ended."""

    @abc.abstractmethod
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
        """Record a new run in the ``running`` state, held by ``coordinator``; ``signature``
        identifies the code and options it was planned with."""

    @abc.abstractmethod
    def adopt_run(self, run_id: str, coordinator: str) -> int:
        """Take over a run whose coordinator is gone: mark it running under ``coordinator`` and
        put the units the old one had leased back in the queue; return how many."""

    @abc.abstractmethod
    def mark_planned(self, run_id: str) -> None:
        """Record that every item and unit of the run is in the ledger."""

    @abc.abstractmethod
    def heartbeat(self, run_id: str, coordinator: str, owner: str, lease: float) -> int:
        """Show ``coordinator`` alive, extend ``owner``'s leases by ``lease`` seconds, and put
        units whose lease expired (their holder is gone) back in the queue; return how many."""

    @abc.abstractmethod
    def find_resumable(self, pipeline: str, source: str, signature: str) -> str | None:
        """The latest unfinished run of the same pipeline, input and signature, if any."""

    @abc.abstractmethod
    def set_run_state(self, run_id: str, state: RunState, message: str | None = None) -> None:
        """Move a run to ``state``; final states record the finish time."""

    @abc.abstractmethod
    def get_run(self, run_id: str | None = None) -> RunInfo:
        """A run by id or unique id prefix; the latest run when ``run_id`` is None."""

    @abc.abstractmethod
    def list_runs(self, limit: int = 20) -> list[RunInfo]:
        """The most recent runs, newest first."""

    @abc.abstractmethod
    def latest_run_with_item(self, pipeline: str, source: str, item_id: str) -> str | None:
        """The newest run of ``pipeline`` over ``source`` that has the item ``item_id``."""

    @abc.abstractmethod
    def unfinished_runs(self, pipeline: str, source: str) -> list[str]:
        """Runs of ``pipeline`` over ``source`` not in a final state, oldest first."""

    @abc.abstractmethod
    def supersede(self, run_id: str, message: str) -> None:
        """End a run whose unfinished items continue elsewhere: its unfinished units become
        ``skipped`` with ``message``, and the run ``completed_with_errors``."""


class ItemLedger(Protocol):
    """A run's items and their units as planned, and the results already stored."""

    @abc.abstractmethod
    def add_items(self, run_id: str, items: Sequence[NewItem]) -> int:
        """Insert items; return how many were new (an id seen before in this run, with the
        same key, is ignored)."""

    @abc.abstractmethod
    def add_units(self, run_id: str, units: Sequence[NewUnit]) -> None:
        """Insert units of work in the given states."""

    @abc.abstractmethod
    def existing_results(self, keys: Sequence[str]) -> set[str]:
        """Which of these cache keys already have a stored result."""

    @abc.abstractmethod
    def load_items(self, run_id: str, idxs: Sequence[int]) -> dict[int, ItemRow]:
        """The stored items at these indexes."""

    @abc.abstractmethod
    def load_inputs(
        self, run_id: str, idxs: Sequence[int], steps: Sequence[str]
    ) -> dict[tuple[int, str], bytes]:
        """Stored results of ``steps`` for the items at ``idxs``, keyed by (index, step)."""

    @abc.abstractmethod
    def next_item_index(self, run_id: str) -> int:
        """The index the run's next item gets (one past the highest so far)."""

    @abc.abstractmethod
    def item_index(self, run_id: str, item_id: str) -> int | None:
        """The index of the newest version of the item ``item_id`` in the run, if it has one."""

    @abc.abstractmethod
    def item_units(self, run_id: str, item_id: str) -> list[ItemUnit]:
        """The units of one item (its newest version), with their results and errors."""

    @abc.abstractmethod
    def unfinished_item_rows(self, run_id: str) -> list[CarriedItem]:
        """The run's items that still have units to finish, in source order."""


class UnitQueue(Protocol):
    """Units leased to coordinators under a fence, and committed or handed back."""

    @abc.abstractmethod
    def claim(
        self, run_id: str, steps: Sequence[str], limit: int, *, owner: str, lease: float
    ) -> list[Claim]:
        """Lease up to ``limit`` ready units of ``steps`` to ``owner`` for ``lease`` seconds."""

    @abc.abstractmethod
    def claim_items(
        self, run_id: str, steps: Sequence[str], limit: int, *, owner: str, lease: float
    ) -> list[Claim]:
        """Lease whole items: every ready or pending unit of ``steps`` of up to ``limit`` items
        that have a unit of ``steps`` ready and none of them leased or waiting out a retry
        delay. The pending ones are leased ahead of their upstream units, to run after them in
        the same task; handed back unrun (:meth:`commit`'s ``requeue``) they wait for them
        again."""

    @abc.abstractmethod
    def commit(
        self,
        run_id: str,
        done: Sequence[Done],
        failed: Sequence[Failed],
        requeue: Sequence[Claim] = (),
    ) -> int:
        """In one transaction: store results, mark units ``done`` and promote their dependents;
        record failures (``failed`` with dependents skipped, or ``ready`` again for a retry not
        before the given time); put ``requeue`` units back without spending an attempt (to
        wait for their upstream units again where they were leased ahead of them: a unit
        leased ahead counts its upstream units that finish meanwhile, whoever commits them).
        Every update is fenced by the unit's lease: return how many were stale (lease lost)
        and ignored."""

    @abc.abstractmethod
    def release(self, run_id: str, owner: str) -> int:
        """Hand units still leased to ``owner`` back to the queue (on interrupt)."""

    @abc.abstractmethod
    def unfinished(self, run_id: str) -> int:
        """How many units of the run are not in a final state."""

    @abc.abstractmethod
    def unfinished_items(self, run_id: str) -> int:
        """How many items of the run still have units to finish."""

    @abc.abstractmethod
    def next_retry_time(self, run_id: str) -> float | None:
        """The earliest time a ready unit may be claimed (0 if one may be claimed now; None if
        no unit is ready)."""

    @abc.abstractmethod
    def next_lease_expiry(self, run_id: str) -> float | None:
        """When the first lease on a running unit of the run expires (None if none runs)."""

    @abc.abstractmethod
    def queue_times(self, run_id: str) -> QueueTimes:
        """:meth:`next_retry_time`, :meth:`next_lease_expiry` and the unfinished count, read in
        one snapshot of the ledger."""


class DeadLetters(Protocol):
    """The dead-letter queue: units that failed for good, what happened to them, and putting
    them back (redrive)."""

    @abc.abstractmethod
    def dead_units(
        self,
        run_id: str,
        *,
        step: str | None = None,
        signature: str | None = None,
        limit: int = -1,
        offset: int = 0,
    ) -> list[DeadUnit]:
        """Dead units of a run, optionally of one step or error signature (prefix), oldest
        first: ``limit`` of them (all when negative) after skipping ``offset``."""

    @abc.abstractmethod
    def unit_detail(self, unit_id: int) -> UnitDetail | None:
        """Everything recorded about one unit, with its attempts."""

    @abc.abstractmethod
    def failures(self, run_id: str, limit: int = 20) -> list[Failure]:
        """Failed units with their item id, step and error."""

    @abc.abstractmethod
    def units_of_items(self, run_id: str, idxs: Sequence[int]) -> list[UnitOfItem]:
        """Every unit of these items, with the item's key (to replan them)."""

    @abc.abstractmethod
    def reset_units(self, run_id: str, rows: Sequence[UnitReset], signature: str) -> None:
        """Put units back to (state, waiting, cache key) with a clean slate of attempts and
        errors, and record the signature of the code the run now continues with."""


class Reports(Protocol):
    """What a person or a dashboard reads about a run, aggregated by the database."""

    @abc.abstractmethod
    def step_stats(self, run_id: str, steps: Sequence[str]) -> list[StepStats]:
        """Per-step counts by state, p50/p95 duration and throughput."""

    @abc.abstractmethod
    def error_groups(self, run_id: str, limit: int = 50, samples: int = 3) -> list[ErrorGroup]:
        """Dead units grouped by error signature: counts, first/last seen, sample item ids."""

    @abc.abstractmethod
    def ledger_metrics(self, run_id: str, buckets: Sequence[float]) -> LedgerMetrics:
        """Units by step and state, finished units' durations in ``buckets`` (upper bounds,
        cumulative counts), retried attempts, items, and the oldest ready unit's ready time."""

    @abc.abstractmethod
    def run_counts(self, run_ids: Sequence[str]) -> dict[str, StateCounts]:
        """Units of each of these runs by state."""

    @abc.abstractmethod
    def throughput(
        self, run_id: str, start: float, end: float, buckets: int
    ) -> list[ThroughputRow]:
        """Finished units over time, aggregated by the database, for ``buckets`` equal slices
        of ``start``..``end`` (bucket 0 first; units finished after ``end`` count in the
        last): only the non-empty ones, by step and bucket."""

    @abc.abstractmethod
    def export_rows(self, run_id: str) -> Iterator[ExportRow]:
        """Each item's id with, per step, its state and pickled result (None if it has none),
        in source order, page by page."""


class AlarmLog(Protocol):
    """What the alarm rules read of a run, and the alarms' states as they change."""

    @abc.abstractmethod
    def alarm_window(
        self, run_id: str, seconds: float, step: str | None = None, *, p95: bool = False
    ) -> AlarmWindow:
        """The run's (or ``step``'s) finished units and failed attempts over the last
        ``seconds`` (with ``p95``, their p95 duration too: it costs a sort), and the work
        waiting now."""

    @abc.abstractmethod
    def set_alarm(
        self,
        run_id: str,
        name: str,
        state: str,
        value: float | None,
        threshold: float,
        message: str,
    ) -> None:
        """Record that alarm ``name`` of the run is now ``state`` (firing or resolved)."""

    @abc.abstractmethod
    def alarms(self, run_id: str) -> list[AlarmRecord]:
        """The run's alarms, the latest change first."""


class DatasetLedger(Protocol):
    """Dataset versions: each content fingerprint recorded once, with its profile and checks."""

    @abc.abstractmethod
    def record_dataset(
        self,
        *,
        name: str,
        version: str,
        pipeline: str,
        code_version: str,
        rows: int,
        columns: int,
        schema: Mapping[str, str],
        profile: Mapping[str, Any],
        report: Mapping[str, Any],
        changes: Sequence[Mapping[str, Any]],
        artifact: str,
    ) -> bool:
        """Record a version of dataset ``name``; True if it is new. A version recorded before
        is not stored again: it becomes the latest, with this build's check report."""

    @abc.abstractmethod
    def dataset_versions(self, name: str) -> list[DatasetRecord]:
        """The versions of dataset ``name``, the latest built first (empty if none)."""

    @abc.abstractmethod
    def get_dataset(self, name: str, version: str | None = None) -> DatasetRecord:
        """A version of dataset ``name`` (the latest by default; a prefix of a version is
        enough); DatasetNotFound if there is none, UsageError if the prefix is ambiguous."""

    @abc.abstractmethod
    def dataset_names(self) -> list[str]:
        """The names of the datasets with recorded versions, in order."""


class ModelRegistry(Protocol):
    """The model registry: immutable versions with their lineage, aliases as the last of an
    append-only history of moves, and exports of a version. Nothing is updated or deleted:
    there is no method for it."""

    @abc.abstractmethod
    def register_model_version(
        self,
        *,
        name: str,
        kind: str,
        artifact: str,
        format: str,
        run_id: str | None,
        lineage: Mapping[str, Any],
        metrics: Mapping[str, Mapping[str, float]],
        gate: Mapping[str, Any] | None,
        passed: bool | None,
        members: int,
    ) -> tuple[ModelVersion, bool]:
        """Register a new version of model ``name`` under the next number (never the same
        number twice, even from processes registering at once) and return it with True; a
        version of ``name`` with the same ``artifact`` is returned as it is, with False."""

    @abc.abstractmethod
    def model_version(self, name: str, version: int) -> ModelVersion:
        """Version ``version`` of model ``name``; ModelNotFound (naming the closest model or
        the versions there are) if there is none."""

    @abc.abstractmethod
    def model_versions(self, name: str, *, limit: int = 50, offset: int = 0) -> list[ModelVersion]:
        """The versions of model ``name``, the newest first, ``limit`` from ``offset``;
        ModelNotFound if the model has none."""

    @abc.abstractmethod
    def models(self) -> list[ModelSummary]:
        """Every registered model at a glance, by name."""

    @abc.abstractmethod
    def aliases(self, name: str) -> dict[str, int]:
        """The aliases of model ``name`` and the versions they point at (empty if none)."""

    @abc.abstractmethod
    def alias_history(self, name: str, alias: str | None = None) -> list[AliasMove]:
        """Every move of the aliases of ``name`` (or of one alias), the oldest first."""

    @abc.abstractmethod
    def move_alias(
        self,
        *,
        name: str,
        alias: str,
        seq: int,
        from_version: int | None,
        to_version: int,
        action: str,
        actor: str,
        who: str,
        reason: str,
        forced: bool,
    ) -> AliasMove:
        """Append the ``seq``-th move of ``alias`` (from the version the move before it left
        the alias at, or None for the first) and return it; AliasConflict if a concurrent
        move took ``seq`` first, ModelNotFound if ``to_version`` is not a version of
        ``name``."""

    @abc.abstractmethod
    def add_model_export(
        self,
        *,
        name: str,
        version: int,
        format: str,
        artifact: str | None,
        details: Mapping[str, Any],
    ) -> ModelExport:
        """Record an export of a version (ONNX bytes in the artifact store, an MLflow model
        elsewhere) with what was measured of it."""

    @abc.abstractmethod
    def model_exports(self, name: str, version: int) -> list[ModelExport]:
        """The exports of a version, the oldest first."""
