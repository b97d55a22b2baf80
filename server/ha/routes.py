"""The failover pair's API (the ``scada ha`` commands use it).

    GET  /ha                 this server's view of the pair: role, leader, lease left, fence     read
    POST /ha/switchover      the active resigns its lease (the standby takes it); journalled     crisis
    POST /ha/force-active    break-glass, body {"confirm_other_is_down": true}: write without    crisis
                             a lease (etcd lost, the other server confirmed down); P1 while forced

The two actions are allowed on a standby (``need(..., on_standby=True)``): that is where they are needed.
A server without an ``ha`` section answers 503 (a single server has no pair).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from scada.errors import Refusal, Refused
from server.auth import Session
from server.components.ha import HaComponent
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
