"""What every route shares: the server, the session and its permissions, a subsystem or a 503, the audit.

The server reaches the routes through the app, never a module global nor a closure: ``create_app``
puts it in ``app.state.server`` and a route asks for it as a dependency::

    async def route(session: Reader, server: ServerDep, ...)
                              │                  └── get_server: request.app.state.server
                              └── need("read") ── session_dep ── bearer (Authorization: Bearer <token>)
                                      │                 └── 401 unauthenticated / token_invalid
                                      └── 403 forbidden (audited: request_error / permission_denied)

    svc = require(server, server.alarms, "alarms", "list alarms")   # the subsystem, or Refused UNAVAILABLE (503)
    await audited(server, session, request, "command", call)        # a refusal is written to the audit trail

``server.app`` is imported for typing only: the composition root never imports the routes, and the
routes do not import it back at run time.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from scada.errors import CommandRejected, Refusal, Refused
from scada.users import PERMISSIONS
from server.auth import Session
from server.routes.errors import ApiError

if TYPE_CHECKING:
    from server.app import ScadaServer

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
    return request.client.host if request.client else ""


def workstation_of(request: Request) -> str:
    """The console's workstation name (``X-Workstation``) for the journal and the audit, else its address."""
    ws = request.headers.get("x-workstation", "")[:64]
    return ws or client_of(request)


def session_dep(request: Request, cred: Bearer, server: ServerDep) -> Session:
    """The caller's session from its bearer token; 401 without a valid one."""
    if cred is None or cred.scheme.lower() != "bearer" or not cred.credentials:
        raise ApiError(401, f"{request.method} {request.url.path}",
                       "authentication required: log in with POST /api/v1/auth/login and send "
                       "'Authorization: Bearer <token>'", "unauthenticated", {"WWW-Authenticate": "Bearer"})
    session = server.tokens.resolve(cred.credentials)
    if session is None:
        raise ApiError(401, f"{request.method} {request.url.path}", "token expired or unknown: log in again",
                       "token_invalid", {"WWW-Authenticate": "Bearer"})
    return session


SessionDep = Annotated[Session, Depends(session_dep)]


def need(permission: str) -> Callable[..., Session]:
    """A dependency: the caller's session if its role holds ``permission``; else 403, written to the audit."""
    roles = sorted(PERMISSIONS[permission])

    def dep(request: Request, session: SessionDep, server: ServerDep) -> Session:
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
        server.audit.record("control_system", what, "refused", user=session.user, source=workstation_of(request),
                            why=why)
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
