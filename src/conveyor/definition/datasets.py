"""Datasets: a function that returns a table (a pandas DataFrame or a pyarrow Table),
versioned by its content and checked on every version. Defined here, built by
:mod:`conveyor.ml.builds`."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from conveyor.errors import DefinitionError

#: Where the check values live: the definition layer knows them by name only, so that defining
#: a pipeline does not load pandas (``cv.checks`` does, when it is first used).
_CHECK_CLASS = ("conveyor.ml.rules", "Check")
_HINT = (
    "use cv.checks.no_nulls(), between(), allowed(), unique(), rows(), dtypes(), schema(), "
    "custom() or a Pandera DataFrameSchema"
)


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset of a pipeline: its name (the function's), the function that returns the
    table, the checks every version must pass, and the version of the function's code."""

    name: str
    fn: Callable[[], Any]
    checks: tuple[object, ...]
    code_version: str


def is_check(value: object) -> bool:
    """Whether ``value`` is a ``cv.checks`` check (or a subclass of one) or a Pandera schema."""
    for cls in type(value).__mro__:
        if (cls.__module__, cls.__qualname__) == _CHECK_CLASS:
            return True
    return type(value).__module__.split(".")[0] == "pandera" and hasattr(value, "validate")


def dataset_checks(name: str, checks: object) -> tuple[object, ...]:
    """Validate ``checks=`` of ``@pipe.dataset``, naming the dataset, the position and the fix."""
    if checks is None:
        return ()
    if isinstance(checks, str | bytes) or not isinstance(checks, Iterable):
        raise DefinitionError(
            f"dataset {name!r}: checks must be a list of checks, e.g. "
            f"checks=[cv.checks.no_nulls()], not {type(checks).__name__}"
        )
    chosen = tuple(checks)
    for position, check in enumerate(chosen):
        if not is_check(check):
            raise DefinitionError(
                f"dataset {name!r}: checks[{position}] is {type(check).__name__} "
                f"({check!r:.60}), not a check; {_HINT}"
            )
    return chosen


def dataset_parameters(name: str, fn: Callable[..., Any]) -> None:
    """Refuse a dataset function that takes parameters: it is called with none."""
    params = list(inspect.signature(fn).parameters)
    if params:
        raise DefinitionError(
            f"dataset {name!r} takes parameters ({', '.join(params)}); a dataset function "
            f"takes none and returns its table: load what it needs inside it"
        )
