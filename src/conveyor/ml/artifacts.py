"""A content-addressed artifact store: bytes under their SHA-256, tables as Parquet under their
fingerprint, in a local folder (``.conveyor/artifacts/`` by default) or at any fsspec URL.

An object is written once: storing it again finds it there. A write never leaves a partial
object under its final name: it goes to a temporary name first, then is renamed (object stores
such as S3 write an object whole, so there it is written directly).
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from conveyor.errors import InputError
from conveyor.ml.datasets import fingerprint
from conveyor.ml.tables import Table, require_table, to_arrow

#: Where artifacts go when no location is given, relative to the working directory.
DEFAULT_LOCATION = Path(".conveyor") / "artifacts"
#: Protocols whose writes are already whole-object (no rename needed, and a rename is a copy).
_OBJECT_STORES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"})
_DIGEST = re.compile(r"[0-9a-f]{64}")


class ArtifactStore:
    """Artifacts by content: ``put_bytes``/``get_bytes`` and ``put_table``/``open_table``."""

    def __init__(self, location: str | os.PathLike[str] | None = None) -> None:
        text = os.fspath(location) if location is not None else os.fspath(DEFAULT_LOCATION)
        self._fs: Any = None
        if "://" in text:
            import fsspec  # only for URLs: a local folder needs nothing beyond the stdlib

            self._fs, root = fsspec.core.url_to_fs(text)
            self._protocol = text.split("://", 1)[0]
            self._root = root.rstrip("/")
            self.location = text.rstrip("/")
        else:
            self._root = os.path.abspath(text)
            self.location = self._root

    def __repr__(self) -> str:
        return f"ArtifactStore({self.location!r})"

    # bytes
    def put_bytes(self, data: bytes) -> str:
        """Store ``data`` (once) and return its digest, the SHA-256 in hex."""
        digest = hashlib.sha256(data).hexdigest()
        path = self._path("objects", digest)
        if not self._exists(path):
            self._write(path, data)
        return digest

    def get_bytes(self, digest: str) -> bytes:
        """The bytes stored under ``digest``, checked against it (InputError if absent or
        corrupted)."""
        path = self._path("objects", _checked(digest))
        data = self._read(path, digest)
        if hashlib.sha256(data).hexdigest() != digest:
            raise InputError(f"artifact {digest} at {self.uri(path)} is corrupted; store it again")
        return data

    def has(self, digest: str) -> bool:
        """Whether bytes or a table are stored under ``digest``."""
        digest = _checked(digest)
        return self._exists(self._path("objects", digest)) or self._exists(
            self._path("tables", digest, ".parquet")
        )

    # tables
    def put_table(self, table: Table) -> tuple[str, str]:
        """Store a table as Parquet (once: an unchanged dataset is not written again) and return
        (its fingerprint, where the Parquet file lies: a local path or the URL)."""
        table = require_table(table)
        digest = fingerprint(table)
        path = self._path("tables", digest, ".parquet")
        if not self._exists(path):
            self._write_table(path, to_arrow(table).replace_schema_metadata(None))
        return digest, self.uri(path)

    def open_table(self, digest: str) -> pa.Table:
        """The table stored under ``digest`` (InputError if there is none)."""
        path = self._path("tables", _checked(digest), ".parquet")
        try:
            if self._fs is None:
                return pq.read_table(path, memory_map=True)
            with self._fs.open(path, "rb") as f:
                return pq.read_table(f)
        except FileNotFoundError as e:
            raise InputError(f"no table {digest} in {self.location}") from e

    def uri(self, path: str) -> str:
        """Where ``path`` (in this store) lies, as a local path or a URL."""
        return path if self._fs is None else f"{self._protocol}://{path.split('://')[-1]}"

    # the two kinds of place
    def _path(self, kind: str, digest: str, suffix: str = "") -> str:
        # two levels, as git's objects: no folder grows past a few thousand entries
        return "/".join((self._root, kind, digest[:2], digest[2:] + suffix))

    def _exists(self, path: str) -> bool:
        return os.path.exists(path) if self._fs is None else bool(self._fs.exists(path))

    def _read(self, path: str, digest: str) -> bytes:
        try:
            if self._fs is None:
                return Path(path).read_bytes()
            return bytes(self._fs.cat_file(path))
        except FileNotFoundError as e:
            raise InputError(f"no artifact {digest} in {self.location}") from e

    def _write(self, path: str, data: bytes) -> None:
        self._atomically(path, lambda f: f.write(data))

    def _write_table(self, path: str, table: pa.Table) -> None:
        self._atomically(path, lambda f: pq.write_table(table, f, compression="zstd"))

    def _atomically(self, path: str, write: Any) -> None:
        temporary = f"{path}.tmp-{uuid.uuid4().hex}"
        if self._fs is None:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            try:
                with open(temporary, "wb") as f:
                    write(f)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(temporary, path)
            finally:
                if os.path.exists(temporary):
                    os.unlink(temporary)
            return
        parent = path.rsplit("/", 1)[0]
        self._fs.makedirs(parent, exist_ok=True)
        if self._protocol in _OBJECT_STORES:
            with self._fs.open(path, "wb") as f:
                write(f)
            return
        with self._fs.open(temporary, "wb") as f:
            write(f)
        self._fs.mv(temporary, path)


def _checked(digest: object) -> str:
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise InputError(f"{digest!r} is not an artifact digest (64 hex digits, as put_* return)")
    return digest
