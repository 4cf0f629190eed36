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
    AliasConflict,
    ArtifactCorrupt,
    ConveyorError,
    DataCheckFailed,
    DefinitionError,
    InputError,
    ModelNotFound,
    RunNotFound,
    StepError,
    StoreError,
    UsageError,
)
from conveyor.sources.item import Item, ItemKind

if TYPE_CHECKING:
    from conveyor.ml import checks as checks
    from conveyor.ml.pruning import TrialPruned as TrialPruned
    from conveyor.ml.pruning import report as report
    from conveyor.ml.registry import registry as registry

__version__ = "0.1.0"

__all__ = [
    "AliasConflict",
    "ArtifactCorrupt",
    "ConveyorError",
    "DataCheckFailed",
    "DefinitionError",
    "InputError",
    "Item",
    "ItemKind",
    "ModelNotFound",
    "Pipeline",
    "Retry",
    "RunNotFound",
    "RunReport",
    "RunState",
    "StepError",
    "StoreError",
    "TrialPruned",
    "UnitState",
    "UsageError",
    "__version__",
    "checks",
    "registry",
    "report",
    "search",
]

#: Public names loaded on first use: ``cv.checks`` needs pandas, which defining a pipeline
#: should not pay for (nor for ``cv.registry``'s artifact store). A name maps to its module,
#: or to (module, attribute).
_LAZY: dict[str, str | tuple[str, str]] = {
    "checks": "conveyor.ml.checks",
    "report": ("conveyor.ml.pruning", "report"),
    "TrialPruned": ("conveyor.ml.pruning", "TrialPruned"),
    "registry": ("conveyor.ml.registry", "registry"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        where = _LAZY[name]
        module_name, attribute = (where, None) if isinstance(where, str) else where
        module = importlib.import_module(module_name)
        value = module if attribute is None else getattr(module, attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'conveyor' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
