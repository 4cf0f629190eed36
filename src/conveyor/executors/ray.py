"""Ray: the same units, retries and ledger on a Ray cluster. The only module that imports ``ray``,
and only when a Ray executor starts (``pip install conveyor[ray]``).

Plain steps run as Ray tasks, each carrying a packed :class:`~conveyor.core.units.Task` of several
units so the per-task overhead is shared. Steps that use resources run on a pool of Ray actors,
each holding a :class:`~.runtime.Runtime`, so a model is loaded once per actor; steps with
a timeout run there too, because an actor runs its calls one after another, which tells when a
unit started and lets an overrun kill that actor alone, as the process pool kills its worker.

Ray's futures cannot be waited on by the operating system: each call's future writes a byte to
a pipe when it settles, and the pipe's read end is what :meth:`RayExecutor.waitables` returns."""

from __future__ import annotations

import functools
import inspect
import logging
import math
import os
import queue
import re
import sys
import sysconfig
import time
import types
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conveyor.core.units import ErrorInfo, Outcome, Task
from conveyor.definition.graph import Graph, StepNode
from conveyor.errors import ExecutorError, UsageError
from conveyor.executors.base import Executor, TaskResult, WakePipe, lost
from conveyor.executors.runtime import Runtime

log = logging.getLogger("conveyor.executors.ray")

#: Calls queued on each actor ahead of the one it runs, to hide the round trip.
PREFETCH = 2
#: Runtimes a Ray worker process keeps, one per executor that sent it work.
_KEPT_RUNTIMES = 4


def require_ray() -> Any:
    """The ``ray`` module, or a :class:`UsageError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UsageError(
            "--executor ray needs Ray, which is not installed; install it with "
            "pip install 'conveyor[ray]'"
        ) from None
    return ray


@dataclass(frozen=True, slots=True)
class Shape:
    """How a group of steps runs on Ray: as tasks or on actors, and what each task or actor
    asks Ray to reserve (``None``: Ray's default)."""

    actors: bool
    cpus: float | None = None
    gpus: float | None = None
    memory: int | None = None

    def request(self) -> dict[str, Any]:
        """The Ray options that reserve what this shape asks for."""
        options: dict[str, Any] = {}
        if self.cpus is not None:
            options["num_cpus"] = self.cpus
        if self.gpus:
            options["num_gpus"] = self.gpus
        if self.memory:
            options["memory"] = self.memory
        return options

    def describe(self) -> str:
        """``cpus=2, gpus=1``, for messages."""
        parts = [(n, v) for n, v in (("cpus", self.cpus), ("gpus", self.gpus)) if v]
        text = [f"{n}={v:g}" for n, v in parts]
        if self.memory:
            text.append(f"memory={self.memory} bytes")
        return ", ".join(text) or "the defaults"


def shape_of(node: StepNode) -> Shape:
    """Steps with resources or a timeout run on actors; the others as packed tasks."""
    options = node.step.options
    return Shape(
        actors=bool(node.resources) or options.timeout is not None,
        cpus=options.cpus,
        gpus=options.gpus,
        memory=options.memory,
    )


def ray_lanes(
    graph: Graph,
    factories: Mapping[str, Callable[..., Any]],
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
    return {RayExecutor(session, graph, factories, names, shape): names
            for shape, names in groups.items()}  # fmt: skip


class RaySession:
    """The connection to Ray that a run's Ray executors share. The first to start connects to
    ``address`` (or to the Ray this process already uses, or starts a local Ray with
    ``workers`` CPUs); the last to stop shuts Ray down if this session started it."""

    def __init__(
        self, *, address: str | None, workers: int | None, shapes: Sequence[Shape] = ()
    ) -> None:
        self.address = address
        self.workers = workers
        self.shapes = list(shapes)
        self.sizes: dict[Shape, int] = {}
        self._users = 0
        self._started = False
        self._ray: Any = None

    def acquire(self) -> Any:
        """The ``ray`` module, connected."""
        if self._users == 0:
            try:
                self._connect()
            except BaseException:
                if self._started:
                    self._ray.shutdown()
                    self._started = False
                raise
        self._users += 1
        return self._ray

    def release(self) -> None:
        """One executor is done with Ray; the last shuts down a Ray this session started."""
        self._users -= 1
        if self._users == 0 and self._started:
            self._ray.shutdown()
            self._started = False

    def _connect(self) -> None:
        ray = self._ray = require_ray()
        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False, "logging_level": "WARNING"}
            if self.address:
                options["address"] = self.address
            else:
                # A Ray of its own: never attach to another cluster found on this machine.
                options["address"] = "local"
                if self.workers:
                    options["num_cpus"] = self.workers
            try:
                ray.init(**options)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                if self.address:
                    raise UsageError(f"--ray-address {self.address!r}: {exc}") from None
                raise UsageError(f"--executor ray: cannot start a local Ray: {exc}") from None
            self._started = True
        self.sizes = self._plan()

    def _plan(self) -> dict[Shape, int]:
        """How many tasks each shape keeps in flight, or actors it runs: as many as the
        cluster fits, leaving room for tasks beside actors that reserve CPUs."""
        nodes = [n.get("Resources", {}) for n in self._ray.nodes() if n.get("Alive")]
        total = {k: sum(float(n.get(k, 0)) for n in nodes) for k in ("CPU", "GPU", "memory")}
        capacity = float(self.workers or total["CPU"] or 1)
        for shape in self.shapes:
            needs = (("CPU", shape.cpus), ("GPU", shape.gpus), ("memory", shape.memory))
            if not any(all(float(n.get(k, 0)) >= (v or 0) for k, v in needs) for n in nodes):
                raise UsageError(
                    f"steps asking for {shape.describe()} fit on no node of the Ray cluster "
                    f"(its nodes have {_node_summary(nodes)}); lower the step's cpus=, gpus= "
                    f"or memory=, or add a node that has them"
                )
        tasks = [s for s in self.shapes if not s.actors]
        reserving = [s for s in self.shapes if s.actors and s.cpus]
        spare = capacity - (max((s.cpus or 1) for s in tasks) if tasks else 0)
        sizes = {}
        for shape in self.shapes:
            if shape.actors and shape.cpus:
                count = spare / len(reserving) / shape.cpus
            else:  # tasks, and actors that hold no CPU while they run (Ray's default)
                count = capacity / (shape.cpus or 1) if shape.cpus != 0 else capacity
            if shape.gpus:
                count = min(count, total["GPU"] / shape.gpus)
            if shape.memory:
                count = min(count, total["memory"] / shape.memory)
            sizes[shape] = max(1, math.floor(count))
        return sizes


def _node_summary(nodes: Iterable[Mapping[str, Any]]) -> str:
    return "; ".join(
        f"CPU={n.get('CPU', 0):g} GPU={n.get('GPU', 0):g} memory={int(n.get('memory', 0))}"
        for n in nodes
    )


@dataclass
class _Actor:
    handle: Any
    inflight: deque[_Call] = field(default_factory=deque)
    ready: bool = False
    node: str | None = None
    head_started: float = 0.0  # when the call at the head of ``inflight`` began to run


@dataclass
class _Call:
    token: int
    task: Task | None  # None: an actor's start-up call
    submitted: float  # wall clock, for outcomes
    ref: Any
    actor: _Actor | None = None


class RayExecutor(Executor):
    """Runs the tasks of steps of one :class:`Shape` on Ray; see the module's docstring."""

    name = "ray"

    def __init__(
        self,
        session: RaySession,
        graph: Graph,
        factories: Mapping[str, Callable[..., Any]],
        steps: Sequence[str],
        shape: Shape,
    ) -> None:
        self._session = session
        self._graph, self._factories = _shipped(graph, factories, steps)
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
        sources = _ship_by_value(ray, [*functions, *self._factories.values()])
        self._key = uuid.uuid4().hex
        try:
            # Once in the object store; each Ray worker unpickles it once (see _runtime).
            self._payload = [ray.put(sources), ray.put((self._graph, dict(self._factories)))]
        except Exception as exc:
            raise ExecutorError(
                f"steps {', '.join(self._steps)} cannot be sent to Ray workers: {exc}; a step "
                f"must not refer to objects that cannot be pickled (locks, open files, clients: "
                f"make those resources)"
            ) from exc
        task_fn, actor_cls = _remotes(ray)
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
            return sum(PREFETCH - _queued(a) for a in self._actors)
        return self._size * PREFETCH - len(self._calls)

    def submit(self, task: Task) -> None:
        if self._shape.actors:
            # Actors that are up first: one still starting (a replacement) may take seconds.
            room = [a for a in self._actors if _queued(a) < PREFETCH] or self._actors
            actor = min(room, key=lambda a: (not a.ready, _queued(a)))
            if not actor.inflight:
                actor.head_started = time.monotonic()
            self._track(task, actor.handle.run.remote(task), actor)
        else:
            self._track(task, self._remote.remote(self._key, self._payload, task))

    def _spawn(self) -> _Actor:
        actor = _Actor(self._remote.remote(self._key, self._payload))
        self._track(None, actor.handle.ready.remote(), actor)
        return actor

    def _track(self, task: Task | None, ref: Any, actor: _Actor | None = None) -> None:
        self._tokens += 1
        call = _Call(self._tokens, task, time.time(), ref, actor)
        self._calls[call.token] = call
        if actor is not None:
            actor.inflight.append(call)
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
                self._advance(call, settled_at)
                if call.task is None:
                    call.actor.ready, call.actor.node = True, value
                    continue
            if call.task is not None:
                done.append((call.task.task_id, value))
        now = time.monotonic()
        for index, actor in enumerate(self._actors):
            head = actor.inflight[0] if actor.inflight else None
            if head is None or head.task is None or head.task.timeout is None:
                continue
            if now - actor.head_started > head.task.timeout:
                error = ErrorInfo(
                    "TimeoutError",
                    f"{head.task.describe()} ran longer than its timeout of "
                    f"{head.task.timeout:g}s; its Ray actor was killed and replaced",
                    "",
                )
                done.extend(self._replace(index, error, blame=True))
        return done

    def _advance(self, call: _Call, settled_at: float) -> None:
        """An actor finished ``call``: the next call in its queue starts now."""
        actor = call.actor
        if actor is None:
            return
        if actor.inflight and actor.inflight[0] is call:
            actor.inflight.popleft()
            actor.head_started = settled_at
        else:
            actor.inflight.remove(call)

    def _failed(self, call: _Call, exc: Exception) -> list[TaskResult]:
        """A call raised: its worker, actor or node was lost (our remote code never raises)."""
        ray_exceptions = self._ray.exceptions
        actor = call.actor
        unloadable = isinstance(exc, _Unloadable) or (
            isinstance(exc, ray_exceptions.RayActorError) and exc.actor_init_failed
        )
        if unloadable:
            raise ExecutorError(
                f"Ray workers cannot load steps {', '.join(self._steps)}: {_cause_line(exc)}; "
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
                _log_node_lost(actor.node, _queued(actor))
            what = "its node was lost" if node_lost else _first_line(exc)
            error = ErrorInfo("WorkerLost", f"the Ray actor running {{task}} died: {what}", "")
            # Before it was up, or on a lost node, no unit of it is to blame.
            return self._replace(index, error, blame=actor.ready and not node_lost)
        if call.task is None:
            return []
        node_lost = isinstance(exc, ray_exceptions.NodeDiedError | ray_exceptions.ObjectLostError)
        if node_lost:
            _log_node_lost(None, 1)
        what = "its node was lost" if node_lost else _first_line(exc)
        error = ErrorInfo(
            "WorkerLost",
            f"the Ray worker running {call.task.describe()} died ({type(exc).__name__}): {what}",
            "",
        )
        # A task on a lost node did nothing wrong: its units go back without spending an attempt.
        return [lost(call.task, error, call.submitted, running=not node_lost)]

    def _replace(self, index: int, error: ErrorInfo, *, blame: bool) -> list[TaskResult]:
        """Kill actor ``index``, report its calls lost, and start another in its place."""
        actor = self._actors[index]
        try:
            self._ray.kill(actor.handle, no_restart=True)
        except Exception:
            pass  # already dead: nothing to stop
        results = []
        position = 0
        for call in actor.inflight:
            self._calls.pop(call.token, None)
            if call.task is None:
                continue
            message = error.message.replace("{task}", call.task.describe())
            results.append(
                lost(
                    call.task,
                    error._replace(message=message),
                    call.submitted,
                    running=blame and position == 0,
                )
            )
            position += 1
        actor.inflight.clear()
        self._actors[index] = self._spawn()
        return results

    def _node_alive(self, node_id: str) -> bool:
        try:
            nodes = self._ray.nodes()
        except Exception:
            return True  # cannot tell: treat the loss as the worker's
        return any(n.get("NodeID") == node_id and n.get("Alive") for n in nodes)

    def next_deadline(self) -> float | None:
        """Seconds until the earliest running actor call's timeout, if any call has one."""
        waits = [
            a.head_started + a.inflight[0].task.timeout - time.monotonic()
            for a in self._actors
            if a.ready
            and a.inflight
            and a.inflight[0].task is not None
            and a.inflight[0].task.timeout is not None
        ]
        return max(0.0, min(waits)) if waits else None

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


def _queued(actor: _Actor) -> int:
    return sum(1 for call in actor.inflight if call.task is not None)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _lines(exc: BaseException) -> list[str]:
    """The non-empty lines of ``exc``'s message, without Ray's terminal colours."""
    return [line.strip() for line in _ANSI.sub("", str(exc)).splitlines() if line.strip()]


def _first_line(exc: BaseException) -> str:
    return next(iter(_lines(exc)), type(exc).__name__)


def _cause_line(exc: BaseException) -> str:
    """What a worker reported: our own :class:`_Unloadable` line if there is one, else the
    last line of the remote traceback (``ModuleNotFoundError: No module named 'x'``)."""
    lines = _lines(exc)
    marker = f"{_Unloadable.__name__}: "
    for line in reversed(lines):
        if marker in line:
            return line.split(marker, 1)[1]
    return lines[-1] if lines else type(exc).__name__


def _shipped(
    graph: Graph, factories: Mapping[str, Callable[..., Any]], steps: Sequence[str]
) -> tuple[Graph, dict[str, Callable[..., Any]]]:
    """The part of the graph Ray workers need for ``steps``: those steps and the resources they
    use, directly or through other resources; other steps may hold what cannot be pickled."""
    nodes = {name: graph.nodes[name] for name in steps}
    needed: dict[str, Callable[..., Any]] = {}
    stack = [r for node in nodes.values() for r in node.resources]
    while stack:
        name = stack.pop()
        if name not in needed:
            needed[name] = factories[name]
            stack.extend(p for p in inspect.signature(factories[name]).parameters
                         if p in factories)  # fmt: skip
    order = tuple(name for name in graph.order if name in nodes)
    return Graph(nodes=nodes, order=order), needed


#: A module shipped to Ray workers: its name, its file, and its source.
ModuleSource = tuple[str, str, str]


def _ship_by_value(ray: Any, functions: Iterable[Callable[..., Any]]) -> list[ModuleSource]:
    """Have Ray pickle the modules that define steps and resources by value: a pipeline file
    loaded by path, or a test module, cannot be imported by name on a Ray worker. Returns their
    sources, which workers run first (see :func:`_install`): what cloudpickle still pickles by
    reference in them (a ``functools.cache`` helper, an enum) then resolves."""
    installed = {sysconfig.get_paths()[k] for k in ("purelib", "platlib", "stdlib")}
    sources: dict[str, ModuleSource] = {}
    for fn in functions:
        module = sys.modules.get(getattr(fn, "__module__", "") or "")
        if module is None or module.__name__ == "__main__":
            continue  # __main__ is pickled by value anyway
        name, path = module.__name__, getattr(module, "__file__", None) or ""
        if name == "conveyor" or name.startswith("conveyor.") or not path:
            continue
        if any(path.startswith(prefix + os.sep) for prefix in installed):
            continue
        try:
            ray.cloudpickle.register_pickle_by_value(module)
        except ValueError:
            pass  # not importable at all: cloudpickle pickles it by value already
        try:
            sources[name] = (name, path, Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            pass  # no source to ship: the module must be importable on the workers
    return list(sources.values())


def _install(sources: list[ModuleSource]) -> None:
    """Make the shipped pipeline modules importable on this worker under their names."""
    for name, path, source in sources:
        if name in sys.modules:
            continue
        folder = str(Path(path).parent)
        if Path(folder).is_dir() and folder not in sys.path:
            sys.path.append(folder)  # for the modules beside it that it imports
        module = types.ModuleType(name)
        module.__file__ = path
        sys.modules[name] = module
        try:
            exec(compile(source, path, "exec"), module.__dict__)
        except BaseException:
            del sys.modules[name]
            raise


# What runs on Ray workers ------------------------------------------------------------------------

_RUNTIMES: OrderedDict[str, Runtime] = OrderedDict()
_REMOTES: dict[str, Any] = {}


class _Unloadable(Exception):
    """A Ray worker could not unpickle the pipeline: a module it needs is missing there."""


def _runtime(key: str, payload: list[Any]) -> Runtime:
    """This worker's runtime for the executor ``key``, unpickled once from the object store."""
    runtime = _RUNTIMES.get(key)
    if runtime is None:
        import ray

        try:
            _install(ray.get(payload[0]))
            graph, factories = ray.get(payload[1])
        except Exception as exc:
            raise _Unloadable(_cause_line(exc)) from None
        runtime = _RUNTIMES[key] = Runtime(graph, factories)
        while len(_RUNTIMES) > _KEPT_RUNTIMES:
            _RUNTIMES.popitem(last=False)
    return runtime


def _run_task(key: str, payload: list[Any], task: Task) -> list[Outcome]:
    """A Ray task: run every unit of ``task``."""
    return _runtime(key, payload).run_task(task)


class _Worker:
    """A Ray actor: a runtime whose resources are built once and kept while the actor lives."""

    def __init__(self, key: str, payload: list[Any]) -> None:
        self._runtime = _runtime(key, payload)

    def ready(self) -> str:
        """The id of the node this actor runs on, once it is up."""
        import ray

        return str(ray.get_runtime_context().get_node_id())

    def run(self, task: Task) -> list[Outcome]:
        """Run every unit of ``task``."""
        return self._runtime.run_task(task)


def _remotes(ray: Any) -> tuple[Any, Any]:
    """The remote task function and actor class, made once per process."""
    if not _REMOTES:
        _REMOTES["task"] = ray.remote(_run_task)
        _REMOTES["actor"] = ray.remote(_Worker)
    return _REMOTES["task"], _REMOTES["actor"]
