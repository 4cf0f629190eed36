"""Bad input never crashes a run: each bad item fails alone, with a clear message; input that is
unusable as a whole is refused before anything is recorded."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import unicodedata
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


# -- odd files and names through the CLI: `conveyor run`, `watch` and `serve` uploads ----------

PIPELINE = """
import conveyor as cv
pipe = cv.Pipeline("odd")

@pipe.step
def text(item: cv.Item) -> str:
    if item.id == "first.txt":  # runs first (inline): what happens to the others after listing
        for name, change in [("gone.txt", None), ("grows.txt", "and more")]:
            path = item.path.parent / name
            if path.exists() and change is None:
                path.unlink()
            elif path.exists():
                path.write_text(path.read_text() + change)
    return item.read_text()
"""
NFC, NFD = unicodedata.normalize("NFC", "café.txt"), unicodedata.normalize("NFD", "café.txt")
ODD_NAMES = ["new\nline.txt", "a..b.txt", "-rf.txt", "x" * 251 + ".txt", NFC, NFD]
CLI = Callable[..., subprocess.CompletedProcess[str]]


def odd_folder(root: Path) -> Path:
    """A folder of every odd thing at once: odd names, a name that is not UTF-8, a link to a
    file outside, and things that are not files (skipped, one warning each)."""
    folder = root / "in"
    folder.mkdir()
    for number, name in enumerate(ODD_NAMES):
        (folder / name).write_text(f"odd #{number}")
    (folder / os.fsdecode(b"bad\xffname.txt")).write_bytes(b"hello")
    (root / "outside.txt").write_text("from outside")
    (folder / "outside.txt").symlink_to(root / "outside.txt")
    (folder / "loop1").symlink_to(folder / "loop2")
    (folder / "loop2").symlink_to(folder / "loop1")
    (folder / "self").symlink_to(folder)
    (folder / "null").symlink_to("/dev/null")
    os.mkfifo(folder / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(folder / "sock"))
    sock.close()  # the socket file stays
    return folder


ODD_IDS = {*ODD_NAMES, "bad\\xffname.txt", "outside.txt"}
SKIPPED = {
    "loop1": "a symlink loop",
    "loop2": "a symlink loop",
    "self": "a link to a folder; links to folders are not followed",
    "null": "a device, not a file",
    "fifo": "a FIFO (named pipe), not a file",
    "sock": "a socket, not a file",
}


def skipped(stderr: str) -> dict[str, str]:
    found = re.findall(r'input\.skipped path=(\S+) reason="([^"]+)"', stderr)
    names = [Path(path).name for path, _ in found]
    assert len(names) == len(set(names)), f"one warning each: {found}"
    return {Path(path).name: reason for path, reason in found}


def outputs(store: str, run_id: str) -> dict[str, str]:
    return {
        row["id"]: row["text"] for row in map(json.loads, export_jsonl(store, run_id).splitlines())
    }


def export_jsonl(store: str, run_id: str) -> str:
    command = ["results", run_id, "--store", store, "--format", "jsonl"]
    result = subprocess.run(
        [sys.executable, "-m", "conveyor", *command],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return result.stdout


def run_id_of(stdout: str) -> str:
    match = re.search(r"run (\S+) (completed|completed_with_errors) in", stdout)
    assert match, stdout
    return match.group(1)


@pytest.mark.slow
def test_odd_names_and_odd_files_in_a_folder(cli: CLI, tmp_path: Path, store_location: str) -> None:
    """A name that is not UTF-8 is an item (id escaped, read through its real bytes) on SQLite
    and PostgreSQL and in the exports; every odd name is its own item (two unicode forms: two
    items); what is not a file is skipped with one warning line each, and nothing blocks."""
    (tmp_path / "p.py").write_text(PIPELINE)
    odd_folder(tmp_path)
    result = cli("run", "p.py", "--input", "in", "--store", store_location, "-w", "0", timeout=60)
    assert (result.returncode, "Traceback" in result.stderr) == (0, False), result.stderr
    assert skipped(result.stderr) == SKIPPED
    texts = outputs(store_location, run_id_of(result.stdout))
    assert set(texts) == ODD_IDS
    assert texts["bad\\xffname.txt"] == "hello"
    assert texts["outside.txt"] == "from outside"  # a link to a file outside is followed
    assert [texts[name] for name in ODD_NAMES] == [f"odd #{n}" for n in range(len(ODD_NAMES))]


def test_a_name_that_is_not_utf8_fails_alone_with_a_plain_message(
    tmp_path: Path, store_path: Path
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / os.fsdecode(b"caf\xe9.txt")).write_bytes(b"\xff\xfe")  # bad name, bad content
    (folder / "ok.txt").write_text("fine")
    report, states = run(folder, store_path)
    assert report.state is cv.RunState.COMPLETED_WITH_ERRORS
    state, message = states["caf\\xe9.txt"]
    assert state == "dead" and message.startswith(f"{folder}/caf\\xe9.txt is not valid utf-8")
    assert states["ok.txt"] == ("done", "")


def test_an_input_folder_that_is_a_symlink_reads_as_its_target(
    cli: CLI, tmp_path: Path, store_path: Path
) -> None:
    (tmp_path / "p.py").write_text(PIPELINE)
    folder = tmp_path / "real"
    folder.mkdir()
    (folder / "a.txt").write_text("alpha")
    (tmp_path / "linked").symlink_to(folder)
    first = cli("run", "p.py", "--input", "real", "--store", str(store_path), "-w", "0")
    second = cli("run", "p.py", "--input", "linked", "--store", str(store_path), "-w", "0")
    assert (first.returncode, second.returncode) == (0, 0), second.stderr
    assert outputs(str(store_path), run_id_of(second.stdout)) == {"a.txt": "alpha"}
    assert re.search(r"text\s+1\s+0\s+1\s+0", second.stdout)  # same id, same key: cached


def test_a_file_that_changes_after_listing(cli: CLI, tmp_path: Path, store_path: Path) -> None:
    """Gone between listing and reading: that item is dead with "cannot read", the run goes on.
    Grown after listing: read as it is when the step reads it; the next run sees new content
    and computes it again."""
    (tmp_path / "p.py").write_text(PIPELINE)
    folder = tmp_path / "in"
    folder.mkdir()
    for name, text in [("first.txt", "1"), ("gone.txt", "2"), ("grows.txt", "start ")]:
        (folder / name).write_text(text)
    result = cli("run", "p.py", "--input", "in", "--store", str(store_path), "-w", "0")
    assert (result.returncode, "Traceback" in result.stderr) == (1, False), result.stderr
    assert "completed_with_errors" in result.stdout
    assert re.search(r"cannot read \S+/gone\.txt: No such file or directory", result.stderr)
    texts = outputs(str(store_path), run_id_of(result.stdout))
    assert texts == {"first.txt": "1", "gone.txt": None, "grows.txt": "start and more"}
    again = cli("run", "p.py", "--input", "in", "--store", str(store_path), "-w", "0")
    assert outputs(str(store_path), run_id_of(again.stdout)) == {
        "first.txt": "1",
        "grows.txt": "start and more",
    }
    # total 2, done 1 (grows.txt: its key is its new content), cached 1 (first.txt)
    assert re.search(r"text\s+2\s+1\s+1\s+0", again.stdout), again.stdout


def finished(ledger: Path) -> dict[str, str]:
    """Item id -> state of its finished units, from a stream's SQLite ledger."""
    try:
        db = sqlite3.connect(ledger, timeout=10)
        rows = db.execute(
            "SELECT i.item_id, u.state FROM units u JOIN items i ON i.run_id = u.run_id "
            "AND i.idx = u.item_idx WHERE u.state IN ('done', 'cached') ORDER BY i.idx"
        ).fetchall()
        db.close()
    except sqlite3.OperationalError:
        return {}
    return dict(rows)


def wait_until(condition: Callable[[], bool], what: Callable[[], object]) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"timed out; {what()}"
        time.sleep(0.1)


@pytest.mark.slow
def test_watch_takes_odd_names_and_skips_what_is_not_a_file(tmp_path: Path) -> None:
    """The same folder under ``conveyor watch``, then, while it watches: a name the watcher
    cannot decode (it looks at the whole folder again), a FIFO, and a file that grows in
    steps (read once it has stopped growing, whole)."""
    (tmp_path / "p.py").write_text(PIPELINE)
    folder = odd_folder(tmp_path)
    ledger = tmp_path / ".conveyor" / "conveyor.db"
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "watch", "p.py", "-i", "in", "-w", "1"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_until(lambda: set(finished(ledger)) == ODD_IDS, lambda: finished(ledger))
        (folder / os.fsdecode(b"late\xfe.txt")).write_bytes(b"late")
        os.mkfifo(folder / "late-fifo")
        with (folder / "grows.txt").open("w") as fh:
            for part in ("one ", "two ", "three"):
                fh.write(part)
                fh.flush()
                time.sleep(0.1)  # shorter than the settle time: still being written
        expected = ODD_IDS | {"late\\xfe.txt", "grows.txt"}
        wait_until(lambda: set(finished(ledger)) == expected, lambda: finished(ledger))
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert (proc.returncode, "Traceback" in err) == (0, False), err
    assert skipped(err) == SKIPPED  # the late FIFO is skipped too (named, or quietly on a rescan)
    run_id = re.search(r"for run (\S+);", err)
    assert run_id, err
    texts = outputs(str(ledger), run_id.group(1))
    assert (texts["late\\xfe.txt"], texts["grows.txt"]) == ("late", "one two three")


def upload(url: str, filename: bytes, item_id: str | None = None) -> tuple[int, Any]:
    """POST a multipart upload whose file name is exactly ``filename`` (bytes on the wire)."""
    part = b'Content-Disposition: form-data; name="file"; filename="' + filename + b'"'
    body = b"--B\r\n" + part + b"\r\nContent-Type: text/plain\r\n\r\n" + filename[:20] + b"\r\n"
    if item_id is not None:
        body += b'--B\r\nContent-Disposition: form-data; name="id"\r\n\r\n' + item_id.encode()
        body += b"\r\n"
    request = urllib.request.Request(url, data=body + b"--B--\r\n", method="POST")
    request.add_header("Content-Type", "multipart/form-data; boundary=B")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.slow
def test_serve_uploads_with_odd_file_names(tmp_path: Path) -> None:
    """Each odd file name through ``conveyor serve``: an item named after the file, or a 422
    that says which name and what to send instead; never a 500, and the server goes on."""
    (tmp_path / "p.py").write_text(PIPELINE)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "serve", "p.py", "--port", str(port), "-w", "1"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:

        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=5) as response:
                    return bool(response.status == 200)
            except (urllib.error.URLError, ConnectionError):
                return False

        wait_until(ready, lambda: "the server did not get ready")
        answers = {
            name: upload(f"{url}/invoke", name.encode())
            for name in ["a..b.txt", "-rf.txt", "x" * 251 + ".txt", NFC, NFD, "..", "../up.txt"]
        }
        for name, (status, body) in answers.items():
            expected = {"..": "upload", "../up.txt": "up.txt"}.get(name, name)
            assert (status, body["id"]) == (200, expected), (name, body)
            assert body["outputs"]["text"] == name.encode()[:20].decode("utf-8", "ignore")
        # bytes that are not UTF-8: the form parser reads the name as Latin-1, a stable id
        assert upload(f"{url}/invoke", b"bad\xffname.txt")[1]["id"] == "bad\xffname.txt"
        # a newline cannot travel in a header; browsers send it as %0A, which is no id
        status, body = upload(f"{url}/invoke", b"new%0Aline.txt")
        assert status == 422 and body["detail"].startswith("the file name 'new%0Aline.txt'")
        assert upload(f"{url}/invoke", b"new%0Aline.txt", item_id="newline")[0] == 200
        for name in (NFC, NFD):  # two items, each found by its own id
            quoted = urllib.parse.quote(name)
            with urllib.request.urlopen(f"{url}/items/{quoted}", timeout=30) as response:
                assert json.loads(response.read())["id"] == name
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert (proc.returncode, "Traceback" in err) == (0, False), err
