"""A watched folder as a stream source: the files already there (unless ``new_only``), then
every file that appears or changes, once it has stopped changing."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import watchfiles
from watchfiles._rust_notify import WatchfilesRustInternalError

from conveyor.core.logs import event
from conveyor.errors import InputError
from conveyor.sources.files import is_item_file, walk
from conveyor.sources.item import Item, ItemKind
from conveyor.sources.names import escape_name

#: A file is read once its size and modification time have not changed for this long.
SETTLE_SECONDS = 0.3
_TEMPORARY_SUFFIXES = (".tmp", ".temp", ".part", ".partial", ".crdownload", ".swp", "~")


def is_temporary(name: str) -> bool:
    """Names that are not (yet) documents: hidden files, editor and download leftovers."""
    return name.startswith((".", "~")) or name.lower().endswith(_TEMPORARY_SUFFIXES)


class Sink(Protocol):
    """Where watched files go: a stream (anything with its ``submit``)."""

    def submit(self, value: Any, *, id: str | None = None) -> str:
        """Accept one item durably and return its id."""
        ...


def watch_folder(
    stream: Sink,
    folder: Path,
    *,
    new_only: bool = False,
    stop: threading.Event,
    on_submit: Callable[[str], None] | None = None,
    settle: float = SETTLE_SECONDS,
) -> int:
    """Submit the files of ``folder`` to ``stream`` as they come, until ``stop`` is set; return
    how many were submitted. A modified file is submitted again: a new version of its id."""
    if not folder.is_dir():
        raise InputError(f"--input {str(folder)!r} is not a folder; watch needs a folder")
    folder = folder.resolve()  # the watcher reports absolute paths
    submitted = 0
    seen: dict[Path, tuple[int, int]] = {}  # path -> (size, mtime) of the submitted version

    def submit(path: Path) -> None:
        nonlocal submitted
        try:
            stat = path.stat()
        except OSError:
            return  # gone again (renamed or deleted before we got to it)
        signature = (stat.st_size, stat.st_mtime_ns)
        if seen.get(path) == signature:
            return
        seen[path] = signature
        item_id = escape_name(path.relative_to(folder).as_posix())
        stream.submit(Item(item_id, ItemKind.FILE, path=path))
        submitted += 1
        if on_submit is not None:
            on_submit(item_id)

    if not new_only:
        for path in _files(folder):
            submit(path)
    else:
        for path in _files(folder):
            try:
                stat = path.stat()
            except OSError:
                continue  # a dangling link, or gone already: nothing to remember
            seen[path] = (stat.st_size, stat.st_mtime_ns)

    pending: dict[Path, tuple[tuple[int, int], float]] = {}  # path -> (last stat, since when)
    while not stop.is_set():
        try:
            for changes in _changes(folder, stop, settle):
                now = time.monotonic()
                for change, name in changes:
                    if change is not watchfiles.Change.deleted:
                        pending.setdefault(Path(name), ((-1, -1), now))
                _settle(pending, now, settle, submit)
        except WatchfilesRustInternalError as exc:
            # The watcher gives up on a name that is not UTF-8 ("Unable to decode path"): look
            # at the whole folder instead (the walk reads such names), then watch again.
            event("watch.rescanned", logging.WARNING, folder=escape_name(folder), reason=str(exc))
            now = time.monotonic()
            for path in _files(folder, quiet=True):  # the skipped ones were named already
                pending.setdefault(path, ((-1, -1), now))
    return submitted


def _changes(folder: Path, stop: threading.Event, settle: float) -> Iterator[set[Any]]:
    return watchfiles.watch(
        folder, watch_filter=_interesting, stop_event=stop, yield_on_timeout=True,
        rust_timeout=int(settle * 1000), debounce=int(settle * 1000), raise_interrupt=False,
    )  # fmt: skip


def _settle(
    pending: dict[Path, tuple[tuple[int, int], float]],
    now: float,
    settle: float,
    submit: Callable[[Path], None],
) -> None:
    """Submit each pending file whose size and modification time held still for ``settle``."""
    for path, (last, since) in list(pending.items()):
        try:
            stat = path.stat()
        except OSError:
            del pending[path]
            continue
        current = (stat.st_size, stat.st_mtime_ns)
        if current != last:
            pending[path] = (current, now)  # still being written: wait until it settles
        elif now - since >= settle:
            del pending[path]
            if is_item_file(path):  # a folder is silent; a FIFO or socket gets a warning
                submit(path)


def _interesting(change: watchfiles.Change, name: str) -> bool:
    return not is_temporary(os.path.basename(name))


def _files(folder: Path, *, quiet: bool = False) -> list[Path]:
    return list(walk(folder, keep=lambda name: not is_temporary(name), quiet=quiet))
