"""Who may call the HTTP app: the one guard in front of every router (bearer token, declared
body size, refusing items while the app cannot take them) and the loopback rule for binding.

Bound to loopback the app may run without a token; bound elsewhere it needs one, and then
every request needs ``Authorization: Bearer TOKEN`` except the paths the routers declare
public (health, and pages that carry no data)."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Response
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from conveyor.errors import UsageError
from conveyor.interfaces.http.schemas import problem


@dataclass(frozen=True)
class Public:
    """Paths open without the token: these exact ones, and every path under these prefixes."""

    paths: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and (path in self.paths or path.startswith(self.prefixes))

    def __or__(self, other: Public) -> Public:
        return Public(self.paths | other.paths, self.prefixes + other.prefixes)


class Guard:
    """Checks every request before routing (a plain ASGI middleware: no per-request task or
    stream copying): the bearer token unless the path is public, the declared body size when
    ``max_body`` is given, and ``refuse_posts()`` for POSTs (a 503 while the app loads,
    drains or failed)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None,
        public: Public | None = None,
        max_body: int | None = None,
        refuse_posts: Callable[[], Response | None] | None = None,
    ) -> None:
        self.app = app
        self.token = None if token is None else f"Bearer {token}".encode()
        self.public = public if public is not None else Public()
        self.max_body = max_body
        self.refuse_posts = refuse_posts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refused = self._refusal(scope)
            if refused is not None:
                await refused(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> Response | None:
        headers = Headers(scope=scope)
        if self.token is not None and scope["path"] not in self.public:
            given = headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, self.token):
                return problem(401, "missing or wrong bearer token")
        if self.max_body is not None:
            length = headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > self.max_body):
                return problem(413, f"request body over the limit of {self.max_body} bytes")
        if self.refuse_posts is not None and scope["method"] == "POST":
            return self.refuse_posts()
        return None


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only."""
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


def check_binding(host: str, token: str | None) -> None:
    """Refuse to serve beyond loopback without a token."""
    if not is_loopback(host) and not token:
        raise UsageError(
            f"--host {host}: serving beyond this machine needs --token (or CONVEYOR_TOKEN); "
            f"requests must then carry 'Authorization: Bearer TOKEN'"
        )
