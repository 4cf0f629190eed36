"""The content-addressed artifact store, on a local folder and on fsspec's memory filesystem."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from conveyor.errors import InputError
from conveyor.ml.artifacts import ArtifactStore
from conveyor.ml.datasets import fingerprint


@pytest.fixture(params=["local", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ArtifactStore]:
    if request.param == "local":
        yield ArtifactStore(tmp_path / "artifacts")
        return
    pytest.importorskip("fsspec")
    url = f"memory://artifacts-{uuid.uuid4().hex}"
    yield ArtifactStore(url)
    import fsspec

    memory = fsspec.filesystem("memory")
    if memory.exists(url.split("://")[1]):  # a test that wrote nothing left nothing
        memory.rm(url.split("://")[1], recursive=True)


def test_bytes_by_their_digest_stored_once(store: ArtifactStore) -> None:
    digest = store.put_bytes(b"model")
    assert digest == hashlib.sha256(b"model").hexdigest()
    assert store.put_bytes(b"model") == digest
    assert store.get_bytes(digest) == b"model" and store.has(digest)
    assert not store.has("0" * 64)


def test_a_table_as_parquet_under_its_fingerprint_written_once(store: ArtifactStore) -> None:
    df = pd.DataFrame({"a": [1, 2, 3], "s": ["x", None, "z"]})
    digest, uri = store.put_table(df)
    assert digest == fingerprint(df) and uri.endswith(f"/{digest[:2]}/{digest[2:]}.parquet")
    again, same = store.put_table(pa.Table.from_pandas(df, preserve_index=False))
    assert (again, same) == (digest, uri)  # the same data as Arrow: not stored twice
    table = store.open_table(digest)
    assert fingerprint(table) == digest
    assert table.to_pandas().equals(df)


def test_missing_bad_and_corrupted_digests(store: ArtifactStore) -> None:
    with pytest.raises(InputError, match="no artifact"):
        store.get_bytes("a" * 64)
    with pytest.raises(InputError, match="no table"):
        store.open_table("b" * 64)
    with pytest.raises(InputError, match="not an artifact digest"):
        store.get_bytes("../../etc/passwd")
    with pytest.raises(InputError, match="not dict"):
        store.put_table({"a": [1]})  # type: ignore[arg-type]


def test_a_corrupted_local_object_is_refused(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    digest = store.put_bytes(b"weights")
    path = tmp_path / "objects" / digest[:2] / digest[2:]
    path.write_bytes(b"tampered")
    with pytest.raises(InputError, match="is corrupted"):
        store.get_bytes(digest)


def test_a_local_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    store.put_bytes(b"x")
    store.put_table(pd.DataFrame({"a": [1]}))
    names = [name for _, _, files in os.walk(tmp_path) for name in files]
    assert len(names) == 2 and not any(".tmp-" in n for n in names)


def test_the_default_location_is_the_working_directorys_conveyor_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = ArtifactStore()
    store.put_bytes(b"x")
    assert store.location == str(tmp_path / ".conveyor" / "artifacts")
    assert (tmp_path / ".conveyor" / "artifacts" / "objects").is_dir()
