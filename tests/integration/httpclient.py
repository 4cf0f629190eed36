"""A real HTTP client for the app's tests: the app served by a real uvicorn on 127.0.0.1 in a
thread, called over real HTTP (urllib), redirects not followed."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import uvicorn
from fastapi import FastAPI


class Answer:
    """An HTTP answer: status, headers, body."""

    def __init__(self, status: int, headers: Any, body: bytes) -> None:
        self.status_code, self.headers, self.text = status, headers, body.decode()

    def json(self) -> Any:
        return json.loads(self.text)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any) -> None:
        return None


class Client:
    """The app served by a real uvicorn on 127.0.0.1 (in a thread), called over real HTTP."""

    def __init__(self, app: FastAPI) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
        self.server = uvicorn.Server(config)
        threading.Thread(target=self.server.run, daemon=True).start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.opener = urllib.request.build_opener(_NoRedirect)

    def get(self, path: str, headers: dict[str, str] | None = None) -> Answer:
        return self._call("GET", path, None, headers)

    def post(self, path: str, json: Any = None, headers: dict[str, str] | None = None) -> Answer:
        return self._call("POST", path, json, headers)

    def _call(self, method: str, path: str, body: Any, headers: dict[str, str] | None) -> Answer:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with self.opener.open(request, timeout=30) as response:
                return Answer(response.status, response.headers, response.read())
        except urllib.error.HTTPError as exc:
            return Answer(exc.code, exc.headers, exc.read())

    def close(self) -> None:
        self.server.should_exit = True
