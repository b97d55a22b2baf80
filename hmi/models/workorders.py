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

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from hmi.style import domain_text
from scada.format import boolean, duration, timestamp
from scada.i18n import N_, _
from scada.workorders.model import TRANSITIONS, Action, Status

#: the status filter's choices: "open" (not closed nor cancelled), every status, or all of them
STATUS_CHOICES = ("open", "all", *(s.value for s in Status))
SORTS = ("due", "priority", "created", "updated", "equipment", "status")
#: user actions the console offers, with the permission each needs (scada.users.PERMISSIONS)
ACTIONS: dict[str, tuple[Action, str]] = {
    "assign": (Action.ASSIGN, "workorder.assign"),
    "cancel": (Action.CANCEL, "workorder.assign"),
    "close": (Action.CLOSE, "workorder.close"),
}
CREATE_FROM_ALARM = N_("create one from this alarm")  # a msgid: the choice shows _(it)
#: an order's statuses and its history's actions in words (English msgids; scada.workorders.model)
WORDS = {"open": N_("open"), "all": N_("all"), "new": N_("new"), "assigned": N_("assigned"),
         "en_route": N_("en route"), "on_site": N_("on site"), "done": N_("done"), "resolved": N_("resolved"),
         "closed": N_("closed"), "cancelled": N_("cancelled"), "create": N_("created"), "assign": N_("assigned"),
         "cannot_repair": N_("cannot repair"), "resolve": N_("resolved"), "recur": N_("failed again"),
         "close": N_("closed"), "auto_close": N_("closed automatically"), "cancel": N_("cancelled"),
         "note": N_("note"), "link": N_("alarms linked"), "due": N_("due"), "priority": N_("priority"),
         "created": N_("created"), "updated": N_("updated"), "equipment": N_("equipment"), "status": N_("status"),
         "alarm": N_("alarm"), "manual": N_("by hand"), "auto": N_("automatic"), "intake": N_("citizen report"),
         "photos_purged": N_("photos deleted (retention)")}


def word(code: str) -> str:
    """A status, action, sort or source code in words, in the console's language."""
    return _(WORDS[code]) if code in WORDS else code.replace("_", " ")


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
        return word(self.status)

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
        return _(WHY_ROLE[action])
    if order is None:
        return _("select a work order first")
    allowed_from, _targets = TRANSITIONS[act]
    if order.status not in {s.value for s in allowed_from}:
        return _(WHY_STATUS[action]).format(order=order.id, status=order.status_text)
    return ""


WHY_ROLE = {"assign": N_("your role may not assign work orders"), "cancel": N_("your role may not cancel work orders"),
            "close": N_("your role may not close work orders")}
WHY_STATUS = {"assign": N_("{order} is {status}: cannot assign it"),
              "cancel": N_("{order} is {status}: cannot cancel it"),
              "close": N_("{order} is {status}: cannot close it")}


def local_text(ts_ms: int | None) -> str:
    if not ts_ms:
        return ""
    return timestamp(ts_ms * 1_000_000)  # the site's clock, as every time on screen


def due_text(o: Order, now_ms: int) -> str:
    """``due in 3 h 05`` / ``OVERDUE 12 min`` / the closing time when it is finished."""
    if not o.open:
        return "—"
    left = (o.due_ms - now_ms) // 1000
    span = abs(left)
    txt = duration(span)
    return (_("OVERDUE {late}") if o.overdue or left < 0 else _("due in {left}")).format(late=txt, left=txt)


#: a change's fields as the history shows them (English msgids), and the ones it leaves out (machine data)
FIELDS = {"commune": N_("commune"), "due_ms": N_("due"), "equipment": N_("equipment"), "priority": N_("priority"),
          "service": N_("service"), "source": N_("source"), "what": N_("what"), "reason": N_("reason"),
          "cause": N_("cause"), "action": N_("action"), "note": N_("note"), "crew": N_("crew"),
          "vehicle": N_("vehicle"), "alarms": N_("alarms"), "alarm": N_("alarm")}
UNSHOWN = frozenset({"idempotency_key", "lat", "lon", "template"})


def _field(key: str, v: Any, alarm_text: Callable[[str], str] | None = None) -> str:
    if key in ("alarms", "alarm") and alarm_text is not None:
        return " · ".join(alarm_text(str(a)) for a in (v if isinstance(v, (list, tuple)) else [v]))
    if key.endswith("_ms") and isinstance(v, (int, float)):
        return local_text(int(v))
    if key == "service":
        return domain_text(str(v))
    if key in ("source", "status"):
        return word(str(v))
    if isinstance(v, (list, tuple)):
        return ", ".join(map(str, v))
    return str(v)


def history_rows(changes: Iterable[Mapping[str, Any]],
                 alarm_text: Callable[[str], str] | None = None) -> list[tuple[str, str, str, str, str]]:
    """(time, user, action, detail, status after) per change of ``GET /workorders/{id}/history``; an alarm id
    in a change is shown through ``alarm_text`` when given (the console's :meth:`AlarmStore.describe`)."""
    rows = []
    for c in changes:
        data = c.get("data") or {}
        detail = ", ".join(f"{_(FIELDS[k]) if k in FIELDS else k}: {_field(k, v, alarm_text)}"
                           for k, v in sorted(data.items()) if v not in (None, "", [], {}) and k not in UNSHOWN)
        rows.append((local_text(int(c.get("ts_ms", 0))), str(c.get("user", "")),
                     word(str(c.get("action", ""))), detail, word(str(c.get("status", "")))))
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
        if self.eta_s is None:
            return _("ETA: {eta}").format(eta="—")
        return _("ETA: {eta}").format(eta=duration(max(60, round(self.eta_s / 60) * 60)))  # whole minutes

    @property
    def availability_text(self) -> str:
        return boolean(True) if self.available else boolean(False) + (f": {self.why}" if self.why else "")


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
