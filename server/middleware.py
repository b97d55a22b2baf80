"""What every HTTP answer gets before any route runs: a body size limit and the hardening headers.

Both are pure ASGI middlewares (no request object, nothing read ahead), wrapped around the whole
application by :func:`server.api.create_app`, outside Starlette's own error handling, so that a 413 or
a 500 carries the headers too::

    uvicorn ──► SecurityHeaders ──► BodyLimit ──► FastAPI (errors, routes)
                   │                    ├─ Content-Length > limit: 413 at once, the app is never called
                   │                    └─ chunked / streamed: bytes counted as the app reads them; past the
                   │                       limit: 413 sent, the app told the client left (http.disconnect),
                   │                       whatever it answers after that dropped
                   └─ on http.response.start: X-Content-Type-Options, Referrer-Policy, X-Frame-Options,
                      Content-Security-Policy (unless the route set its own, as /docs does),
                      Cache-Control: no-store (except the docs' static assets), HSTS under TLS

The limit is the longest matching path prefix of ``limits`` (settings ``http.max_body_by_prefix``), else
``default`` (``http.max_body``, 1 MiB). The body that follows a 413 is read and thrown away by uvicorn
(the client then gets its answer) for at most its keep-alive timeout: memory never holds it. WebSocket
frames are limited by uvicorn itself (``ws_max_size`` in server.main).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

MIB = 1 << 20

#: The policy of every answer that is not a page: it loads nothing, nobody frames it.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"


def human_size(n: int) -> str:
    return f"{n / MIB:g} MiB" if n >= MIB and n % (MIB // 16) == 0 else f"{n} bytes"


class BodyLimit:
    """Refuse a request body larger than its route's limit with 413, before anything parses it."""

    def __init__(self, app: ASGIApp, default: int = MIB, limits: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.default = default
        # longest prefix first: /api/v1/photos (10 MiB) wins over /api/v1 (1 MiB)
        self.limits = sorted((limits or {}).items(), key=lambda kv: len(kv[0]), reverse=True)

    def limit_for(self, path: str) -> int:
        for prefix, limit in self.limits:
            if path.startswith(prefix):
                return limit
        return self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await self._refuse(scope, send, limit, f"declares {declared} bytes")
            return
        received = 0
        over = False  # the limit was passed: the client is gone as far as the app knows
        refused = False  # our 413 went out: the app's own answer is dropped
        started = False

        async def counted() -> Message:
            nonlocal received, over, refused
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True
                    if not started:
                        await self._refuse(scope, send, limit, f"sent more than {limit} bytes")
                        refused = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, counted, guarded)

    @staticmethod
    async def _refuse(scope: Scope, send: Send, limit: int, detail: str) -> None:
        client = scope.get("client")
        log.info("api: %s %s from %s refused: body %s, limit %d", scope.get("method"), scope.get("path"),
                 client[0] if client else "-", detail, limit)
        body = json.dumps({"what": f"{scope.get('method', '')} {scope.get('path', '')}",
                           "why": f"request body too large: at most {human_size(limit)} on this route ({detail})",
                           "code": "too_large"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:  # h11 refuses a malformed length before we see it; be safe anyway
                return None
    return None


class SecurityHeaders:
    """Hardening headers on every answer; a header the route set itself (a page's CSP) is kept."""

    def __init__(self, app: ASGIApp, *, cacheable_prefixes: tuple[str, ...] = (), hsts: bool = False) -> None:
        self.app = app
        self.cacheable = cacheable_prefixes
        self.headers: list[tuple[str, str]] = [
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),
            ("X-Frame-Options", "DENY"),  # for browsers older than CSP frame-ancestors
            ("Content-Security-Policy", API_CSP),
            ("Cross-Origin-Resource-Policy", "same-origin"),
        ]
        if hsts:
            self.headers.append(("Strict-Transport-Security", "max-age=31536000"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # answers carry live state and user data: no cache keeps them; the docs' assets are static code
        no_store = not scope["path"].startswith(self.cacheable) if self.cacheable else True

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers:
                    if name not in headers:
                        headers[name] = value
                if no_store:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, with_headers)


def wrap(app: Any, *, max_body: int, limits: Mapping[str, int], cacheable_prefixes: tuple[str, ...],
         hsts: bool) -> ASGIApp:
    """``app`` behind the body limit, both behind the hardening headers (the order drawn above)."""
    return SecurityHeaders(BodyLimit(app, max_body, limits), cacheable_prefixes=cacheable_prefixes, hsts=hsts)
