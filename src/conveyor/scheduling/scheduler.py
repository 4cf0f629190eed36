"""Scheduling: lease ready units from the ledger, pack them into tasks, hand them to executors,
and commit outcomes (results, failures, retries, dependents) back in batches.

The ledger is the queue: a unit is claimed with a lease and a fencing token, and only a commit
that still holds the token counts. Batch and stream runs share this loop."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any

from conveyor.core.logs import event, logger
from conveyor.core.units import Claim, ErrorInfo, ItemRow, LiveStats, Task, UnitState
from conveyor.definition.graph import Graph
from conveyor.definition.retry import RetryDecision, classify, decide
from conveyor.errors import StoreError, WorkerLost
from conveyor.executors.base import Executor, TaskResult
from conveyor.scheduling.hooks import Hooks
from conveyor.scheduling.packing import Packer
from conveyor.store.base import Done, Failed, Store

#: How long a claimed unit stays leased before another coordinator may take it. The holder
#: extends its leases every ``HEARTBEAT_SECONDS`` while it lives.
LEASE_SECONDS = 300.0
HEARTBEAT_SECONDS = 5.0


#: Failures the executors report themselves (a worker killed for its timeout or lost), as the
#: exception classes ``retry_on``/``give_up_on`` name them by.
_RAISED_BY_EXECUTORS: dict[str, type[Exception]] = {
    "TimeoutError": TimeoutError,
    "WorkerLost": WorkerLost,
}


def _describe(decision: RetryDecision) -> str:
    if decision.retry:
        return f"retry in {decision.delay:.2f}s ({decision.reason})"
    return f"give up ({decision.reason})"


def new_owner() -> str:
    """A fresh lease owner id for a coordinator."""
    return f"coordinator-{uuid.uuid4().hex[:12]}"


def coordinator_id(owner: str) -> str:
    """``host:pid:owner``: who holds a run, so that others can tell whether it is alive."""
    return f"{socket.gethostname()}:{os.getpid()}:{owner}"


@dataclass
class _Lane:
    """One executor with the steps it serves and the tasks waiting for a free slot."""

    executor: Executor
    steps: tuple[str, ...]
    backlog: deque[Task]


class Scheduler:
    """Runs one run's units to completion on the given executors."""

    def __init__(
        self,
        store: Store,
        run_id: str,
        graph: Graph,
        steps: Sequence[str],
        lanes: Mapping[Executor, Sequence[str]],
        hooks: Hooks | None = None,
        *,
        owner: str | None = None,
        coordinator: str | None = None,
        lease: float = LEASE_SECONDS,
        on_finished: Callable[[set[int]], None] | None = None,
        chains: bool = False,
        live: LiveStats | None = None,
    ) -> None:
        self.store = store
        self.lease = lease
        self.run_id = run_id
        self.graph = graph
        self.steps = tuple(steps)
        selected = set(steps)
        self._downstream = {
            s: tuple(d for d in graph.nodes[s].downstream if d in selected) for s in steps
        }
        self._descendants = {
            s: tuple(d for d in graph.nodes[s].descendants if d in selected) for s in steps
        }
        self._lanes = [_Lane(ex, tuple(st), deque()) for ex, st in lanes.items() if st]
        self._hooks = hooks
        #: Told, after each commit, the items that may have just finished: a unit of a step
        #: nothing downstream depends on ended, or a unit died (its dependents skipped).
        self._on_finished = on_finished
        #: Workers, CPU and memory per step, as the run goes (read by the metrics).
        self.live = live if live is not None else LiveStats()
        self.owner = owner or new_owner()
        self.coordinator = coordinator or self.owner
        # Renew well within the lease, however short it was made.
        self._beat_every = min(HEARTBEAT_SECONDS, lease / 3)
        self._next_beat = time.monotonic() + self._beat_every
        self._inflight: dict[int, Claim] = {}  # unit id -> claim
        self._packer = Packer(graph)
        self._limits: dict[str, int] = {
            s: graph.nodes[s].step.options.concurrency or 0
            for s in steps
            if graph.nodes[s].step.options.executor == "process"
            and graph.nodes[s].step.options.concurrency
        }
        self._running: dict[str, int] = dict.fromkeys(steps, 0)
        # Units requeued after a worker died beside them: they run one per task until the
        # unit that kills workers is found (unit id -> its item and step; no chains meanwhile).
        self._isolate: dict[int, tuple[int, str]] = {}
        self._wakeup: int | None = None
        #: Lanes that run whole items as chains: one task per item (or a few), its units one
        #: after another in the worker, instead of a round trip through the ledger per step.
        #: Latency over batching, for streams; only on executors that enforce timeouts inside
        #: chains, and not where a step's concurrency is capped.
        self._chained = {
            id(lane) for lane in self._lanes
            if chains and lane.executor.runs_chains
            and not any(step in self._limits for step in lane.steps)
        }  # fmt: skip

    def run(
        self,
        *,
        open_until: threading.Event | None = None,
        wakeup: int | None = None,
        abort: threading.Event | None = None,
    ) -> bool:
        """Dispatch and commit until every unit of the run is final, and return True. A stream
        passes ``open_until``: the run goes on, idle, until that event is set and everything is
        done; ``wakeup`` is a file descriptor written to when new items arrive. Once ``abort``
        is set (then write to ``wakeup``), the units still leased go back to the queue for
        whoever continues the run, and this returns False."""
        self._wakeup = wakeup
        self.live.workers = sum(lane.executor.workers() for lane in self._lanes)
        try:
            while True:
                if abort is not None and abort.is_set():
                    self.store.release(self.run_id, self.owner)
                    return False
                self._beat()
                self._drain_wakeup()
                self._dispatch()
                if not self._inflight:
                    if self.store.unfinished(self.run_id) == 0:
                        if open_until is None or open_until.is_set():
                            return True
                        wait(self._waitables(), timeout=0.5)
                        continue
                    self._sleep_until_retry()
                    continue
                results = self._collect()
                if not results:
                    wait(self._waitables(), timeout=self._wait_time())
                    results = self._collect()
                if results:
                    self._commit(results)
        except BaseException:
            self.store.release(self.run_id, self.owner)
            raise

    def run_with_executors(self) -> bool:
        """Start the executors, :meth:`run` to the end, and shut the executors down whatever
        happens."""
        try:
            for lane in self._lanes:
                lane.executor.start()
            return self.run()
        finally:
            for lane in self._lanes:
                lane.executor.shutdown()

    def _beat(self) -> None:
        """Every few seconds: show this coordinator alive, keep its leases, and take back units
        whose holder stopped renewing theirs."""
        if time.monotonic() < self._next_beat:
            return
        self._next_beat = time.monotonic() + self._beat_every
        self.store.heartbeat(self.run_id, self.coordinator, self.owner, self.lease)

    # dispatch ----------------------------------------------------------------------------------
    def _dispatch(self) -> None:
        for lane in self._lanes:
            free = lane.executor.free_slots()
            while free > 0 and lane.backlog:
                lane.executor.submit(lane.backlog.popleft())
                free -= 1
            if free <= 0:
                continue
            chained = id(lane) in self._chained and not self._isolate
            claims = self._claim_items(lane, free) if chained else self._claim(lane, free)
            if not claims:
                continue
            items, inputs = self._fetch(claims)
            if chained:
                tasks, handed_back = self._packer.pack_chains(claims, items, inputs, free)
                self._hand_back(handed_back)
            else:
                tasks = self._packer.pack(claims, items, inputs, free, self._isolate)
            for task in tasks:
                if free > 0:
                    lane.executor.submit(task)
                    free -= 1
                else:
                    lane.backlog.append(task)

    def _claim(self, lane: _Lane, free: int) -> list[Claim]:
        open_steps = [s for s in lane.steps if s not in self._limits]
        claims: list[Claim] = []
        if open_steps:
            # About one task's worth per free slot for the slowest step measured so far: enough
            # to keep workers fed, not so much that work piles up leased to this coordinator.
            per_task = self._packer.units_per_task(open_steps)
            claims += self.store.claim(
                self.run_id, open_steps, free * per_task, owner=self.owner, lease=self.lease
            )
        for step in lane.steps:
            room = self._limits.get(step, 0) - self._running[step]
            if step in self._limits and room > 0:
                claims += self.store.claim(
                    self.run_id, [step], room, owner=self.owner, lease=self.lease
                )
        self._hold(claims)
        return claims

    def _claim_items(self, lane: _Lane, free: int) -> list[Claim]:
        """Whole items for chains: about one task's worth of items per free slot."""
        per_task = self._packer.items_per_task(lane.steps)
        claims = self.store.claim_items(
            self.run_id, lane.steps, free * per_task, owner=self.owner, lease=self.lease
        )
        self._hold(claims)
        return claims

    def _hold(self, claims: list[Claim]) -> None:
        for claim in claims:
            self._inflight[claim.unit_id] = claim
            self._running[claim.step] += 1

    def _hand_back(self, claims: list[Claim]) -> None:
        """Give back units a chain cannot run (their upstream unit is held elsewhere)."""
        if claims:
            for c in claims:
                del self._inflight[c.unit_id]
                self._running[c.step] -= 1
            self.store.commit(self.run_id, [], [], claims)

    def _fetch(
        self, claims: list[Claim]
    ) -> tuple[dict[int, ItemRow], dict[tuple[int, str], bytes]]:
        """The stored items the claimed units take, and the finished results of their upstream
        steps, by (item index, step)."""
        idxs = sorted({c.item_idx for c in claims})
        steps = {c.step for c in claims}
        uses_item = any(self.graph.nodes[s].uses_item for s in steps)
        items = self.store.load_items(self.run_id, idxs) if uses_item else {}
        upstream = sorted({u for s in steps for u in self.graph.nodes[s].upstream})
        return items, self.store.load_inputs(self.run_id, idxs, upstream)

    # completion --------------------------------------------------------------------------------
    def _drain_wakeup(self) -> None:
        if self._wakeup is None:
            return
        try:
            while os.read(self._wakeup, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _waitables(self) -> list[Any]:
        found: list[Any] = [] if self._wakeup is None else [self._wakeup]
        for lane in self._lanes:
            found.extend(lane.executor.waitables())
        return found

    def _wait_time(self) -> float:
        deadlines = [d for lane in self._lanes if (d := lane.executor.next_deadline()) is not None]
        return min([0.5, *deadlines])

    def _collect(self) -> list[TaskResult]:
        results: list[TaskResult] = []
        for lane in self._lanes:
            results.extend(lane.executor.collect())
        return results

    def _commit(self, results: list[TaskResult]) -> None:
        done: list[Done] = []
        failed: list[Failed] = []
        requeue: list[Claim] = []
        now = time.time()
        tally: dict[tuple[str, UnitState], int] = {}
        cpu = self.live.cpu_seconds
        for _, outcomes in results:
            finished_steps: set[str] = set()
            for outcome in outcomes:
                claim = self._inflight.pop(outcome.unit_id, None)
                if claim is None or claim.fence != outcome.fence:
                    continue  # a late answer for a unit this coordinator no longer holds
                self._running[claim.step] -= 1
                if outcome.requeue:
                    requeue.append(claim)
                    if outcome.suspect:
                        self._isolate[claim.unit_id] = (claim.item_idx, claim.step)
                    continue
                self._isolate.pop(claim.unit_id, None)
                self._packer.learn(claim.step, outcome.duration, outcome.error is None)
                finished_steps.add(claim.step)
                cpu[claim.step] = cpu.get(claim.step, 0.0) + outcome.cpu
                if outcome.rss:
                    self.live.rss_bytes[claim.step] = outcome.rss
                if outcome.error is None:
                    done.append(Done(claim, outcome, self._downstream[claim.step]))
                    state = UnitState.DONE
                elif (decision := self._decide(claim, outcome.error)).retry:
                    retry_at = now + decision.delay
                    failed.append(
                        Failed(claim, outcome, UnitState.READY, retry_at, (), _describe(decision))
                    )
                    continue
                else:
                    descendants = self._descendants[claim.step]
                    failed.append(
                        Failed(
                            claim, outcome, UnitState.DEAD, None, descendants, _describe(decision)
                        )
                    )
                    state = UnitState.DEAD
                    if self._isolate:  # suspects it skips will never come back to run alone
                        self._unsuspect(claim.item_idx, descendants)
                    for skipped in self._descendants[claim.step]:
                        tally[(skipped, UnitState.SKIPPED)] = (
                            tally.get((skipped, UnitState.SKIPPED), 0) + 1
                        )
                tally[(claim.step, state)] = tally.get((claim.step, state), 0) + 1
            self._packer.came_back(finished_steps)
        self.store.commit(self.run_id, done, failed, requeue)
        if self._on_finished is not None:
            ended = {c.item_idx for c, _, downstream in done if not downstream}
            ended.update(c.item_idx for c, _, state, *_ in failed if state is UnitState.DEAD)
            if ended:
                self._on_finished(ended)
        if (failed or requeue) and logger.isEnabledFor(logging.WARNING):
            self._log_failures(failed, results)
        if self._hooks is not None:
            for (step, state), count in tally.items():
                self._hooks.units_advanced(step, state, count)

    def _unsuspect(self, item_idx: int, steps: Sequence[str]) -> None:
        for unit_id, (idx, step) in list(self._isolate.items()):
            if idx == item_idx and step in steps:
                del self._isolate[unit_id]

    def _log_failures(self, failed: list[Failed], results: list[TaskResult]) -> None:
        """One event per failed attempt (its exception, logged once), and one per worker lost."""
        lost = {o.error.message for _, outcomes in results for o in outcomes
                if o.error is not None and o.error.type == "WorkerLost"}  # fmt: skip
        for message in sorted(lost):
            event("worker.lost", logging.WARNING, run=self.run_id, error=message)
        if not failed:
            return
        items = self.store.load_items(self.run_id, sorted({c.item_idx for c, *_ in failed}))
        for claim, outcome, state, _, _, decision in failed:
            error = outcome.error or ErrorInfo("Error", "unknown error", "")
            row = items.get(claim.item_idx)
            fields = {
                "run": self.run_id, "step": claim.step,
                "item": row.item_id if row else None, "attempt": claim.attempt,
                "error_type": error.type, "error": error.message, "decision": decision,
            }  # fmt: skip
            if state is UnitState.DEAD:
                event("unit.dead_lettered", logging.ERROR, traceback=error.traceback, **fields)
            else:
                event("unit.retried", logging.WARNING, **fields)

    def _decide(self, claim: Claim, error: ErrorInfo) -> RetryDecision:
        """Retry or give up: a lost worker spends the step's ``max_worker_losses``, any other
        failure its ``retries``."""
        options = self.graph.nodes[claim.step].step.options
        retryable = error.retryable
        lost = error.type == WorkerLost.__name__
        raised = _RAISED_BY_EXECUTORS.get(error.type)
        if raised is not None:  # no worker saw this exception: classify it here
            # A lost worker is not among the step's exceptions that retry_on picks; only
            # give_up_on naming it stops its own budget.
            retry_on = () if lost else options.retry_on
            retryable = classify(raised(error.message), retry_on, options.give_up_on).retryable
        return decide(
            attempt=claim.attempt,
            retries=options.retries,
            retryable=retryable,
            requested_delay=error.delay,
            backoff=options.backoff,
            backoff_max=options.backoff_max,
            losses=claim.losses,
            lost=lost,
            max_losses=options.max_worker_losses,
        )

    def _sleep_until_retry(self) -> None:
        """Nothing to claim, nothing in flight: wait for a retry to come due, or for another
        coordinator sharing the run to finish (or lose) the units it holds."""
        # One snapshot: read apart, the other coordinator may commit between the reads.
        queue = self.store.queue_times(self.run_id)
        if queue.unfinished == 0:
            return  # another coordinator finished the last units meanwhile
        due = queue.next_retry
        if due is None:
            expiry = queue.next_expiry
            if expiry is None:
                # Unfinished units that nobody can run: none ready, none running anywhere.
                raise StoreError(
                    f"run {self.run_id} has unfinished units that can never become ready; "
                    f"the ledger is inconsistent"
                )
            if expiry <= time.time():
                self._next_beat = 0.0  # a holder is gone: take its units back now
            due = min(expiry, time.time() + 0.2)  # its results may promote units any moment
        time.sleep(min(1.0, max(0.0, due - time.time())))
        self._beat()
