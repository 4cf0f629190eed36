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
from prometheus_client.parser import text_string_to_metric_families

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
    url: str,
    body: Any = None,
    *,
    token: str | None = None,
    raw: bytes | None = None,
    content_type: str = "application/json",
) -> tuple[int, Any]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    request.add_header("Content-Type", content_type)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


class Server:
    def __init__(self, cwd: Path, *args: str, ready: bool = True) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "NO_COLOR": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "serve", "p.py", "--port", str(self.port),
             "-w", "1", *args],
            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        token = args[args.index("--token") + 1] if "--token" in args else None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                status = call(f"{self.url}/readyz", token=token)[0]
                if status == 200 or not ready:
                    return
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.05)
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
    assert status == 422 and "step 'words' failed on item 'bad'" in failed["detail"]
    assert (failed["id"], failed["step"], failed["error_type"]) == ("bad", "words", "ValueError")
    assert call(f"{url}/items/bad")[1]["state"] == "dead"
    # A failed Lambda invocation answers as Lambda does: 200, the error, and a header.
    request = urllib.request.Request(
        f"{url}/2015-03-31/functions/function/invocations",
        data=json.dumps({"id": "bad2", "text": "poison"}).encode(),
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        assert response.headers["X-Amz-Function-Error"] == "Unhandled"
        body = json.loads(response.read())
    assert body["errorType"] == "ValueError" and "poisoned" in body["errorMessage"]

    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        families = {f.name: f for f in text_string_to_metric_families(response.read().decode())}
    [ingested] = families["conveyor_items_ingested"].samples
    assert ingested.value == 5 and ingested.labels == {"pipeline": "served"}
    [workers] = families["conveyor_workers"].samples
    assert workers.value == 1

    code, err = served.stop()
    assert code == 0, err
    assert "Traceback" not in err


@pytest.mark.slow
def test_bad_requests_get_clear_status_codes(served: Server) -> None:
    url = served.url
    assert call(f"{url}/items", raw=b"{not json")[0] == 422
    assert call(f"{url}/items", raw=b"[1, 2]")[1] == {
        "detail": "body must be a JSON object (the item's fields)"
    }
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
    assert status == 422 and invalid["detail"].startswith("field 'words': ")
    status, missing = call(f"{url}/steps/words", {"text": "no item field"})
    assert (status, missing["detail"]) == (422, "field 'item': Field required")
    assert call(f"{url}/steps/nosuch", {"x": 1})[0] == 404
    status, failed = call(f"{url}/steps/words", {"item": {"text": "poison"}})
    assert status == 422 and (failed["step"], failed["error_type"]) == ("words", "ValueError")
    assert failed["detail"] == "step 'words' failed: ValueError: poisoned"
    status, schema = call(f"{url}/openapi.json")
    assert status == 200 and {"/steps/words", "/steps/doubled", "/items"} <= set(schema["paths"])
    doubled = schema["components"]["schemas"]["doubled_input"]
    assert doubled["properties"]["words"]["type"] == "integer"
    assert doubled["required"] == ["words"]


@pytest.mark.slow
def test_sigterm_drains_refusing_new_items_then_exits_0(tmp_path: Path) -> None:
    (tmp_path / "p.py").write_text(SLOW_PIPELINE)
    server = Server(tmp_path)
    for i in range(4):
        assert call(f"{server.url}/items", {"id": f"d{i}", "text": "a b"})[0] == 202
    server.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    status, refused = call(f"{server.url}/items", {"id": "late", "text": "x"})
    assert status == 503 and refused["detail"] == "the server is shutting down"
    status, ready = call(f"{server.url}/readyz")
    assert status == 503 and ready["draining"] is True
    _, err = server.proc.communicate(timeout=60)
    assert server.proc.returncode == 0, err
    assert "accepted items finished" in err

    again = Server(tmp_path)
    try:
        for i in range(4):
            assert call(f"{again.url}/items/d{i}")[1]["state"] == "done"
        assert call(f"{again.url}/items/late")[0] == 404
    finally:
        again.stop()


STUCK_PIPELINE = """
import time
import conveyor as cv
pipe = cv.Pipeline("served-stuck")

@pipe.step
def words(item: cv.Item) -> int:
    if item["text"] == "slow":
        time.sleep(30)
    return len(item["text"].split())
"""


@pytest.mark.slow
def test_a_drain_past_its_grace_leaves_items_to_the_next_start(tmp_path: Path) -> None:
    (tmp_path / "p.py").write_text(STUCK_PIPELINE)
    server = Server(tmp_path, "--grace", "1s")
    assert call(f"{server.url}/items", {"id": "stuck", "text": "slow"})[0] == 202
    time.sleep(0.3)  # let it start
    started = time.monotonic()
    code, err = server.stop()
    assert code == 0, err
    assert time.monotonic() - started < 15
    assert "stay in the ledger for the next start" in err

    (tmp_path / "p.py").write_text(STUCK_PIPELINE.replace("time.sleep(30)", "pass"))
    again = Server(tmp_path)
    try:
        status, item = call(f"{again.url}/items/stuck?wait=20s")
        assert (status, item["state"]) == (200, "done"), item
    finally:
        again.stop()


LOADING_PIPELINE = """
import os
import time
import conveyor as cv
pipe = cv.Pipeline("served-with-a-model")

@pipe.resource
def model():
    with open("loads.txt", "a") as fh:
        fh.write(f"{os.getpid()}\\n")
    time.sleep(float(os.environ.get("LOAD_SECONDS", "1.5")))
    if os.environ.get("LOAD_FAILS"):
        raise RuntimeError("weights missing")
    return {"scale": 10}

@pipe.step
def scored(item: cv.Item, model) -> int:
    return model["scale"] * len(item["text"])
"""


@pytest.mark.slow
def test_resources_load_once_before_ready_and_cold_start_is_reported(tmp_path: Path) -> None:
    (tmp_path / "p.py").write_text(LOADING_PIPELINE)
    server = Server(tmp_path, ready=False)
    try:
        status, ready = call(f"{server.url}/readyz")
        assert (status, ready["ready"], ready["loading"]) == (503, False, True)
        assert call(f"{server.url}/items", {"text": "early"})[0] == 503
        deadline = time.monotonic() + 30
        while call(f"{server.url}/readyz")[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        status, ready = call(f"{server.url}/readyz")
        assert status == 200 and ready["cold_start_seconds"] >= 1.5
        for i in range(6):
            status, invoked = call(f"{server.url}/invoke", {"text": "x" * i})
            assert (status, invoked["outputs"]) == (200, {"scored": 10 * i})
        assert call(f"{server.url}/steps/scored", {"item": {"text": "abc"}})[1]["output"] == 30
    finally:
        server.stop()
    # Built once, in the server, before the workers were forked; none built it again.
    assert len((tmp_path / "loads.txt").read_text().splitlines()) == 1


@pytest.mark.slow
def test_a_resource_that_fails_to_load_stops_the_server_with_a_clear_error(
    tmp_path: Path,
) -> None:
    (tmp_path / "p.py").write_text(LOADING_PIPELINE)
    env = {**os.environ, "LOAD_SECONDS": "0", "LOAD_FAILS": "1", "NO_COLOR": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "conveyor", "serve", "p.py", "--port", str(free_port())],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "resource 'model' failed to build: RuntimeError: weights missing" in result.stderr
    assert "Traceback" not in result.stderr


UPLOAD_PIPELINE = """
import conveyor as cv
pipe = cv.Pipeline("served-files")

@pipe.step
def lines(item: cv.Item) -> int:
    return len(item.read_text().splitlines())
"""


def upload(url: str, name: str, data: bytes, item_id: str | None = None) -> tuple[int, Any]:
    boundary = "----conveyor-test"
    parts = []
    if item_id is not None:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="id"\r\n\r\n'
            f"{item_id}\r\n".encode()
        )
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        f"Content-Type: text/plain\r\n\r\n".encode()
        + data
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return call(url, raw=b"".join(parts), content_type=f"multipart/form-data; boundary={boundary}")


@pytest.mark.slow
def test_an_uploaded_file_is_an_item_read_like_a_file_of_a_batch(tmp_path: Path) -> None:
    (tmp_path / "p.py").write_text(UPLOAD_PIPELINE)
    server = Server(tmp_path)
    try:
        status, accepted = upload(f"{server.url}/items", "notes.txt", b"a\nb\nc\n")
        assert (status, accepted["id"]) == (202, "notes.txt")
        status, item = call(f"{server.url}/items/notes.txt?wait=20s")
        assert (status, item["outputs"]) == (200, {"lines": 3})
        # The same id with new content is a new version of the item.
        upload(f"{server.url}/items", "notes.txt", b"a\n", item_id="notes.txt")
        deadline = time.monotonic() + 20
        while call(f"{server.url}/items/notes.txt")[1].get("outputs") != {"lines": 1}:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        status, bad = call(
            f"{server.url}/items", raw=b"--x\r\n", content_type="multipart/form-data; boundary=x"
        )
        assert status == 422
        status, bad = upload(f"{server.url}/items", "x.txt", b"x", item_id="../../etc")
        assert (status, bad["detail"].startswith("field 'id' must be")) == (422, True)
    finally:
        server.stop()
