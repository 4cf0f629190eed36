"""Files as items: the files of a folder (walked in name order, hidden ones left out) or of a
glob, each with its path relative to the folder as its id and its content hash as its key.

What is in a folder but is not a file is skipped with one warning line naming it: a symlink
loop (never followed), a FIFO (never opened, so the walk never blocks), a socket, a device, a
link to a folder (folders behind links are not walked). A link to a file is read as the file
it points to, inside the folder or not; a dangling link is an item that fails alone."""

from __future__ import annotations

import errno
import glob
import hashlib
import logging
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from conveyor.core.logs import event
from conveyor.errors import InputError
from conveyor.sources.base import SourceItem, digest
from conveyor.sources.item import ItemKind
from conveyor.sources.names import escape_name

_CHUNK = 1 << 20


def is_glob(text: str) -> bool:
    """Whether ``text`` is a glob pattern rather than a path."""
    return glob.has_magic(text)


def glob_files(pattern: str) -> Iterator[SourceItem]:
    """The files ``pattern`` matches, with ids relative to its fixed part (folders it matches
    are left out); a pattern that matches no file is an :class:`InputError`."""
    base = _glob_base(pattern)
    matches = [Path(p) for p in sorted(glob.glob(pattern, recursive=True))]
    files = [p for p in matches if not p.is_dir() and is_item_file(p)]
    if not files:
        raise InputError(f"the glob {pattern!r} matches no files")
    return file_items(files, base)


def folder_files(root: Path) -> Iterator[SourceItem]:
    """The files under ``root`` as items, ids relative to it."""
    return file_items(walk(root), root)


def walk(
    root: Path, *, keep: Callable[[str], bool] | None = None, quiet: bool = False
) -> Iterator[Path]:
    """The files under ``root``, in name order, folder by folder; what is not a file is skipped
    with a warning (see the module's docstring) unless ``quiet``. Hidden folders are left out,
    and the files whose name ``keep`` refuses (default: hidden files)."""
    keep = keep or _not_hidden
    for dirpath, dirnames, filenames in os.walk(root, onerror=_raise_walk_error):
        folder = Path(dirpath)
        kept = []
        for name in sorted(dirnames):
            if name.startswith("."):
                continue
            if (folder / name).is_symlink():  # os.walk would not walk it either: say so
                if not quiet:
                    _skip(folder / name, "a link to a folder; links to folders are not followed")
                continue
            kept.append(name)
        dirnames[:] = kept
        for name in sorted(filenames):
            if keep(name) and is_item_file(folder / name, quiet=quiet):
                yield folder / name


def file_items(paths: Iterable[Path], base: Path) -> Iterator[SourceItem]:
    """One item per path: id relative to ``base`` (undecodable bytes escaped, see
    :func:`~conveyor.sources.names.escape_name`), key the content hash; a file that cannot be
    read (gone, dangling link, no permission) is an item that fails alone with the reason."""
    for path in paths:
        relative = path.relative_to(base).as_posix() if path.is_relative_to(base) else str(path)
        item_id = escape_name(relative)
        try:
            real = path.resolve()
        except (OSError, RuntimeError):  # a loop made after the walk looked: read it as named
            real = path.absolute()
        payload = os.fsencode(real)  # the real bytes of the name, whatever its encoding
        try:
            h = hashlib.blake2b(digest_size=16)
            with _open(path) as fh:
                while chunk := fh.read(_CHUNK):
                    h.update(chunk)
        except OSError as exc:
            error = f"cannot read {escape_name(path)}: {exc.strerror or exc}"
            yield SourceItem(item_id, ItemKind.FILE, digest(payload), payload, error)
            continue
        yield SourceItem(item_id, ItemKind.FILE, h.hexdigest(), payload)


def _open(path: Path) -> BinaryIO:
    # without blocking: a FIFO put in a file's place after the walk looked must not hang the run
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, _kind(mode))
    except OSError:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def _not_hidden(name: str) -> bool:
    return not name.startswith(".")


def is_item_file(path: Path, *, quiet: bool = False) -> bool:
    """Whether ``path`` should become an item: a file, a link to one, or a link that names
    nothing (an item that fails, as a missing file does); anything else is skipped loudly."""
    try:
        info = path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            if not quiet:
                _skip(path, "a symlink loop")
            return False
        return True  # dangling link, or gone since the listing: the item says why it failed
    if stat.S_ISREG(info.st_mode):
        return True
    if stat.S_ISDIR(info.st_mode):
        return False  # a folder a glob matched; a folder of a walk never gets here
    if not quiet:
        _skip(path, _kind(info.st_mode))
    return False


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe), not a file"
    if stat.S_ISSOCK(mode):
        return "a socket, not a file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device, not a file"
    return "not a regular file"


def _skip(path: Path, why: str) -> None:
    event("input.skipped", logging.WARNING, path=escape_name(path), reason=why)


def _glob_base(pattern: str) -> Path:
    parts = Path(pattern).parts
    base: list[str] = []
    for part in parts:
        if glob.has_magic(part):
            break
        base.append(part)
    return Path(*base) if base else Path(".")


def _raise_walk_error(exc: OSError) -> None:
    raise InputError(f"cannot list {escape_name(exc.filename)}: {exc.strerror}")
