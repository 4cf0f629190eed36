"""Bad input never crashes a run: each bad item fails alone, with a clear message; input that is
unusable as a whole is refused before anything is recorded."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import conveyor as cv

pipe = cv.Pipeline("bad-input")


@pipe.step
def length(item: cv.Item) -> int:
    if item.kind is cv.ItemKind.FILE:
        return len(item.read_text())
    return len(str(item["text"]))


def run(source: object, store: Path) -> tuple[cv.RunReport, dict[str, tuple[str, str]]]:
    report = pipe.run(source, store=store, workers=0)  # type: ignore[arg-type]
    db = sqlite3.connect(store)
    states = {
        item: (state, message or "")
        for item, state, message in db.execute(
            "SELECT i.item_id, u.state, u.error_message FROM units u "
            "JOIN items i ON i.run_id = u.run_id AND i.idx = u.item_idx WHERE u.run_id = ?",
            (report.run_id,),
        )
    }
    return report, states


def test_bad_files_fail_alone(tmp_path: Path, store_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "good.txt").write_text("fine")
    (folder / "empty.txt").write_text("")
    (folder / "garbage.bin").write_bytes(bytes(range(256)) * 4)
    (folder / "latin1.txt").write_bytes("café".encode("latin-1"))
    (folder / "gone.txt").symlink_to(tmp_path / "nowhere.txt")  # listed, but cannot be read
    report, states = run(folder, store_path)
    assert report.state is cv.RunState.COMPLETED_WITH_ERRORS
    assert states["good.txt"] == ("done", "")
    assert states["empty.txt"] == ("done", "")  # an empty file is input like any other
    assert states["garbage.bin"][0] == "dead" and "is not valid utf-8" in states["garbage.bin"][1]
    assert (
        states["latin1.txt"][0] == "dead" and "read_text(encoding=...)" in states["latin1.txt"][1]
    )
    assert states["gone.txt"][0] == "dead" and "cannot read" in states["gone.txt"][1]


def test_bad_rows_fail_alone(tmp_path: Path, store_path: Path) -> None:
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_bytes(
        b'{"text": "one"}\n{"text": "tw\n[1, 2]\n{"text": "caf\xe9"}\n\n{"text": "five"}\n'
    )
    _, states = run(jsonl, store_path)
    assert sorted(s for s, _ in states.values()) == ["dead", "dead", "dead", "done", "done"]
    messages = sorted(m for _, m in states.values() if m)
    assert messages == [
        "rows.jsonl line 2 is not valid JSON: Invalid control character at (column 13)",
        "rows.jsonl line 3 is a JSON list, not an object",
        "rows.jsonl line 4 is not valid UTF-8 (byte 14: invalid continuation byte); re-encode it",
    ]


def test_bad_csv_rows_fail_alone(tmp_path: Path, store_path: Path) -> None:
    table = tmp_path / "rows.csv"
    table.write_text('text,n\nhello,1\n"too",many,fields\nbye,2\n')
    _, states = run(table, store_path)
    assert sorted(s for s, _ in states.values()) == ["dead", "done", "done"]
    assert "line 3 has 3 fields, the header has 2" in next(m for _, m in states.values() if m)


@pytest.mark.parametrize("name", ["rows.jsonl", "rows.csv"])
def test_an_empty_table_is_a_run_with_no_items(tmp_path: Path, store_path: Path, name: str) -> None:
    (tmp_path / name).write_text("")
    report, states = run(tmp_path / name, store_path)
    assert report.state is cv.RunState.COMPLETED and report.items == 0 and states == {}


def test_a_truncated_or_empty_parquet_file_is_refused_before_anything_runs(
    tmp_path: Path, store_path: Path
) -> None:
    good = tmp_path / "good.parquet"
    pq.write_table(pa.table({"text": ["a"] * 1000}), good)
    truncated = tmp_path / "truncated.parquet"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    empty = tmp_path / "empty.parquet"
    empty.write_bytes(b"")
    for broken in (truncated, empty):
        with pytest.raises(cv.InputError, match="is not a readable Parquet file"):
            pipe.run(broken, store=store_path, workers=0)
    assert not store_path.exists()  # refused before the ledger was even opened


def test_a_missing_input_is_refused(tmp_path: Path, store_path: Path) -> None:
    with pytest.raises(cv.InputError, match="does not exist"):
        pipe.run(tmp_path / "nope", store=store_path, workers=0)
