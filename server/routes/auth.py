"""Log in, log out, who am I.

    POST /auth/login  {user, password} → {token, expires_ms, user, role}   no token needed; 401, 429 locked out
    POST /auth/logout                  the token is revoked                 204
    GET  /auth/me                      user, role, expiry, permissions

Every login (success, failure, lock-out) and logout is written to the audit trail; the password never is.
"""

from __future__ import annotations

import asyncio
import math

from fastapi import APIRouter, Request

from scada.users import PERMISSIONS
from server.routes.deps import PREFIX, Bearer, ServerDep, SessionDep, client_of, ms
from server.routes.errors import ERR, ApiError
from server.routes.models import LoginIn, LoginOut, Me

router = APIRouter(prefix=PREFIX, tags=["auth"])


@router.post("/auth/login", response_model=LoginOut, responses={401: ERR, 429: ERR})
async def login(body: LoginIn, request: Request, server: ServerDep) -> LoginOut:
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
        server.audit.record("access_control", "login", "failure", user=body.user, source=client, lockout_s=lock)
        raise ApiError(401, what, "unknown user, wrong password or disabled account", "login_failed")
    server.limiter.success(body.user, client)
    token, session = server.tokens.issue(user, client)
    server.audit.record("access_control", "login", "success", user=user.name, source=client, role=user.role)
    return LoginOut(token=token, user=user.name, role=user.role, expires_ms=ms(session.expires_ns))


@router.post("/auth/logout", status_code=204)
async def logout(request: Request, session: SessionDep, cred: Bearer, server: ServerDep) -> None:
    if cred is not None:
        server.tokens.revoke(cred.credentials)
    server.audit.record("access_control", "logout", "ok", user=session.user, source=client_of(request))


@router.get("/auth/me", response_model=Me)
async def me(session: SessionDep) -> Me:
    return Me(user=session.user, role=session.role, expires_ms=ms(session.expires_ns),
              permissions=sorted(p for p in PERMISSIONS if session.can(p)))
