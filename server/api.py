"""HTTP + WebSocket API for HMI consoles and integrations (FastAPI; OpenAPI at /openapi.json, /docs).

    /api/v1/auth/login  POST {user, password} → {token, expires_ms, user, role}   (no auth)
    /api/v1/auth/logout POST · /api/v1/auth/me GET
    /api/v1/health      GET  per-subsystem status (no auth); + driver stats, buffer levels (with a token)
    /api/v1/tags        GET  ?pattern=&equipment=&area=&domain=&limit=&offset=       (read)
    /api/v1/tags/{name} GET  one tag with its definition                            (read)
    /api/v1/equipment   GET  ?area=&kind=&domain=&q=                                 (read)
    /api/v1/equipment/{id} GET identity sheet: inventory + live tags + alarms + command history
    /api/v1/alarms      GET  active list ?area=&priority=&service=&equipment=&state=&diagnostic=
    /api/v1/alarms/summary GET banner counts · /api/v1/alarms/console GET flood-aware grouped list
    /api/v1/alarms/ack  POST {ids, comment}                                          (alarm.ack)
    /api/v1/alarms/{id}/{shelve|unshelve|suppress|unsuppress|out-of-service|return-to-service|reset} POST
    /api/v1/journal     GET  ?since=&until=&equipment=&commune=&service=&priority=&state=&text=
    /api/v1/history/{raw|aggregate|decimated} GET ?tag=&start=&end=...
    /api/v1/commands    GET (audit history; ?pending=true: tickets awaiting approval/operate) · POST (select or run)
                        · /vocabulary GET
    /api/v1/commands/{id} GET · /{id}/operate · /{id}/approve · /{id}/cancel POST
    /api/v1/crisis/plans GET · /api/v1/crisis/plans/{name}/{dry-run|activate} POST      (crisis)
    /api/v1/config/reload POST (config.reload) · /api/v1/config GET
    /api/v1/users       GET/POST · /api/v1/users/{name} PATCH/DELETE                 (users.manage)
    /api/v1/audit       GET  security audit trail (IEC 62443 CR 2.8 categories)         (audit.read)
    /api/v1/backup      POST consistent copies of users, audit, journal, historian, leases (users.manage)
    /api/v1/ws          WebSocket: subscribe by pattern/area/equipment/domain; snapshot then deltas
                        every 100 ms (see server.hub for the message format)

One router per area in :mod:`server.routes` (auth, server, tags, equipment, alarms, journal, history,
commands, crisis, users, ws); what they share is in ``server.routes.deps``, the bodies in
``server.routes.models``. The server reaches the routes as ``app.state.server``: nothing here starts it,
and the composition root (:mod:`server.app`) never imports this module.

Every refused request answers ``{"what": ..., "why": ..., "code": ...}`` with a 4xx status (503 when a
subsystem is not available) and changes nothing: checks run before any action. A typed refusal's status
comes from one table, ``server.routes.errors.STATUS``. Permission refusals and login failures are written
to the audit trail; passwords and tokens never are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI

from scada import __version__
from server.routes import alarms, auth, commands, crisis, equipment, errors, history, journal, tags, users, ws
from server.routes import server as server_area

if TYPE_CHECKING:
    from server.app import ScadaServer

DESCRIPTION = (
    "Supervisory API of the city control room: tags, equipment, alarms, journal, "
    "trends, commands through the fail-safe gate, crisis plans. Authenticate with "
    "POST /api/v1/auth/login, then send `Authorization: Bearer <token>`.\n\n"
    "WebSocket `/api/v1/ws` (not listed below): authenticate with the same header or a "
    "first message `{\"type\": \"auth\", \"token\": ...}`; the server answers "
    "`hello`; send `{\"type\": \"subscribe\", \"tags\": [globs], \"equipment\": [ids], "
    "\"areas\": [communes], \"domains\": [...], \"alarms\": true}`; you get a `snapshot` "
    "then `delta` messages at most every 100 ms: `tags` rows are `[name, value, quality, "
    "source_ms]`, `alarms` are alarm events; `seq` grows by one per message; a slow "
    "console gets a fresh `snapshot` with reason `resync` instead of a backlog.")


def create_app(server: ScadaServer) -> FastAPI:
    """The API of ``server`` (not started here: building the app starts nothing)."""
    app = FastAPI(title="City SCADA API", version=__version__, docs_url="/docs", redoc_url=None,
                  openapi_url="/openapi.json", description=DESCRIPTION, responses=errors.ERRORS)
    app.state.server = server
    errors.install(app)
    for area in (auth, server_area, tags, equipment, alarms, journal, history, commands, crisis, users, ws):
        app.include_router(area.router)
    return app
