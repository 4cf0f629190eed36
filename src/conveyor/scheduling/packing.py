"""Packing: how claimed units become tasks, and how much work one task carries.

Each step's time per unit is learnt as the run goes; a task aims at about ``TASK_SECONDS`` of
work, growing by at most twice per round trip (slow start), so that per-task overhead stays in
microseconds per unit without one misleading measure packing minutes of work together."""

from __future__ import annotations

import math
from collections.abc import Container, Iterable, Mapping, Sequence

from conveyor.core.units import Claim, ItemRow, Task, UnitWork
from conveyor.definition.graph import Graph

#: Aim for tasks of about this much work, so per-task overhead stays small.
TASK_SECONDS = 0.05
MAX_UNITS_PER_TASK = 1024


class Packer:
    """Packs one run's claimed units into tasks, learning each step's time per unit."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self._task_ids = 0
        self._mean: dict[str, float] = {}  # step -> moving average of seconds per unit
        self._proven: set[str] = set()  # steps with a successful unit measured
        self._ceiling: dict[str, int] = {}  # step -> most units per task for now
        self._order = {step: i for i, step in enumerate(graph.order)}
        self._chain_ceiling = 1  # most items per chain task for now (slow start, as per step)

    def units_per_task(self, steps: Iterable[str]) -> int:
        """About one task's worth of units for the slowest of ``steps`` measured so far: claim
        that per free slot, enough to keep workers fed, not so much that work piles up leased
        to one coordinator."""
        measured = [self.chunk(s) for s in steps if s in self._mean or self.fixed(s)]
        return min(measured) if measured else 1

    def items_per_task(self, steps: Iterable[str]) -> int:
        """About one task's worth of whole items, for chains of ``steps``."""
        measured = [self._mean[s] for s in steps if s in self._mean]
        per_item = sum(measured) if measured else TASK_SECONDS
        return max(1, min(self._chain_ceiling, int(TASK_SECONDS / max(per_item, 1e-6))))

    def came_back(self, steps: set[str]) -> None:
        """A task of ``steps`` came back: they may pack twice as much next time."""
        for step in steps:
            self._ceiling[step] = min(MAX_UNITS_PER_TASK, 2 * self._ceiling.get(step, 1))
        if steps:
            self._chain_ceiling = min(MAX_UNITS_PER_TASK, 2 * self._chain_ceiling)

    def fixed(self, step: str) -> bool:
        """Whether ``step``'s tasks have a fixed size (batched steps, thread steps)."""
        options = self.graph.nodes[step].step.options
        return bool(options.batch_size) or options.executor == "thread"

    def chunk(self, step: str) -> int:
        """How many units of ``step`` one task carries for now."""
        options = self.graph.nodes[step].step.options
        if options.batch_size:
            return options.batch_size
        if options.executor == "thread":
            return 1
        mean = self._mean.get(step)
        if mean is None:
            return 1
        # Slow start: no more than twice what came back last time, so that one misleading
        # measure cannot pack minutes of work into a task.
        ceiling = self._ceiling.get(step, 1)
        return max(1, min(ceiling, int(TASK_SECONDS / max(mean, 1e-6))))

    def pack(
        self,
        claims: Sequence[Claim],
        items: Mapping[int, ItemRow],
        inputs: Mapping[tuple[int, str], bytes],
        free: int,
        isolate: Container[int] = (),
    ) -> list[Task]:
        """Turn claims into tasks: batched steps by ``batch_size``; units that must run alone
        (thread steps, suspects after a worker died) one per task; the rest spread evenly over
        the free slots, whatever their step, so each task carries a useful amount of work."""
        batches: dict[str, list[UnitWork]] = {}
        alone: list[tuple[UnitWork, str | None]] = []
        rest: list[UnitWork] = []
        for c in claims:
            node = self.graph.nodes[c.step]
            work = UnitWork(
                unit_id=c.unit_id,
                step=c.step,
                fence=c.fence,
                item=items.get(c.item_idx) if node.uses_item else None,
                inputs={u: inputs[(c.item_idx, u)] for u in node.upstream},
            )
            options = node.step.options
            batch = c.step if options.batch_size else None
            if c.unit_id in isolate:
                alone.append((work, batch))  # a batch of one, or a task of one
            elif batch is not None:
                batches.setdefault(c.step, []).append(work)
            elif options.executor == "thread" or options.timeout:
                alone.append((work, None))
            else:
                rest.append(work)
        groups: list[tuple[list[UnitWork], str | None]] = []
        for step, units in batches.items():
            size = self.graph.nodes[step].step.options.batch_size or 1
            groups += [(units[i : i + size], step) for i in range(0, len(units), size)]
        groups += [([unit], batch) for unit, batch in alone]
        size = max(1, math.ceil(len(rest) / max(1, free)))
        groups += [(rest[i : i + size], None) for i in range(0, len(rest), size)]
        tasks = []
        for units, batch in groups:
            self._task_ids += 1
            timeouts = [self.graph.nodes[u.step].step.options.timeout for u in units]
            # A batch is one call; otherwise the units run one after another.
            timeout = None if None in timeouts else (
                timeouts[0] if batch else sum(t or 0.0 for t in timeouts)
            )  # fmt: skip
            tasks.append(Task(self._task_ids, tuple(units), batch, timeout))
        return tasks

    def pack_chains(
        self,
        claims: Sequence[Claim],
        items: Mapping[int, ItemRow],
        inputs: Mapping[tuple[int, str], bytes],
        free: int,
    ) -> tuple[list[Task], list[Claim]]:
        """Turn whole items into chain tasks, their items spread evenly over the free slots.
        A unit whose upstream unit is neither finished nor in the chain (another coordinator
        holds it) cannot run here: it is returned, to go straight back and wait for it."""
        by_item: dict[int, list[Claim]] = {}
        for c in sorted(claims, key=lambda c: (c.item_idx, self._order[c.step])):
            by_item.setdefault(c.item_idx, []).append(c)
        chains: list[list[UnitWork]] = []
        handed_back: list[Claim] = []
        for idx, item_claims in by_item.items():
            here: dict[str, int] = {}  # step -> unit id of a runnable unit in this chain
            chain: list[UnitWork] = []
            for c in item_claims:
                node = self.graph.nodes[c.step]
                local = tuple((u, here[u]) for u in node.upstream if u in here)
                loaded = {u: inputs[(idx, u)] for u in node.upstream
                          if u not in here and (idx, u) in inputs}  # fmt: skip
                if len(local) + len(loaded) < len(node.upstream):
                    handed_back.append(c)
                    continue
                here[c.step] = c.unit_id
                item = items.get(idx) if node.uses_item else None
                chain.append(UnitWork(c.unit_id, c.step, c.fence, item, loaded, local))
            if chain:
                chains.append(chain)
        size = max(1, math.ceil(len(chains) / max(1, free)))
        tasks = []
        for i in range(0, len(chains), size):
            units = sorted((u for chain in chains[i : i + size] for u in chain),
                           key=lambda u: self._order[u.step])  # fmt: skip
            self._task_ids += 1
            tasks.append(Task(self._task_ids, tuple(units), chain=True))
        return tasks, handed_back

    def learn(self, step: str, duration: float, succeeded: bool) -> None:
        """Follow the step's time per unit. Failures are often much faster than the work
        (a bad input refused at once): they only count until the first success."""
        if succeeded and step not in self._proven:
            self._proven.add(step)
            mean = None
        elif not succeeded and step in self._proven:
            return
        else:
            mean = self._mean.get(step)
        self._mean[step] = duration if mean is None else 0.8 * mean + 0.2 * duration
