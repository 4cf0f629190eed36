"""Live progress of a search for ``conveyor train``: trials done of the total, running, failed
and pruned, the best value so far and the last trial's time. On a terminal it is a live bar;
elsewhere (a log, CI) one line per finished trial."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from conveyor.interfaces.cli.app import err

if TYPE_CHECKING:
    from conveyor.ml.training import Progress as SearchProgress


class TrialProgress:
    """Shows :class:`~conveyor.ml.training.Progress` updates on standard error."""

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.live = enabled and err.is_terminal
        self._bar = Progress(
            TextColumn("trials"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=err,
            transient=False,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> TrialProgress:
        if self.live:
            self._bar.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.live:
            self._bar.stop()

    def update(self, progress: SearchProgress) -> None:
        """Show where the search stands."""
        if not self.enabled:
            return
        best = "-" if progress.best is None else f"{progress.best:.4f}"
        last = progress.last
        status = (
            f"running {progress.running} · failed {progress.failed} · pruned {progress.pruned}"
            f" · best {best}" + ("" if last is None else f" · last {last.seconds:.2f}s")
        )
        if self.live:
            if self._task is None:
                self._task = self._bar.add_task("trials", total=progress.total, status=status)
            self._bar.update(self._task, completed=progress.done, status=status)
        elif last is not None:
            value = "failed" if last.value is None else f"{last.value:.4f}"
            state = "" if last.state == "complete" else f" ({last.state})"
            err.print(
                f"trial {last.number}: {value}{state} in {last.seconds:.2f}s  "
                f"[{progress.done}/{progress.total}, best {best}]"
            )
