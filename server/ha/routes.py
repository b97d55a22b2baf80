"""The failover pair's API (the ``scada ha`` commands use it).

    GET  /ha                 this server's view of the pair: role, leader, lease left, fence     read
    POST /ha/switchover      the active resigns its lease (the standby takes it); journalled     crisis
    POST /ha/force-active    break-glass, body {"confirm_other_is_down": true}: write without    crisis
                             a lease (etcd lost, the other server confirmed down); P1 while forced
    WS   /ha/replication     the standby's replication stream from the active (server.ha.feed),          pair
                             ``Authorization: Pair <the pair's secret>``; not in the OpenAPI document

An operator action (any successful POST, PUT, PATCH or DELETE but logins and the pair's own actions) is
answered only once the standby holds its journal rows, or after ``ha.sync_timeout`` (then with the P2
``ha/not_in_sync``): :class:`SyncOperatorActions`, installed as a middleware by server.api.

The two actions are allowed on a standby (``need(..., on_standby=True)``): that is where they are needed.
A server without an ``ha`` section answers 503 (a single server has no pair).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, WebSocket, WebSocketDisconnect
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scada.errors import Refusal, Refused
from server.auth import Session
from server.components.ha import HaComponent
from server.ha.wire import secret_ok
from server.routes.deps import PREFIX, Reader, ServerDep, need, origin

router = APIRouter(prefix=PREFIX, tags=["ha"])
Supervisor = Annotated[Session, Depends(need("crisis", on_standby=True))]


class ForceActive(BaseModel):
    confirm_other_is_down: bool = False


def _ha(server: Any, what: str) -> HaComponent:
    ha = server.components.get("ha")
    if not isinstance(ha, HaComponent):
        raise Refused(what, "this server is not part of a failover pair (no ha section in its settings)",
                      Refusal.UNAVAILABLE)
    return ha


@router.get("/ha")
async def ha_state(session: Reader, server: ServerDep) -> dict[str, Any]:
    return _ha(server, "failover pair state").state()


@router.post("/ha/switchover")
async def ha_switchover(request: Request, session: Supervisor, server: ServerDep) -> dict[str, Any]:
    ha = _ha(server, "switchover")
    if not await ha.switchover(session.user):
        server.audit.record("control_system", "ha_switchover", "refused", user=session.user, **origin(request),
                            why="not the active server")
        raise Refused("switchover", f"this server ({ha.settings.name}) is {ha.election.role.value}: only the "
                                    f"active server resigns", Refusal.CONFLICT)
    server.audit.record("control_system", "ha_switchover", "ok", user=session.user, **origin(request))
    return ha.state()


@router.post("/ha/force-active")
async def ha_force_active(body: ForceActive, request: Request, session: Supervisor,
                          server: ServerDep) -> dict[str, Any]:
    ha = _ha(server, "force active")
    if not body.confirm_other_is_down:
        raise Refused("force active", "confirm that the other server is down (confirm_other_is_down: true): two "
                                      "servers writing to the field is what the pair exists to prevent",
                      Refusal.INVALID)
    await ha.force_active(session.user)
    server.audit.record("control_system", "ha_force_active", "ok", user=session.user, **origin(request))
    return ha.state()


@router.websocket("/ha/replication")
async def ha_replication(websocket: WebSocket, server: ServerDep) -> None:
    ha = server.components.get("ha")
    if not isinstance(ha, HaComponent) or ha.feed is None or ha.secret is None or \
            not secret_ok(websocket.headers.get("authorization"), ha.secret):
        server.audit.record("request_error", "ha_replication", "refused", source=origin_of(websocket),
                            why="not a pair member (no replication here, or a wrong secret)")
        await websocket.close(code=4401)
        return
    if not ha.feeds():
        await websocket.close(code=4503, reason=f"{ha.settings.name} is not the active server")
        return
    await websocket.accept()
    try:
        await ha.feed.serve(websocket)
        await websocket.close()
    except (WebSocketDisconnect, RuntimeError):  # the standby went away (or closed first): it reconnects
        return


def origin_of(websocket: WebSocket) -> str:
    return f"{websocket.client.host}:{websocket.client.port}" if websocket.client else ""


UNSYNCED = ("/api/v1/auth/", "/api/v1/ha/")  # logins and the pair's own actions: nothing for the standby


class SyncOperatorActions:
    """ASGI middleware: a successful operator action (POST, PUT, PATCH, DELETE) is answered only once the
    standby holds it (bounded: HaComponent.sync). The route has done its work when it starts its answer:
    the wait sits between the two, so a server without a pair pays one dictionary lookup per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH", "DELETE") or \
                str(scope["path"]).startswith(UNSYNCED):
            await self.app(scope, receive, send)
            return
        ha = scope["app"].state.server.components.get("ha") if "app" in scope else None
        if not isinstance(ha, HaComponent):
            await self.app(scope, receive, send)
            return

        async def sync_then_send(message: Message) -> None:
            if message["type"] == "http.response.start" and int(message["status"]) < 400:
                await ha.sync(f"{scope['method']} {scope['path']}")
            await send(message)

        await self.app(scope, receive, sync_then_send)
