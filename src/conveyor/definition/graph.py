"""The validated graph of a pipeline: what each step needs, in which order steps run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from conveyor.definition.step import ITEM, Resource, Step, did_you_mean
from conveyor.errors import DefinitionError


@dataclass(frozen=True, slots=True)
class StepNode:
    """A step with its parameters sorted by what they refer to."""

    step: Step
    upstream: tuple[str, ...]  # steps whose outputs it takes, in parameter order
    resources: tuple[str, ...]
    uses_item: bool
    downstream: tuple[str, ...]  # steps that take this one's output directly
    descendants: tuple[str, ...]  # every step that depends on this one, transitively


@dataclass(frozen=True, slots=True)
class Graph:
    """Steps in topological order with their dependencies resolved."""

    nodes: Mapping[str, StepNode]
    order: tuple[str, ...]

    def closure(self, names: list[str]) -> list[str]:
        """``names`` and every step they need, in topological order."""
        needed: set[str] = set()
        stack = list(names)
        while stack:
            name = stack.pop()
            if name not in needed:
                needed.add(name)
                stack.extend(self.nodes[name].upstream)
        return [name for name in self.order if name in needed]


def build_graph(steps: Mapping[str, Step], resources: Mapping[str, Resource]) -> Graph:
    """Resolve every parameter and order the steps; raise :class:`DefinitionError` on unknown
    names (with the closest match), resource cycles and step cycles."""
    if not steps:
        raise DefinitionError("the pipeline has no steps; decorate a function with @pipe.step")
    known = [*steps, *resources, ITEM]
    for resource in resources.values():
        for param in resource.params:
            if param.name in steps or param.name == ITEM:
                raise DefinitionError(
                    f"resource {resource.name!r}: parameter {param.name!r} is a step or the item; "
                    f"a resource is built once per worker and may only take other resources"
                )
            if param.name not in resources and not param.has_default:
                raise DefinitionError(
                    f"resource {resource.name!r}: parameter {param.name!r} is not a resource"
                    f"{did_you_mean(param.name, list(resources))}"
                )
    _check_resource_cycles(resources)

    upstream: dict[str, tuple[str, ...]] = {}
    partial: dict[str, tuple[tuple[str, ...], bool]] = {}
    for step in steps.values():
        ups: list[str] = []
        res: list[str] = []
        uses_item = False
        for param in step.params:
            if param.name == ITEM:
                uses_item = True
            elif param.name in steps:
                ups.append(param.name)
            elif param.name in resources:
                res.append(param.name)
            elif not param.has_default:
                raise DefinitionError(
                    f"{_where(step.fn)}step {step.name!r}: parameter {param.name!r} is not a "
                    f"step, a resource or 'item'{did_you_mean(param.name, known)}; rename it, "
                    f"define a step or resource with that name, or give it a default value"
                )
        upstream[step.name] = tuple(ups)
        partial[step.name] = (tuple(res), uses_item)
    order = _topological_order(upstream)
    downstream: dict[str, list[str]] = {name: [] for name in steps}
    for name in order:
        for up in upstream[name]:
            downstream[up].append(name)
    nodes = {}
    for name in order:
        resources_of, item_used = partial[name]
        nodes[name] = StepNode(
            step=steps[name],
            upstream=upstream[name],
            resources=resources_of,
            uses_item=item_used,
            downstream=tuple(downstream[name]),
            descendants=tuple(_descendants(name, downstream, order)),
        )
    return Graph(nodes=nodes, order=tuple(order))


def _where(fn: object) -> str:
    """``file.py:12: `` where ``fn`` is defined, so errors point at the user's code."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return ""
    return f"{Path(code.co_filename).name}:{code.co_firstlineno}: "


def _topological_order(upstream: Mapping[str, tuple[str, ...]]) -> list[str]:
    """Steps in definition order, each moved after what it needs; a cycle is reported as
    ``a -> b -> a``."""
    remaining = {name: set(ups) for name, ups in upstream.items()}
    order: list[str] = []
    while remaining:
        ready = next((name for name, ups in remaining.items() if not ups), None)
        if ready is None:
            raise DefinitionError(
                f"the steps form a cycle: {_find_cycle(remaining)}; a step cannot depend on its "
                f"own output, directly or through other steps"
            )
        order.append(ready)
        del remaining[ready]
        for ups in remaining.values():
            ups.discard(ready)
    return order


def _find_cycle(edges: Mapping[str, set[str]]) -> str:
    start = next(iter(edges))
    path = [start]
    while True:
        nxt = sorted(edges[path[-1]])[0]
        if nxt in path:
            cycle = [*path[path.index(nxt) :], nxt]
            return " -> ".join(reversed(cycle))
        path.append(nxt)


def _descendants(name: str, downstream: Mapping[str, list[str]], order: list[str]) -> list[str]:
    seen: set[str] = set()
    stack = list(downstream[name])
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(downstream[current])
    return [n for n in order if n in seen]


def _check_resource_cycles(resources: Mapping[str, Resource]) -> None:
    edges = {r.name: {p.name for p in r.params if p.name in resources} for r in resources.values()}
    try:
        _topological_order({name: tuple(deps) for name, deps in edges.items()})
    except DefinitionError:
        raise DefinitionError(
            f"the resources form a cycle: {_find_cycle(_unresolved(edges))}"
        ) from None


def _unresolved(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    remaining = {k: set(v) for k, v in edges.items()}
    while True:
        free = [k for k, v in remaining.items() if not v]
        if not free:
            return remaining
        for k in free:
            del remaining[k]
        for v in remaining.values():
            v.difference_update(free)
