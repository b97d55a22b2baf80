"""Safety configuration changes awaiting a second person (failsafe.changes; the server re-validates and applies).

    POST /config/reload                   a change of the safety configuration → 202 with the change and its diff
    GET  /config/changes                  held changes, newest first (?pending=true: awaiting approval)   read
    GET  /config/changes/{id}             one change                                                     read
    POST /config/changes/{id}/approve     another account with one of commands.yaml's approval.approver_roles:
                                          the files are validated again and must be those shown → applied
                                          (200, like a reload) or refused (409, the change is dropped)
    POST /config/changes/{id}/reject      its requester or an approver drops it

Who may approve is the running vocabulary's rule (the gate's, as for a critical command), not a permission
of the role table: a route only needs a session, the fail-safe layer decides and says why. Every step is
in the fail-safe audit log, the server's audit trail and the journal (config_change rows).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from scada.errors import Refusal, Refused
from server.routes.deps import PREFIX, Reader, ServerDep, workstation_of
from server.routes.errors import ERR

router = APIRouter(prefix=PREFIX, tags=["server"])

ChangeId = Annotated[str, Path(min_length=1, max_length=100)]


class ConfigChangeOut(BaseModel):
    id: str
    state: str = Field(description="awaiting_approval, approved, applied, refused, rejected, expired, superseded")
    requester: str
    workstation: str = ""
    created: float = Field(description="epoch seconds")
    deadline: float = Field(description="epoch seconds: expires unless approved by then")
    diff: list[str] = Field(description="what changes in the safety configuration, one readable line each")
    summary: str = Field("", description="the rest of the reload (devices, equipment, tags)")
    decided_by: str | None = None
    decided_at: float | None = None
    reason: str = ""


class ConfigChangeList(BaseModel):
    changes: list[ConfigChangeOut]


class ReloadPendingOut(BaseModel):
    """A reload that changes the safety configuration: not applied, waiting for a second person."""

    applied: bool = False
    pending: bool = True
    change: ConfigChangeOut
    problems: list[str] = Field(default_factory=list)


class ChangeAppliedOut(BaseModel):
    applied: bool
    generation: int | None = None
    problems: list[str] = Field(default_factory=list)
    changes: dict[str, Any] = Field(default_factory=dict)
    subsystems: dict[str, Any] = Field(default_factory=dict)
    safety: list[str] = Field(default_factory=list)
    change: ConfigChangeOut


@router.get("/config/changes", response_model=ConfigChangeList)
async def config_changes(session: Reader, server: ServerDep,
                         pending: Annotated[bool, Query(description="only changes awaiting approval")] = False
                         ) -> ConfigChangeList:
    items = server.config_change_list()
    return ConfigChangeList(changes=[ConfigChangeOut(**c) for c in items
                                     if not pending or c["state"] == "awaiting_approval"])


@router.get("/config/changes/{change_id}", response_model=ConfigChangeOut)
async def config_change(session: Reader, server: ServerDep, change_id: ChangeId) -> ConfigChangeOut:
    for c in server.config_change_list():
        if c["id"] == change_id:
            return ConfigChangeOut(**c)
    raise Refused(f"configuration change {change_id!r}", "no such change", Refusal.NOT_FOUND)


@router.post("/config/changes/{change_id}/approve", response_model=ChangeAppliedOut, responses={409: ERR})
async def config_change_approve(request: Request, session: Reader, server: ServerDep,
                                change_id: ChangeId) -> Any:
    out = await server.approve_config_change(change_id, session.user, session.role, workstation_of(request))
    if not out["applied"]:  # approved, but it cannot be prepared now, or a component failed to switch (rolled back)
        return JSONResponse({"what": f"approve configuration change {change_id}",
                             "why": "; ".join(out["problems"]), "code": "reload_failed" if out.get("failed")
                             else "config_invalid", "problems": out["problems"], "change": out["change"]},
                            status_code=409)
    return ChangeAppliedOut(**out)


@router.post("/config/changes/{change_id}/reject", response_model=ConfigChangeOut, responses={409: ERR})
async def config_change_reject(request: Request, session: Reader, server: ServerDep,
                               change_id: ChangeId) -> ConfigChangeOut:
    return ConfigChangeOut(**server.reject_config_change(change_id, session.user, session.role,
                                                         workstation_of(request)))
