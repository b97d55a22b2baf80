"""Log in, log out, change one's own password, who am I.

    POST /auth/login     {user, password} → {token, expires_ms, user, role, must_change_password}
                         no token needed; 401 login_failed, 429 locked_out (Retry-After)
    POST /auth/password  {old, new} → {user, sessions_revoked}    the account's other sessions end;
                         this one goes on. Open to a session that must change its password.
    POST /auth/logout    the token is revoked                        204 (also for a must-change session)
    GET  /auth/me        user, role, expiry, permissions

Login throttling (:mod:`scada.throttle` via :class:`server.auth.LoginLimiter`): the attempt is reserved
before the argon2 check and settled after it, so parallel guesses cannot outrun the limit. The current
password of ``/auth/password`` is checked through the same throttle (a stolen token is no way around it).

Every login (success, failure, lock-out), password change and logout is written to the audit trail; the
password never is. A password change is also journalled (the alarm journal's configuration rows).
"""

from __future__ import annotations

import asyncio
import math

from fastapi import APIRouter, Request

from scada.errors import Refusal, Refused
from scada.i18n import N_, _, localise
from scada.throttle import Refused as Throttled
from scada.throttle import Reservation
from scada.users import PERMISSIONS, UserError, check_password_strength
from server.auth import AlarmSwitch
from server.routes.deps import (
    PREFIX,
    AnySessionDep,
    Bearer,
    ServerDep,
    SessionDep,
    client_of,
    journal_change,
    ms,
    origin,
    workstation_of,
)
from server.routes.errors import ERR, ApiError
from server.routes.models import LoginIn, LoginOut, Me, PasswordIn, PasswordOut

router = APIRouter(prefix=PREFIX, tags=["auth"])


def _burst_alarm(server: ServerDep) -> AlarmSwitch | None:
    """The switch of the ``system.auth.login_burst`` alarm, when the alarm subsystem runs."""
    sink = server.system_alarms
    if sink is None:
        return None

    def switch(active: bool) -> None:
        sink.raise_("auth", "login_burst", active=active)
        server.audit.record("access_control", "login_burst", "raised" if active else "cleared",
                            source=server.workstation)

    return switch


async def _reserve(server: ServerDep, user: str, client: str, what: str) -> Reservation:
    """The throttle's reservation for one attempt, or 429 (audited, counted for the burst alarm)."""
    res = await asyncio.to_thread(server.limiter.reserve, user, client)
    if isinstance(res, Throttled):
        wait = max(1, math.ceil(res.wait_s))
        server.audit.record("access_control", "login", "locked_out", user=user, source=client,
                            scope=res.scope, retry_after_s=round(res.wait_s, 1))
        server.limiter.count_failure(user, client, _burst_alarm(server))
        raise ApiError(429, what, _("{why}: try again in {seconds} s").format(why=localise(res.why), seconds=wait),
                       "locked_out", {"Retry-After": str(wait)})
    return res


@router.post("/auth/login", response_model=LoginOut, responses={401: ERR, 429: ERR})
async def login(body: LoginIn, request: Request, server: ServerDep) -> LoginOut:
    client = client_of(request)
    what = f"log in as {body.user!r}"
    res = await _reserve(server, body.user, client, what)
    # a cancelled check leaves the reservation counted as a failure: the safe side
    user = await asyncio.to_thread(server.users.verify, body.user, body.password)
    if user is None:
        lock = await asyncio.to_thread(server.limiter.failed, res)
        server.audit.record("access_control", "login", "failure", user=body.user, source=client, lockout_s=lock)
        server.limiter.count_failure(body.user, client, _burst_alarm(server))
        raise ApiError(401, what, N_("unknown user, wrong password or disabled account"), "login_failed")
    await asyncio.to_thread(server.limiter.succeeded, res)
    token, session = server.tokens.issue(user, client)
    server.audit.record("access_control", "login", "success", user=user.name, source=client, role=user.role,
                        must_change_password=user.must_change)
    return LoginOut(token=token, user=user.name, role=user.role, expires_ms=ms(session.expires_ns),
                    must_change_password=user.must_change)


@router.post("/auth/password", response_model=PasswordOut, responses={409: ERR, 429: ERR})
async def change_password(body: PasswordIn, request: Request, session: AnySessionDep, cred: Bearer,
                          server: ServerDep) -> PasswordOut:
    client, source, audit_origin = client_of(request), workstation_of(request), origin(request)
    what = f"change the password of {session.user!r}"
    try:  # the new one first: a refused policy costs no attempt of the throttle
        check_password_strength(body.new, session.user)
        if body.new == body.old:
            raise UserError("the new password must differ from the current one")
    except UserError as exc:
        server.audit.record("configuration_change", "password_changed", "refused", user=session.user,
                            **audit_origin, target=session.user, why=str(exc))
        raise Refused(what, str(exc), exc.code) from None
    res = await _reserve(server, session.user, client, what)
    if await asyncio.to_thread(server.users.verify, session.user, body.old) is None:
        await asyncio.to_thread(server.limiter.failed, res)
        server.audit.record("configuration_change", "password_changed", "refused", user=session.user,
                            **audit_origin, target=session.user, why="current password not right")
        server.limiter.count_failure(session.user, client, _burst_alarm(server))
        raise Refused(what, N_("the current password is not right"), Refusal.USER_REFUSED)
    await asyncio.to_thread(server.limiter.succeeded, res)
    token = cred.credentials if cred is not None else ""
    state = server.users.session_state(session.user)
    if token and state is not None:  # this session follows the change without a moment of 401 in between
        server.tokens.expect(token, state.generation + 1)
    try:
        await asyncio.to_thread(server.users.set_password, session.user, body.new)
    except BaseException as exc:  # refused or failed: the session must not keep the announced generation
        if token:
            server.tokens.expect(token, None)
        if isinstance(exc, UserError):
            raise Refused(what, str(exc), exc.code) from None
        raise
    user = server.users.get(session.user)
    if user is None:
        raise Refused(what, N_("the account was removed meanwhile"), Refusal.NOT_FOUND)
    # the change moved the account's generation: this session follows it, every other one has ended
    if token:
        server.tokens.rebind(token, user)
    revoked = server.tokens.revoke_user(user.name, keep=token or None)
    server.audit.record("configuration_change", "password_changed", "ok", user=user.name, **audit_origin,
                        target=user.name, sessions_revoked=revoked)
    journal_change(server, user.name, source, f"user {user.name!r} changed their own password "
                                              f"({revoked} other session(s) ended)")
    return PasswordOut(user=user.name, sessions_revoked=revoked)


@router.post("/auth/logout", status_code=204)
async def logout(request: Request, session: AnySessionDep, cred: Bearer, server: ServerDep) -> None:
    if cred is not None:
        server.tokens.revoke(cred.credentials)
    server.audit.record("access_control", "logout", "ok", user=session.user, source=client_of(request))


@router.get("/auth/me", response_model=Me)
async def me(session: SessionDep) -> Me:
    return Me(user=session.user, role=session.role, expires_ms=ms(session.expires_ns),
              permissions=sorted(p for p in PERMISSIONS if session.can(p)))
