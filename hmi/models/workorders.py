"""The console's work orders, as plain Python (tested without Qt): the list's filter and order, what each
role may do to an order, its history as rows, and the crews offered by the dispatch dialog.

    GET /workorders ──► Order.from_json ──► select(orders, OrderFilter, sort) ──► the list's rows
                                             overdue first, then the chosen sort
    GET /workorders/{id}/history ──► history_rows ──► the detail pane (who, when, what)
    the order + the session's permissions ──► why_not(action, order, permissions) ──► "" or the tooltip
    GET /workorders/{id}/candidates (the server ranks by estimated travel time) ──► candidates_from_api

Which action an order's state allows is the server's state machine (:data:`scada.workorders.model.TRANSITIONS`),
read here rather than copied: the console greys out what the server would refuse, and the server decides.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from scada.workorders.model import TRANSITIONS, Action, Status

PARIS = ZoneInfo("Europe/Paris")  # display time (times are UTC internally)

#: the status filter's choices: "open" (not closed nor cancelled), every status, or all of them
STATUS_CHOICES = ("open", "all", *(s.value for s in Status))
SORTS = ("due", "priority", "created", "updated", "equipment", "status")
#: user actions the console offers, with the permission each needs (scada.users.PERMISSIONS)
ACTIONS: dict[str, tuple[Action, str]] = {
    "assign": (Action.ASSIGN, "workorder.assign"),
    "cancel": (Action.CANCEL, "workorder.assign"),
    "close": (Action.CLOSE, "workorder.close"),
}
CREATE_FROM_ALARM = "create one from this alarm"


@dataclass(frozen=True, slots=True)
class Order:
    """One work order as ``GET /workorders`` answers it (the fields the console shows)."""

    id: str
    equipment: str
    commune: str
    service: str
    what: str
    priority: int
    status: str
    crew: str | None
    vehicle: str | None
    created_ms: int
    due_ms: int
    updated_ms: int
    overdue: bool
    alarms: tuple[str, ...] = ()
    notes: tuple[tuple[int, str, str], ...] = ()  # (ts_ms, user, text)
    reason: str | None = None
    cause: str | None = None
    action: str | None = None
    source: str = ""

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Order:
        return cls(id=str(d["id"]), equipment=str(d.get("equipment", "")), commune=str(d.get("commune", "")),
                   service=str(d.get("service", "")), what=str(d.get("what", "")), priority=int(d.get("priority", 3)),
                   status=str(d.get("status", "")), crew=d.get("crew"), vehicle=d.get("vehicle"),
                   created_ms=int(d.get("created_ms", 0)), due_ms=int(d.get("due_ms", 0)),
                   updated_ms=int(d.get("updated_ms", 0)), overdue=bool(d.get("overdue", False)),
                   alarms=tuple(str(a) for a in d.get("alarms") or ()),
                   notes=tuple((int(n.get("ts_ms", 0)), str(n.get("user", "")), str(n.get("text", "")))
                               for n in d.get("notes") or ()),
                   reason=d.get("reason"), cause=d.get("cause"), action=d.get("action"),
                   source=str(d.get("source", "")))

    @property
    def open(self) -> bool:
        return self.status not in (Status.CLOSED.value, Status.CANCELLED.value)

    @property
    def status_text(self) -> str:
        return self.status.replace("_", " ")

    def label(self) -> str:
        """How a choice names it: ``WO-000012 — lamp failed (assigned)``."""
        return f"{self.id} — {self.what} ({self.status_text})"


def order_id_of(label: str) -> str:
    """The order id a :meth:`Order.label` choice starts with."""
    return label.split(" — ", 1)[0].strip()


@dataclass(frozen=True, slots=True)
class OrderFilter:
    status: str = "open"  # one of STATUS_CHOICES
    service: str = ""
    commune: str = ""
    crew: str = ""  # "" any, "(none)" unassigned
    text: str = ""

    def accepts(self, o: Order) -> bool:
        if self.status == "open" and not o.open:
            return False
        if self.status not in ("open", "all") and o.status != self.status:
            return False
        if self.service and o.service != self.service:
            return False
        if self.commune and o.commune != self.commune:
            return False
        if self.crew == "(none)" and o.crew:
            return False
        if self.crew and self.crew not in ("(none)", o.crew):
            return False
        if self.text:
            needle = self.text.casefold()
            hay = " ".join((o.id, o.equipment, o.what, o.commune, o.service, o.crew or "", o.vehicle or ""))
            if needle not in hay.casefold():
                return False
        return True


def _sort_key(sort: str) -> Any:
    return {"due": lambda o: (o.due_ms, o.priority), "priority": lambda o: (o.priority, o.due_ms),
            "created": lambda o: -o.created_ms, "updated": lambda o: -o.updated_ms,
            "equipment": lambda o: (o.equipment, o.due_ms), "status": lambda o: (o.status, o.due_ms)}[sort]


def select(orders: Iterable[Order], f: OrderFilter, sort: str = "due") -> list[Order]:
    """The orders ``f`` accepts, overdue ones first (an SLA breach is what maintenance acts on), each part in
    ``sort`` order."""
    key = _sort_key(sort)
    rows = [o for o in orders if f.accepts(o)]
    return sorted(rows, key=lambda o: (not o.overdue, key(o)))


def why_not(action: str, order: Order | None, permissions: frozenset[str]) -> str:
    """Empty when ``action`` (assign | cancel | close) may be asked of ``order``, else why not (a tooltip)."""
    act, perm = ACTIONS[action]
    if perm not in permissions:
        return f"your role may not {action} work orders"
    if order is None:
        return "select a work order first"
    allowed_from, _ = TRANSITIONS[act]
    if order.status not in {s.value for s in allowed_from}:
        return f"{order.id} is {order.status_text}: cannot {action} it"
    return ""


def local_text(ts_ms: int | None) -> str:
    if not ts_ms:
        return ""
    return dt.datetime.fromtimestamp(ts_ms / 1000, PARIS).strftime("%d/%m %H:%M:%S")


def due_text(o: Order, now_ms: int) -> str:
    """``due in 3 h 05`` / ``OVERDUE 12 min`` / the closing time when it is finished."""
    if not o.open:
        return "—"
    left = (o.due_ms - now_ms) // 1000
    span = abs(left)
    txt = f"{span // 3600} h {span % 3600 // 60:02d}" if span >= 3600 else f"{span // 60} min"
    return f"OVERDUE {txt}" if o.overdue or left < 0 else f"due in {txt}"


def history_rows(changes: Iterable[Mapping[str, Any]]) -> list[tuple[str, str, str, str, str]]:
    """(time, user, action, detail, status after) per change of ``GET /workorders/{id}/history``."""
    rows = []
    for c in changes:
        data = c.get("data") or {}
        detail = ", ".join(f"{k}: {v}" for k, v in sorted(data.items())
                           if v not in (None, "", [], {}) and k != "idempotency_key")
        rows.append((local_text(int(c.get("ts_ms", 0))), str(c.get("user", "")),
                     str(c.get("action", "")).replace("_", " "), detail, str(c.get("status", "")).replace("_", " ")))
    return rows


# ---------------------------------------------------------------------- dispatch: the ranked crews
@dataclass(frozen=True, slots=True)
class Candidate:
    """One crew the dispatch dialog offers, in the server's order (available first, then the shortest ETA)."""

    crew: str
    service: str
    vehicle: str | None = None
    available: bool = True
    eta_s: float | None = None  # None: no estimate (the crew's vehicle has no known position)
    distance_m: float | None = None
    on_shift: bool = True
    busy_with: str | None = None
    why: str = ""  # what makes it less suitable (off shift, busy, position unknown)

    @property
    def eta_text(self) -> str:
        return "ETA: —" if self.eta_s is None else f"ETA: {max(1, round(self.eta_s / 60)):d} min"

    @property
    def availability_text(self) -> str:
        return "yes" if self.available else "no" + (f": {self.why}" if self.why else "")


def candidates_from_api(rows: Any) -> list[Candidate]:
    """``GET /workorders/{id}/candidates`` (the server ranks: :mod:`scada.workorders.dispatch`), in its order."""
    out = []
    for d in rows if isinstance(rows, list) else ():
        out.append(Candidate(crew=str(d["crew"]), service=str(d.get("service", "")), vehicle=d.get("vehicle"),
                             available=bool(d.get("available", False)),
                             eta_s=float(d["eta_s"]) if d.get("eta_s") is not None else None,
                             distance_m=float(d["distance_m"]) if d.get("distance_m") is not None else None,
                             on_shift=bool(d.get("on_shift", True)), busy_with=d.get("busy_with"),
                             why=str(d.get("why") or "")))
    return out


def open_by_equipment(orders: Iterable[Order]) -> dict[str, list[Order]]:
    """The open orders of each equipment (the map's layer of open orders)."""
    out: dict[str, list[Order]] = {}
    for o in orders:
        if o.open:
            out.setdefault(o.equipment, []).append(o)
    return out
