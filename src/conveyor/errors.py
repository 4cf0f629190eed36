"""The one exception tree of Conveyor: every error it raises is a :class:`ConveyorError`."""

from __future__ import annotations


class ConveyorError(Exception):
    """Something went wrong in Conveyor."""

    #: The process exit code the CLI uses when this error ends a command.
    exit_code = 1

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class DefinitionError(ConveyorError):
    """The pipeline definition is invalid."""

    exit_code = 2


class UsageError(ConveyorError):
    """A command was called with bad arguments."""

    exit_code = 2


class InputError(ConveyorError):
    """An input could not be read."""

    exit_code = 2


class StoreError(ConveyorError):
    """The ledger could not be opened or is not usable."""

    exit_code = 3


class RunNotFound(StoreError):
    """No such run in the ledger."""

    exit_code = 2


class ExecutorError(ConveyorError):
    """The executor cannot run units: its workers cannot start or cannot load the pipeline."""

    exit_code = 2


class StepError(ConveyorError):
    """A step failed while it ran; the original exception is chained."""

    def __init__(
        self, message: str | None = None, *, step: str | None = None, error_type: str | None = None
    ) -> None:
        super().__init__(message)
        #: The step that failed, and the type of the exception it raised, when known.
        self.step = step
        self.error_type = error_type


class WorkerLost(ConveyorError):
    """The worker process running a unit died (killed, out of memory, crashed)."""


class DataCheckFailed(ConveyorError):
    """A dataset failed its checks; the message is the report (check, column, failing rows)."""

    exit_code = 2

    def __init__(self, message: str | None = None, *, dataset: str | None = None,
                 version: str | None = None) -> None:  # fmt: skip
        super().__init__(message)
        #: The dataset and the version (recorded with its report) that failed.
        self.dataset = dataset
        self.version = version


class DatasetNotFound(StoreError):
    """No such dataset, or no such version of it, in the ledger."""

    exit_code = 2


class ModelNotFound(StoreError):
    """No such model, version or alias in the registry."""

    exit_code = 2


class AliasConflict(StoreError):
    """An alias moved meanwhile: another promotion or rollback took the same place in its
    history first."""

    exit_code = 3


class ArtifactCorrupt(ConveyorError):
    """A registered model's artifact is missing or does not match its digest: it is not
    loaded."""

    exit_code = 2


class Overloaded(ConveyorError):
    """The request cannot be answered within its deadline: retry after ``retry_after`` seconds.

    A server answers it with 503 and a ``Retry-After`` header (the seconds rounded up)."""

    exit_code = 1

    def __init__(self, message: str | None = None, *, retry_after: float) -> None:
        super().__init__(message)
        #: Seconds after which a retry is likely to be answered (always more than 0).
        self.retry_after = retry_after
