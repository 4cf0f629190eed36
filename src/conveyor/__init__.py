"""Conveyor: machine-learning pipelines of plain Python functions, run over a batch or a stream,
in parallel, durable and resumable.

    import conveyor as cv
    pipe = cv.Pipeline("licenses")

    @pipe.step
    def text(item: cv.Item) -> str:
        return item.read_text()
"""

from __future__ import annotations

from conveyor.core.units import RunReport, RunState, UnitState
from conveyor.definition import search
from conveyor.definition.pipeline import Pipeline
from conveyor.definition.retry import Retry
from conveyor.errors import (
    ConveyorError,
    DefinitionError,
    InputError,
    RunNotFound,
    StepError,
    StoreError,
    UsageError,
)
from conveyor.sources.item import Item, ItemKind

__version__ = "0.1.0"

__all__ = [
    "ConveyorError",
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
    "search",
]
