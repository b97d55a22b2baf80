"""The server itself: health, configuration, reload, backup, security audit trail.

    GET  /health         per-subsystem status (no token: for monitoring); + statistics with a valid token
    GET  /config         what is loaded (site, lang, zone, generation, counts, areas...)        read
    POST /config/reload  validate the files, then apply all or nothing; 409 with every problem  config.reload
                         (202 + the change's diff when the safety configuration changes: server.routes.config_changes)
    POST /backup         consistent copies of users, audit, journal, historian, leases          users.manage
    GET  /audit          the security audit trail (IEC 62443 CR 2.8 categories)                 audit.read
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from server.auth import Session
from server.routes.config_changes import ReloadPendingOut
from server.routes.deps import PREFIX, Bearer, Reader, ServerDep, client_of, ms, need
from server.routes.errors import ERR, ApiError
from server.routes.models import AuditPage, BackupOut, ConfigOut, ReloadOut

router = APIRouter(prefix=PREFIX, tags=["server"])


@router.get("/health",
            description="Per-subsystem status (no authentication: for monitoring). With a valid bearer token, "
                        "also every subsystem's statistics: driver statistics per device, historian buffer "
                        "levels, WebSocket consoles, alarm counts, process RSS/CPU.")
async def health(cred: Bearer, server: ServerDep) -> dict[str, Any]:
    full = server.health()
    if cred is not None and server.tokens.resolve(cred.credentials) is not None:
        return full
    for sub in full["subsystems"].values():
        sub.pop("stats", None)
    full.pop("process", None)
    return full


@router.get("/config", response_model=ConfigOut)
async def config_info(session: Reader, server: ServerDep) -> ConfigOut:
    c = server.config
    # the language the server speaks (its own setting, else the site's tags.yaml lang): a console follows it unless
    # its operator chose one (scada --lang, $SCADA_LANG), so its texts and the pushed alarm messages agree
    return ConfigOut(site=c.site, lang=server.lang, timezone=c.timezone,
                     generation=server.config_generation,
                     loaded_ms=ms(server.config_loaded_ns), files=[str(f) for f in c.files],
                     equipment=len(c.equipment), devices=len(c.devices), tags=len(c.tags),
                     alarm_rules=len(c.alarm_rules), services=list(c.services),
                     areas=sorted({e.commune for e in c.equipment.values()}),
                     domains=sorted({e.domain for e in c.equipment.values()}))


@router.post("/config/reload", response_model=ReloadOut,
             responses={409: ERR, 202: {"model": ReloadPendingOut,
                                        "description": "the safety configuration changes: pending a second "
                                                       "person's approval (POST /config/changes/{id}/approve)"}})
async def reload(request: Request,
                 # a failover standby reloads too (onto the active's files only: server.components.ha)
                 session: Annotated[Session, Depends(need("config.reload", on_standby=True))],
                 server: ServerDep) -> Any:
    result = await server.reload(session.user, client_of(request))
    if result.get("pending"):
        return JSONResponse(ReloadPendingOut(**result).model_dump(), status_code=202)
    if result.get("failed"):  # validated and prepared, then a component failed to switch: all rolled back
        return JSONResponse({"what": "reload the configuration", "why": "; ".join(result["problems"]),
                             "code": "reload_failed", "problems": result["problems"]}, status_code=409)
    if not result["applied"]:
        problems = result["problems"]
        # the error body plus every problem found (the engineer fixes them all in one go)
        return JSONResponse({"what": "reload the configuration",
                             "why": f"{len(problems)} problem(s); nothing was changed",
                             "code": "config_invalid", "problems": problems}, status_code=409)
    return ReloadOut(**result)


@router.post("/backup", response_model=BackupOut)
async def backup(request: Request, session: Annotated[Session, Depends(need("users.manage"))],
                 server: ServerDep) -> BackupOut:
    try:
        out = await asyncio.to_thread(server.backup, session.user, client_of(request))
    except Exception as exc:  # noqa: BLE001 - any store failing (sqlite, OS, influx) makes it unusable: say why
        raise ApiError(503, "back up the server's stores", f"backup failed: {exc}", "backup_failed") from None
    return BackupOut(**out)


@router.get("/audit", response_model=AuditPage)
async def audit(session: Annotated[Session, Depends(need("audit.read"))], server: ServerDep,
                category: Annotated[str | None, Query(max_length=40)] = None,
                type: Annotated[str | None, Query(max_length=60)] = None,
                user: Annotated[str | None, Query(max_length=64)] = None,
                limit: Annotated[int, Query(ge=1, le=10_000)] = 200,
                offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> AuditPage:
    # a SQLite query over a trail that only grows: in a worker thread, never on the server's event loop
    recs = await asyncio.to_thread(server.audit.query, category=category, type_=type, user=user, limit=limit,
                                   offset=offset)
    return AuditPage(records=[r.as_dict() for r in recs])
