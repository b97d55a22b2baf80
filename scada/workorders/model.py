"""A work order and its state machine, as a pure function (no clock, no I/O): ``apply(order, change)``.

A work order is maintenance's unit of work on one equipment. Every change to it is a :class:`Change`
(what was done, by whom, when, with which fields); the order is the fold of its changes, so the store's
append-only journal replays to exactly the orders it holds (``replay``)::

               assign           en_route           on_site            done
      ┌─────┐ ─────────► ┌──────────┐ ─────────► ┌──────────┐ ───────► ┌─────────┐ ──────► ┌──────┐
      │ new │            │ assigned │            │ en_route │          │ on_site │         │ done │
      └─────┘            └──────────┘            └──────────┘          └─────────┘         └──────┘
       ▲  ▲   cannot_repair (reason), from assigned, en_route or on_site:     ▲                │ resolve (system:
       │  └── back to the queue, crew and vehicle cleared                     │                │ done AND the
       │                                                  on_site also from assigned           ▼ alarms normal)
       │  recur (system: a new failure of the equipment while resolved)                  ┌──────────┐
       └──────────────────────────────────────────────────────────────────────────────── │ resolved │
                                                                                          └──────────┘
      cancel (reason): new, assigned, en_route, on_site ──► cancelled                          │ close /
      close (cause, action): done or resolved ──► closed (a supervisor); auto_close (the       ▼ auto_close
        system, after auto_close_after without recurrence): resolved ──► closed            ┌────────┐
      note (text), link (alarms): any open state, the status unchanged                     │ closed │
      assign again: new or assigned (reassignment to another crew or vehicle)              └────────┘
    closed and cancelled are final: every action on them is refused, but for photos_purged (the system: the
    order's photos deleted after crews.yaml's photo_retention; a note names them, the status unchanged).

An action that the diagram does not draw is refused with :class:`scada.errors.Refused` (code
``Refusal.WORK_ORDER_REFUSED``) and changes nothing. Who may ask for which action (a crew only on its own
missions, a supervisor to close) is the service's check (:mod:`scada.workorders.service`), not this one's.

The first time an order reached each stage (assigned, en route, on site, done, resolved, closed) is kept
on the order: the KPIs (time to acknowledge, dispatch, repair) are read from it. Positions
(``lat``/``lon``: the equipment's, from the inventory) and the vehicle are on the order for the dispatch
that comes next; a change may carry an idempotency key (a crew tablet's retried action is applied once).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from scada.errors import Refusal, Refused
from scada.i18n import N_, _


class Status(enum.StrEnum):
    NEW = "new"
    ASSIGNED = "assigned"
    EN_ROUTE = "en_route"
    ON_SITE = "on_site"
    DONE = "done"
    RESOLVED = "resolved"
    CLOSED = "closed"
    CANCELLED = "cancelled"

    @property
    def open(self) -> bool:
        """Not final: the order still takes notes, links and (most) actions."""
        return self not in (Status.CLOSED, Status.CANCELLED)

    @property
    def in_field(self) -> bool:
        """A crew holds it (assigned, on its way or on site)."""
        return self in (Status.ASSIGNED, Status.EN_ROUTE, Status.ON_SITE)


class Action(enum.StrEnum):
    CREATE = "create"
    ASSIGN = "assign"
    EN_ROUTE = "en_route"
    ON_SITE = "on_site"
    DONE = "done"
    CANNOT_REPAIR = "cannot_repair"
    RESOLVE = "resolve"  # the system: done and the equipment's alarms are back to normal
    RECUR = "recur"  # the system: a new failure of the equipment while the order is resolved
    CLOSE = "close"
    AUTO_CLOSE = "auto_close"  # the system: resolved for the configured time without recurrence
    CANCEL = "cancel"
    NOTE = "note"
    LINK = "link"  # alarms attached to the order
    PHOTOS_PURGED = "photos_purged"  # the system: the photos of an order closed for the retention time deleted


#: action → the states it may start from → the state it leads to (None: unchanged)
TRANSITIONS: dict[Action, tuple[frozenset[Status], Status | None]] = {
    Action.ASSIGN: (frozenset({Status.NEW, Status.ASSIGNED}), Status.ASSIGNED),
    Action.EN_ROUTE: (frozenset({Status.ASSIGNED}), Status.EN_ROUTE),
    Action.ON_SITE: (frozenset({Status.ASSIGNED, Status.EN_ROUTE}), Status.ON_SITE),
    Action.DONE: (frozenset({Status.ON_SITE}), Status.DONE),
    Action.CANNOT_REPAIR: (frozenset({Status.ASSIGNED, Status.EN_ROUTE, Status.ON_SITE}), Status.NEW),
    Action.RESOLVE: (frozenset({Status.DONE}), Status.RESOLVED),
    Action.RECUR: (frozenset({Status.RESOLVED}), Status.NEW),
    Action.CLOSE: (frozenset({Status.DONE, Status.RESOLVED}), Status.CLOSED),
    Action.AUTO_CLOSE: (frozenset({Status.RESOLVED}), Status.CLOSED),
    Action.CANCEL: (frozenset({Status.NEW, Status.ASSIGNED, Status.EN_ROUTE, Status.ON_SITE}), Status.CANCELLED),
    Action.NOTE: (frozenset(s for s in Status if s.open), None),
    Action.LINK: (frozenset(s for s in Status if s.open), None),
    Action.PHOTOS_PURGED: (frozenset({Status.CLOSED, Status.CANCELLED}), None),
}
#: actions only the system takes (never offered to a user through the API)
SYSTEM_ACTIONS = frozenset({Action.RESOLVE, Action.RECUR, Action.AUTO_CLOSE, Action.PHOTOS_PURGED})
#: stage → the order's field holding the first time it was reached
STAGE_FIELDS: dict[Status, str] = {Status.ASSIGNED: "assigned_ms", Status.EN_ROUTE: "en_route_ms",
                                   Status.ON_SITE: "on_site_ms", Status.DONE: "done_ms",
                                   Status.RESOLVED: "resolved_ms", Status.CLOSED: "closed_ms"}
#: fields a change must carry (non-empty) for its action
REQUIRED: dict[Action, tuple[str, ...]] = {
    Action.ASSIGN: ("crew",), Action.CANNOT_REPAIR: ("reason",), Action.CANCEL: ("reason",),
    Action.NOTE: ("text",), Action.LINK: ("alarms",), Action.CLOSE: ("cause", "action"),
    Action.PHOTOS_PURGED: ("photos",),
}


@dataclass(frozen=True, slots=True)
class Note:
    ts_ms: int
    user: str
    text: str


@dataclass(frozen=True, slots=True)
class WorkOrder:
    """One work order, as the fold of its changes."""

    id: str
    equipment: str
    template: str
    commune: str
    lat: float
    lon: float
    service: str
    what: str
    priority: int  # 1 critical .. 4 low (the alarm's, or the operator's)
    created_ms: int
    due_ms: int  # created + the service's SLA for this priority (crews.yaml)
    created_by: str
    source: str = "manual"  # manual | alarm | auto (a rule's work_order: auto) | out_of_service
    status: Status = Status.NEW
    crew: str | None = None
    vehicle: str | None = None
    alarms: tuple[str, ...] = ()
    notes: tuple[Note, ...] = ()
    reason: str | None = None  # the last "cannot repair" or cancel reason
    cause: str | None = None  # closing: what the fault was
    action: str | None = None  # closing: what was done
    updated_ms: int = 0
    assigned_ms: int | None = None
    en_route_ms: int | None = None
    on_site_ms: int | None = None
    done_ms: int | None = None
    resolved_ms: int | None = None
    closed_ms: int | None = None
    recurrences: int = 0

    @property
    def open(self) -> bool:
        return self.status.open

    def overdue(self, now_ms: int) -> bool:
        """Past its due time without being done (an SLA breach)."""
        end = self.done_ms if self.done_ms is not None else now_ms
        return end > self.due_ms and self.status is not Status.CANCELLED

    def as_dict(self) -> dict[str, Any]:
        out = {f: getattr(self, f) for f in self.__dataclass_fields__}
        out["status"] = str(self.status)
        out["alarms"] = list(self.alarms)
        out["notes"] = [{"ts_ms": n.ts_ms, "user": n.user, "text": n.text} for n in self.notes]
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> WorkOrder:
        kw = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        kw["status"] = Status(kw.get("status", "new"))
        kw["alarms"] = tuple(kw.get("alarms", ()))
        kw["notes"] = tuple(Note(int(n["ts_ms"]), str(n["user"]), str(n["text"])) for n in kw.get("notes", ()))
        return cls(**kw)


@dataclass(frozen=True, slots=True)
class Change:
    """One journal row: ``action`` on order ``order_id`` by ``user`` at ``ts_ms`` with ``data`` (JSON-able)."""

    order_id: str
    ts_ms: int
    user: str
    action: Action
    data: Mapping[str, Any] = field(default_factory=dict)
    idem: str | None = None  # idempotency key of the request (a retried request is applied once)


def refused(order: WorkOrder | None, action: Action, why: str) -> Refused:
    what = f"{action} work order {order.id}" if order is not None else f"{action} a work order"
    return Refused(what, why, Refusal.WORK_ORDER_REFUSED)


def _text(data: Mapping[str, Any], key: str) -> str | None:
    v = data.get(key)
    return None if v is None or str(v).strip() == "" else str(v).strip()


def create(change: Change) -> WorkOrder:
    """The order a ``create`` change describes (every field is in its data)."""
    d = change.data
    try:
        return WorkOrder(id=change.order_id, equipment=str(d["equipment"]), template=str(d.get("template", "")),
                         commune=str(d.get("commune", "")), lat=float(d.get("lat", 0.0)), lon=float(d.get("lon", 0.0)),
                         service=str(d["service"]), what=str(d["what"]), priority=int(d["priority"]),
                         created_ms=change.ts_ms, due_ms=int(d["due_ms"]), created_by=change.user,
                         source=str(d.get("source", "manual")), alarms=tuple(dict.fromkeys(d.get("alarms", ()))),
                         updated_ms=change.ts_ms)
    except (KeyError, TypeError, ValueError) as exc:
        raise refused(None, Action.CREATE, f"incomplete order: {exc!r}") from None


def apply(order: WorkOrder | None, change: Change) -> WorkOrder:
    """The order after ``change``; :class:`Refused` (nothing changes) when the diagram does not allow it."""
    if change.action is Action.CREATE:
        if order is not None:
            raise refused(order, change.action, N_("the order already exists"))
        return create(change)
    if order is None:
        raise Refused(f"{change.action} work order {change.order_id}", N_("no such work order"), Refusal.NOT_FOUND)
    allowed, target = TRANSITIONS[change.action]
    if order.status not in allowed:
        starts = ", ".join(sorted(str(s) for s in allowed))
        raise refused(order, change.action, _("the order is {status}; {action} is possible from {starts} only")
                      .format(status=order.status, action=change.action, starts=starts))
    d = change.data
    missing = [k for k in REQUIRED.get(change.action, ()) if not d.get(k)]
    if missing:
        raise refused(order, change.action, _("give {fields}").format(fields=" and ".join(missing)))
    new = target if target is not None else order.status
    kw: dict[str, Any] = {"status": new, "updated_ms": change.ts_ms}
    stage = STAGE_FIELDS.get(new)
    if stage is not None and new is not order.status and getattr(order, stage) is None:
        kw[stage] = change.ts_ms
    a = change.action
    if a is Action.ASSIGN:
        kw["crew"] = str(d["crew"])
        kw["vehicle"] = _text(d, "vehicle")
    elif a is Action.CANNOT_REPAIR:
        kw.update(crew=None, vehicle=None, reason=_text(d, "reason"))
    elif a is Action.CANCEL:
        kw["reason"] = _text(d, "reason")
    elif a in (Action.CLOSE, Action.AUTO_CLOSE):
        kw["cause"] = _text(d, "cause") or order.cause
        kw["action"] = _text(d, "action") or order.action
    elif a is Action.DONE:
        kw["cause"] = _text(d, "cause") or order.cause
        kw["action"] = _text(d, "action") or order.action
    elif a is Action.RECUR:
        kw.update(recurrences=order.recurrences + 1, crew=None, vehicle=None)
    if a is Action.LINK or d.get("alarms"):
        kw["alarms"] = tuple(dict.fromkeys([*order.alarms, *map(str, d.get("alarms", ()))]))
    text = _text(d, "text") or _text(d, "note")
    if text is not None:
        kw["notes"] = (*order.notes, Note(change.ts_ms, change.user, text))
    return replace(order, **kw)


def replay(changes: Iterable[Change]) -> dict[str, WorkOrder]:
    """Every order rebuilt from its changes, in journal order (what the store's ``orders`` table must hold)."""
    orders: dict[str, WorkOrder] = {}
    for c in changes:
        orders[c.order_id] = apply(orders.get(c.order_id), c)
    return orders
