"""What every route shares: the server, the session and its permissions, a subsystem or a 503, the audit.

The server reaches the routes through the app, never a module global nor a closure: ``create_app``
puts it in ``app.state.server`` and a route asks for it as a dependency::

    async def route(session: Reader, server: ServerDep, ...)
                              │                  └── get_server: request.app.state.server
                              └── need("read") ── session_dep ── bearer (Authorization: Bearer <token>)
                                      │                 ├── 401 unauthenticated / token_invalid / session_idle
                                      │                 └── 403 password_change_required (must_change set)
                                      └── 403 forbidden (audited: request_error / permission_denied)

``session_dep`` is resolved once per request (FastAPI caches a dependency within a request): one token
look-up and one read of the account's state in the users database (:class:`server.auth.TokenManager`).
Only ``POST /auth/password`` and ``POST /auth/logout`` take :data:`AnySessionDep`, which lets an account
that must change its password in.

    svc = require(server, server.alarms, "alarms", "list alarms")   # the subsystem, or Refused UNAVAILABLE (503)
    await audited(server, session, request, "command", call)        # a refusal is written to the audit trail

``server.app`` is imported for typing only: the composition root never imports the routes, and the
routes do not import it back at run time.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from scada.errors import CommandRejected, Refusal, Refused
from scada.i18n import N_
from scada.users import PERMISSIONS
from server.auth import Session
from server.components.ha import HaComponent
from server.routes.errors import ApiError

if TYPE_CHECKING:
    from server.app import ScadaServer

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
MAX_ROWS = 50_000

T = TypeVar("T")

bearer = HTTPBearer(auto_error=False, description="token from POST /api/v1/auth/login")
Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def get_server(conn: HTTPConnection) -> ScadaServer:
    """The server this app was built for (HTTP requests and WebSockets alike)."""
    server: ScadaServer = conn.app.state.server
    return server


if TYPE_CHECKING:
    ServerDep = Annotated[ScadaServer, Depends(get_server)]
else:  # FastAPI reads the annotation at run time, where ScadaServer is not imported (no import circle)
    ServerDep = Annotated[Any, Depends(get_server)]


# ---------------------------------------------------------------------- who is asking
def client_of(request: HTTPConnection) -> str:
    """The verified origin: the TCP peer, or the client a trusted proxy names (settings ``http.trusted_proxies``,
    applied by uvicorn before any route runs; with none listed, X-Forwarded-For changes nothing)."""
    return request.client.host if request.client else ""


def workstation_of(request: Request) -> str:
    """The workstation name the console CLAIMS (``X-Workstation``: unverified, any client can send it), for the
    journal and the command records, else its address. Never the audit trail's source: see :func:`origin`."""
    ws = request.headers.get("x-workstation", "")[:64]
    return ws or client_of(request)


def origin(request: Request) -> dict[str, str]:
    """The audit trail's ``source`` (:func:`client_of`) and, when sent, ``workstation_claimed``."""
    claimed = request.headers.get("x-workstation", "")[:64]
    return {"source": client_of(request), **({"workstation_claimed": claimed} if claimed else {})}


def any_session_dep(request: Request, cred: Bearer, server: ServerDep) -> Session:
    """The caller's session from its bearer token (even one that must change its password); 401 without."""
    if cred is None or cred.scheme.lower() != "bearer" or not cred.credentials:
        raise ApiError(401, f"{request.method} {request.url.path}",
                       N_("authentication required: log in with POST /api/v1/auth/login and send "
                          "'Authorization: Bearer <token>'"), "unauthenticated", {"WWW-Authenticate": "Bearer"})
    session = server.tokens.check(cred.credentials)
    if not isinstance(session, Session):
        raise ApiError(401, f"{request.method} {request.url.path}", session.why, session.code,
                       {"WWW-Authenticate": "Bearer"})
    return session


AnySessionDep = Annotated[Session, Depends(any_session_dep)]


def session_dep(request: Request, session: AnySessionDep) -> Session:
    """The caller's session; 403 ``password_change_required`` while its password must be changed."""
    if session.must_change:
        raise ApiError(403, f"{request.method} {request.url.path}",
                       N_("the password must be changed first (it was set under an older password policy): "
                          "POST /api/v1/auth/password with old and new"), "password_change_required")
    return session


SessionDep = Annotated[Session, Depends(session_dep)]


def need(permission: str, *, on_standby: bool = False) -> Callable[..., Session]:
    """A dependency: the caller's session if its role holds ``permission``; else 403, written to the audit.
    On the standby server of a failover pair, anything but reading answers 503 ``not_leaseholder`` naming the
    active server (server.components.ha), unless ``on_standby`` (the pair's own break-glass and switchover)."""
    roles = sorted(PERMISSIONS[permission])

    def dep(request: Request, session: SessionDep, server: ServerDep) -> Session:
        if not session.can(permission):
            server.audit.record("request_error", "permission_denied", "refused", user=session.user,
                                source=client_of(request), path=request.url.path, method=request.method,
                                permission=permission, role=session.role)
            raise ApiError(403, f"{request.method} {request.url.path}",
                           f"role '{session.role}' lacks permission '{permission}' "
                           f"(held by {', '.join(roles)})", "forbidden")
        ha = server.components.get("ha")
        if isinstance(ha, HaComponent) and not on_standby and request.method not in ("GET", "HEAD", "OPTIONS"):
            ha.refuse_writes(f"{request.method} {request.url.path}")
        return session

    return dep


Reader = Annotated[Session, Depends(need("read"))]


def journal_change(server: ScadaServer, user: str, source: str, detail: str) -> None:
    """A user-management change in the alarm journal too (beside its audit record), as reloads are: what
    maintenance reads. Never fails the change (the audit trail already has it)."""
    journal = server.journal
    if journal is None:
        return
    try:
        journal.config_change(user, source, True, detail)
    except Exception:  # the change is done and audited; a journal failure is logged, not answered
        log.exception("cannot journal the user-management change %r", detail)


# ---------------------------------------------------------------------- subsystems
def require(server: ScadaServer, service: T | None, subsystem: str, what: str) -> T:
    """``service`` if this build runs it; else a 503 that says why (the subsystem's status detail)."""
    if service is None:
        st = server.subsystems.get(subsystem)
        why = f"{subsystem} not available" + (f": {st.detail}" if st and st.detail else "")
        raise Refused(what, why, Refusal.UNAVAILABLE)
    return service


async def audited(server: ScadaServer, session: Session, request: Request, what: str,
                  call: Callable[[], Awaitable[T]]) -> T:
    """Run a control action; a refusal is written to the audit trail (control_system) and answered."""
    try:
        return await call()
    except (Refused, CommandRejected) as exc:
        why = exc.why if isinstance(exc, Refused) else exc.reason
        server.audit.record("control_system", what, "refused", user=session.user, **origin(request), why=why)
        raise


# ---------------------------------------------------------------------- values
def ms(ns: int) -> int:
    return int(ns) // 1_000_000


def finite(v: Any) -> Any:
    """JSON has no NaN or infinity: such a value is sent as null."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def time_ns(value: datetime | None, default_ns: int, what: str) -> int:
    """A query's time (UTC if it has no offset) in epoch ns, or ``default_ns`` when not given."""
    if value is None:
        return default_ns
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return int(value.timestamp() * 1e9)
    except (OverflowError, ValueError, OSError):
        raise Refused(what, f"time out of range, got {value!r}", Refusal.INVALID) from None
