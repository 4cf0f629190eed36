"""Stream mode from Python: items submitted one by one run through the same ledger, cache,
retries and dead-letter queue as a batch; the run stays open until the stream is closed.

    with pipe.stream() as stream:
        item_id = stream.submit({"text": "..."})
        outputs = stream.result(item_id, timeout=30)
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from conveyor.core.logs import logger
from conveyor.core.units import FINAL_STATES, LiveStats, RunState, UnitState
from conveyor.errors import StepError, UsageError
from conveyor.executors.runtime import ResourceFailed, Runtime
from conveyor.scheduling.coordinator import Coordinator, coordinator_alive
from conveyor.scheduling.hooks import Hooks
from conveyor.scheduling.lanes import build_lanes
from conveyor.scheduling.planner import plan_run
from conveyor.scheduling.scheduler import LEASE_SECONDS, Scheduler
from conveyor.sources.base import rebuild_item
from conveyor.sources.item import Item, ItemKind
from conveyor.sources.readers import SourceItem, items_from_iterable
from conveyor.store import Store, open_store
from conveyor.store.rows import ItemUnit

if TYPE_CHECKING:
    from conveyor.definition.pipeline import Pipeline

#: How long :meth:`Stream.result` waits for the scheduler's word that its item may have finished
#: before it looks at the ledger anyway (an item finished by another coordinator sends none).
RECHECK_SECONDS = 0.25
#: The ``source`` recorded for stream runs.
STREAM_SOURCE = "<stream>"


class Stream:
    """An open run that accepts items until it is closed (use it as a context manager)."""

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        store: str | Path | None = None,
        workers: int | None = None,
        id_field: str | None = None,
        preload: bool = False,
        hooks: Sequence[Hooks] = (),
        backend: str = "local",
        ray_address: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.pipeline = pipeline
        #: Where process steps run: this machine's worker processes, or ``"ray"``.
        self.backend = backend
        self._ray_address = ray_address
        #: Recorded with the run when the stream creates one (how it was started), beside
        #: ``stream: True``; an adopted run keeps the options it was created with.
        self.options = dict(options or {})
        #: Build every resource when the stream opens, before the workers start, so the first
        #: item pays no model load (a server's warm start); otherwise each worker builds a
        #: resource the first time a unit needs it.
        self.preload = preload
        #: The runtime of the stream's process: its resources serve thread steps and, with
        #: ``preload``, are inherited by every worker.
        self.runtime = Runtime(pipeline.graph, pipeline.resources)
        #: Whether the last :meth:`close` finished every accepted item (False when the grace
        #: period ran out and the rest was left in the ledger for the next stream).
        self.finished = True
        #: Told of the stream's run: when it opens, as its units advance, when it closes.
        self.hooks = list(hooks)
        self._coordinator: Coordinator | None = None
        #: Seconds spent building resources when the stream opened (with ``preload``).
        self.load_seconds = 0.0
        self._loaded = False
        self._store_location = store
        self._workers = workers
        self._id_field = id_field
        self.run_id = ""
        self._lock = threading.Lock()
        self._next_idx = 0
        self._closed = threading.Event()
        self._abort = threading.Event()
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._ingest: Store | None = None
        self._scheduler: Scheduler | None = None
        self._signals = _Signals()

    # life cycle --------------------------------------------------------------------------------
    def __enter__(self) -> Stream:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def open(self) -> None:
        """Record the run, build the resources (with ``preload``), start the workers and the
        scheduler. A resource that fails to build with ``preload`` raises
        :class:`~conveyor.errors.StepError` before anything starts."""
        if self.preload:
            self.load()
        steps = list(self.pipeline.graph.order)
        # Two connections: the scheduler's thread owns one, submit() and result() the other.
        ledger = open_store(self._store_location)
        self._ingest = open_store(self._store_location)
        coordinator = Coordinator(self.pipeline, ledger, steps, lease=LEASE_SECONDS,
                                  hooks=self.hooks)  # fmt: skip
        self._coordinator = coordinator
        self._versions = coordinator.versions
        # A stream whose process died or stopped before its items finished left them in the
        # ledger: the next stream of the same pipeline and code takes its run over; one with
        # other code carries the unfinished items into its own run.
        previous = ledger.find_resumable(self.pipeline.name, STREAM_SOURCE, coordinator.signature)
        if previous is not None and not coordinator_alive(run := ledger.get_run(previous)):
            coordinator.adopt(run)
            self._next_idx = ledger.next_item_index(previous)
        else:
            coordinator.create(source=STREAM_SOURCE, options={**self.options, "stream": True})
            ledger.mark_planned(coordinator.run_id)
        self.run_id = coordinator.run_id
        self._carry_over(ledger, steps)
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        lanes = build_lanes(self.pipeline, steps, self._workers, runtime=self.runtime,
                            backend=self.backend, ray_address=self._ray_address)  # fmt: skip
        for executor in lanes:
            executor.start()  # fork here, before the scheduler thread exists
        scheduler = coordinator.scheduler(lanes, chains=True, on_finished=self._signals.finished)
        self._scheduler = scheduler
        coordinator.start()

        def loop() -> None:
            try:
                if scheduler.run(open_until=self._closed, wakeup=self._read_fd, abort=self._abort):
                    coordinator.finish()
                else:
                    self.finished = False
                    ledger.set_run_state(
                        self.run_id, RunState.INTERRUPTED, "stopped before its items finished"
                    )
            except BaseException as exc:
                self._failure = exc
                coordinator.record_end(exc)
            finally:
                for executor in lanes:
                    executor.shutdown()
                ledger.close()

        self._thread = threading.Thread(target=loop, name="conveyor-stream", daemon=True)
        self._thread.start()

    def close(self, timeout: float | None = None, *, grace: float | None = None) -> None:
        """Stop accepting items, finish the ones accepted, and end the run. With ``grace``,
        items not finished after that many seconds stay in the ledger (their units handed
        back) and the next stream of this pipeline finishes them; :attr:`finished` tells."""
        if self._thread is None:
            return
        self._closed.set()
        self._wake()
        if grace is not None:
            self._thread.join(grace)
            self._abort.set()
            self._wake()
        self._thread.join(timeout)
        if self._thread.is_alive():
            # Still finishing accepted items: keep everything it uses; close() may be called again.
            raise TimeoutError(f"the stream did not finish its items within {timeout}s")
        self._thread = None
        if self._coordinator is not None:
            self._coordinator.stop()
            self._coordinator = None
        os.close(self._read_fd)
        os.close(self._write_fd)
        if self._ingest is not None:
            self._ingest.close()
            self._ingest = None
        if self._failure is not None:
            raise StepError(f"the stream's scheduler failed: {self._failure}") from self._failure

    def _carry_over(self, ledger: Store, steps: list[str]) -> None:
        """Plan the unfinished items of earlier, dead streams of this pipeline into this run
        (finished units come back cached), and end those runs."""
        for earlier in ledger.unfinished_runs(self.pipeline.name, STREAM_SOURCE):
            if earlier == self.run_id or coordinator_alive(ledger.get_run(earlier)):
                continue
            rows = ledger.unfinished_item_rows(earlier)
            items = (SourceItem(i, ItemKind(kind), key, payload, error)
                     for i, kind, key, payload, error in rows)  # fmt: skip
            plan_run(
                ledger, self.run_id, self.pipeline.graph, steps, items, force=set(),
                resource_versions=self._versions, start=self._next_idx,
            )  # fmt: skip
            self._next_idx = ledger.next_item_index(self.run_id)
            ledger.supersede(earlier, f"its unfinished items continue in run {self.run_id}")

    def load(self) -> None:
        """Build every resource of the pipeline in this process now (once; later calls do
        nothing). A resource that fails raises :class:`~conveyor.errors.StepError`."""
        if self._loaded:
            return
        started = time.perf_counter()
        for name in self.pipeline.resources:
            try:
                self.runtime.resource(name)
            except ResourceFailed as exc:
                cause = exc.__cause__ or exc
                raise StepError(
                    f"resource {name!r} failed to build: {type(cause).__name__}: {cause}"
                ) from cause
        self.load_seconds = time.perf_counter() - started
        self._loaded = True

    # items -------------------------------------------------------------------------------------
    def submit(self, value: Any, *, id: str | None = None) -> str:
        """Accept one item (a dict, an :class:`~conveyor.Item`, or any value) and return
        its id (``id`` if given, else from the stream's ``id_field``, else a content hash) once
        it is durably in the ledger. Submitting the same item again changes nothing; the same
        id with new content is a new version of it."""
        ingest = self._open_ingest()
        [item] = list(items_from_iterable([value], None if id else self._id_field))
        if id:
            item = dataclasses.replace(item, id=id)
        graph = self.pipeline.graph
        with self._lock:
            plan = plan_run(
                ingest, self.run_id, graph, list(graph.order), iter([item]), force=set(),
                resource_versions=self._versions, start=self._next_idx,
            )  # fmt: skip
            self._next_idx += 1
        if plan.items:
            self._wake()
        return item.id

    def pending(self) -> int:
        """How many accepted items are not finished yet."""
        ingest = self._open_ingest()
        with self._lock:
            return ingest.unfinished_items(self.run_id)

    def result(self, item_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Every step's output for ``item_id`` (in this stream, or else in the latest earlier
        stream of this pipeline) once all its units are finished; raises
        :class:`StepError` naming the step if one of them is dead, :class:`TimeoutError` if
        ``timeout`` seconds pass first. It waits for the scheduler's word, not by polling."""
        ingest = self._open_ingest()
        deadline = None if timeout is None else time.monotonic() + timeout
        woken = threading.Event()
        cancel = self.watch(item_id, woken.set) if timeout != 0 else _nothing
        try:
            while True:
                woken.clear()  # a finish after this is either seen below or sets it again
                with self._lock:
                    units = ingest.item_units(self.run_id, item_id)
                    if not units:  # submitted before a restart, to an earlier run of this stream
                        earlier = ingest.latest_run_with_item(
                            self.pipeline.name, STREAM_SOURCE, item_id
                        )
                        if earlier is not None:
                            units = ingest.item_units(earlier, item_id)
                if not units:
                    raise UsageError(f"no item {item_id!r} was submitted to this stream")
                if all(state in FINAL_STATES for _, state, _, _, _ in units):
                    return _outputs(item_id, units)
                if self._failure is not None:
                    raise StepError(f"the stream's scheduler failed: {self._failure}")
                left = RECHECK_SECONDS if deadline is None else deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"item {item_id!r} was not finished within {timeout}s")
                woken.wait(min(left, RECHECK_SECONDS))
        finally:
            cancel()

    def submitted(self, item_id: str) -> Item | None:
        """The item submitted as ``item_id`` to this stream (or else to the latest earlier
        stream of this pipeline), as the steps saw it; None if there is none."""
        ingest = self._open_ingest()
        with self._lock:
            run_id: str | None = self.run_id
            idx = ingest.item_index(self.run_id, item_id)
            if idx is None:
                run_id = ingest.latest_run_with_item(self.pipeline.name, STREAM_SOURCE, item_id)
                idx = None if run_id is None else ingest.item_index(run_id, item_id)
            row = (
                None if idx is None or run_id is None else ingest.load_items(run_id, [idx]).get(idx)
            )
        if row is None or row.error is not None:
            return None
        return rebuild_item(row.kind, row.item_id, row.payload)

    def watch(self, item_id: str, callback: Callable[[], object]) -> Callable[[], None]:
        """Have ``callback`` called, on the scheduler's thread (keep it short), whenever the
        newest version of ``item_id`` in this stream may have just finished; returns the
        function that cancels it. Look at the item after watching it, so that a finish in
        between is not missed. An item this stream does not have is never signalled."""
        ingest = self._open_ingest()
        with self._lock:
            idx = ingest.item_index(self.run_id, item_id)
        return _nothing if idx is None else self._signals.watch(idx, callback)

    @property
    def live(self) -> LiveStats | None:
        """The open stream's workers, CPU and memory per step (None before it opens)."""
        return None if self._scheduler is None else self._scheduler.live

    def _open_ingest(self) -> Store:
        if self._ingest is None or self._thread is None:
            raise UsageError("the stream is not open; use it as 'with pipe.stream() as s:'")
        return self._ingest

    def _wake(self) -> None:
        try:
            os.write(self._write_fd, b"x")
        except (BlockingIOError, OSError):
            pass  # already awake, or closed


class _Signals:
    """The callbacks waiting for items of a stream, by item index, called by its scheduler's
    thread when a commit may have finished their item."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[int, list[Callable[[], object]]] = {}

    def watch(self, idx: int, callback: Callable[[], object]) -> Callable[[], None]:
        """Call ``callback`` whenever item ``idx`` may have finished, until cancelled."""
        with self._lock:
            self._waiting.setdefault(idx, []).append(callback)

        def cancel() -> None:
            with self._lock:
                callbacks = self._waiting.get(idx, [])
                if callback in callbacks:
                    callbacks.remove(callback)
                if not callbacks:
                    self._waiting.pop(idx, None)

        return cancel

    def finished(self, idxs: set[int]) -> None:
        """Items ``idxs`` may have just finished: call who waits for them."""
        with self._lock:
            if not self._waiting:
                return
            callbacks = [c for idx in idxs for c in self._waiting.get(idx, ())]
        for callback in callbacks:
            try:
                callback()
            except Exception:  # a watcher's mistake must not stop the stream's scheduler
                logger.exception("a callback waiting for a stream item failed")


def _nothing() -> None:
    """A cancel function with nothing to cancel."""


def _outputs(item_id: str, units: Sequence[ItemUnit]) -> dict[str, Any]:
    outputs: dict[str, Any] = {}
    for step, state, value, error_type, message in units:
        if step in outputs:
            continue  # an older version of the same item id: the newest comes first
        if state is UnitState.DEAD:
            raise StepError(
                f"step {step!r} failed on item {item_id!r}: {error_type}: {message}",
                step=step,
                error_type=error_type,
            )
        outputs[step] = pickle.loads(value) if value is not None else None
    return outputs
