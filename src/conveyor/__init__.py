"""Conveyor: machine-learning pipelines of plain Python functions, run over a batch or a stream,
in parallel, durable and resumable.

    import conveyor as cv
    pipe = cv.Pipeline("licenses")

    @pipe.step
    def text(item: cv.Item) -> str:
        return item.read_text()
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conveyor.core.units import RunReport, RunState, UnitState
from conveyor.definition import search
from conveyor.definition.pipeline import Pipeline
from conveyor.definition.retry import Retry
from conveyor.errors import (
    ConveyorError,
    DataCheckFailed,
    DefinitionError,
    InputError,
    RunNotFound,
    StepError,
    StoreError,
    UsageError,
)
from conveyor.sources.item import Item, ItemKind

if TYPE_CHECKING:
    from conveyor.ml import checks as checks

__version__ = "0.1.0"

__all__ = [
    "ConveyorError",
    "DataCheckFailed",
    "DefinitionError",
    "InputError",
    "Item",
    "ItemKind",
    "Pipeline",
    "Retry",
    "RunNotFound",
    "RunReport",
    "RunState",
    "StepError",
    "StoreError",
    "UnitState",
    "UsageError",
    "__version__",
    "checks",
    "search",
]

#: Public names loaded on first use: ``cv.checks`` needs pandas, which defining a pipeline
#: should not pay for.
_LAZY = {"checks": "conveyor.ml.checks"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module = importlib.import_module(_LAZY[name])
        globals()[name] = module
        return module
    raise AttributeError(f"module 'conveyor' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
