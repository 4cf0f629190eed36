"""Search spaces for hyperparameters: ``cv.search.int``, ``float``, ``log`` and ``choice``.

@pipe.model(metric="roc_auc", search={"C": cv.search.log(1e-3, 1e2),
                                      "depth": cv.search.int(2, 8)}, trials=40)
def fit(train, params): ...
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from conveyor.errors import DefinitionError

__all__ = ["Choice", "Float", "Int", "Log", "Space", "choice", "float", "int", "log", "spaces"]


@dataclass(frozen=True)
class Int:
    """Integers from ``low`` to ``high`` (both included) in steps of ``step``."""

    low: builtins.int
    high: builtins.int
    step: builtins.int = 1


@dataclass(frozen=True)
class Float:
    """Floats drawn uniformly between ``low`` and ``high``."""

    low: builtins.float
    high: builtins.float


@dataclass(frozen=True)
class Log:
    """Positive floats drawn uniformly on a log scale between ``low`` and ``high``."""

    low: builtins.float
    high: builtins.float


@dataclass(frozen=True)
class Choice:
    """One of a fixed set of values (numbers, strings, booleans or None)."""

    values: tuple[Any, ...]


#: Any search space.
Space: TypeAlias = Int | Float | Log | Choice


def _number(value: object, *, integer: bool = False) -> bool:
    kinds = (builtins.int,) if integer else (builtins.int, builtins.float)
    return isinstance(value, kinds) and not isinstance(value, bool) and math.isfinite(value)


def _range(kind: str, low: builtins.float, high: builtins.float) -> None:
    """Refuse a range whose ends are swapped or equal (nothing to search)."""
    if low > high:
        raise DefinitionError(f"search.{kind}({low}, {high}): low is above high; swap them")
    if low == high:
        raise DefinitionError(
            f"search.{kind}({low}, {high}): low equals high, so there is nothing to search; "
            f"widen the range, or use search.choice([{low}]) for a fixed value"
        )


def int(low: builtins.int, high: builtins.int, step: builtins.int = 1) -> Int:
    """Integers in ``[low, high]``, every ``step``: ``cv.search.int(2, 10)``."""
    if not (_number(low, integer=True) and _number(high, integer=True)):
        raise DefinitionError(
            f"search.int({low!r}, {high!r}): low and high must be integers such as int(2, 10)"
        )
    if not (_number(step, integer=True) and step >= 1):
        raise DefinitionError(f"search.int({low}, {high}, step={step!r}): step must be >= 1")
    _range("int", low, high)
    return Int(low, high, step)


def float(low: builtins.float, high: builtins.float) -> Float:
    """Floats in ``[low, high]``: ``cv.search.float(0.0, 0.5)``."""
    if not (_number(low) and _number(high)):
        raise DefinitionError(
            f"search.float({low!r}, {high!r}): low and high must be finite numbers"
        )
    _range("float", low, high)
    return Float(builtins.float(low), builtins.float(high))


def log(low: builtins.float, high: builtins.float) -> Log:
    """Floats in ``[low, high]`` on a log scale (both above 0): ``cv.search.log(1e-4, 1.0)``."""
    if not (_number(low) and _number(high)) or low <= 0 or high <= 0:
        raise DefinitionError(
            f"search.log({low!r}, {high!r}): low and high must be numbers above 0 "
            f"(a log scale has no 0); use search.float for a range that includes 0"
        )
    _range("log", low, high)
    return Log(builtins.float(low), builtins.float(high))


def choice(values: Iterable[Any]) -> Choice:
    """One of ``values``: ``cv.search.choice(["gini", "entropy"])``."""
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise DefinitionError(
            f"search.choice({values!r}): pass a list of values, e.g. choice(['a', 'b'])"
        )
    options = tuple(values)
    if not options:
        raise DefinitionError("search.choice([]): give at least one value to choose from")
    for value in options:
        if value is not None and not isinstance(value, builtins.int | builtins.float | str):
            raise DefinitionError(
                f"search.choice: {value!r} is a {type(value).__name__}; the values must be "
                f"numbers, strings, booleans or None (map a name to an object inside fit)"
            )
    if len(set(options)) != len(options):
        raise DefinitionError(f"search.choice({list(options)!r}): a value is given twice")
    return Choice(options)


def spaces(owner: str, search: Mapping[str, Any] | None) -> dict[str, Space]:
    """Validate a ``search={...}`` mapping of parameter names to spaces for ``owner``."""
    if search is None:
        return {}
    if not isinstance(search, Mapping):
        raise DefinitionError(
            f"{owner}: search= must be a dict of parameter names to spaces, e.g. "
            f"{{'C': cv.search.log(1e-3, 10)}}"
        )
    checked: dict[str, Space] = {}
    for name, space in search.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise DefinitionError(f"{owner}: search parameter {name!r} must be a plain name")
        if not isinstance(space, Int | Float | Log | Choice):
            raise DefinitionError(
                f"{owner}: search parameter {name!r} is {space!r}, an unknown kind of space; "
                f"use cv.search.int, cv.search.float, cv.search.log or cv.search.choice"
            )
        checked[name] = space
    return checked
