"""The contract every ledger backend fulfils: the union of the protocols by concern."""

from __future__ import annotations

import abc

from conveyor.store.protocols import (
    AlarmLog,
    DatasetLedger,
    DeadLetters,
    ItemLedger,
    ModelRegistry,
    Reports,
    RunLedger,
    UnitQueue,
)
from conveyor.store.rows import Done, Failed, NewItem, NewUnit, UnitReset

#: The names these rows had before they were named tuples.
UnitRow = NewUnit

__all__ = ["Done", "Failed", "NewItem", "NewUnit", "Store", "UnitReset", "UnitRow"]


class Store(
    RunLedger,
    ItemLedger,
    UnitQueue,
    DeadLetters,
    Reports,
    AlarmLog,
    DatasetLedger,
    ModelRegistry,
    abc.ABC,
):
    """A durable ledger of runs, items, units of work, attempts and results: every concern of
    :mod:`conveyor.store.protocols`, datasets and the model registry included."""

    #: Where the ledger is, for messages and for opening it again (:func:`open_store`).
    location: str

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections."""
