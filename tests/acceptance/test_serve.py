"""``conveyor serve`` as a real server on 127.0.0.1, driven over real HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PIPELINE = """
import conveyor as cv
pipe = cv.Pipeline("served")

@pipe.step
def words(item: cv.Item) -> int:
    if item["text"] == "poison":
        raise ValueError("poisoned")
    return len(item["text"].split())

@pipe.step
def doubled(words: int) -> int:
    return 2 * words
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def call(
    url: str, body: Any = None, *, token: str | None = None, raw: bytes | None = None
) -> tuple[int, Any]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


class Server:
    def __init__(self, cwd: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "NO_COLOR": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "serve", "p.py", "--port", str(self.port),
             "-w", "1", *args],
            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if call(f"{self.url}/readyz", token=args[-1] if "--token" in args else None)[0]:
                    return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        raise AssertionError(f"server did not start: {self.proc.stderr}")

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=60)
        return self.proc.returncode, err


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Server]:
    (tmp_path / "p.py").write_text(PIPELINE)
    server = Server(tmp_path)
    yield server
    if server.proc.poll() is None:
        server.stop()


@pytest.mark.slow
def test_ingest_read_invoke_and_lambda_shape(served: Server, tmp_path: Path) -> None:
    url = served.url
    assert call(f"{url}/healthz") == (200, {"status": "ok"})
    status, ready = call(f"{url}/readyz")
    assert status == 200 and ready["ready"] is True

    status, accepted = call(f"{url}/items", {"id": "doc-1", "text": "one two three"})
    assert status == 202 and accepted["id"] == "doc-1"
    status, item = call(f"{url}/items/doc-1?wait=10s")
    assert (status, item) == (200, {"id": "doc-1", "state": "done",
                                    "outputs": {"words": 3, "doubled": 6}})  # fmt: skip

    status, invoked = call(f"{url}/invoke", {"text": "a b"})
    assert status == 200 and invoked["outputs"] == {"words": 2, "doubled": 4}
    status, lam = call(f"{url}/2015-03-31/functions/function/invocations", {"text": "x"})
    assert status == 200 and lam["outputs"] == {"words": 1, "doubled": 2}

    status, failed = call(f"{url}/invoke", {"id": "bad", "text": "poison"})
    assert status == 500 and "step 'words' failed on item 'bad'" in failed["error"]
    assert call(f"{url}/items/bad")[1]["state"] == "dead"

    code, err = served.stop()
    assert code == 0, err
    assert "Traceback" not in err


@pytest.mark.slow
def test_bad_requests_get_clear_status_codes(served: Server) -> None:
    url = served.url
    assert call(f"{url}/items", raw=b"{not json")[0] == 422
    assert call(f"{url}/items", raw=b"[1, 2]")[1] == {"detail": "body must be a JSON object"}
    assert call(f"{url}/items", {"id": "../../etc/passwd x", "text": "t"})[0] == 422
    assert call(f"{url}/items/nope")[0] == 404
    assert call(f"{url}/items/x?wait=soon")[0] == 422
    # Announce an 11 MB body: refused from its headers, before any of it is read.
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as conn:
        conn.sendall(
            b"POST /items HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 11534336\r\n\r\n"
        )
        assert conn.recv(4096).startswith(b"HTTP/1.1 413")


@pytest.mark.slow
def test_a_token_is_required_when_given(tmp_path: Path) -> None:
    (tmp_path / "p.py").write_text(PIPELINE)
    server = Server(tmp_path, "--token", "s3cret")
    try:
        assert call(f"{server.url}/items", {"text": "a"})[0] == 401
        assert call(f"{server.url}/items", {"text": "a"}, token="wrong")[0] == 401
        assert call(f"{server.url}/items", {"text": "a"}, token="s3cret")[0] == 202
    finally:
        server.stop()


def test_binding_beyond_loopback_needs_a_token(tmp_path: Path) -> None:
    (tmp_path / "p.py").write_text(PIPELINE)
    result = subprocess.run(
        [sys.executable, "-m", "conveyor", "serve", "p.py", "--host", "0.0.0.0"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2 and "needs --token" in result.stderr


SLOW_PIPELINE = """
import time
import conveyor as cv
pipe = cv.Pipeline("served-slowly")

@pipe.step
def words(item: cv.Item) -> int:
    time.sleep(0.3)
    return len(item["text"].split())
"""


@pytest.mark.slow
def test_accepted_items_survive_a_killed_server(tmp_path: Path) -> None:
    (tmp_path / "p.py").write_text(SLOW_PIPELINE)
    first = Server(tmp_path)
    ids = []
    for i in range(6):
        status, accepted = call(f"{first.url}/items", {"id": f"d{i}", "text": "a b " * (i + 1)})
        assert status == 202
        ids.append(accepted["id"])
    first.proc.send_signal(signal.SIGKILL)  # mid-work: most items are not finished
    first.proc.communicate(timeout=30)

    second = Server(tmp_path)
    try:
        for i, item_id in enumerate(ids):
            status, item = call(f"{second.url}/items/{item_id}?wait=20s")
            assert (status, item["state"], item["outputs"]) == (200, "done", {"words": 2 * (i + 1)})
    finally:
        code, err = second.stop()
    assert code == 0, err


@pytest.mark.slow
def test_overload_answers_429_with_retry_after(tmp_path: Path) -> None:
    (tmp_path / "p.py").write_text(SLOW_PIPELINE)
    server = Server(tmp_path, "--max-pending", "2")
    try:
        statuses = [call(f"{server.url}/items", {"id": f"d{i}", "text": "a"})[0] for i in range(5)]
        assert statuses[:2] == [202, 202] and 429 in statuses[2:]
        request = urllib.request.Request(
            f"{server.url}/items", data=b'{"text": "more"}', method="POST"
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        refused.value.close()
        assert refused.value.code == 429 and refused.value.headers["Retry-After"] == "1"
        accepted = [f"d{i}" for i, s in enumerate(statuses) if s == 202]
        for item_id in accepted:  # nothing accepted is dropped; the queue drains
            assert call(f"{server.url}/items/{item_id}?wait=20s")[1]["state"] == "done"
        assert call(f"{server.url}/items", {"text": "now there is room"})[0] == 202
    finally:
        server.stop()


@pytest.mark.slow
def test_each_step_is_its_own_api_with_a_schema(served: Server) -> None:
    url = served.url
    assert call(f"{url}/steps/doubled", {"words": 4}) == (200, {"step": "doubled", "output": 8})
    assert call(f"{url}/steps/words", {"item": {"text": "a b c"}}) == (
        200,
        {"step": "words", "output": 3},
    )
    status, invalid = call(f"{url}/steps/doubled", {"words": "many"})
    assert status == 422 and invalid["detail"][0]["loc"] == ["body", "words"]
    status, missing = call(f"{url}/steps/words", {"text": "no item field"})
    assert status == 422 and missing["detail"][0]["loc"] == ["body", "item"]
    assert call(f"{url}/steps/nosuch", {"x": 1})[0] == 404
    status, failed = call(f"{url}/steps/words", {"item": {"text": "poison"}})
    assert status == 500 and failed["error"] == {"type": "ValueError", "message": "poisoned"}
    status, schema = call(f"{url}/openapi.json")
    assert status == 200 and {"/steps/words", "/steps/doubled", "/items"} <= set(schema["paths"])
    doubled = schema["components"]["schemas"]["doubled_input"]
    assert doubled["properties"]["words"]["type"] == "integer"
    assert doubled["required"] == ["words"]
