"""The Ray cluster a run uses: the one connection its Ray executors share, what each group of
steps asks the cluster to reserve (a :class:`Shape`), and how many tasks or actors of each shape
the cluster fits. Imports ``ray`` only when a session connects."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from conveyor.definition.graph import StepNode
from conveyor.errors import UsageError


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
