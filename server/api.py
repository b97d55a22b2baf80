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

Every refused request answers ``{"what": ..., "why": ..., "code": ...}`` with a 4xx status (503 when a
subsystem is not available) and changes nothing: checks run before any action. Permission refusals
and login failures are written to the audit trail; passwords and tokens never are.
"""

# no `from __future__ import annotations`: FastAPI must see the dependency objects of the closures below
import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from fastapi import Depends, FastAPI, Header, Path, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from scada import __version__
from scada.config.units import slug
from scada.users import PERMISSIONS, ROLES, UserError
from server.auth import Session
from server.hub import Subscription
from server.services import Refused

if TYPE_CHECKING:
    from server.app import ScadaServer

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
MAX_ROWS = 50_000


# ---------------------------------------------------------------------- models
class ErrorBody(BaseModel):
    what: str = Field(description="what was asked")
    why: str = Field(description="why it was refused")
    code: str = Field(description="machine-readable reason")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginIn(_In):
    user: Annotated[str, Field(min_length=1, max_length=64)]
    password: Annotated[str, Field(min_length=1, max_length=1024)]


class LoginOut(BaseModel):
    token: str
    token_type: Literal["bearer"] = "bearer"
    user: str
    role: str
    expires_ms: int


class Me(BaseModel):
    user: str
    role: str
    expires_ms: int
    permissions: list[str]


class TagRow(BaseModel):
    name: str
    value: float | int | bool | str | None
    quality: str
    source_ms: int
    receive_ms: int
    units: str = ""
    equipment: str = ""


class TagPage(BaseModel):
    total: int
    offset: int
    tags: list[TagRow]


class TagDetail(TagRow):
    device: str
    address: str
    type: str
    access: str
    description: str
    enum: dict[str, str] | None = None
    deadband: float


class EquipmentRow(BaseModel):
    id: str
    template: str
    kind: str
    domain: str
    commune: str
    lat: float
    lon: float
    device: str


class EquipmentPage(BaseModel):
    total: int
    offset: int
    equipment: list[EquipmentRow]


class EquipmentSheet(EquipmentRow):
    identity: dict[str, Any]
    params: dict[str, Any]
    source: str
    device_protocol: str
    tags: list[TagRow]
    alarms: list[dict[str, Any]]
    alarm_history: list[dict[str, Any]]
    commands: list[dict[str, Any]]
    notes: list[str]


class AckIn(_In):
    ids: Annotated[list[Annotated[str, Field(min_length=1, max_length=300)]], Field(max_length=5000)] = Field(
        default_factory=list, description="alarm ids (a selection); or give area")
    area: Annotated[str, Field(min_length=1, max_length=100)] | None = Field(
        default=None, description="acknowledge every unacknowledged alarm of this area")
    service: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    comment: Annotated[str, Field(max_length=500)] = ""


class ShelveIn(_In):
    duration_s: Annotated[float, Field(gt=0, le=7 * 86400)] | None = None
    one_shot: bool = False
    reason: Annotated[str, Field(min_length=1, max_length=500)]


class ReasonIn(_In):
    reason: Annotated[str, Field(min_length=1, max_length=500)]


class OutOfServiceIn(_In):
    work_order: Annotated[str, Field(min_length=1, max_length=100)]
    reason: Annotated[str, Field(max_length=500)] = ""


class CommentIn(_In):
    comment: Annotated[str, Field(max_length=500)] = ""


class AlarmList(BaseModel):
    total: int
    alarms: list[dict[str, Any]]


class ActionOut(BaseModel):
    action: str
    results: list[dict[str, Any]]


class JournalPage(BaseModel):
    offset: int
    entries: list[dict[str, Any]]


class HistoryOut(BaseModel):
    tag: str
    start_ms: int
    end_ms: int
    points: list[dict[str, Any]]
    source: str = Field("raw", description="raw points, 'rollup' (raw data expired: hourly roll-ups) or 'mixed'")
    resolution_s: float | None = Field(None, description="roll-up bucket width when the request was finer than "
                                                         "what the expired part keeps (no values invented)")
    raw_from_ms: int | None = Field(None, description="values before this time come from the roll-ups")


class CommandIn(_In):
    target: Annotated[str, Field(min_length=1, max_length=200, description="equipment id, or a group name")]
    verb: Annotated[str, Field(min_length=1, max_length=64)]
    params: dict[str, float | int | str | bool] = Field(default_factory=dict)
    lease_s: Annotated[float, Field(gt=0, le=86400)] | None = None
    targets: Annotated[list[Annotated[str, Field(min_length=1, max_length=200)]], Field(max_length=5000)] | None = None
    comment: Annotated[str, Field(max_length=500)] = ""


class CommandOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    state: str


class CommandList(BaseModel):
    commands: list[dict[str, Any]]


class PlanList(BaseModel):
    plans: list[dict[str, Any]]


class UserOut(BaseModel):
    name: str
    role: str
    disabled: bool
    created_ms: int


class UserIn(_In):
    name: Annotated[str, Field(min_length=1, max_length=64)]
    role: Literal["viewer", "operator", "supervisor", "maintenance", "engineer", "administrator"]
    password: Annotated[str, Field(min_length=1, max_length=1024)]


class UserPatch(_In):
    role: Literal["viewer", "operator", "supervisor", "maintenance", "engineer", "administrator"] | None = None
    disabled: bool | None = None
    password: Annotated[str, Field(min_length=1, max_length=1024)] | None = None


class ReloadOut(BaseModel):
    applied: bool
    generation: int | None = None
    problems: list[str] = Field(default_factory=list)
    changes: dict[str, Any] = Field(default_factory=dict)
    subsystems: dict[str, Any] = Field(default_factory=dict)


class ConfigOut(BaseModel):
    site: str
    timezone: str
    generation: int
    loaded_ms: int
    files: list[str]
    equipment: int
    devices: int
    tags: int
    alarm_rules: int
    services: list[str]
    areas: list[str]
    domains: list[str]


class AuditPage(BaseModel):
    records: list[dict[str, Any]]


class BackupOut(BaseModel):
    path: str
    files: list[str]


# ---------------------------------------------------------------------- errors
class ApiError(Exception):
    def __init__(self, status: int, what: str, why: str, code: str = "refused",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{what}: {why}")
        self.status, self.what, self.why, self.code, self.headers = status, what, why, code, headers


def _error(status: int, what: str, why: str, code: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"what": what, "why": why, "code": code}, status_code=status, headers=headers)


_ERR = {"model": ErrorBody}
ERRORS: dict[int | str, dict[str, Any]] = {400: _ERR, 401: _ERR, 403: _ERR, 404: _ERR, 409: _ERR, 422: _ERR,
                                           429: _ERR, 503: _ERR}


def _ms(ns: int) -> int:
    return int(ns) // 1_000_000


def _finite(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


# ---------------------------------------------------------------------- app
def create_app(server: "ScadaServer") -> FastAPI:
    app = FastAPI(title="City SCADA API", version=__version__, docs_url="/docs", redoc_url=None,
                  openapi_url="/openapi.json",
                  description="Supervisory API of the city control room: tags, equipment, alarms, journal, "
                              "trends, commands through the fail-safe gate, crisis plans. Authenticate with "
                              "POST /api/v1/auth/login, then send `Authorization: Bearer <token>`.\n\n"
                              "WebSocket `/api/v1/ws` (not listed below): authenticate with the same header or a "
                              "first message `{\"type\": \"auth\", \"token\": ...}`; the server answers "
                              "`hello`; send `{\"type\": \"subscribe\", \"tags\": [globs], \"equipment\": [ids], "
                              "\"areas\": [communes], \"domains\": [...], \"alarms\": true}`; you get a `snapshot` "
                              "then `delta` messages at most every 100 ms: `tags` rows are `[name, value, quality, "
                              "source_ms]`, `alarms` are alarm events; `seq` grows by one per message; a slow "
                              "console gets a fresh `snapshot` with reason `resync` instead of a backlog.",
                  responses=ERRORS)
    bearer = HTTPBearer(auto_error=False, description="token from POST /api/v1/auth/login")

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.what, exc.why, exc.code, exc.headers)

    @app.exception_handler(Refused)
    async def _refused(request: Request, exc: Refused) -> JSONResponse:
        return _error(exc.status, exc.what, exc.why, exc.code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for e in exc.errors()[:10]:
            loc = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body", "query", "path"))
            parts.append(f"{loc or 'request'}: {e.get('msg', 'invalid')}")
        return _error(422, f"{request.method} {request.url.path}", "; ".join(parts) or "invalid request",
                      "invalid_request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        why = str(exc.detail) if exc.detail else "not allowed"
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "refused")
        return _error(exc.status_code, f"{request.method} {request.url.path}", why, code,
                      dict(exc.headers) if exc.headers else None)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:  # pragma: no cover - a bug
        log.exception("api: %s %s failed", request.method, request.url.path)
        return _error(500, f"{request.method} {request.url.path}", f"internal error: {type(exc).__name__}",
                      "internal")

    # ------------------------------------------------------------------ auth dependencies
    def client_of(request: Request) -> str:
        return request.client.host if request.client else ""

    def workstation_of(request: Request) -> str:
        ws = request.headers.get("x-workstation", "")[:64]
        return ws or client_of(request)

    def session_dep(request: Request,
                    cred: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Session:
        if cred is None or cred.scheme.lower() != "bearer" or not cred.credentials:
            raise ApiError(401, f"{request.method} {request.url.path}",
                           "authentication required: log in with POST /api/v1/auth/login and send "
                           "'Authorization: Bearer <token>'", "unauthenticated", {"WWW-Authenticate": "Bearer"})
        session = server.tokens.resolve(cred.credentials)
        if session is None:
            raise ApiError(401, f"{request.method} {request.url.path}", "token expired or unknown: log in again",
                           "token_invalid", {"WWW-Authenticate": "Bearer"})
        return session

    def need(permission: str) -> Callable[..., Session]:
        roles = sorted(PERMISSIONS[permission])

        def dep(request: Request, session: Annotated[Session, Depends(session_dep)]) -> Session:
            if not session.can(permission):
                server.audit.record("request_error", "permission_denied", "refused", user=session.user,
                                    source=client_of(request), path=request.url.path, method=request.method,
                                    permission=permission, role=session.role)
                raise ApiError(403, f"{request.method} {request.url.path}",
                               f"role '{session.role}' lacks permission '{permission}' "
                               f"(held by {', '.join(roles)})", "forbidden")
            return session

        return dep

    Reader = Annotated[Session, Depends(need("read"))]

    def require(service: Any, name: str, what: str) -> Any:
        if service is None:
            st = server.subsystems.get(name)
            why = f"{name} not available" + (f": {st.detail}" if st and st.detail else "")
            raise ApiError(503, what, why, "unavailable")
        return service

    async def audited(session: Session, request: Request, what: str, call: Callable[[], Awaitable[Any]]) -> Any:
        try:
            return await call()
        except Refused as exc:
            server.audit.record("control_system", what, "refused", user=session.user,
                                source=workstation_of(request), why=exc.why)
            raise

    # ------------------------------------------------------------------ auth
    @app.post(f"{PREFIX}/auth/login", response_model=LoginOut, tags=["auth"],
              responses={401: _ERR, 429: _ERR})
    async def login(body: LoginIn, request: Request) -> LoginOut:
        client = client_of(request)
        what = f"log in as {body.user!r}"
        wait = server.limiter.retry_after(body.user, client)
        if wait > 0:
            server.audit.record("access_control", "login", "locked_out", user=body.user, source=client,
                                retry_after_s=round(wait, 1))
            raise ApiError(429, what, f"too many failed logins: try again in {math.ceil(wait)} s", "locked_out",
                           {"Retry-After": str(math.ceil(wait))})
        user = await asyncio.to_thread(server.users.verify, body.user, body.password)
        if user is None:
            lock = server.limiter.failure(body.user, client)
            server.audit.record("access_control", "login", "failure", user=body.user, source=client,
                                lockout_s=lock)
            raise ApiError(401, what, "unknown user, wrong password or disabled account", "login_failed")
        server.limiter.success(body.user, client)
        token, session = server.tokens.issue(user, client)
        server.audit.record("access_control", "login", "success", user=user.name, source=client, role=user.role)
        return LoginOut(token=token, user=user.name, role=user.role, expires_ms=_ms(session.expires_ns))

    @app.post(f"{PREFIX}/auth/logout", status_code=204, tags=["auth"])
    async def logout(request: Request, session: Annotated[Session, Depends(session_dep)],
                     cred: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        if cred is not None:
            server.tokens.revoke(cred.credentials)
        server.audit.record("access_control", "logout", "ok", user=session.user, source=client_of(request))

    @app.get(f"{PREFIX}/auth/me", response_model=Me, tags=["auth"])
    async def me(session: Annotated[Session, Depends(session_dep)]) -> Me:
        return Me(user=session.user, role=session.role, expires_ms=_ms(session.expires_ns),
                  permissions=sorted(p for p in PERMISSIONS if session.can(p)))

    # ------------------------------------------------------------------ health / config
    @app.get(f"{PREFIX}/health", tags=["server"],
             description="Per-subsystem status (no authentication: for monitoring). With a valid bearer token, "
                         "also every subsystem's statistics: driver statistics per device, historian buffer "
                         "levels, WebSocket consoles, alarm counts, process RSS/CPU.")
    async def health(cred: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> dict[str, Any]:
        full = server.health()
        if cred is not None and server.tokens.resolve(cred.credentials) is not None:
            return full
        for sub in full["subsystems"].values():
            sub.pop("stats", None)
        full.pop("process", None)
        return full

    @app.get(f"{PREFIX}/config", response_model=ConfigOut, tags=["server"])
    async def config_info(session: Reader) -> ConfigOut:
        c = server.config
        return ConfigOut(site=c.site, timezone=c.timezone, generation=server.config_generation,
                         loaded_ms=_ms(server.config_loaded_ns), files=[str(f) for f in c.files],
                         equipment=len(c.equipment), devices=len(c.devices), tags=len(c.tags),
                         alarm_rules=len(c.alarm_rules), services=list(c.services),
                         areas=sorted({e.commune for e in c.equipment.values()}),
                         domains=sorted({e.domain for e in c.equipment.values()}))

    @app.post(f"{PREFIX}/config/reload", response_model=ReloadOut, tags=["server"],
              responses={409: _ERR})
    async def reload(request: Request, session: Annotated[Session, Depends(need("config.reload"))]) -> Any:
        result = await server.reload(session.user, workstation_of(request))
        if not result["applied"]:
            problems = result["problems"]
            return JSONResponse({"what": "reload the configuration",
                                 "why": f"{len(problems)} problem(s); nothing was changed",
                                 "code": "config_invalid", "problems": problems}, status_code=409)
        return ReloadOut(**result)

    # ------------------------------------------------------------------ tags
    def tag_rows(idx: Any) -> list[TagRow]:
        db = server.tagdb
        out = []
        for i in np.asarray(idx, dtype=np.int64).tolist():
            t = db.defs[i]
            s = db.read(t.name)
            out.append(TagRow(name=t.name, value=_finite(s.value), quality=s.quality.label,
                              source_ms=_ms(s.source_ns), receive_ms=_ms(s.receive_ns), units=t.units,
                              equipment=t.equipment))
        return out

    def area_equipment(area: str) -> list[str]:
        s = slug(area)
        return [e.id for e in server.config.equipment.values() if e.commune == area or slug(e.commune) == s]

    @app.get(f"{PREFIX}/tags", response_model=TagPage, tags=["tags"])
    async def tags(session: Reader,
                   pattern: Annotated[str | None, Query(max_length=300, description="glob on tag names")] = None,
                   equipment: Annotated[str | None, Query(max_length=100)] = None,
                   area: Annotated[str | None, Query(max_length=100, description="commune")] = None,
                   domain: Annotated[str | None, Query(max_length=100)] = None,
                   limit: Annotated[int, Query(ge=1, le=MAX_ROWS)] = 1000,
                   offset: Annotated[int, Query(ge=0)] = 0) -> TagPage:
        db = server.tagdb
        if pattern is None and equipment is None and area is None and domain is None:
            raise ApiError(400, "list tags", "give at least one of pattern, equipment, area, domain "
                                             "(the city has too many tags for one unfiltered answer)",
                           "filter_required")
        mask = np.ones(len(db), dtype=bool)
        if pattern is not None:
            m = np.zeros(len(db), dtype=bool)
            m[db.match(pattern)] = True
            mask &= m
        if equipment is not None:
            m = np.zeros(len(db), dtype=bool)
            m[db.equipment_indices(equipment)] = True
            mask &= m
        if area is not None or domain is not None:
            ids = set(area_equipment(area)) if area is not None else set(server.config.equipment)
            if domain is not None:
                ids = {i for i in ids if server.config.equipment[i].domain == domain}
            m = np.zeros(len(db), dtype=bool)
            for eq in ids:
                m[db.equipment_indices(eq)] = True
            mask &= m
        idx = np.flatnonzero(mask)
        return TagPage(total=int(idx.size), offset=offset, tags=tag_rows(idx[offset:offset + limit]))

    @app.get(f"{PREFIX}/tags/{{name:path}}", response_model=TagDetail, tags=["tags"])
    async def tag(session: Reader, name: Annotated[str, Path(max_length=300)]) -> TagDetail:
        i = server.tagdb.index.get(name)
        if i is None:
            raise ApiError(404, f"read tag {name!r}", "no such tag in the configuration", "not_found")
        row = tag_rows([i])[0]
        t = server.tagdb.defs[i]
        return TagDetail(**row.model_dump(), device=t.device, address=t.address, type=t.dtype, access=t.access,
                         description=t.description, deadband=t.deadband,
                         enum={str(k): v for k, v in t.enum.items()} if t.enum else None)

    # ------------------------------------------------------------------ equipment
    def eq_row(e: Any) -> EquipmentRow:
        return EquipmentRow(id=e.id, template=e.template, kind=e.kind, domain=e.domain, commune=e.commune,
                            lat=e.lat, lon=e.lon, device=e.device)

    @app.get(f"{PREFIX}/equipment", response_model=EquipmentPage, tags=["equipment"])
    async def equipment_list(session: Reader,
                             area: Annotated[str | None, Query(max_length=100)] = None,
                             kind: Annotated[str | None, Query(max_length=100)] = None,
                             domain: Annotated[str | None, Query(max_length=100)] = None,
                             q: Annotated[str | None, Query(max_length=100, description="text in id")] = None,
                             limit: Annotated[int, Query(ge=1, le=MAX_ROWS)] = 1000,
                             offset: Annotated[int, Query(ge=0)] = 0) -> EquipmentPage:
        items = list(server.config.equipment.values())
        if area is not None:
            s = slug(area)
            items = [e for e in items if e.commune == area or slug(e.commune) == s]
        if kind is not None:
            items = [e for e in items if e.kind == kind or e.template == kind]
        if domain is not None:
            items = [e for e in items if e.domain == domain]
        if q:
            ql = q.lower()
            items = [e for e in items if ql in e.id.lower()]
        return EquipmentPage(total=len(items), offset=offset,
                             equipment=[eq_row(e) for e in items[offset:offset + limit]])

    @app.get(f"{PREFIX}/equipment/{{eq_id}}", response_model=EquipmentSheet, tags=["equipment"])
    async def equipment_sheet(session: Reader, eq_id: Annotated[str, Path(max_length=100)],
                              history: Annotated[int, Query(ge=0, le=1000)] = 50) -> EquipmentSheet:
        e = server.config.equipment.get(eq_id)
        if e is None:
            raise ApiError(404, f"identity sheet of {eq_id!r}", "no such equipment in the configuration",
                           "not_found")
        notes: list[str] = []
        active: list[dict[str, Any]] = []
        past: list[dict[str, Any]] = []
        cmds: list[dict[str, Any]] = []
        if server.alarms is not None:
            active = [a for a in server.alarms.active() if a.get("equipment") == eq_id]
        else:
            notes.append("alarm engine not available")
        if server.journal is not None:
            past = await asyncio.to_thread(server.journal.query, {"equipment": eq_id}, history, 0) if history else []
        else:
            notes.append("journal not available")
        if server.commands is not None:
            cmds = await asyncio.to_thread(server.commands.history, eq_id, history) if history else []
        else:
            notes.append("command gate not available")
        dev = server.config.devices.get(e.device)
        return EquipmentSheet(**eq_row(e).model_dump(), identity=dict(e.identity), params=dict(e.params),
                              source=e.source, device_protocol=dev.protocol if dev else "",
                              tags=tag_rows(server.tagdb.equipment_indices(eq_id)), alarms=active,
                              alarm_history=past, commands=cmds, notes=notes)

    # ------------------------------------------------------------------ alarms
    @app.get(f"{PREFIX}/alarms", response_model=AlarmList, tags=["alarms"])
    async def alarms(session: Reader,
                     area: Annotated[str | None, Query(max_length=100)] = None,
                     priority: Annotated[str | None, Query(max_length=20, description="1..4 or diagnostic; "
                                                                      "'1,2' for several")] = None,
                     service: Annotated[str | None, Query(max_length=100)] = None,
                     equipment: Annotated[str | None, Query(max_length=100)] = None,
                     state: Annotated[str | None, Query(max_length=100)] = None,
                     diagnostic: Annotated[bool, Query(description="include diagnostic (never annunciated) "
                                                                   "events")] = False,
                     limit: Annotated[int, Query(ge=1, le=MAX_ROWS)] = 5000) -> AlarmList:
        svc = require(server.alarms, "alarms", "list alarms")
        items: list[dict[str, Any]] = svc.active(diagnostic=diagnostic, limit=MAX_ROWS)
        if area is not None:
            items = [a for a in items if slug(str(a.get("area", ""))) == slug(area)]
        if priority is not None:
            wanted = {p.strip() for p in priority.split(",")}
            items = [a for a in items if str(a.get("priority")) in wanted]
        for key, val in (("service", service), ("equipment", equipment), ("state", state)):
            if val is not None:
                items = [a for a in items if str(a.get(key)) == val]
        return AlarmList(total=len(items), alarms=items[:limit])

    @app.get(f"{PREFIX}/alarms/summary", tags=["alarms"])
    async def alarm_summary(session: Reader,
                            area: Annotated[str | None, Query(max_length=100)] = None) -> dict[str, Any]:
        return dict(require(server.alarms, "alarms", "alarm summary").summary(area))

    @app.get(f"{PREFIX}/alarms/console", tags=["alarms"],
             description="The operator's list: priority 1 individually on top; the others grouped (by equipment, "
                         "rule, area or service) while a flood lasts in the area (or as asked with grouped).")
    async def alarm_console(session: Reader,
                            area: Annotated[str | None, Query(max_length=100)] = None,
                            service: Annotated[str | None, Query(max_length=100)] = None,
                            group_by: Annotated[Literal["equipment", "cabinet", "rule", "area", "service"],
                                                Query()] = "equipment",
                            grouped: Annotated[bool | None, Query()] = None,
                            limit: Annotated[int, Query(ge=1, le=5000)] = 200) -> dict[str, Any]:
        svc = require(server.alarms, "alarms", "alarm console")
        return dict(svc.console(area, service, group_by, grouped, limit))

    def alarm_action(action: str, ids: list[str], params: dict[str, Any],
                     session: Session, request: Request) -> ActionOut:
        svc = require(server.alarms, "alarms", f"{action} alarm(s)")
        try:
            results = svc.action(action, ids, session.user, {**params, "workstation": workstation_of(request)})
        except Refused as exc:
            server.audit.record("control_system", f"alarm_{action}", "refused", user=session.user,
                                source=workstation_of(request), ids=ids[:20], why=exc.why)
            raise
        return ActionOut(action=action, results=results)

    @app.post(f"{PREFIX}/alarms/ack", response_model=ActionOut, tags=["alarms"])
    async def ack(body: AckIn, request: Request,
                  session: Annotated[Session, Depends(need("alarm.ack"))]) -> ActionOut:
        if not body.ids and body.area is None:
            raise ApiError(422, "acknowledge alarms", "give ids (a selection) or area", "invalid_request")
        return alarm_action("ack", body.ids, {"comment": body.comment, "area": body.area,
                                              "service": body.service}, session, request)

    AlarmId = Annotated[str, Path(min_length=1, max_length=300)]

    def one_alarm_route(action: str, permission: str, body_model: type[_In],
                        check: Callable[[str, Any], None] | None = None) -> None:
        """POST /alarms/{alarm_id}/<action, dashed>: ``action`` on one alarm, the body's fields as its params.

        The route is named after the action (OpenAPI operationId and summary, as a ``def <action>`` would be).
        """

        # no docstring on the endpoint: FastAPI would publish it as the operation's description
        async def endpoint(alarm_id: AlarmId, body: _In, request: Request,
                           session: Annotated[Session, Depends(need(permission))]) -> ActionOut:
            if check is not None:
                check(alarm_id, body)
            return alarm_action(action, [alarm_id], body.model_dump(), session, request)

        # FastAPI validates and documents the body by the annotation it reads from the signature: the route's model
        endpoint.__annotations__["body"] = body_model
        app.post(f"{PREFIX}/alarms/{{alarm_id:path}}/{action.replace('_', '-')}", response_model=ActionOut,
                 tags=["alarms"], name=action)(endpoint)

    def shelve_needs_an_end(alarm_id: str, body: ShelveIn) -> None:
        if body.duration_s is None and not body.one_shot:
            raise ApiError(422, f"shelve alarm {alarm_id!r}", "give duration_s or one_shot: true", "invalid_request")

    one_alarm_route("shelve", "alarm.shelve", ShelveIn, shelve_needs_an_end)
    one_alarm_route("unshelve", "alarm.shelve", CommentIn)
    one_alarm_route("suppress", "alarm.suppress", ReasonIn)
    one_alarm_route("unsuppress", "alarm.suppress", CommentIn)
    one_alarm_route("out_of_service", "alarm.out_of_service", OutOfServiceIn)
    one_alarm_route("return_to_service", "alarm.out_of_service", CommentIn)
    one_alarm_route("reset", "alarm.reset", CommentIn)

    # ------------------------------------------------------------------ journal
    def _time(value: datetime | None, default_ns: int, what: str) -> int:
        if value is None:
            return default_ns
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        try:
            return int(value.timestamp() * 1e9)
        except (OverflowError, ValueError, OSError):
            raise ApiError(422, what, f"time out of range, got {value!r}", "invalid_request") from None

    @app.get(f"{PREFIX}/journal", response_model=JournalPage, tags=["journal"])
    async def journal(session: Reader,
                      since: Annotated[datetime | None, Query(description="ISO 8601, UTC if no offset")] = None,
                      until: Annotated[datetime | None, Query()] = None,
                      equipment: Annotated[str | None, Query(max_length=100)] = None,
                      commune: Annotated[str | None, Query(max_length=100)] = None,
                      service: Annotated[str | None, Query(max_length=100)] = None,
                      priority: Annotated[str | None, Query(max_length=20)] = None,
                      state: Annotated[str | None, Query(max_length=100)] = None,
                      text: Annotated[str | None, Query(max_length=200)] = None,
                      user: Annotated[str | None, Query(max_length=64)] = None,
                      limit: Annotated[int, Query(ge=1, le=10_000)] = 200,
                      offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> JournalPage:
        svc = require(server.journal, "journal", "query the journal")
        filters: dict[str, Any] = {k: v for k, v in (
            ("equipment", equipment), ("commune", commune), ("service", service), ("priority", priority),
            ("state", state), ("text", text), ("user", user)) if v is not None}
        if since is not None:
            filters["since_ns"] = _time(since, 0, "query the journal")
        if until is not None:
            filters["until_ns"] = _time(until, 0, "query the journal")
        rows = await asyncio.to_thread(svc.query, filters, limit, offset)
        return JournalPage(offset=offset, entries=rows)

    # ------------------------------------------------------------------ historian
    def _range(tag: str, start: datetime | None, end: datetime | None, what: str) -> tuple[int, int]:
        if tag not in server.tagdb.index:
            raise ApiError(404, what, f"no tag {tag!r} in the configuration", "not_found")
        end_ns = _time(end, time.time_ns(), what)
        start_ns = _time(start, end_ns - 3600 * 10**9, what)
        if start_ns >= end_ns:
            raise ApiError(422, what, "start must be before end", "invalid_request")
        return start_ns, end_ns

    async def history(what: str, tag: str, start: datetime | None, end: datetime | None,
                      read: Callable[[Any, int, int], Any],
                      check: Callable[[int, int], None] | None = None) -> HistoryOut:
        """The path every history route shares: historian up, tag and range checked, ``read(historian, start_ns,
        end_ns)`` run off the event loop."""
        svc = require(server.historian, "historian", what)
        s, e = _range(tag, start, end, what)
        if check is not None:
            check(s, e)
        got = await asyncio.to_thread(read, svc, s, e)
        if isinstance(got, dict):  # points with their provenance (aggregate, decimated)
            return HistoryOut(tag=tag, start_ms=_ms(s), end_ms=_ms(e), **got)
        return HistoryOut(tag=tag, start_ms=_ms(s), end_ms=_ms(e), points=got)

    Tag = Annotated[str, Query(min_length=1, max_length=300)]
    Start = Annotated[datetime | None, Query(description="ISO 8601; default end - 1 h")]
    End = Annotated[datetime | None, Query(description="ISO 8601; default now")]

    @app.get(f"{PREFIX}/history/raw", response_model=HistoryOut, tags=["history"])
    async def history_raw(session: Reader, tag: Tag, start: Start = None, end: End = None,
                          limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000) -> HistoryOut:
        return await history(f"raw history of {tag!r}", tag, start, end,
                             lambda svc, s, e: svc.raw(tag, s, e, limit))

    @app.get(f"{PREFIX}/history/aggregate", response_model=HistoryOut, tags=["history"])
    async def history_aggregate(session: Reader, tag: Tag, start: Start = None, end: End = None,
                                interval_s: Annotated[float, Query(gt=0, le=366 * 86400)] = 60.0,
                                functions: Annotated[str, Query(max_length=100, description="comma list of min, "
                                                     "max, avg, last, count, twa")] = "min,max,avg") -> HistoryOut:
        what = f"aggregated history of {tag!r}"
        fns = [f.strip() for f in functions.split(",") if f.strip()]
        bad = [f for f in fns if f not in ("min", "max", "avg", "last", "count", "twa", "first")]
        if bad or not fns:
            raise ApiError(422, what, f"functions must be among min, max, avg, last, count, twa, first, got {bad}",
                           "invalid_request")

        def not_too_many(s: int, e: int) -> None:
            if (e - s) / 1e9 / interval_s > 100_000:
                raise ApiError(422, what, "more than 100,000 intervals: widen interval_s", "too_many_points")

        return await history(what, tag, start, end, lambda svc, s, e: svc.aggregate(tag, s, e, interval_s, fns),
                             not_too_many)

    @app.get(f"{PREFIX}/history/decimated", response_model=HistoryOut, tags=["history"])
    async def history_decimated(session: Reader, tag: Tag, start: Start = None, end: End = None,
                                pixels: Annotated[int, Query(ge=1, le=20_000)] = 2000) -> HistoryOut:
        return await history(f"decimated history of {tag!r}", tag, start, end,
                             lambda svc, s, e: svc.decimated(tag, s, e, pixels))

    # ------------------------------------------------------------------ commands
    @app.get(f"{PREFIX}/commands/vocabulary", tags=["commands"])
    async def vocabulary(session: Reader) -> dict[str, Any]:
        return dict(require(server.commands, "failsafe", "list command verbs").vocabulary())

    @app.get(f"{PREFIX}/commands", response_model=CommandList, tags=["commands"])
    async def command_list(session: Reader, equipment: Annotated[str | None, Query(max_length=100)] = None,
                           pending: Annotated[bool, Query(description="only tickets awaiting approval or "
                                                                      "operate")] = False,
                           limit: Annotated[int, Query(ge=1, le=10_000)] = 200) -> CommandList:
        svc = require(server.commands, "failsafe", "list commands")
        if pending:
            items = [t for t in svc.pending() if equipment is None or equipment in t.get("targets", [])]
            return CommandList(commands=items[:limit])
        return CommandList(commands=await asyncio.to_thread(svc.history, equipment, limit))

    @app.post(f"{PREFIX}/commands", response_model=CommandOut, tags=["commands"])
    async def command_submit(body: CommandIn, request: Request,
                             session: Annotated[Session, Depends(need("command.operate"))]) -> Any:
        svc = require(server.commands, "failsafe", f"{body.verb} {body.target}")
        return await audited(session, request, "command", lambda: svc.submit(
            session.user, session.role, workstation_of(request), body.model_dump()))

    CmdId = Annotated[str, Path(min_length=1, max_length=100)]

    @app.get(f"{PREFIX}/commands/{{command_id}}", response_model=CommandOut, tags=["commands"])
    async def command_status(session: Reader, command_id: CmdId) -> Any:
        svc = require(server.commands, "failsafe", f"status of command {command_id}")
        rec = svc.status(command_id)
        if rec is None:
            raise ApiError(404, f"status of command {command_id!r}", "no such command", "not_found")
        return rec

    def _cmd_step(step: str, permission: str) -> Any:
        async def handler(command_id: CmdId, request: Request,
                          session: Annotated[Session, Depends(need(permission))]) -> Any:
            svc = require(server.commands, "failsafe", f"{step} command {command_id}")
            fn = getattr(svc, step)
            return await audited(session, request, f"command_{step}", lambda: fn(
                command_id, session.user, session.role, workstation_of(request)))
        handler.__name__ = f"command_{step}"
        return handler

    app.post(f"{PREFIX}/commands/{{command_id}}/operate", response_model=CommandOut, tags=["commands"])(
        _cmd_step("operate", "command.operate"))
    app.post(f"{PREFIX}/commands/{{command_id}}/approve", response_model=CommandOut, tags=["commands"])(
        _cmd_step("approve", "command.approve"))
    app.post(f"{PREFIX}/commands/{{command_id}}/cancel", response_model=CommandOut, tags=["commands"])(
        _cmd_step("cancel", "command.operate"))

    # ------------------------------------------------------------------ crisis
    @app.get(f"{PREFIX}/crisis/plans", response_model=PlanList, tags=["crisis"])
    async def crisis_plans(session: Reader) -> PlanList:
        return PlanList(plans=require(server.crisis, "crisis", "list crisis plans").plans())

    PlanName = Annotated[str, Path(min_length=1, max_length=100)]

    @app.post(f"{PREFIX}/crisis/plans/{{name}}/dry-run", tags=["crisis"])
    async def crisis_dry_run(name: PlanName, request: Request,
                             session: Annotated[Session, Depends(need("crisis"))]) -> dict[str, Any]:
        svc = require(server.crisis, "crisis", f"dry run of crisis plan {name!r}")
        return dict(await audited(session, request, "crisis_dry_run", lambda: svc.run(
            name, session.user, session.role, workstation_of(request), True)))

    @app.post(f"{PREFIX}/crisis/plans/{{name}}/activate", tags=["crisis"])
    async def crisis_activate(name: PlanName, request: Request,
                              session: Annotated[Session, Depends(need("crisis"))]) -> dict[str, Any]:
        svc = require(server.crisis, "crisis", f"activate crisis plan {name!r}")
        return dict(await audited(session, request, "crisis_activate", lambda: svc.run(
            name, session.user, session.role, workstation_of(request), False)))

    # ------------------------------------------------------------------ users / audit
    def user_out(u: Any) -> UserOut:
        return UserOut(name=u.name, role=u.role, disabled=u.disabled, created_ms=_ms(u.created_ns))

    @app.get(f"{PREFIX}/users", response_model=list[UserOut], tags=["users"])
    async def users(session: Annotated[Session, Depends(need("users.manage"))]) -> list[UserOut]:
        return [user_out(u) for u in server.users.list()]

    @app.post(f"{PREFIX}/users", response_model=UserOut, status_code=201, tags=["users"])
    async def user_add(body: UserIn, request: Request,
                       session: Annotated[Session, Depends(need("users.manage"))]) -> UserOut:
        try:
            u = await asyncio.to_thread(server.users.add, body.name, body.role, body.password)
        except UserError as exc:
            raise ApiError(409, f"create user {body.name!r}", str(exc), "user_refused") from None
        server.audit.record("configuration_change", "user_added", "ok", user=session.user,
                            source=workstation_of(request), target=u.name, role=u.role)
        return user_out(u)

    @app.patch(f"{PREFIX}/users/{{name}}", response_model=UserOut, tags=["users"])
    async def user_change(name: Annotated[str, Path(max_length=64)], body: UserPatch, request: Request,
                          session: Annotated[Session, Depends(need("users.manage"))]) -> UserOut:
        what = f"change user {name!r}"
        if server.users.get(name) is None:
            raise ApiError(404, what, "no such user", "not_found")
        try:
            # validate everything first so that a refused request changes nothing
            if body.password is not None:
                from scada.users import check_password_strength

                check_password_strength(body.password, name)
            if body.role is not None:
                server.users._guard_last_admin(name, leaving=body.role != "administrator")
            if body.disabled:
                server.users._guard_last_admin(name, leaving=True)
            if body.password is not None:
                await asyncio.to_thread(server.users.set_password, name, body.password)
            if body.role is not None:
                server.users.set_role(name, body.role)
            if body.disabled is not None:
                server.users.set_disabled(name, body.disabled)
        except UserError as exc:
            raise ApiError(409, what, str(exc), "user_refused") from None
        revoked = server.tokens.revoke_user(name) if (body.disabled or body.role or body.password) else 0
        server.audit.record("configuration_change", "user_changed", "ok", user=session.user,
                            source=workstation_of(request), target=name, role=body.role, disabled=body.disabled,
                            password_changed=body.password is not None, sessions_revoked=revoked)
        u = server.users.get(name)
        assert u is not None
        return user_out(u)

    @app.delete(f"{PREFIX}/users/{{name}}", status_code=204, tags=["users"])
    async def user_remove(name: Annotated[str, Path(max_length=64)], request: Request,
                          session: Annotated[Session, Depends(need("users.manage"))]) -> None:
        try:
            server.users.remove(name)
        except UserError as exc:
            status = 404 if "unknown user" in str(exc) else 409
            raise ApiError(status, f"remove user {name!r}", str(exc), "user_refused") from None
        server.tokens.revoke_user(name)
        server.audit.record("configuration_change", "user_removed", "ok", user=session.user,
                            source=workstation_of(request), target=name)

    @app.post(f"{PREFIX}/backup", response_model=BackupOut, tags=["server"])
    async def backup(request: Request, session: Annotated[Session, Depends(need("users.manage"))]) -> BackupOut:
        try:
            out = await asyncio.to_thread(server.backup, session.user, workstation_of(request))
        except Exception as exc:
            raise ApiError(503, "back up the server's stores", f"backup failed: {exc}", "backup_failed") from None
        return BackupOut(**out)

    @app.get(f"{PREFIX}/audit", response_model=AuditPage, tags=["server"])
    async def audit(session: Annotated[Session, Depends(need("audit.read"))],
                    category: Annotated[str | None, Query(max_length=40)] = None,
                    type: Annotated[str | None, Query(max_length=60)] = None,
                    user: Annotated[str | None, Query(max_length=64)] = None,
                    limit: Annotated[int, Query(ge=1, le=10_000)] = 200,
                    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> AuditPage:
        recs = server.audit.query(category=category, type_=type, user=user, limit=limit, offset=offset)
        return AuditPage(records=[r.as_dict() for r in recs])

    # ------------------------------------------------------------------ websocket
    @app.websocket(f"{PREFIX}/ws")
    async def ws(websocket: WebSocket, authorization: Annotated[str | None, Header()] = None) -> None:
        await websocket.accept()
        client = websocket.client.host if websocket.client else ""

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
            with contextlib.suppress(Exception):
                await websocket.close()
            log.info("websocket client %d: %s disconnected", c.id, session.user)

    _ = ROLES  # roles are documented in scada.users
    return app
