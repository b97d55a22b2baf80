"""User accounts (administrators only): list, create, change (role, password, disabled), remove.

    GET    /users           the accounts (never a hash)                      users.manage
    POST   /users           {name, role, password}                     201   users.manage
    PATCH  /users/{name}    {role?, disabled?, password?}                    users.manage
    DELETE /users/{name}                                               204   users.manage
    POST   /users/{name}/unlock   lift the account's login lock-out    200   users.manage

A change checks everything before it changes anything (weak password, last administrator). A role,
password or disabled change, or a removal, ends the user's sessions: the store bumps the account's
generation (:mod:`scada.users`), which every request checks, so the same holds for ``scada users``;
the sessions held in memory are dropped here at once too. The store's refusals
(:class:`scada.users.UserError`) carry their code: 404 for an unknown user, 409 otherwise. Every change is
written to the audit trail (configuration_change) and journalled (the alarm journal's configuration rows).
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request

from scada.errors import Refusal, Refused
from scada.users import User, UserError, check_password_strength
from server.auth import Session
from server.routes.deps import PREFIX, ServerDep, journal_change, ms, need, origin, workstation_of
from server.routes.models import UnlockOut, UserIn, UserOut, UserPatch

router = APIRouter(prefix=PREFIX, tags=["users"])

Admin = Annotated[Session, Depends(need("users.manage"))]
UserName = Annotated[str, Path(max_length=64)]


def user_out(u: User) -> UserOut:
    return UserOut(name=u.name, role=u.role, disabled=u.disabled, created_ms=ms(u.created_ns))


def refused(what: str, exc: UserError) -> Refused:
    """The store's refusal as the API answers it: its message and its code."""
    return Refused(what, str(exc), exc.code)


@router.get("/users", response_model=list[UserOut])
async def users(session: Admin, server: ServerDep) -> list[UserOut]:
    return [user_out(u) for u in server.users.list()]


@router.post("/users", response_model=UserOut, status_code=201)
async def user_add(body: UserIn, request: Request, session: Admin, server: ServerDep) -> UserOut:
    try:
        u = await asyncio.to_thread(server.users.add, body.name, body.role, body.password)
    except UserError as exc:
        raise refused(f"create user {body.name!r}", exc) from None
    server.audit.record("configuration_change", "user_added", "ok", user=session.user,
                        **origin(request), target=u.name, role=u.role)
    journal_change(server, session.user, workstation_of(request), f"user {u.name!r} added ({u.role})")
    return user_out(u)


@router.patch("/users/{name}", response_model=UserOut)
async def user_change(name: UserName, body: UserPatch, request: Request, session: Admin,
                      server: ServerDep) -> UserOut:
    what = f"change user {name!r}"
    if server.users.get(name) is None:
        raise Refused(what, "no such user", Refusal.NOT_FOUND)
    try:
        # validate everything first so that a refused request changes nothing
        if body.password is not None:
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
        raise refused(what, exc) from None
    revoked = server.tokens.revoke_user(name) if (body.disabled or body.role or body.password) else 0
    server.audit.record("configuration_change", "user_changed", "ok", user=session.user,
                        **origin(request), target=name, role=body.role, disabled=body.disabled,
                        password_changed=body.password is not None, sessions_revoked=revoked)
    changes = [*([f"role {body.role}"] if body.role else []),
               *(["disabled" if body.disabled else "enabled"] if body.disabled is not None else []),
               *(["password set"] if body.password is not None else [])]
    journal_change(server, session.user, workstation_of(request),
                   f"user {name!r} changed: {', '.join(changes) or 'nothing'} ({revoked} session(s) ended)")
    u = server.users.get(name)
    if u is None:  # removed by another administrator between the change and this read
        raise Refused(what, "the user was removed meanwhile", Refusal.NOT_FOUND)
    return user_out(u)


@router.delete("/users/{name}", status_code=204)
async def user_remove(name: UserName, request: Request, session: Admin, server: ServerDep) -> None:
    try:
        server.users.remove(name)
    except UserError as exc:
        raise refused(f"remove user {name!r}", exc) from None
    revoked = server.tokens.revoke_user(name)
    server.audit.record("configuration_change", "user_removed", "ok", user=session.user,
                        **origin(request), target=name, sessions_revoked=revoked)
    journal_change(server, session.user, workstation_of(request),
                   f"user {name!r} removed ({revoked} session(s) ended)")


@router.post("/users/{name}/unlock", response_model=UnlockOut)
async def user_unlock(name: UserName, request: Request, session: Admin, server: ServerDep) -> UnlockOut:
    """Lift the account's login lock-out at once (as ``scada users unlock NAME`` does)."""
    if server.users.get(name) is None:
        raise Refused(f"unlock user {name!r}", "no such user", Refusal.NOT_FOUND)
    was = await asyncio.to_thread(server.limiter.throttle.unlock, name)
    server.audit.record("access_control", "user_unlocked", "ok", user=session.user, **origin(request), target=name,
                        was_locked=was)
    journal_change(server, session.user, workstation_of(request),
                   f"user {name!r} login lock-out lifted" + ("" if was else " (was not locked)"))
    return UnlockOut(name=name, was_locked=was)
