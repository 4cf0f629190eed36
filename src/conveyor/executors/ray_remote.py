"""What travels to Ray workers and runs there: the pipeline's own modules, shipped by value, and
the remote task function and actor class that run a :class:`~conveyor.executors.runtime.Runtime`
per executor. Ray imports this module on its workers; it imports ``ray`` only inside functions
that run where Ray is."""

from __future__ import annotations

import os
import re
import sys
import sysconfig
import types
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from conveyor.core.units import Outcome, Task
from conveyor.executors.runtime import Runtime

#: Runtimes a Ray worker process keeps, one per executor that sent it work.
KEPT_RUNTIMES = 4

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _lines(exc: BaseException) -> list[str]:
    """The non-empty lines of ``exc``'s message, without Ray's terminal colours."""
    return [line.strip() for line in _ANSI.sub("", str(exc)).splitlines() if line.strip()]


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (its type's name if it has none)."""
    return next(iter(_lines(exc)), type(exc).__name__)


def cause_line(exc: BaseException) -> str:
    """What a Ray worker reported: our own :class:`Unloadable` line if there is one, else the
    last line of the remote traceback (``ModuleNotFoundError: No module named 'x'``)."""
    lines = _lines(exc)
    marker = f"{Unloadable.__name__}: "
    for line in reversed(lines):
        if marker in line:
            return line.split(marker, 1)[1]
    return lines[-1] if lines else type(exc).__name__


#: A module shipped to Ray workers: its name, its file, and its source.
ModuleSource = tuple[str, str, str]


def ship_by_value(ray: Any, functions: Iterable[Callable[..., Any]]) -> list[ModuleSource]:
    """Have Ray pickle the modules that define steps and resources by value: a pipeline file
    loaded by path, or a test module, cannot be imported by name on a Ray worker. Returns their
    sources, which workers run first (see :func:`_install`): what cloudpickle still pickles by
    reference in them (a ``functools.cache`` helper, an enum) then resolves."""
    installed = {sysconfig.get_paths()[k] for k in ("purelib", "platlib", "stdlib")}
    sources: dict[str, ModuleSource] = {}
    for fn in _referenced(functions):
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


def _referenced(functions: Iterable[Callable[..., Any]]) -> list[Callable[..., Any]]:
    """The functions and the user functions they close over: a step made by a factory (a
    training trial wraps the user's ``fit`` and metrics) needs the modules of those too."""
    found: list[Callable[..., Any]] = []
    for fn in functions:
        found.append(fn)
        for cell in getattr(fn, "__closure__", None) or ():
            try:
                value = cell.cell_contents
            except ValueError:
                continue  # an empty cell
            values = value if isinstance(value, list | tuple) else [value]
            for each in values:
                inner = getattr(each, "fn", each)  # a spec holding a user function
                if isinstance(inner, types.FunctionType):
                    found.append(inner)
    return found


def _install(sources: list[ModuleSource]) -> None:
    """Make the shipped pipeline modules importable on this Ray worker under their names."""
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


class Unloadable(Exception):
    """A Ray worker could not unpickle the pipeline: a module it needs is missing there."""


def _runtime(key: str, payload: list[Any]) -> Runtime:
    """This Ray worker's runtime for the executor ``key``, unpickled once from the object
    store."""
    runtime = _RUNTIMES.get(key)
    if runtime is None:
        import ray

        try:
            _install(ray.get(payload[0]))
            graph, factories = ray.get(payload[1])
        except Exception as exc:
            raise Unloadable(cause_line(exc)) from None
        runtime = _RUNTIMES[key] = Runtime(graph, factories)
        while len(_RUNTIMES) > KEPT_RUNTIMES:
            _RUNTIMES.popitem(last=False)
    return runtime


def _run_task(key: str, payload: list[Any], task: Task) -> list[Outcome]:
    """A Ray task: run every unit of ``task``."""
    return _runtime(key, payload).run_task(task)


class RuntimeActor:
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


def remotes(ray: Any) -> tuple[Any, Any]:
    """The remote task function and actor class, made once per process."""
    if not _REMOTES:
        _REMOTES["task"] = ray.remote(_run_task)
        _REMOTES["actor"] = ray.remote(RuntimeActor)
    return _REMOTES["task"], _REMOTES["actor"]
