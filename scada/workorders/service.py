"""The work-order façade: what the server, the API and the CLI use (the store and the state machine behind it).

::

    alarm events (the engine's JSON views) ──on_alarm_events──┐    operator / crew / supervisor (API)
      condition on, rule work_order: auto ─► create or attach │      create · assign · en_route · on_site ·
      condition on, equipment has an open order ─► attach     │      done · cannot_repair · close · cancel ·
        (a resolved one recurs: back to new)                  │      note · link (from an alarm, one click)
      back to normal ─► resolve the equipment's done order    ▼                    │
    citizen reports (intake) ──open_or_attach──►    WorkOrders (this module) ◄─────┘
      a batch in one transaction: the equipment's open order absorbs each, else a new order
                                   city (equipment: location, commune) · crews.yaml (SLA, crews, accounts)
                                                            │ Change rows, one transaction per call
                                                            ▼
                                         WorkOrderStore (workorders.sqlite, WAL, FULL)
    tick(now): resolved orders without recurrence for auto_close_after ─► closed; overdue orders ─► the SLA alarm

One equipment has at most one open order: an alarm (by hand or automatically) or an out-of-service request
on an equipment that already has one links to it instead of creating another. An order is *resolved* when
the crew has reported it done AND none of the equipment's alarms is active any more (asked through
``alarms_active``, the running alarm engine's view); whichever comes last resolves it.

Times are passed in (epoch ms): there is no clock here, so the tests and the KPI golden month run on fixed
times. Refusals are :class:`scada.errors.Refused` (code ``work_order_refused``, ``not_found`` or
``invalid_request``) and change nothing.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scada.config.model import CityConfig
from scada.errors import Refusal, Refused
from scada.i18n import N_, _
from scada.workorders.crews import CrewsConfig
from scada.workorders.model import SYSTEM_ACTIONS, Action, Change, Status, WorkOrder, apply
from scada.workorders.store import OrderQuery, WorkOrderStore

log = logging.getLogger(__name__)

SYSTEM_USER = "system"
#: alarm event labels that mean "the condition is present" / "it is gone" (scada.alarms.states.Event labels)
ON_EVENTS = frozenset({"condition_on"})
OFF_EVENTS = frozenset({"condition_off", "reset"})
#: a change's free-text fields are bounded (they reach exports and the journal)
MAX_TEXT = 2000


@dataclass(frozen=True, slots=True)
class AlarmRef:
    """What an order needs to know of an alarm (from the engine's view of it)."""

    id: str
    equipment: str
    rule: str
    service: str
    priority: int  # 1..4; diagnostic alarms open priority-4 orders
    message: str

    @classmethod
    def of_view(cls, view: Mapping[str, Any]) -> AlarmRef:
        p = view.get("priority")
        priority = p if isinstance(p, int) and 1 <= p <= 4 else 4
        return cls(str(view["id"]), str(view.get("equipment") or ""), str(view.get("rule") or ""),
                   str(view.get("service") or ""), priority, str(view.get("message") or view["id"]))


@dataclass(frozen=True, slots=True)
class Want:
    """One request of :meth:`WorkOrders.open_or_attach`: an order for ``equipment`` (what is wrong, priority)
    unless it has an open one, which then gets ``note(order)`` when that gives a text."""

    equipment: str
    what: str
    priority: int
    note: Callable[[WorkOrder], str | None] | None = None


AlarmsActive = Callable[[str], Sequence[str]]  # equipment → ids of its alarms whose condition is present
#: [(order, the alarms newly linked to it)], user, ts_ms: one call per committed batch (one journal transaction)
OnLink = Callable[[Sequence[tuple[WorkOrder, Sequence[str]]], str, int], None]


class WorkOrders:
    """Work orders over one store, for one city and one crews.yaml."""

    def __init__(self, store: WorkOrderStore, city: CityConfig, crews: CrewsConfig, *,
                 alarms_active: AlarmsActive | None = None, on_link: OnLink | None = None) -> None:
        self.store = store
        self.city = city
        self.crews = crews
        self.alarms_active = alarms_active
        self.on_link = on_link

    # ------------------------------------------------------------------ helpers
    def _equipment(self, equipment: str, what: str) -> Any:
        eq = self.city.equipment.get(equipment)
        if eq is None:
            raise Refused(what, _("no equipment {equipment} in the city").format(equipment=repr(equipment)),
                          Refusal.NOT_FOUND)
        return eq

    def service_of(self, equipment: str) -> str:
        """Who maintains ``equipment``: the crews.yaml service of its template, else its template's domain."""
        eq = self._equipment(equipment, f"find the service of {equipment!r}")
        return self.crews.service_of(eq.template) or eq.domain

    def _create_change(self, number: int, user: str, equipment: str, what: str, priority: int, now_ms: int,
                       service: str | None, alarms: Sequence[str], source: str, idem: str | None) -> Change:
        act = f"create a work order for {equipment!r}"
        eq = self._equipment(equipment, act)
        if not 1 <= priority <= 4:
            raise Refused(act, _("priority must be 1..4, got {priority}").format(priority=priority), Refusal.INVALID)
        if not what.strip():
            raise Refused(act, N_("say what is wrong"), Refusal.INVALID)
        svc = service or self.crews.service_of(eq.template) or eq.domain
        due = now_ms + int(self.crews.sla_s(svc, priority) * 1000)
        data = {"equipment": eq.id, "template": eq.template, "commune": eq.commune, "lat": eq.lat, "lon": eq.lon,
                "service": svc, "what": what.strip()[:MAX_TEXT], "priority": priority, "due_ms": due,
                "source": source, "alarms": list(dict.fromkeys(alarms))}
        return Change(f"WO-{number:06d}", now_ms, user, Action.CREATE, data, idem)

    def _linked(self, before: WorkOrder | None, after: WorkOrder, user: str, ts_ms: int) -> None:
        self._linked_many([(before, after)], user, ts_ms)

    def _linked_many(self, pairs: Sequence[tuple[WorkOrder | None, WorkOrder]], user: str, ts_ms: int) -> None:
        """Tell ``on_link`` which alarms each order gained (the orders and links are already committed)."""
        links = [(after, new) for before, after in pairs
                 if (new := [a for a in after.alarms if before is None or a not in before.alarms])]
        if links and self.on_link is not None:
            try:
                self.on_link(links, user, ts_ms)
            except Exception:  # the order and its links are committed; the alarm journal's copy is logged
                log.exception("cannot journal the links of %d work order(s)", len(links))

    # ------------------------------------------------------------------ create / link
    def create(self, user: str, equipment: str, what: str, priority: int, now_ms: int, *,
               service: str | None = None, alarms: Sequence[str] = (), source: str = "manual",
               idem: str | None = None) -> tuple[WorkOrder, bool]:
        """A new order, or — when it comes with alarms and the equipment already has an open order — that
        order with the alarms linked. Returns (order, created)."""
        before: dict[str, WorkOrder | None] = {}

        def changes(store: WorkOrderStore) -> list[Change]:
            open_ = store.open_for(equipment) if alarms else None
            before["o"] = open_
            if open_ is not None:
                return [_link_change(open_, alarms, user, now_ms, idem)]
            return [self._create_change(store.next_number(), user, equipment, what, priority, now_ms, service,
                                        alarms, source, idem)]

        order = self.store.commit(changes)[-1]
        self._linked(before.get("o"), order, user, now_ms)
        created = before.get("o") is None
        if created:
            log.info("%s: work order created for %s by %s (%s)", order.id, equipment, user, source)
        return order, created

    def open_or_attach(self, user: str, wants: Sequence[Want], now_ms: int, *, source: str = "manual"
                       ) -> list[tuple[WorkOrder, bool] | Refused]:
        """Many requests for orders in ONE transaction (one durable commit for the lot: the citizen intake's
        group commit). Each want, in order: its equipment's open order — opened by an earlier want of the same
        batch, or already in the store — with the want's note added (``note(order)``: a text, or None for no
        note; a note the state machine refuses is left out), else a new order. Returns per want
        (the order after that want, created by it) or the :class:`Refused` that want alone met (the others
        still commit)."""
        results: list[tuple[WorkOrder, bool] | Refused] = []

        def changes(store: WorkOrderStore) -> list[Change]:
            results.clear()
            out: list[Change] = []
            current: dict[str, WorkOrder | None] = {}  # the batch's own view: orders it opened or noted
            number = store.next_number()
            for w in wants:
                order = current[w.equipment] if w.equipment in current else store.open_for(w.equipment)
                try:
                    if order is None:
                        c = self._create_change(number, user, w.equipment, w.what, w.priority, now_ms, None, (),
                                                source, None)
                        order, created = apply(None, c), True
                        number += 1
                        out.append(c)
                    else:
                        created = False
                        text = w.note(order) if w.note is not None else None
                        if text:
                            c = Change(order.id, now_ms, user, Action.NOTE, {"text": text[:MAX_TEXT]})
                            with contextlib.suppress(Refused):  # checked here: a refusal would abort the lot
                                order = apply(order, c)
                                out.append(c)
                except Refused as exc:
                    results.append(exc)
                    continue
                current[w.equipment] = order
                results.append((order, created))
            return out

        self.store.commit(changes)
        for r in results:
            if not isinstance(r, Refused) and r[1]:
                log.info("%s: work order created for %s by %s (%s)", r[0].id, r[0].equipment, user, source)
        return list(results)

    def from_alarm(self, alarm: AlarmRef, user: str, now_ms: int, *, source: str = "alarm",
                   idem: str | None = None) -> tuple[WorkOrder, bool]:
        """One click from an alarm: its equipment's open order with the alarm linked, else a new order."""
        if not alarm.equipment:
            raise Refused(f"create a work order from alarm {alarm.id!r}", N_("the alarm belongs to no equipment"),
                          Refusal.INVALID)
        return self.create(user, alarm.equipment, alarm.message, alarm.priority, now_ms,
                           service=alarm.service or None, alarms=[alarm.id], source=source, idem=idem)

    def link(self, order_id: str, alarm_ids: Sequence[str], user: str, now_ms: int,
             *, equipment: str | None = None) -> WorkOrder:
        """Link alarms to an open order (the out-of-service path: the alarm must be of the order's equipment)."""
        order = self.get(order_id)
        if equipment is not None and order.equipment != equipment:
            raise Refused(f"link alarms to work order {order_id}",
                          _("the order is for {order_equipment}, the alarm for {alarm_equipment}").format(
                              order_equipment=order.equipment, alarm_equipment=equipment), Refusal.INVALID)
        after = self.store.commit([_link_change(order, alarm_ids, user, now_ms, None)])[-1]
        self._linked(order, after, user, now_ms)
        return after

    # ------------------------------------------------------------------ actions
    def get(self, order_id: str) -> WorkOrder:
        order = self.store.get(order_id)
        if order is None:
            raise Refused(f"read work order {order_id!r}", N_("no such work order"), Refusal.NOT_FOUND)
        return order

    def act(self, order_id: str, action: Action | str, user: str, now_ms: int, data: Mapping[str, Any] | None = None,
            *, crew: str | None = None, idem: str | None = None) -> WorkOrder:
        """A user's action on one order. ``crew``: the caller is that crew (role ``crew``): only its own orders.

        ``assign`` checks the crew (and vehicle) against crews.yaml; ``done`` resolves the order at once when
        the equipment's alarms are already back to normal.
        """
        try:
            a = Action(action)
        except ValueError:
            actions = ", ".join(str(x) for x in Action if x not in SYSTEM_ACTIONS and x is not Action.CREATE)
            raise Refused(f"{action} work order {order_id}", _("unknown action; actions: {actions}").format(
                actions=actions), Refusal.INVALID) from None
        what = f"{a} work order {order_id}"
        if a in SYSTEM_ACTIONS or a is Action.CREATE:
            raise Refused(what, N_("only the system takes this action"), Refusal.INVALID)
        order = self.get(order_id)
        if crew is not None and order.crew != crew:
            # a crew sees only its own missions: another's is as good as absent
            raise Refused(what, N_("no such work order among this crew's missions"), Refusal.NOT_FOUND)
        payload = {k: (str(v)[:MAX_TEXT] if isinstance(v, str) else v) for k, v in (data or {}).items()
                   if v is not None}
        if a is Action.ASSIGN:
            self._check_assignment(order, payload, what)
        after = self.store.commit([Change(order_id, now_ms, user, a, payload, idem)])[-1]
        self._linked(order, after, user, now_ms)
        if after.status is Status.DONE:
            after = self.try_resolve(order_id, now_ms) or after
        return after

    def _check_assignment(self, order: WorkOrder, data: dict[str, Any], what: str) -> None:
        crew_id = str(data.get("crew") or "")
        crew = self.crews.crews.get(crew_id)
        if crew is None:
            known = ", ".join(sorted(self.crews.crews)) or "none in crews.yaml"
            raise Refused(what, _("no crew {crew} (crews: {known})").format(crew=repr(crew_id), known=known),
                          Refusal.INVALID)
        vehicle = data.get("vehicle")
        if vehicle is None and crew.vehicles:
            data["vehicle"] = crew.vehicles[0]
        elif vehicle is not None and vehicle not in crew.vehicles:
            raise Refused(what, _("vehicle {vehicle} is not one of crew {crew}'s ({vehicles})").format(
                vehicle=repr(vehicle), crew=crew_id, vehicles=", ".join(crew.vehicles)), Refusal.INVALID)

    def try_resolve(self, order_id: str, now_ms: int) -> WorkOrder | None:
        """Resolve a done order whose equipment has no active alarm left; None when it stays as it is."""
        order = self.store.get(order_id)
        if order is None or order.status is not Status.DONE:
            return None
        if self.alarms_active is not None and list(self.alarms_active(order.equipment)):
            return None
        try:
            return self.store.commit([Change(order_id, now_ms, SYSTEM_USER, Action.RESOLVE,
                                             {"text": "done and the equipment's alarms are back to normal"})])[-1]
        except Refused:  # raced with a user's action (closed meanwhile): nothing to resolve
            return None

    # ------------------------------------------------------------------ alarm events
    def on_alarm_events(self, events: Iterable[Mapping[str, Any]], auto_rules: frozenset[str],
                        now_ms: int) -> list[WorkOrder]:
        """The alarm engine's events (JSON views with ``event``): automatic orders, attachments, recurrences,
        then resolutions. Returns the orders changed.

        The batch is taken per equipment, one change each, all in one transaction: the failures of an
        equipment that has an open order are linked to it (a resolved one recurs); an equipment without one
        gets a new order when one of its failures comes from a ``work_order: auto`` rule, with all of them
        linked. A storm of 33,000 lamp failures on 1,100 cabinets is 1,100 rows (about a second)."""
        on: list[AlarmRef] = []
        off: set[str] = set()
        for v in events:
            ev = str(v.get("event", ""))
            if ev in ON_EVENTS and v.get("equipment"):
                on.append(AlarmRef.of_view(v))
            elif (ev in OFF_EVENTS or not v.get("active", True)) and v.get("equipment"):
                off.add(str(v["equipment"]))
        changed: list[WorkOrder] = []
        before: dict[str, WorkOrder | None] = {}
        if on:
            # one change per equipment for the whole batch (a storm links 30 lamps of a cabinet in one row)
            by_eq: dict[str, list[AlarmRef]] = {}
            for a in on:
                by_eq.setdefault(a.equipment, []).append(a)

            def changes(store: WorkOrderStore) -> list[Change]:
                out: list[Change] = []
                number = store.next_number()
                for equipment, refs in by_eq.items():
                    ids = list(dict.fromkeys(a.id for a in refs))
                    current = store.open_for(equipment)
                    if current is not None:
                        before[current.id] = current
                        if current.status is Status.RESOLVED:
                            first = refs[0]
                            out.append(Change(current.id, now_ms, SYSTEM_USER, Action.RECUR,
                                              {"alarms": ids, "text": f"recurred: {first.message}"[:MAX_TEXT]}))
                        elif [a for a in ids if a not in current.alarms]:
                            out.append(Change(current.id, now_ms, SYSTEM_USER, Action.LINK,
                                              {"alarms": [a for a in ids if a not in current.alarms]}))
                        continue
                    auto = [a for a in refs if a.rule in auto_rules]
                    if auto and equipment in self.city.equipment:
                        first = auto[0]
                        c = self._create_change(number, SYSTEM_USER, equipment, first.message,
                                                min(a.priority for a in auto), now_ms, first.service or None, ids,
                                                "auto", None)
                        number += 1
                        before[c.order_id] = None
                        out.append(c)
                return out

            results = self.store.commit(changes)
            last: dict[str, WorkOrder] = {o.id: o for o in results}
            self._linked_many([(before.get(oid), after) for oid, after in last.items()], SYSTEM_USER, now_ms)
            for oid, after in last.items():
                if before.get(oid) is None:
                    log.info("%s: work order created automatically for %s", oid, after.equipment)
            changed.extend(last.values())
        for equipment in sorted(off):
            order = self.store.open_for(equipment)
            if order is not None and order.status is Status.DONE:
                resolved = self.try_resolve(order.id, now_ms)
                if resolved is not None:
                    changed.append(resolved)
        return changed

    # ------------------------------------------------------------------ time
    def tick(self, now_ms: int) -> tuple[list[WorkOrder], list[WorkOrder]]:
        """Close resolved orders that stayed so for ``auto_close_after``; returns (closed, open overdue)."""
        limit = now_ms - int(self.crews.auto_close_after_s * 1000)
        _, resolved = self.store.query(OrderQuery(status=[str(Status.RESOLVED)], limit=100_000))
        due = [o for o in resolved if o.resolved_ms is not None and o.resolved_ms <= limit]
        closed: list[WorkOrder] = []
        if due:
            text = f"closed automatically: no recurrence for {self.crews.auto_close_after_s / 3600:g} h"
            try:
                closed = self.store.commit([Change(o.id, now_ms, SYSTEM_USER, Action.AUTO_CLOSE, {"text": text})
                                            for o in due])
            except Refused:  # one of them changed meanwhile (recurred): the next tick takes the others
                closed = []
        return closed, self.overdue(now_ms)

    def overdue(self, now_ms: int) -> list[WorkOrder]:
        """Open orders not done by their due time (the SLA breaches in progress), most overdue first."""
        _, rows = self.store.query(OrderQuery(open=True, limit=100_000))
        return [o for o in rows if o.done_ms is None and o.overdue(now_ms)]

    # ------------------------------------------------------------------ read
    def orders(self, q: OrderQuery, now_ms: int) -> tuple[int, list[WorkOrder]]:
        """Orders matching ``q``: overdue first (most overdue on top), then by due time."""
        total, rows = self.store.query(q)
        rows.sort(key=lambda o: (not (o.open and o.overdue(now_ms)), o.due_ms, o.id))
        return total, rows


def _link_change(order: WorkOrder, alarms: Sequence[str], user: str, now_ms: int, idem: str | None) -> Change:
    return Change(order.id, now_ms, user, Action.LINK, {"alarms": list(dict.fromkeys(alarms))}, idem)
