"""The consoles' WebSocket: authenticate, subscribe, then a snapshot and batched deltas (see server.hub).

    client                                   server
      │── connect (Authorization: Bearer …) ──►│   or a first message {"type": "auth", "token": …} (10 s)
      │◄─────────── {"type": "hello", …} ──────│   else {"type": "error", code unauthenticated}, close 4401
      │── {"type": "subscribe", tags, equipment, areas, domains, alarms} ──►
      │◄── snapshot, then delta every batch (≤ 100 ms); unknown filters: error unknown_filter (ignored)
      │── {"type": "ping"} ──► pong · {"type": "unsubscribe"}
      │◄── error token_invalid, close 4401       when the token expires (checked even if the console is silent)

Not in /openapi.json (OpenAPI has no WebSocket operations): the app's description documents it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Annotated

from fastapi import APIRouter, Header, WebSocket, WebSocketDisconnect

from server.auth import Session
from server.hub import Subscription
from server.routes.deps import PREFIX, ServerDep, client_of

log = logging.getLogger(__name__)

router = APIRouter(prefix=PREFIX)


@router.websocket("/ws")
async def ws(websocket: WebSocket, server: ServerDep,
             authorization: Annotated[str | None, Header()] = None) -> None:
    await websocket.accept()
    client = client_of(websocket)

    async def send_error(what: str, why: str, code: str) -> None:
        await websocket.send_text(json.dumps({"type": "error", "what": what, "why": why, "code": code}))

    session: Session | None = None
    token = ""
    if authorization and authorization.lower().startswith("bearer "):
        token = authorization[7:].strip()
    try:
        if not token:
            try:
                first = json.loads(await asyncio.wait_for(websocket.receive_text(), timeout=10))
                if isinstance(first, dict) and first.get("type") == "auth" and isinstance(first.get("token"), str):
                    token = first["token"]
            except (TimeoutError, json.JSONDecodeError, KeyError):
                pass
        session = server.tokens.resolve(token) if token else None
        if session is None:
            await send_error("open a subscription", "authentication required: send an Authorization header "
                             "or a first message {\"type\": \"auth\", \"token\": ...}", "unauthenticated")
            await websocket.close(code=4401)
            return
        if not session.can("read"):  # a crew account sees its own work orders only, never the live city
            await send_error("open a subscription", f"role '{session.role}' lacks permission 'read'", "forbidden")
            await websocket.close(code=4403)
            return
        await websocket.send_text(json.dumps({
            "type": "hello", "user": session.user, "role": session.role, "batch_ms": round(
                server.hub.batch_s * 1000), "server_time_ms": time.time_ns() // 1_000_000,
            "protocol": 1}))
    except (WebSocketDisconnect, RuntimeError):
        return
    c = await server.hub.connect(session.user, websocket.send_text)
    log.info("websocket client %d: %s connected from %s", c.id, session.user, client)
    try:
        while True:
            left_s = (session.expires_ns - time.time_ns()) / 1e9
            try:  # wake at the token's expiry even if the console never speaks
                raw = await asyncio.wait_for(websocket.receive_text(), timeout=max(0.05, min(left_s, 60.0)))
            except TimeoutError:
                raw = ""
            if server.tokens.resolve(token) is None:
                server.hub.push(c, {"type": "error", "what": "use the subscription",
                                    "why": "token expired: log in again", "code": "token_invalid"})
                await asyncio.sleep(0.2)
                await websocket.close(code=4401)
                return
            if not raw:
                continue
            try:
                msg = json.loads(raw)
                if not isinstance(msg, dict):
                    raise ValueError("a message must be a JSON object")
                kind = msg.get("type")
                if kind == "subscribe":
                    sub = Subscription.parse(msg)
                    unknown = server.hub.unknown_filters(sub)
                    server.hub.subscribe(c, sub)
                    if unknown:
                        server.hub.push(c, {"type": "error", "what": "subscribe",
                                            "why": "unknown " + ", ".join(unknown[:20]) + " (ignored)",
                                            "code": "unknown_filter"})
                elif kind == "ping":
                    server.hub.push(c, {"type": "pong", "server_time_ms": time.time_ns() // 1_000_000})
                elif kind == "unsubscribe":
                    server.hub.subscribe(c, Subscription(alarms=False))
                else:
                    raise ValueError(f"'type' must be subscribe, unsubscribe or ping, got {kind!r}")
            except (ValueError, json.JSONDecodeError) as exc:
                server.hub.push(c, {"type": "error", "what": "handle message", "why": str(exc),
                                    "code": "invalid_message"})
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        await server.hub.disconnect(c)
        with contextlib.suppress(Exception):  # the socket may already be closed or broken: nothing left to tell
            await websocket.close()
        log.info("websocket client %d: %s disconnected", c.id, session.user)
