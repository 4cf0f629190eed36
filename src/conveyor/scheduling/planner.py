"""Planning: turn source items into units of work with cache keys, and find what is cached.

A unit's cache key is a hash of its step's name and version, the versions of the resources it
uses, and its inputs' keys (the item's content hash, upstream units' keys). Keys are known before
anything runs, so a re-run finds every finished unit with one lookup per chunk of items."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice

from conveyor.core.units import ErrorInfo, UnitState
from conveyor.definition.graph import Graph
from conveyor.definition.step import ITEM
from conveyor.sources.readers import SourceItem
from conveyor.store.base import Store
from conveyor.store.rows import NewItem, NewUnit, UnitReset

CHUNK = 2000


@dataclass
class Plan:
    """What planning found: units per step and state."""

    items: int = 0
    duplicates: int = 0
    counts: dict[str, dict[UnitState, int]] = field(default_factory=dict)
    resumed: bool = False  # the run was already in the ledger and continues

    def add(self, step: str, state: UnitState) -> None:
        """Count one unit of ``step`` in ``state``."""
        by_state = self.counts.setdefault(step, {})
        by_state[state] = by_state.get(state, 0) + 1


def step_salts(
    graph: Graph, steps: Sequence[str], resource_versions: dict[str, str]
) -> dict[str, bytes]:
    """The constant part of each step's cache key: its name, its version and the versions of
    the resources it takes."""
    salts = {}
    for name in steps:
        node = graph.nodes[name]
        parts = [name, node.step.version]
        parts += [f"{r}:{resource_versions[r]}" for r in node.resources]
        salts[name] = "\0".join(parts).encode()
    return salts


def plan_signature(
    graph: Graph, steps: Sequence[str], force: Sequence[str], resource_versions: dict[str, str]
) -> str:
    """A hash of everything that decides a run's units and keys besides its input: the steps,
    their versions and resources, and the steps forced. Two runs with the same signature over
    the same input plan the same units, so one can continue the other."""
    h = hashlib.blake2b(digest_size=12)
    for name, salt in step_salts(graph, steps, resource_versions).items():
        h.update(name.encode() + b"\1" + salt + b"\2")
    h.update(("force:" + ",".join(sorted(force))).encode())
    return h.hexdigest()


def unit_key(salt: bytes, inputs: Iterable[tuple[str, str]]) -> str:
    """The cache key of a unit: its step's salt and its (parameter, input key) pairs."""
    h = hashlib.blake2b(salt, digest_size=16)
    for name, key in inputs:
        h.update(b"\0")
        h.update(name.encode())
        h.update(b"=")
        h.update(key.encode())
    return h.hexdigest()


def plan_run(
    store: Store,
    run_id: str,
    graph: Graph,
    steps: Sequence[str],
    items: Iterator[SourceItem],
    *,
    force: set[str],
    resource_versions: dict[str, str],
    start: int = 0,
) -> Plan:
    """Record every item and its units in the ledger, chunk by chunk, numbering items from
    ``start``, and return the counts."""
    plan = Plan(counts={step: {} for step in steps})
    salts = step_salts(graph, steps, resource_versions)
    selected = set(steps)
    index = start
    while True:
        chunk = list(islice(items, CHUNK))
        if not chunk:
            break
        rows = [
            NewItem(index + i, it.id, it.kind.value, it.key, it.payload, it.error)
            for i, it in enumerate(chunk)
        ]
        inserted = store.add_items(run_id, rows)
        kept = list(enumerate(chunk, start=index))
        if inserted != len(chunk):
            kept = _without_duplicates(store, run_id, kept)
            plan.duplicates += len(chunk) - len(kept)
        index += len(chunk)
        plan.items += len(kept)
        store.add_units(run_id, _units(store, graph, steps, selected, salts, kept, force, plan))
    return plan


def _without_duplicates(
    store: Store, run_id: str, kept: list[tuple[int, SourceItem]]
) -> list[tuple[int, SourceItem]]:
    stored = store.load_items(run_id, [idx for idx, _ in kept])
    return [(idx, it) for idx, it in kept if idx in stored and stored[idx].item_id == it.id]


def _units(
    store: Store,
    graph: Graph,
    steps: Sequence[str],
    selected: set[str],
    salts: dict[str, bytes],
    items: list[tuple[int, SourceItem]],
    force: set[str],
    plan: Plan,
) -> list[NewUnit]:
    keyed: list[tuple[int, SourceItem, dict[str, str]]] = []
    for idx, item in items:
        keys: dict[str, str] = {}
        for name in steps:
            node = graph.nodes[name]
            inputs = [(ITEM, item.key)] if node.uses_item else []
            inputs += [(up, keys[up]) for up in node.upstream]
            keys[name] = unit_key(salts[name], inputs)
        keyed.append((idx, item, keys))
    lookup = [key for _, _, keys in keyed for name, key in keys.items() if name not in force]
    cached = store.existing_results(lookup)
    rows: list[NewUnit] = []
    for idx, item, keys in keyed:
        states: dict[str, UnitState] = {}
        for name in steps:
            node = graph.nodes[name]
            ups = [u for u in node.upstream if u in selected]
            error: ErrorInfo | None = None
            if any(states[u] in (UnitState.DEAD, UnitState.SKIPPED) for u in ups):
                state = UnitState.SKIPPED
                error = ErrorInfo("Skipped", "skipped because an upstream step failed", "")
            elif item.error and node.uses_item:
                state = UnitState.DEAD
                error = ErrorInfo("conveyor.errors.InputError", item.error, "")
            elif keys[name] in cached and name not in force:
                state = UnitState.CACHED
            else:
                waiting = sum(1 for u in ups if states[u] is not UnitState.CACHED)
                state = UnitState.READY if waiting == 0 else UnitState.PENDING
            states[name] = state
            plan.add(name, state)
            waiting = (
                0
                if state is not UnitState.PENDING
                else sum(1 for u in ups if states[u] is not UnitState.CACHED)
            )
            rows.append(NewUnit(idx, name, keys[name], state, waiting, error))
    return rows


def replan_item(
    graph: Graph,
    steps: Sequence[str],
    salts: dict[str, bytes],
    item_key: str,
    units: dict[str, tuple[int, UnitState, str]],
    redrive: set[str],
) -> list[UnitReset]:
    """For one item, the units to put back in the queue when its ``redrive`` steps' dead units
    are redriven: those units and the dependents they had skipped, with cache keys computed from
    the current code (the fix) and states from what their inputs are now. A dependent that
    still has another dead input stays skipped."""
    states = {step: state for step, (_, state, _) in units.items()}
    keys = {step: key for step, (_, _, key) in units.items()}
    changed: set[str] = set()
    resets: list[UnitReset] = []
    for name in steps:
        if name not in units:
            continue
        unit_id, state, _ = units[name]
        node = graph.nodes[name]
        ups = [u for u in node.upstream if u in units]
        if not (name in redrive or (state is UnitState.SKIPPED and changed & set(ups))):
            continue
        if any(states[u] in (UnitState.DEAD, UnitState.SKIPPED) for u in ups):
            continue  # another input is still dead: stays skipped
        inputs = [(ITEM, item_key)] if node.uses_item else []
        inputs += [(u, keys[u]) for u in node.upstream]
        keys[name] = unit_key(salts[name], inputs)
        waiting = sum(1 for u in ups if states[u] not in (UnitState.DONE, UnitState.CACHED))
        states[name] = UnitState.READY if waiting == 0 else UnitState.PENDING
        changed.add(name)
        resets.append(UnitReset(unit_id, states[name], waiting, keys[name]))
    return resets
