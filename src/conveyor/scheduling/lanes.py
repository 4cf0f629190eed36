"""Lanes: which executor runs which steps of a run.

A step's ``executor`` option says how it runs (``process``: a worker process; ``thread``: a
thread of this process). The run's *backend* says where the process steps go: this machine's
pool of worker processes (``local``, inline with ``workers=0``) or a Ray cluster (``ray``; the
CLI spells it ``--executor ray``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from conveyor.definition.graph import Graph
from conveyor.definition.step import did_you_mean
from conveyor.errors import UsageError
from conveyor.executors import Executor, InlineExecutor, ProcessExecutor, ThreadExecutor
from conveyor.executors.runtime import Runtime

if TYPE_CHECKING:
    from conveyor.definition.pipeline import Pipeline

#: Threads for a thread step that does not set ``concurrency``.
DEFAULT_THREADS = 8
#: Where process steps run: this machine's worker processes, or a Ray cluster.
BACKENDS = ("local", "ray")


def check_backend(backend: str, ray_address: str | None, workers: int | None) -> None:
    """Refuse an unknown backend, a Ray address without Ray, ``workers < 0``, and Ray that is
    not installed, before anything is recorded."""
    if workers is not None and workers < 0:
        raise UsageError(f"--workers {workers}: must be 0 (run inline) or more")
    if backend not in BACKENDS:
        raise UsageError(
            f"--executor {backend!r}: must be one of {', '.join(BACKENDS)}"
            f"{did_you_mean(backend, BACKENDS)}"
        )
    if backend == "ray":
        from conveyor.executors.ray_cluster import require_ray

        if workers == 0:
            raise UsageError("--workers 0 runs inline in this process; it cannot be used with Ray")
        require_ray()
    elif ray_address:
        raise UsageError(f"--ray-address {ray_address!r} needs --executor ray")


def build_lanes(
    pipeline: Pipeline,
    steps: Sequence[str],
    workers: int | None,
    *,
    runtime: Runtime | None = None,
    backend: str = "local",
    ray_address: str | None = None,
) -> dict[Executor, list[str]]:
    """The executors of a run and the steps each serves: for process steps the pool of worker
    processes (inline with ``workers=0``) or, with ``backend="ray"``, Ray; a thread pool per
    thread step. Given a ``runtime``, the local executors use it: worker processes forked from
    this process inherit the resources it has built."""
    graph: Graph = pipeline.graph
    resources = pipeline.resources
    given = runtime

    def runtime_() -> Runtime:
        return given if given is not None else Runtime(graph, resources)

    lanes: dict[Executor, list[str]] = {}
    process_steps = [s for s in steps if graph.nodes[s].step.options.executor == "process"]
    if process_steps and backend == "ray":
        from conveyor.executors.ray import ray_lanes

        lanes.update(
            ray_lanes(graph, resources, process_steps, address=ray_address, workers=workers)
        )
    elif process_steps:
        count = (os.cpu_count() or 1) if workers is None else workers
        pool: Executor = (
            InlineExecutor(runtime_()) if count == 0 else ProcessExecutor(runtime_, count)
        )
        lanes[pool] = process_steps
    shared = runtime_()  # thread steps share one set of resources in this process
    for step in steps:
        options = graph.nodes[step].step.options
        if options.executor == "thread":
            lanes[ThreadExecutor(shared, options.concurrency or DEFAULT_THREADS)] = [step]
    return lanes
