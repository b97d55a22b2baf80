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
    /api/v1/backup      POST copies of users, audit trail, journal, historian, leases, command audit log
                        (users.manage)
    /api/v1/workorders  GET/POST · /{id} GET · /{id}/{assign|en-route|on-site|done|cannot-repair|close|cancel|
                        note|link} POST · /from-alarm POST · /kpi GET    (workorder.*; a crew: its own missions)
                        · /{id}/candidates GET (crews ranked by ETA) · /{id}/dispatch POST (mission via the gate)
                        · /{id}/photos POST/GET · /{id}/photos/{name} GET (server.routes.photos)
    /crew/              the crew's tablet page (server.routes.crew_page): missions, on my way / on site / done
    /api/v1/reports     POST citizen report (X-Intake-Token of a channel) · /{ref} GET its status (no login)
                        · GET the reports, never the reporters' contact data                   (workorder.read)
                        (the channels' routes also on the intake's own listener: create_intake_app)
    /api/v1/edges       GET  the edge pollers (Sparkplug): online, birth, store, fingerprint, epoch (read)
    /api/v1/ws          WebSocket: subscribe by pattern/area/equipment/domain; snapshot then deltas
                        every 100 ms (see server.hub for the message format)

One router per area in :mod:`server.routes` (auth, server, tags, equipment, alarms, journal, history,
commands, crisis, users, ws); what they share is in ``server.routes.deps``, the bodies in
``server.routes.models``. The server reaches the routes as ``app.state.server``: nothing here starts it,
and the composition root (:mod:`server.app`) never imports this module.

Every answer carries hardening headers and every request body has a size limit, both enforced before any
route runs (:mod:`server.middleware`; 413 ``too_large``). ``/docs`` is Swagger UI from the assets shipped by
the ``fastapi-offline`` package, served here under ``/docs-assets``: it works in a control room with no way
out, and its Content-Security-Policy allows this host and the page's one inline script (by its hash).

Every refused request answers ``{"what": ..., "why": ..., "code": ...}`` with a 4xx status (503 when a
subsystem is not available) and changes nothing: checks run before any action. A typed refusal's status
comes from one table, ``server.routes.errors.STATUS``. Permission refusals and login failures are written
to the audit trail; passwords and tokens never are.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp

from scada import __version__
from server import middleware
from server.ha import routes as ha_area
from server.routes import (
    alarms,
    auth,
    commands,
    crew_page,
    crisis,
    edges,
    equipment,
    errors,
    history,
    intake,
    journal,
    photos,
    tags,
    users,
    workorders,
    ws,
)
from server.routes import config_changes as change_area
from server.routes import server as server_area
from server.settings import Http

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


#: Swagger UI's script and stylesheet as the ``fastapi-offline`` package ships them (no CDN).
DOCS_ASSETS = Path(fastapi_offline.__file__).parent / "static"
DOCS_PREFIX = "/docs-assets"


class _App(FastAPI):
    """FastAPI with the body limit and the hardening headers OUTSIDE Starlette's error middleware: a 413
    is refused before any parsing, and even a 500 carries the headers."""

    def __init__(self, *, max_body: int, max_body_by_prefix: dict[str, int], hsts: bool, **kwargs: Any) -> None:
        self.max_body, self.max_body_by_prefix, self.hsts = max_body, max_body_by_prefix, hsts
        super().__init__(**kwargs)

    def build_middleware_stack(self) -> ASGIApp:
        return middleware.wrap(super().build_middleware_stack(), max_body=self.max_body,
                               limits=self.max_body_by_prefix, cacheable_prefixes=(DOCS_PREFIX,), hsts=self.hsts)


def docs_page(openapi_url: str, title: str) -> HTMLResponse:
    """Swagger UI from the local assets, with a CSP that allows them and this page's inline start script."""
    page = get_swagger_ui_html(openapi_url=openapi_url, title=title,
                               swagger_js_url=f"{DOCS_PREFIX}/swagger-ui-bundle.js",
                               swagger_css_url=f"{DOCS_PREFIX}/swagger-ui.css",
                               swagger_favicon_url=f"{DOCS_PREFIX}/favicon.png")
    body = bytes(page.body)
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(m).digest()).decode()}'"
                      for m in re.findall(rb"<script>(.*?)</script>", body, re.S))
    csp = ("default-src 'none'; "
           f"script-src 'self' {hashes}; "
           "style-src 'self' 'unsafe-inline'; "  # Swagger UI (React) sets style attributes
           "img-src 'self' data:; "  # its icons are data: URIs
           "connect-src 'self'; "  # fetches /openapi.json, and the calls "Try it out" makes
           "font-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
    return HTMLResponse(body, headers={"Content-Security-Policy": csp})


def _hardened(server: ScadaServer, title: str, **openapi: Any) -> FastAPI:
    """An app of ``server`` with the API's body limits, hardening headers and error bodies (the main API and the
    intake's own listener: one place for what both must enforce)."""
    settings = getattr(server, "settings", None)  # None: an app built only for its OpenAPI document
    http = settings.http if settings is not None else Http()
    app = _App(title=title, version=__version__, docs_url=None, redoc_url=None, **openapi,
               max_body=int(http.max_body), max_body_by_prefix={k: int(v) for k, v in http.max_body_by_prefix.items()},
               hsts=settings is not None and settings.tls is not None)
    app.state.server = server
    errors.install(app)
    return app


def create_app(server: ScadaServer) -> FastAPI:
    """The API of ``server`` (not started here: building the app starts nothing)."""
    app = _hardened(server, "City SCADA API", openapi_url="/openapi.json", description=DESCRIPTION,
                    responses=errors.ERRORS)
    for area in (auth, server_area, tags, equipment, alarms, journal, history, commands, crisis, users, workorders,
                 photos, intake, edges, ws):
        app.include_router(area.router)
    app.include_router(change_area.router)  # safety configuration changes awaiting a second person
    app.include_router(crew_page.router)  # the crew's tablet page (static, not in the OpenAPI document)
    app.include_router(ha_area.router)  # the failover pair (server.ha.routes)
    app.add_middleware(ha_area.SyncOperatorActions)  # an operator action waits for the standby's copy
    app.mount(DOCS_PREFIX, StaticFiles(directory=DOCS_ASSETS), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return docs_page("/openapi.json", f"{app.title} - Swagger UI")

    return app


def create_intake_app(server: ScadaServer) -> FastAPI:
    """The citizen intake channels' routes alone (server.routes.intake.channel_router), with the API's body
    limits, hardening headers and error bodies: what the intake's own listener serves on its own thread and
    event loop (server.components.intake_http). No OpenAPI document: the main API's describes these routes."""
    app = _hardened(server, "City SCADA citizen intake", openapi_url=None)
    app.include_router(intake.channel_router)
    return app
