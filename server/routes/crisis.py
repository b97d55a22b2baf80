"""Crisis plans: named sets of commands, tried with a dry run, then run through the fail-safe gate.

    GET  /crisis/plans                  the plans                                     read
    POST /crisis/plans/{name}/dry-run   what the plan would do, nothing sent          crisis
    POST /crisis/plans/{name}/activate  run it (each command through the fail-safe gate)  crisis
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request

from server.auth import Session
from server.routes.deps import PREFIX, Reader, ServerDep, audited, need, require, workstation_of
from server.routes.models import PlanList

router = APIRouter(prefix=PREFIX, tags=["crisis"])

PlanName = Annotated[str, Path(min_length=1, max_length=100)]
Crisis = Annotated[Session, Depends(need("crisis"))]


@router.get("/crisis/plans", response_model=PlanList)
async def crisis_plans(session: Reader, server: ServerDep) -> PlanList:
    return PlanList(plans=require(server, server.crisis, "crisis", "list crisis plans").plans())


@router.post("/crisis/plans/{name}/dry-run")
async def crisis_dry_run(name: PlanName, request: Request, session: Crisis, server: ServerDep) -> dict[str, Any]:
    svc = require(server, server.crisis, "crisis", f"dry run of crisis plan {name!r}")
    return dict(await audited(server, session, request, "crisis_dry_run", lambda: svc.run(
        name, session.user, session.role, workstation_of(request), True)))


@router.post("/crisis/plans/{name}/activate")
async def crisis_activate(name: PlanName, request: Request, session: Crisis, server: ServerDep) -> dict[str, Any]:
    svc = require(server, server.crisis, "crisis", f"activate crisis plan {name!r}")
    return dict(await audited(server, session, request, "crisis_activate", lambda: svc.run(
        name, session.user, session.role, workstation_of(request), False)))
