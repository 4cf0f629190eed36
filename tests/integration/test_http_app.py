"""The one HTTP app, served by a real uvicorn on 127.0.0.1: both of its builds (``conveyor
serve``'s and ``conveyor dashboard``'s) sit behind exactly one guard, every router's
protected routes need the token, and every router refuses in the same ``{"detail": ...}``
shape."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

import conveyor as cv
from conveyor.interfaces.http.app import create_app, create_dashboard_app
from conveyor.interfaces.http.auth import Guard

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def build() -> cv.Pipeline:
    pipe = cv.Pipeline("guarded")

    @pipe.step
    def words(item: cv.Item) -> int:
        return len(str(item["text"]).split())

    @pipe.step
    def doubled(words: int) -> int:
        return 2 * words

    return pipe


class Served:
    """``app`` on a real uvicorn in a thread, called over real HTTP."""

    def __init__(self, app: FastAPI) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode()

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    return tmp_path / "ledger.db"


@pytest.fixture
def serving(ledger: Path, tmp_path: Path) -> Iterator[Served]:
    app = create_app(build(), store=str(ledger), workers=0, token=TOKEN, uploads=tmp_path)
    served = Served(app)
    deadline = time.monotonic() + 30
    while served.call("GET", "/readyz", headers=AUTH)[0] != 200:
        assert time.monotonic() < deadline, "the app did not get ready"
        time.sleep(0.05)
    yield served
    served.close()


def test_each_build_of_the_app_has_exactly_one_guard(ledger: Path) -> None:
    for app in (
        create_app(build(), store=str(ledger), workers=0, token=TOKEN),
        create_dashboard_app(str(ledger), token=TOKEN),
    ):
        assert [m.cls for m in app.user_middleware] == [Guard]


#: A protected route of each router: (method, path, body).
PROTECTED = [
    ("POST", "/items", {"text": "a b"}),  # items
    ("GET", "/items/anything", None),
    ("POST", "/invoke", {"text": "a b"}),
    ("POST", "/steps/words", {"item": {"text": "a b"}}),  # steps
    ("GET", "/dashboard/api/runs", None),  # the dashboard's API
    ("POST", "/dashboard/api/runs/x/redrive", {}),
    ("GET", "/metrics", None),  # metrics
    ("GET", "/readyz", None),  # health: readiness tells the run id
]


def test_every_router_needs_the_token(serving: Served) -> None:
    for method, path, body in PROTECTED:
        for headers in (None, {"Authorization": "Bearer wrong"}):
            status, answer = serving.call(method, path, body, headers)
            assert (status, answer) == (401, {"detail": "missing or wrong bearer token"}), path
        assert serving.call(method, path, body, AUTH)[0] != 401, path
    # what the routers declare public stays open: liveness, the dashboard's page and files
    for path in ("/healthz", "/dashboard", "/dashboard/runs/x", "/dashboard/static/app.js"):
        assert serving.call("GET", path)[0] == 200, path


#: A refusal of each router: (method, path, body, status).
REFUSALS = [
    ("GET", "/items/nosuch", None, 404),  # items
    ("POST", "/items", [1, 2], 422),
    ("GET", "/items/x?wait=soon", None, 422),
    ("POST", "/steps/doubled", {"words": "many"}, 422),  # steps
    ("POST", "/steps/nosuch", {}, 404),
    ("GET", "/dashboard/api/runs/nosuch", None, 404),  # the dashboard's API
    ("GET", "/dashboard/api/runs?limit=0", None, 422),
    ("GET", "/dashboard/static/nosuch.js", None, 404),
    ("POST", "/metrics", {}, 405),  # metrics
    ("GET", "/nosuch", None, 404),  # no router at all
]


def test_every_router_refuses_in_the_same_shape(serving: Served) -> None:
    for method, path, body, expected in REFUSALS:
        status, answer = serving.call(method, path, body, AUTH)
        assert status == expected, (path, answer)
        assert isinstance(answer, dict) and set(answer) == {"detail"}, (path, answer)
        assert isinstance(answer["detail"], str) and answer["detail"], path


def test_the_dashboard_app_guards_and_refuses_as_the_serving_app(
    serving: Served, ledger: Path
) -> None:
    board = Served(create_dashboard_app(str(ledger), token=TOKEN))
    try:
        for path in ("/dashboard/api/runs", "/dashboard/api/runs?limit=0"):
            assert board.call("GET", path) == serving.call("GET", path), path
        for path in ("/dashboard/api/runs?limit=0", "/dashboard/api/runs/nosuch"):
            assert board.call("GET", path, headers=AUTH) == serving.call(
                "GET", path, headers=AUTH
            ), path
        assert board.call("GET", "/healthz") == (200, {"status": "ok"})
    finally:
        board.close()
