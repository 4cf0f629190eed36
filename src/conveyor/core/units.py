"""Values that travel between the layers: run and unit states, claimed work, and outcomes."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypedDict


class UnitState(enum.StrEnum):
    """Where a unit of work (one item, one step) stands."""

    PENDING = "pending"  # waiting for upstream units
    READY = "ready"  # may be claimed
    RUNNING = "running"  # leased to a worker
    DONE = "done"
    CACHED = "cached"  # its result already existed under its cache key
    DEAD = "dead"  # failed on its last attempt: in the dead-letter queue
    SKIPPED = "skipped"  # an upstream unit failed

    @property
    def final(self) -> bool:
        """Whether the unit will not change state again in this run."""
        return self in FINAL_STATES


FINAL_STATES = frozenset({UnitState.DONE, UnitState.CACHED, UnitState.DEAD, UnitState.SKIPPED})


class RunState(enum.StrEnum):
    """Where a run stands."""

    RUNNING = "running"
    COMPLETED = "completed"
    COMPLETED_WITH_ERRORS = "completed_with_errors"
    FAILED = "failed"  # the run itself could not go on (bad input, store error)
    INTERRUPTED = "interrupted"


# The values that cross process boundaries on every unit are NamedTuples: they pickle as plain
# tuples, several times faster than dataclasses, which matters at thousands of units a second.


class ErrorInfo(NamedTuple):
    """A failure as recorded in the ledger; ``retryable`` and ``delay`` are the worker's
    classification of it under the step's retry options."""

    type: str
    message: str
    traceback: str
    retryable: bool = True
    delay: float | None = None


class Claim(NamedTuple):
    """A unit leased to this coordinator: run it, then commit under ``fence``. ``attempt``
    counts this one; ``losses`` is how many of the attempts before it lost their worker."""

    unit_id: int
    item_idx: int
    step: str
    key: str
    fence: int
    attempt: int
    losses: int = 0


class QueueTimes(NamedTuple):
    """What a coordinator with nothing to run reads of a run's queue, as one snapshot: read
    apart, another coordinator's commit between the reads could make units that just became
    ready look as if nothing could ever run them."""

    next_retry: float | None  # earliest time a ready unit may be claimed (0: now; None: none)
    next_expiry: float | None  # when the first lease on a running unit expires (None: none)
    unfinished: int  # units not in a final state


class ItemRow(NamedTuple):
    """An item as stored: enough to rebuild it, or the reason it could not be read."""

    idx: int
    item_id: str
    kind: str
    payload: bytes
    error: str | None


class UnitWork(NamedTuple):
    """What a worker needs to run one unit. In a chain, ``local`` names the inputs that units
    before it in the same task produce: (input name, that unit's id)."""

    unit_id: int
    step: str
    fence: int
    item: ItemRow | None
    inputs: dict[str, bytes]
    local: tuple[tuple[str, int], ...] = ()


class Task(NamedTuple):
    """Units sent to a worker together. With ``batch`` set they are all of that batched step
    and run as one call on lists; otherwise each runs on its own, whatever its step. A
    ``chain`` holds whole items, their units in dependency order: each unit takes what the
    units before it produced, and a batched step's consecutive units run as batches."""

    task_id: int
    units: tuple[UnitWork, ...]
    batch: str | None = None
    timeout: float | None = None  # seconds the task may run before its worker is killed
    chain: bool = False

    def describe(self) -> str:
        """The steps in this task, for messages."""
        return ", ".join(sorted({unit.step for unit in self.units}))


class Outcome(NamedTuple):
    """How one unit ended in a worker: a pickled value, or an error. ``requeue`` marks a unit
    that never ran to an end because its worker died: it goes back to the queue without
    spending an attempt (and, if it was in the task that was running, runs alone next time)."""

    unit_id: int
    fence: int
    value: bytes | None
    error: ErrorInfo | None
    started_at: float
    duration: float
    requeue: bool = False
    suspect: bool = False  # requeued from the task that was running: run it alone next time
    cpu: float = 0.0  # CPU seconds the unit used in its worker (a batch shares it evenly)
    rss: int = 0  # the worker's resident memory after its task, on a task's last outcome


@dataclass(frozen=True, slots=True)
class StepStats:
    """Counts and timings of one step in one run."""

    step: str
    total: int
    counts: dict[str, int]
    p50: float | None
    p95: float | None
    rate: float | None  # units per second while the step was running


@dataclass(frozen=True, slots=True)
class RunInfo:
    """A run as the ledger records it."""

    id: str
    pipeline: str
    pipeline_file: str | None
    source: str
    state: RunState
    steps: tuple[str, ...]
    created_at: float
    finished_at: float | None
    message: str | None
    options: dict[str, Any] = field(default_factory=dict)
    coordinator: str | None = None  # host:pid:owner of the coordinator holding the run
    heartbeat_at: float | None = None
    planned: bool = False
    signature: str | None = None


@dataclass
class LiveStats:
    """What only a running coordinator knows, for its metrics: how many workers it has, and
    per step the CPU its units used and the memory of the worker that last ran one."""

    workers: int = 0
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    rss_bytes: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LedgerMetrics:
    """One run's numbers for its metrics, aggregated by the ledger."""

    units: dict[tuple[str, str], int]  # (step, state) -> units
    #: step -> (cumulative counts of finished units per duration bucket, +Inf last; their sum)
    durations: dict[str, tuple[list[int], float]]
    retries: dict[str, int]  # step -> failed attempts that were retried
    items: int
    oldest_ready_at: float | None  # when the longest-waiting ready unit became ready

    def by_state(self, state: UnitState) -> dict[str, int]:
        """Units of each step in ``state``."""
        return {step: n for (step, s), n in self.units.items() if s == state.value}


@dataclass(frozen=True, slots=True)
class AlarmWindow:
    """What the alarm rules read of one run (or one step) over a recent window."""

    done: int  # units finished in the window
    failed: int  # failed attempts in the window
    p95: float | None  # p95 wall time of the units finished in the window
    waiting: int  # units ready or running now (work that throughput should be serving)
    oldest_ready_age: float | None  # seconds the oldest ready unit has waited


class ErrorGroup(TypedDict):
    """Dead units that share an error signature, with a few sample item ids."""

    signature: str
    step: str
    error_type: str | None
    count: int
    first_seen: float | None
    last_seen: float | None
    message: str | None
    samples: list[str]


class Failure(TypedDict):
    """A failed unit with its item id and error."""

    item: str
    step: str
    state: str
    attempts: int
    error_type: str | None
    error_message: str | None
    traceback: str | None


@dataclass
class RunReport:
    """How a run ended: its id, state, per-step statistics and wall time."""

    run_id: str
    state: RunState
    stats: list[StepStats]
    seconds: float
    items: int
    store: str
    duplicates: int = 0
    failures: list[Failure] = field(default_factory=list)
    errors: list[ErrorGroup] = field(default_factory=list)  # top error groups
    resumed: bool = False

    @property
    def failed(self) -> int:
        """Units that failed for good."""
        return sum(s.counts.get(UnitState.DEAD.value, 0) for s in self.stats)
