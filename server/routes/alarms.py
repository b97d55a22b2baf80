"""Alarms: the active list, the banner, the operator's console, and the operator actions.

    GET  /alarms            ?area=&priority=&service=&equipment=&state=&diagnostic=&limit=    read
                            filtered in the engine (AlarmService.active): total matching + the first `limit`
    GET  /alarms/summary    banner counts · GET /alarms/console  flood-aware grouped list           read
    POST /alarms/ack        {ids | area, service, comment}                                           alarm.ack
    POST /alarms/{id}/{shelve|unshelve|suppress|unsuppress|out-of-service|return-to-service|reset}
                            one alarm, the body's fields as the action's parameters                  alarm.<...>
                            out-of-service: {work_order} names an open work order of the alarm's equipment,
                            which the alarm is linked to (server.routes.workorders)

A refused action (state, role, unknown alarm) is a :class:`scada.errors.Refused` from the engine's
adapter: written to the audit trail, answered with its code's status.
"""

# no `from __future__ import annotations`: FastAPI reads the endpoints' annotations at run time, and those of
# the one-alarm routes name their permission's dependency, a local of the function that builds them
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request

from scada.alarms.states import DIAGNOSTIC, AlarmState
from scada.errors import Refusal, Refused
from scada.i18n import Lang
from server.auth import Session
from server.routes.deps import MAX_ROWS, PREFIX, Reader, ServerDep, need, origin, require, workstation_of
from server.routes.models import (
    AckIn,
    ActionOut,
    AlarmList,
    CommentIn,
    OutOfServiceIn,
    ReasonIn,
    ShelveIn,
    Strict,
)
from server.routes.workorders import link_out_of_service, require_open_order
from server.services import AlarmService, Json

if TYPE_CHECKING:
    from server.app import ScadaServer

router = APIRouter(prefix=PREFIX, tags=["alarms"])

_STATES = tuple(s.label for s in AlarmState)


def parse_priorities(text: str | None, what: str) -> list[int] | None:
    """``"1,2"`` → [1, 2]; ``"diagnostic"`` (or 5) → [5]; None → no filter. 422 for anything else."""
    if text is None:
        return None
    out: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if part == "diagnostic":
            out.append(DIAGNOSTIC)
        elif part.isdigit() and 1 <= int(part) <= DIAGNOSTIC:
            out.append(int(part))
        else:
            raise Refused(what, f"priority must be 1..4 or diagnostic ('1,2' for several), got {part!r}",
                          Refusal.INVALID)
    return out


def parse_states(text: str | None, what: str) -> list[str] | None:
    """``"unack,acked"`` → ["unack", "acked"]; None → no filter. 422 for a label that is not a state."""
    if text is None:
        return None
    out = [p.strip() for p in text.split(",")]
    bad = [p for p in out if p not in _STATES]
    if bad:
        raise Refused(what, f"state must be among {', '.join(_STATES)} ('unack,acked' for several), got {bad[0]!r}",
                      Refusal.INVALID)
    return out


def active(svc: AlarmService, diagnostic: bool = False, limit: int = MAX_ROWS, *, area: str | None = None,
           priorities: list[int] | None = None, service: str | None = None, equipment: str | None = None,
           states: list[str] | None = None, lang: str | None = None) -> tuple[int, list[Json]]:
    """The engine's filtered active list: ``(total matching, the first `limit`)``, messages in ``lang``."""
    total, items = svc.active(diagnostic, limit, area=area, priorities=priorities, service=service,
                              equipment=equipment, states=states, lang=lang)
    return int(total), list(items)


@router.get("/alarms", response_model=AlarmList)
async def alarms(session: Reader, server: ServerDep,
                 area: Annotated[str | None, Query(max_length=100)] = None,
                 priority: Annotated[str | None, Query(max_length=20, description="1..4 or diagnostic; "
                                                                  "'1,2' for several")] = None,
                 service: Annotated[str | None, Query(max_length=100)] = None,
                 equipment: Annotated[str | None, Query(max_length=100)] = None,
                 state: Annotated[str | None, Query(max_length=100)] = None,
                 diagnostic: Annotated[bool, Query(description="include diagnostic (never annunciated) "
                                                               "events")] = False,
                 limit: Annotated[int, Query(ge=1, le=MAX_ROWS)] = 5000,
                 lang: Annotated[Lang | None, Query(description="language of the messages (default: the "
                                                                "server's, the site's lang)")] = None) -> AlarmList:
    what = "list alarms"
    svc = require(server, server.alarms, "alarms", what)
    total, items = active(svc, diagnostic, limit, area=area, priorities=parse_priorities(priority, what),
                          service=service, equipment=equipment, states=parse_states(state, what), lang=lang)
    return AlarmList(total=total, alarms=items)


@router.get("/alarms/summary")
async def alarm_summary(session: Reader, server: ServerDep,
                        area: Annotated[str | None, Query(max_length=100)] = None) -> dict[str, Any]:
    return dict(require(server, server.alarms, "alarms", "alarm summary").summary(area))


@router.get("/alarms/console",
            description="The operator's list: priority 1 individually on top; the others grouped (by equipment, "
                        "rule, area or service) while a flood lasts in the area (or as asked with grouped).")
async def alarm_console(session: Reader, server: ServerDep,
                        area: Annotated[str | None, Query(max_length=100)] = None,
                        service: Annotated[str | None, Query(max_length=100)] = None,
                        group_by: Annotated[Literal["equipment", "cabinet", "rule", "area", "service"],
                                            Query()] = "equipment",
                        grouped: Annotated[bool | None, Query()] = None,
                        limit: Annotated[int, Query(ge=1, le=5000)] = 200,
                        lang: Annotated[Lang | None, Query(description="language of the messages (default: the "
                                                                       "server's)")] = None) -> dict[str, Any]:
    svc = require(server, server.alarms, "alarms", "alarm console")
    return dict(svc.console(area, service, group_by, grouped, limit, lang))


def alarm_action(server: "ScadaServer", action: str, ids: list[str], params: dict[str, Any], session: Session,
                 request: Request) -> ActionOut:
    """Run ``action`` on the alarms ``ids``; a refusal is audited (with the first ids) and answered."""
    svc = require(server, server.alarms, "alarms", f"{action} alarm(s)")
    try:
        results = svc.action(action, ids, session.user, {**params, "workstation": workstation_of(request)})
    except Refused as exc:
        server.audit.record("control_system", f"alarm_{action}", "refused", user=session.user,
                            **origin(request), ids=ids[:20], why=exc.why)
        raise
    return ActionOut(action=action, results=results)


@router.post("/alarms/ack", response_model=ActionOut)
async def ack(body: AckIn, request: Request, session: Annotated[Session, Depends(need("alarm.ack"))],
              server: ServerDep) -> ActionOut:
    if not body.ids and body.area is None:
        raise Refused("acknowledge alarms", "give ids (a selection) or area", Refusal.INVALID)
    return alarm_action(server, "ack", body.ids, {"comment": body.comment, "area": body.area,
                                                  "service": body.service}, session, request)


AlarmId = Annotated[str, Path(min_length=1, max_length=300)]


def one_alarm_route(action: str, permission: str, body_model: type[Strict],
                    check: Callable[[str, Any], None] | None = None,
                    guard: Callable[["ScadaServer", str, Any], None] | None = None,
                    after: Callable[["ScadaServer", str, Any, Session], None] | None = None) -> None:
    """POST /alarms/{alarm_id}/<action, dashed>: ``action`` on one alarm, the body's fields as its params.

    ``check`` (the body alone) and ``guard`` (against the server's state) run before the action, ``after``
    once it is done. The route is named after the action (OpenAPI operationId and summary, as a
    ``def <action>`` would be).
    """

    # no docstring on the endpoint: FastAPI would publish it as the operation's description
    async def endpoint(alarm_id: AlarmId, body: Strict, request: Request,
                       session: Annotated[Session, Depends(need(permission))], server: ServerDep) -> ActionOut:
        if check is not None:
            check(alarm_id, body)
        if guard is not None:
            guard(server, alarm_id, body)
        done = alarm_action(server, action, [alarm_id], body.model_dump(), session, request)
        if after is not None:
            after(server, alarm_id, body, session)
        return done

    # FastAPI validates and documents the body by the annotation it reads from the signature: the route's model
    endpoint.__annotations__["body"] = body_model
    router.post(f"/alarms/{{alarm_id:path}}/{action.replace('_', '-')}", response_model=ActionOut,
                name=action)(endpoint)


def shelve_needs_an_end(alarm_id: str, body: ShelveIn) -> None:
    if body.duration_s is None and not body.one_shot:
        raise Refused(f"shelve alarm {alarm_id!r}", "give duration_s or one_shot: true", Refusal.INVALID)


one_alarm_route("shelve", "alarm.shelve", ShelveIn, shelve_needs_an_end)
one_alarm_route("unshelve", "alarm.shelve", CommentIn)
one_alarm_route("suppress", "alarm.suppress", ReasonIn)
one_alarm_route("unsuppress", "alarm.suppress", CommentIn)
# out of service requires an open work order of the alarm's equipment, and links the alarm to it
one_alarm_route("out_of_service", "alarm.out_of_service", OutOfServiceIn,
                guard=lambda server, alarm_id, body: require_open_order(server, alarm_id, body.work_order),
                after=lambda server, alarm_id, body, session: link_out_of_service(server, alarm_id, body.work_order,
                                                                                  session.user))
one_alarm_route("return_to_service", "alarm.out_of_service", CommentIn)
one_alarm_route("reset", "alarm.reset", CommentIn)
