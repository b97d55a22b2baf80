"""Work orders: maintenance's loop, from an alarm (or by hand) to the crew's repair and its closing.

    GET  /workorders              ?status=&open=&equipment=&service=&commune=&crew=&limit=&offset=  workorder.read
                                  overdue first; a crew account sees only its own crew's missions
    GET  /workorders/kpi          ?from=&to= time to acknowledge / dispatch / repair, backlog, SLA breaches,
                                  repeat failures, per service and commune                               read
    POST /workorders              {equipment, what, priority, service?}                        workorder.create
    POST /workorders/from-alarm   {alarm_id}: the equipment's open order with the alarm linked, else a new one
                                                                                               workorder.create
    GET  /workorders/{id}  ·  GET /workorders/{id}/history (the change journal: who, when, what)  workorder.read
    POST /workorders/{id}/assign         {crew, vehicle?}                                      workorder.assign
    POST /workorders/{id}/cancel         {reason}                                              workorder.assign
    POST /workorders/{id}/{en-route|on-site|done|cannot-repair}   {note?, cause?, action?, reason?}  workorder.field
    POST /workorders/{id}/close          {cause, action}                                       workorder.close
    POST /workorders/{id}/note           {text}                                                workorder.note
    POST /workorders/{id}/link           {alarms}                                              workorder.create
    GET  /workorders/{id}/candidates     ?any_service= the crews ranked by estimated travel time (nearest
                                         available first: scada.workorders.dispatch)          workorder.read
    POST /workorders/{id}/dispatch       {crew, vehicle?}: assign, then the mission to the vehicle through the
                                         command gate (verb vehicle.mission); confirmed → en route  workorder.assign
    POST|GET /workorders/{id}/photos     an order's photos: server.routes.photos

Every action body may carry ``idempotency_key``: a request retried with the same key (a crew tablet on a weak
link) is applied once and answers the order as it is. An action the order's state does not allow is refused
409 ``work_order_refused`` (:mod:`scada.workorders.model`), written to the audit trail, and changes nothing.
The alarms' out-of-service action names a work order: :func:`require_open_order` and :func:`link_out_of_service`
are its checks (the order must be open and of the alarm's equipment) and its link.
"""

# no `from __future__ import annotations`: FastAPI reads the endpoints' annotations at run time
import asyncio
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from scada.errors import Refusal, Refused
from scada.workorders import Action, OrderQuery, Status, WorkOrder, WorkOrders, compute
from server.auth import Session
from server.routes.deps import PREFIX, Reader, ServerDep, audited, need, require, time_ns, workstation_of
from server.routes.errors import ApiError
from server.routes.models import Strict

if TYPE_CHECKING:
    from server.app import ScadaServer
    from server.components.workorders import WorkOrderComponent

router = APIRouter(prefix=PREFIX, tags=["workorders"])

Text = Annotated[str, Field(min_length=1, max_length=2000)]
Key = Annotated[str | None, Field(None, min_length=8, max_length=100,
                                  description="retried requests with the same key are applied once")]
OrderId = Annotated[str, Path(min_length=1, max_length=40)]


class WorkOrderNote(BaseModel):
    ts_ms: int
    user: str
    text: str


class WorkOrderOut(BaseModel):
    id: str
    equipment: str
    template: str
    commune: str
    lat: float
    lon: float
    service: str
    what: str
    priority: int
    created_ms: int
    due_ms: int
    created_by: str
    source: str
    status: str
    crew: str | None
    vehicle: str | None
    alarms: list[str]
    notes: list[WorkOrderNote]
    reason: str | None
    cause: str | None
    action: str | None
    updated_ms: int
    assigned_ms: int | None
    en_route_ms: int | None
    on_site_ms: int | None
    done_ms: int | None
    resolved_ms: int | None
    closed_ms: int | None
    recurrences: int
    overdue: bool = Field(description="not done by its due time (an SLA breach)")


class WorkOrderList(BaseModel):
    total: int
    orders: list[WorkOrderOut]


class WorkOrderChange(BaseModel):
    seq: int
    order_id: str
    ts_ms: int
    user: str
    action: str
    data: dict[str, Any]
    status: str


class WorkOrderIn(Strict):
    equipment: Annotated[str, Field(min_length=1, max_length=100)]
    what: Text
    priority: Annotated[int, Field(ge=1, le=4)] = 3
    service: Annotated[str | None, Field(None, min_length=1, max_length=50)]
    idempotency_key: Key


class WorkOrderFromAlarmIn(Strict):
    alarm_id: Annotated[str, Field(min_length=1, max_length=300)]
    idempotency_key: Key


class WorkOrderAssignIn(Strict):
    crew: Annotated[str, Field(min_length=1, max_length=64)]
    vehicle: Annotated[str | None, Field(None, min_length=1, max_length=64)]
    note: Annotated[str | None, Field(None, max_length=2000)]
    idempotency_key: Key


class WorkOrderFieldIn(Strict):
    note: Annotated[str | None, Field(None, max_length=2000)]
    cause: Annotated[str | None, Field(None, max_length=500)]
    action: Annotated[str | None, Field(None, max_length=500)]
    reason: Annotated[str | None, Field(None, max_length=500)]
    idempotency_key: Key


class WorkOrderCloseIn(Strict):
    cause: Annotated[str, Field(min_length=1, max_length=500)]
    action: Annotated[str, Field(min_length=1, max_length=500)]
    note: Annotated[str | None, Field(None, max_length=2000)]
    idempotency_key: Key


class WorkOrderReasonIn(Strict):
    reason: Annotated[str, Field(min_length=1, max_length=500)]
    idempotency_key: Key


class WorkOrderNoteIn(Strict):
    text: Text
    idempotency_key: Key


class WorkOrderLinkIn(Strict):
    alarms: Annotated[list[Annotated[str, Field(min_length=1, max_length=300)]], Field(min_length=1, max_length=1000)]


# ---------------------------------------------------------------------- helpers
def running(server: "ScadaServer", what: str) -> tuple["WorkOrderComponent", WorkOrders]:
    """The work-order component and its façade, or a 503 that says why."""
    comp: WorkOrderComponent | None = server.components.get("workorders")  # type: ignore[assignment]
    orders = comp.orders if comp is not None else None
    if comp is None or orders is None:
        st = server.subsystems.get("workorders")
        raise Refused(what, "work orders not available" + (f": {st.detail}" if st and st.detail else ""),
                      Refusal.UNAVAILABLE)
    return comp, orders


def component_of(server: "ScadaServer", what: str) -> "WorkOrderComponent":
    return running(server, what)[0]


def orders_of(server: "ScadaServer", what: str) -> WorkOrders:
    return running(server, what)[1]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def crew_scope(orders: WorkOrders, session: Session, what: str) -> str | None:
    """The caller's crew when it logs in with the crew role (it sees only that crew's missions), else None."""
    if session.role != "crew":
        return None
    crew = orders.crews.crew_of_account(session.user)
    if crew is None:
        raise ApiError(403, what, f"account {session.user!r} belongs to no crew of crews.yaml", "forbidden")
    return crew.id


def out(order: WorkOrder, now: int) -> WorkOrderOut:
    d = order.as_dict()
    return WorkOrderOut(**d, overdue=order.open and order.overdue(now))


def visible(orders: WorkOrders, session: Session, order_id: str, what: str) -> WorkOrder:
    order = orders.get(order_id)
    crew = crew_scope(orders, session, what)
    if crew is not None and order.crew != crew:
        raise Refused(what, "no such work order among this crew's missions", Refusal.NOT_FOUND)
    return order


# ---------------------------------------------------------------------- reads
@router.get("/workorders", response_model=WorkOrderList)
async def list_workorders(session: Annotated[Session, Depends(need("workorder.read"))], server: ServerDep,
                          status: Annotated[str | None, Query(max_length=200, description="'new,assigned' for "
                                                                                          "several")] = None,
                          open: Annotated[bool | None, Query(description="only open (or only finished) "
                                                                          "orders")] = None,
                          equipment: Annotated[str | None, Query(max_length=100)] = None,
                          service: Annotated[str | None, Query(max_length=50)] = None,
                          commune: Annotated[str | None, Query(max_length=100)] = None,
                          crew: Annotated[str | None, Query(max_length=64)] = None,
                          limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
                          offset: Annotated[int, Query(ge=0)] = 0) -> WorkOrderList:
    what = "list work orders"
    orders = orders_of(server, what)
    own = crew_scope(orders, session, what)
    q = OrderQuery(status=_split(status), open=open, equipment=_split(equipment), service=_split(service),
                   commune=_split(commune), crew=own if own is not None else crew, limit=limit, offset=offset)
    now = now_ms()
    total, rows = await asyncio.to_thread(orders.orders, q, now)
    return WorkOrderList(total=total, orders=[out(o, now) for o in rows])


@router.get("/workorders/kpi",
            description="Time to acknowledge (created → assigned), to dispatch (→ en route), to repair (→ done), "
                        "backlog, SLA breaches per service and commune, repeat failures per equipment, over the "
                        "orders created in [from, to) (default: the last 30 days).")
async def workorder_kpi(session: Reader, server: ServerDep,
                        start: Annotated[datetime | None, Query(alias="from", description="ISO 8601, UTC if no "
                                                                                          "offset")] = None,
                        end: Annotated[datetime | None, Query(alias="to")] = None) -> dict[str, Any]:
    what = "work-order KPIs"
    orders = orders_of(server, what)
    end_ms = time_ns(end, time.time_ns(), what) // 1_000_000
    start_ms = time_ns(start, (end_ms - 30 * 86_400_000) * 1_000_000, what) // 1_000_000
    if start_ms >= end_ms:
        raise Refused(what, "'from' must be before 'to'", Refusal.INVALID)
    q = OrderQuery(created_from_ms=start_ms, created_to_ms=end_ms)
    report = await asyncio.to_thread(lambda: compute(orders.store.iter_orders(q), start_ms, end_ms))
    return report.as_dict()


@router.get("/workorders/{order_id}", response_model=WorkOrderOut)
async def get_workorder(order_id: OrderId, session: Annotated[Session, Depends(need("workorder.read"))],
                        server: ServerDep) -> WorkOrderOut:
    what = f"read work order {order_id}"
    return out(visible(orders_of(server, what), session, order_id, what), now_ms())


@router.get("/workorders/{order_id}/history", response_model=list[WorkOrderChange])
async def workorder_history(order_id: OrderId, session: Annotated[Session, Depends(need("workorder.read"))],
                            server: ServerDep) -> list[WorkOrderChange]:
    what = f"read the history of work order {order_id}"
    orders = orders_of(server, what)
    visible(orders, session, order_id, what)
    rows = await asyncio.to_thread(orders.store.history, order_id)
    return [WorkOrderChange(**r.as_dict()) for r in rows]


# ---------------------------------------------------------------------- create
@router.post("/workorders", response_model=WorkOrderOut)
async def create_workorder(body: WorkOrderIn, request: Request,
                           session: Annotated[Session, Depends(need("workorder.create"))],
                           server: ServerDep) -> WorkOrderOut:
    what = f"create a work order for {body.equipment!r}"
    orders = orders_of(server, what)

    async def call() -> WorkOrder:
        order, _ = await asyncio.to_thread(orders.create, session.user, body.equipment, body.what, body.priority,
                                           now_ms(), service=body.service, idem=body.idempotency_key)
        return order

    return out(await audited(server, session, request, "workorder_create", call), now_ms())


@router.post("/workorders/from-alarm", response_model=WorkOrderOut,
             description="One click from an alarm: its equipment's open order with the alarm linked, else a new "
                         "order (what is wrong: the alarm's message; its priority, diagnostic → 4; its service).")
async def workorder_from_alarm(body: WorkOrderFromAlarmIn, request: Request,
                               session: Annotated[Session, Depends(need("workorder.create"))],
                               server: ServerDep) -> WorkOrderOut:
    what = f"work order from alarm {body.alarm_id!r}"
    comp = component_of(server, what)

    async def call() -> WorkOrder:
        ref = comp.alarm_ref(body.alarm_id)
        orders = orders_of(server, what)
        order, _ = await asyncio.to_thread(orders.from_alarm, ref, session.user, now_ms(), idem=body.idempotency_key)
        return order

    return out(await audited(server, session, request, "workorder_from_alarm", call), now_ms())


# ---------------------------------------------------------------------- actions
def action_route(action: Action, permission: str, body_model: type[Strict],
                 data: Callable[[Any], dict[str, Any]], crew_only_own: bool = False) -> None:
    """POST /workorders/{order_id}/<action, dashed>: ``action`` on one order, named after the action."""

    async def endpoint(order_id: OrderId, body: Strict, request: Request,
                       session: Annotated[Session, Depends(need(permission))], server: ServerDep) -> WorkOrderOut:
        what = f"{action} work order {order_id}"
        orders = orders_of(server, what)
        crew = crew_scope(orders, session, what) if crew_only_own else None

        async def call() -> WorkOrder:
            return await asyncio.to_thread(orders.act, order_id, action, session.user, now_ms(), data(body),
                                           crew=crew, idem=getattr(body, "idempotency_key", None))

        return out(await audited(server, session, request, f"workorder_{action}", call), now_ms())

    endpoint.__annotations__["body"] = body_model
    router.post(f"/workorders/{{order_id}}/{str(action).replace('_', '-')}", response_model=WorkOrderOut,
                name=f"workorder_{action}")(endpoint)


def _field(body: WorkOrderFieldIn) -> dict[str, Any]:
    return {"text": body.note, "cause": body.cause, "action": body.action, "reason": body.reason}


action_route(Action.ASSIGN, "workorder.assign", WorkOrderAssignIn,
             lambda b: {"crew": b.crew, "vehicle": b.vehicle, "text": b.note})
action_route(Action.CANCEL, "workorder.assign", WorkOrderReasonIn, lambda b: {"reason": b.reason})
for _a in (Action.EN_ROUTE, Action.ON_SITE, Action.DONE, Action.CANNOT_REPAIR):
    action_route(_a, "workorder.field", WorkOrderFieldIn, _field, crew_only_own=True)
action_route(Action.CLOSE, "workorder.close", WorkOrderCloseIn,
             lambda b: {"cause": b.cause, "action": b.action, "text": b.note})
action_route(Action.NOTE, "workorder.note", WorkOrderNoteIn, lambda b: {"text": b.text}, crew_only_own=True)


@router.post("/workorders/{order_id}/link", response_model=WorkOrderOut)
async def link_alarms(order_id: OrderId, body: WorkOrderLinkIn, request: Request,
                      session: Annotated[Session, Depends(need("workorder.create"))],
                      server: ServerDep) -> WorkOrderOut:
    what = f"link alarms to work order {order_id}"
    orders = orders_of(server, what)

    async def call() -> WorkOrder:
        return await asyncio.to_thread(orders.link, order_id, body.alarms, session.user, now_ms())

    return out(await audited(server, session, request, "workorder_link", call), now_ms())


# ---------------------------------------------------------------------- dispatch
class CrewCandidateOut(BaseModel):
    crew: str
    service: str
    vehicle: str | None
    lat: float | None
    lon: float | None
    distance_m: float | None = Field(description="straight line from the vehicle to the equipment")
    eta_s: float | None = Field(description="straight line × the urban detour factor (1.3) at 25 km/h")
    available: bool = Field(description="on shift (crews.yaml), not busy with a mission, position known")
    on_shift: bool
    busy_with: str | None
    why: str


class WorkOrderDispatchIn(Strict):
    crew: Annotated[str, Field(min_length=1, max_length=64)]
    vehicle: Annotated[str | None, Field(None, min_length=1, max_length=64,
                                         description="default: the crew's vehicle nearest to the equipment")]
    idempotency_key: Key


class WorkOrderDispatchOut(BaseModel):
    order: WorkOrderOut
    mission: dict[str, Any] | None = Field(description="the command gate's record of the mission write")
    mission_error: str | None = Field(description="why the mission did not reach the vehicle (order stays "
                                                  "assigned; dispatch again to retry)")


@router.get("/workorders/{order_id}/candidates", response_model=list[CrewCandidateOut],
            description="The crews of the order's service (every crew with any_service), available first, then by "
                        "estimated travel time: straight line × 1.3 (urban detour) at 25 km/h from the crew's "
                        "nearest vehicle's live position.")
async def workorder_candidates(order_id: OrderId, session: Annotated[Session, Depends(need("workorder.read"))],
                               server: ServerDep,
                               any_service: Annotated[bool, Query(description="crews of every service")] = False
                               ) -> list[CrewCandidateOut]:
    what = f"candidates for work order {order_id}"
    comp, orders = running(server, what)
    visible(orders, session, order_id, what)
    rows = await asyncio.to_thread(comp.candidates, order_id, time.time(), any_service)
    return [CrewCandidateOut(**c.as_dict()) for c in rows]


@router.post("/workorders/{order_id}/dispatch", response_model=WorkOrderDispatchOut)
async def workorder_dispatch(order_id: OrderId, body: WorkOrderDispatchIn, request: Request,
                             session: Annotated[Session, Depends(need("workorder.assign"))],
                             server: ServerDep) -> WorkOrderDispatchOut:
    what = f"dispatch work order {order_id}"
    comp, orders = running(server, what)
    key = body.idempotency_key

    async def call() -> WorkOrderDispatchOut:
        order = orders.get(order_id)
        vehicle = body.vehicle
        if vehicle is None:  # the crew's vehicle nearest to the equipment (its first one when none is located)
            ranked = await asyncio.to_thread(comp.candidates, order_id, time.time(), True)
            vehicle = next((x.vehicle for x in ranked if x.crew == body.crew), None)
        if order.crew != body.crew or order.status is Status.NEW or (vehicle is not None and order.vehicle != vehicle):
            order = await asyncio.to_thread(orders.act, order_id, Action.ASSIGN, session.user, now_ms(),
                                            {"crew": body.crew, "vehicle": vehicle, "text": "dispatched"},
                                            idem=f"{key}:assign" if key else None)
        if not order.vehicle:
            return WorkOrderDispatchOut(order=out(order, now_ms()), mission=None,
                                        mission_error=f"crew {body.crew} has no vehicle: tell it another way")
        gate = require(server, server.commands, "failsafe", f"mission of {order.vehicle} for {order_id}")
        mission = f"{order.id};{order.lat:.6f};{order.lon:.6f}"
        try:
            rec = await gate.submit(session.user, session.role, workstation_of(request),
                                    {"target": order.vehicle, "verb": "mission", "params": {"mission": mission},
                                     "comment": f"dispatch {order.id} ({order.equipment})"})
        except Refused as exc:
            return WorkOrderDispatchOut(order=out(order, now_ms()), mission=None, mission_error=str(exc))
        if rec.get("outcome") != "done":  # not confirmed by the read-back (or awaiting approval): not en route
            return WorkOrderDispatchOut(order=out(order, now_ms()), mission=rec,
                                        mission_error=str(rec.get("reason") or rec.get("outcome") or rec.get("state")))
        order = await asyncio.to_thread(orders.act, order_id, Action.EN_ROUTE, session.user, now_ms(),
                                        {"text": f"mission sent to {order.vehicle} (command {rec.get('id')})"},
                                        idem=f"{key}:en_route" if key else None)
        return WorkOrderDispatchOut(order=out(order, now_ms()), mission=rec, mission_error=None)

    return await audited(server, session, request, "workorder_dispatch", call)


# ---------------------------------------------------------------------- the alarms' out-of-service path
def require_open_order(server: "ScadaServer", alarm_id: str, work_order: str) -> None:
    """Out of service needs an open work order of the alarm's equipment (checked before the action)."""
    what = f"out of service alarm {alarm_id!r}"
    comp = component_of(server, what)
    ref = comp.alarm_ref(alarm_id)
    order = orders_of(server, what).store.get(work_order)
    if order is None:
        raise Refused(what, f"no work order {work_order!r}: create one first (POST /workorders/from-alarm)",
                      Refusal.NOT_FOUND)
    if not order.open:
        raise Refused(what, f"work order {work_order} is {order.status}", Refusal.WORK_ORDER_REFUSED)
    if order.equipment != ref.equipment:
        raise Refused(what, f"work order {work_order} is for {order.equipment}, the alarm for {ref.equipment}",
                      Refusal.INVALID)


def link_out_of_service(server: "ScadaServer", alarm_id: str, work_order: str, user: str) -> None:
    """After the alarm went out of service: the alarm linked to the order (journalled in both journals)."""
    orders_of(server, f"link alarm {alarm_id!r}").link(work_order, [alarm_id], user, now_ms())


def _split(text: str | None) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip()) if text else ()

