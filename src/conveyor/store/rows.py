"""The rows the ledger takes and gives, by name.

Rows that callers build or unpack position by position are NamedTuples: they unpack as the
plain tuples they replace (``for step, state, *_ in ...`` keeps working) and cost no more.
Rows that go straight out as JSON (the dashboard's API, ``--json`` of the CLI) are TypedDicts:
plain dicts at run time, with their keys checked by the type checker. The registry's rows
(model versions, alias moves, exports) are frozen dataclasses: values the ML layer passes
around and never changes, as the registry never changes them either. The values that travel
beyond the ledger too (:class:`~conveyor.core.units.Claim`, ``ItemRow``, ``RunInfo``,
``StepStats``, ``LedgerMetrics``, ``AlarmWindow``) live in :mod:`conveyor.core.units`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple, TypedDict

from conveyor.core.units import Claim, ErrorInfo, Outcome, UnitState

# The rows of reports a run ends with live in the core (a RunReport carries them).
from conveyor.core.units import ErrorGroup as ErrorGroup
from conveyor.core.units import Failure as Failure

# -- what planning writes ----------------------------------------------------------------------


class NewItem(NamedTuple):
    """An item to record: its index in the run, id, kind, cache key, payload, and the reason
    it could not be read (None if it could)."""

    idx: int
    item_id: str
    kind: str
    key: str
    payload: bytes
    error: str | None


class NewUnit(NamedTuple):
    """A unit of work to record in ``state``, waiting for ``waiting`` upstream units; ``error``
    says why a unit planned dead or skipped is so."""

    item_idx: int
    step: str
    key: str
    state: UnitState
    waiting: int
    error: ErrorInfo | None


class UnitReset(NamedTuple):
    """A unit to put back (redrive) in ``state`` with a new cache key, attempts cleared."""

    unit_id: int
    state: UnitState
    waiting: int
    key: str


# -- what a coordinator commits ----------------------------------------------------------------


class Done(NamedTuple):
    """A finished unit: its claim, its outcome, and the steps of the same item that take its
    output (promoted when it is stored)."""

    claim: Claim
    outcome: Outcome
    downstream: Sequence[str]


class Failed(NamedTuple):
    """A failed attempt: the state it moves to (``dead``, or ``ready`` for a retry not before
    ``not_before``), the steps to skip when the failure is final, and the retry decision in
    words (recorded with the attempt)."""

    claim: Claim
    outcome: Outcome
    state: UnitState
    not_before: float | None
    skip: Sequence[str]
    decision: str


# -- what the ledger reads back: positional rows -----------------------------------------------


class ItemUnit(NamedTuple):
    """One unit of an item: its step, state, pickled result and error, if any."""

    step: str
    state: UnitState
    value: bytes | None
    error_type: str | None
    error_message: str | None


class UnitOfItem(NamedTuple):
    """A unit of an item, as redrive replans it: ids, step, state and cache keys."""

    unit_id: int
    item_idx: int
    step: str
    state: UnitState
    key: str
    item_key: str


class CarriedItem(NamedTuple):
    """An item of an earlier run that still has units to finish (a stream carries it over)."""

    item_id: str
    kind: str
    key: str
    payload: bytes
    error: str | None


class ThroughputRow(NamedTuple):
    """Units of ``step`` finished ``done`` or ``dead`` in time bucket ``bucket``."""

    step: str
    bucket: int
    done: int
    dead: int


class StepResult(NamedTuple):
    """One step's state for an item, and its pickled result (None if it has none)."""

    state: str
    value: bytes | None


class ExportRow(NamedTuple):
    """An item's id and, by step, what the step made of it."""

    item_id: str
    values: dict[str, StepResult]


#: Units by state (``{"done": 3, "dead": 1}``); states with none are left out.
StateCounts = dict[str, int]


# -- what the ledger reads back: rows sent out as JSON ----------------------------------------


class DeadUnit(TypedDict):
    """A unit in the dead-letter queue."""

    unit: int
    item: str
    item_idx: int
    step: str
    attempts: int
    error_type: str | None
    error_message: str | None
    signature: str | None
    finished_at: float | None


class AttemptRecord(TypedDict):
    """One failed attempt of a unit, with the retry decision taken."""

    attempt: int
    started_at: float | None
    duration: float | None
    error_type: str | None
    error_message: str | None
    decision: str | None
    retry_at: float | None


class UnitDetail(TypedDict):
    """Everything recorded about one unit; ``payload`` is its item's stored form."""

    unit: int
    run: str
    item: str
    kind: str
    payload: bytes
    step: str
    state: str
    attempts: int
    key: str
    error_type: str | None
    error_message: str | None
    traceback: str | None
    signature: str | None
    started_at: float | None
    finished_at: float | None
    duration: float | None
    attempt_log: list[AttemptRecord]


class AlarmRecord(TypedDict):
    """An alarm of a run as last recorded: firing or resolved, and why."""

    name: str
    state: str
    value: float | None
    threshold: float
    message: str
    changed_at: float


# -- datasets -----------------------------------------------------------------------------------


class DatasetRecord(TypedDict):
    """A recorded version of a dataset: its fingerprint, shape, schema (column -> logical
    type), profile, check report and changes since the version before it (as the ML layer's
    ``to_dict`` wrote them), and where its Parquet copy lies."""

    name: str
    version: str
    pipeline: str
    code_version: str
    created_at: float
    seen_at: float
    rows: int
    columns: int
    schema: dict[str, str]
    profile: dict[str, Any]
    report: dict[str, Any]
    changes: list[dict[str, Any]]
    artifact: str


# -- the model registry ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelVersion:
    """A registered version of a model, never changed once written: its number (1, 2, ... per
    name), what it is (``kind`` "model" or "model_set") and where its bytes are (``artifact``,
    a digest in the artifact store, in ``format``), the training run and lineage it came from,
    its metrics (``{"valid": {...}, "golden": {...}}``) and its gate's verdict (None when it
    was not gated)."""

    name: str
    version: int
    kind: str
    artifact: str
    format: str
    created_at: float
    run_id: str | None
    lineage: dict[str, Any]
    metrics: dict[str, dict[str, float]]
    gate: dict[str, Any] | None
    passed: bool | None
    members: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The version as plain JSON values."""
        return asdict(self)


@dataclass(frozen=True)
class AliasMove:
    """One move of an alias, appended to its history: the ``seq``-th of (name, alias), from
    one version to another, by a promotion or a rollback, made by whom (``actor`` "user",
    "gate" or "alarm"; ``who`` the login name, run id or alarm) and why; ``forced`` when the
    version was promoted although its gate failed."""

    name: str
    alias: str
    seq: int
    from_version: int | None
    to_version: int
    action: str
    actor: str
    who: str
    reason: str
    forced: bool
    at: float

    def to_dict(self) -> dict[str, Any]:
        """The move as plain JSON values."""
        return asdict(self)


@dataclass(frozen=True)
class ModelExport:
    """A version exported to another format (``onnx``, ``mlflow``): the exported bytes' digest
    in the artifact store (None when the export lies elsewhere) and what was measured of it."""

    name: str
    version: int
    format: str
    artifact: str | None
    details: dict[str, Any]
    at: float

    def to_dict(self) -> dict[str, Any]:
        """The export as plain JSON values."""
        return asdict(self)


@dataclass(frozen=True)
class ModelSummary:
    """A registered model at a glance: its kind (of the latest version), how many versions,
    the latest number, when it last changed (a version or an alias move) and its aliases."""

    name: str
    kind: str
    versions: int
    latest: int
    updated_at: float
    aliases: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        """The summary as plain JSON values."""
        return asdict(self)
