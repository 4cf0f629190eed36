"""Ray: the same units, retries and ledger on a Ray cluster. Only this module and the two beside it
(:mod:`.ray_cluster`, the connection and what fits; :mod:`.ray_remote`, what runs on Ray's
workers) use ``ray``, and only once a Ray executor starts (``pip install conveyor[ray]``).

Plain steps run as Ray tasks, each carrying a packed :class:`~conveyor.core.units.Task` of several
units so the per-task overhead is shared. Steps that use resources run on a pool of Ray actors,
each holding a :class:`~.runtime.Runtime`, so a model is loaded once per actor; steps with
a timeout run there too, because an actor runs its calls one after another, which tells when a
unit started and lets an overrun kill that actor alone, as the process pool kills its worker
process (the bookkeeping of both is :mod:`.slots`).

Ray's futures cannot be waited on by the operating system: each call's future writes a byte to
a pipe when it settles, and the pipe's read end is what :meth:`RayExecutor.waitables` returns."""

from __future__ import annotations

import functools
import logging
import queue
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from conveyor.core.units import ErrorInfo, Task
from conveyor.definition.graph import Graph
from conveyor.definition.step import Resource
from conveyor.errors import ExecutorError
from conveyor.executors.base import Executor, TaskResult, WakePipe, lost
from conveyor.executors.ray_cluster import RaySession, Shape, shape_of
from conveyor.executors.ray_remote import Unloadable, cause_line, first_line, remotes, ship_by_value
from conveyor.executors.slots import Sent, Slot, free_slots, next_deadline, worker_lost

__all__ = ["RayExecutor", "RaySession", "Shape", "ray_lanes", "shape_of"]

log = logging.getLogger("conveyor.executors.ray")

#: Calls queued on each actor ahead of the one it runs, to hide the round trip.
PREFETCH = 2


def ray_lanes(
    graph: Graph,
    resources: Mapping[str, Resource],
    steps: Sequence[str],
    *,
    address: str | None = None,
    workers: int | None = None,
) -> dict[Executor, list[str]]:
    """One :class:`RayExecutor` per shape among ``steps``, sharing one connection to Ray."""
    groups: dict[Shape, list[str]] = {}
    for step in steps:
        groups.setdefault(shape_of(graph.nodes[step]), []).append(step)
    session = RaySession(address=address, workers=workers, shapes=list(groups))
    return {RayExecutor(session, graph, resources, names, shape): names
            for shape, names in groups.items()}  # fmt: skip


@dataclass(eq=False, kw_only=True)
class _Call(Sent):
    token: int
    ref: Any
    actor: _Actor | None = None


@dataclass(eq=False, kw_only=True)
class _Actor(Slot[_Call]):
    handle: Any
    ready: bool = False
    node: str | None = None


class RayExecutor(Executor):
    """Runs the tasks of steps of one :class:`Shape` on Ray; see the module's docstring."""

    name = "ray"

    def __init__(
        self,
        session: RaySession,
        graph: Graph,
        resources: Mapping[str, Resource],
        steps: Sequence[str],
        shape: Shape,
    ) -> None:
        self._session = session
        self._graph, self._resources = _shipped(graph, resources, steps)
        self._steps = tuple(steps)
        self._shape = shape
        self._size = 1
        self._ray: Any = None
        self._key = ""
        self._payload: Any = None
        self._remote: Any = None
        self._actors: list[_Actor] = []
        self._calls: dict[int, _Call] = {}
        self._tokens = 0
        self._settled: queue.SimpleQueue[tuple[int, Future[Any], float]] = queue.SimpleQueue()
        self._wake = WakePipe()

    def start(self) -> None:
        ray = self._ray = self._session.acquire()
        self._size = self._session.sizes.get(self._shape, 1)
        self._wake.open()
        functions = [n.step.fn for n in self._graph.nodes.values()]
        sources = ship_by_value(ray, [*functions, *(r.fn for r in self._resources.values())])
        self._key = uuid.uuid4().hex
        try:
            # Once in the object store; each Ray worker unpickles it once (see ray_remote).
            self._payload = [ray.put(sources), ray.put((self._graph, self._resources))]
        except Exception as exc:
            raise ExecutorError(
                f"steps {', '.join(self._steps)} cannot be sent to Ray workers: {exc}; a step "
                f"must not refer to objects that cannot be pickled (locks, open files, clients: "
                f"make those resources)"
            ) from exc
        task_fn, actor_cls = remotes(ray)
        request = self._shape.request()
        if self._shape.actors:
            limits = [self._graph.nodes[s].step.options.concurrency for s in self._steps]
            if all(limits):
                self._size = min(self._size, sum(x or 0 for x in limits))
            # Ray restarts nothing itself: a lost actor is replaced here, its units requeued.
            self._remote = actor_cls.options(**request, max_restarts=0, max_task_retries=0)
            self._actors = [self._spawn() for _ in range(self._size)]
        else:
            self._remote = task_fn.options(**request, max_retries=0, retry_exceptions=False)

    # submitting -------------------------------------------------------------------------------
    def free_slots(self) -> int:
        if self._shape.actors:
            return free_slots(self._actors, PREFETCH)
        return self._size * PREFETCH - len(self._calls)

    def submit(self, task: Task) -> None:
        if self._shape.actors:
            # Actors that are up first: one still starting (a replacement) may take seconds.
            room = [a for a in self._actors if a.tasks < PREFETCH] or self._actors
            actor = min(room, key=lambda a: (not a.ready, a.tasks))
            self._track(task, actor.handle.run.remote(task), actor)
        else:
            self._track(task, self._remote.remote(self._key, self._payload, task))

    def _spawn(self) -> _Actor:
        actor = _Actor(handle=self._remote.remote(self._key, self._payload))
        self._track(None, actor.handle.ready.remote(), actor)
        return actor

    def _track(self, task: Task | None, ref: Any, actor: _Actor | None = None) -> None:
        self._tokens += 1
        call = _Call(task, time.time(), token=self._tokens, ref=ref, actor=actor)
        self._calls[call.token] = call
        if actor is not None:
            actor.send(call)
        ref.future().add_done_callback(functools.partial(self._settle, call.token))

    def _settle(self, token: int, future: Future[Any]) -> None:
        """Called on a Ray thread when a call settles: queue it and wake the scheduler."""
        self._settled.put((token, future, time.monotonic()))
        self._wake.poke()  # a call may settle after shutdown: the pipe allows it

    # collecting -------------------------------------------------------------------------------
    def waitables(self) -> list[Any]:
        return [self._wake.read_fd]

    def collect(self) -> list[TaskResult]:
        self._wake.drain()
        done: list[TaskResult] = []
        while True:
            try:
                token, future, settled_at = self._settled.get_nowait()
            except queue.Empty:
                break
            call = self._calls.pop(token, None)
            if call is None:
                continue  # a call of an actor already replaced, or abandoned
            try:
                value = future.result()
            except Exception as exc:
                done.extend(self._failed(call, exc))
                continue
            if call.actor is not None:
                # An actor runs its calls in order: the next in its queue starts now.
                call.actor.finish(call, settled_at)
                if call.task is None:
                    call.actor.ready, call.actor.node = True, value
                    continue
            if call.task is not None:
                done.append((call.task.task_id, value))
        now = time.monotonic()
        for index, actor in enumerate(self._actors):
            overrun = actor.overrun(now)
            if overrun is not None:
                error = overrun.error("; its Ray actor was killed and replaced")
                done.extend(self._replace(index, error, blame=True))
        return done

    def _failed(self, call: _Call, exc: Exception) -> list[TaskResult]:
        """A call raised: its Ray worker process, actor or node was lost (our remote code never
        raises)."""
        ray_exceptions = self._ray.exceptions
        actor = call.actor
        unloadable = isinstance(exc, Unloadable) or (
            isinstance(exc, ray_exceptions.RayActorError) and exc.actor_init_failed
        )
        if unloadable:
            raise ExecutorError(
                f"Ray workers cannot load steps {', '.join(self._steps)}: {cause_line(exc)}; "
                f"conveyor and the modules the pipeline imports must be installed on every "
                f"node of the cluster"
            ) from None
        if actor is not None:
            index = self._actors.index(actor)
            # Ray says so in the message; the cluster's node table may lag a moment behind.
            node_lost = "its node has died" in str(exc) or (
                actor.node is not None and not self._node_alive(actor.node)
            )
            if node_lost:
                _log_node_lost(actor.node, actor.tasks)
            what = "its node was lost" if node_lost else first_line(exc)

            def died(task: Task) -> ErrorInfo:
                return worker_lost(f"the Ray actor running {task.describe()} died: {what}")

            # Before it was up, or on a lost node, no unit of it is to blame.
            return self._replace(index, died, blame=actor.ready and not node_lost)
        if call.task is None:
            return []
        node_lost = isinstance(exc, ray_exceptions.NodeDiedError | ray_exceptions.ObjectLostError)
        if node_lost:
            _log_node_lost(None, 1)
        what = "its node was lost" if node_lost else first_line(exc)
        error = worker_lost(
            f"the Ray worker running {call.task.describe()} died ({type(exc).__name__}): {what}"
        )
        # A task on a lost node did nothing wrong: its units go back without spending an attempt.
        return [lost(call.task, error, call.submitted, running=not node_lost)]

    def _replace(
        self, index: int, error: ErrorInfo | Callable[[Task], ErrorInfo], *, blame: bool
    ) -> list[TaskResult]:
        """Kill actor ``index``, report its calls lost (see :meth:`.Slot.lost`; the one it ran
        is to blame if ``blame``), and start another in its place."""
        actor = self._actors[index]
        try:
            self._ray.kill(actor.handle, no_restart=True)
        except Exception:
            pass  # already dead: nothing to stop
        for call in actor.sent:
            self._calls.pop(call.token, None)  # their late word, if any, is ignored
        results = actor.lost(error, blame=blame)
        self._actors[index] = self._spawn()
        return results

    def _node_alive(self, node_id: str) -> bool:
        try:
            nodes = self._ray.nodes()
        except Exception:
            return True  # cannot tell: treat the loss as the actor's
        return any(n.get("NodeID") == node_id and n.get("Alive") for n in nodes)

    def next_deadline(self) -> float | None:
        """Seconds until the earliest running actor call's timeout, if any call has one."""
        return next_deadline(self._actors)

    def shutdown(self) -> None:
        if self._ray is None:
            return
        ray, self._ray = self._ray, None
        for call in list(self._calls.values()):
            if call.actor is None:
                try:
                    ray.cancel(call.ref, force=True)
                except Exception:
                    pass  # finished meanwhile: nothing to cancel
        for actor in self._actors:
            try:
                ray.kill(actor.handle, no_restart=True)
            except Exception:
                pass  # already dead
        self._calls.clear()
        self._actors.clear()
        self._payload = None
        self._wake.close()
        self._session.release()


def _log_node_lost(node: str | None, tasks: int) -> None:
    log.warning(
        "a Ray node%s was lost; %d task(s) it held go back to the queue",
        f" ({node[:12]})" if node else "", tasks, extra={"event": "ray.node_lost"},
    )  # fmt: skip


def _shipped(
    graph: Graph, resources: Mapping[str, Resource], steps: Sequence[str]
) -> tuple[Graph, dict[str, Resource]]:
    """The part of the graph Ray workers need for ``steps``: those steps and the resources they
    use, directly or through other resources; other steps may hold what cannot be pickled."""
    nodes = {name: graph.nodes[name] for name in steps}
    needed: dict[str, Resource] = {}
    stack = [r for node in nodes.values() for r in node.resources]
    while stack:
        name = stack.pop()
        if name not in needed:
            needed[name] = resources[name]
            stack.extend(p.name for p in resources[name].params if p.name in resources)
    order = tuple(name for name in graph.order if name in nodes)
    return Graph(nodes=nodes, order=order), needed
