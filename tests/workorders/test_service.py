"""The work-order façade over a real store: alarms create and join orders, crews' actions, resolution,
recurrence, automatic closing, SLA breaches, crews' scope and idempotent retries."""

from __future__ import annotations

from typing import Any

import pytest

from scada.config import CityConfig
from scada.errors import Refusal, Refused
from scada.workorders import Action, AlarmRef, OrderQuery, Status
from tests.workorders.conftest import HOUR, MIN, T0, Book

AUTO = frozenset({"lamp_failed"})


def lamp(city: CityConfig, eq: str, i: int, event: str = "condition_on", rule: str = "lamp_failed") -> dict[str, Any]:
    return {"event": event, "id": f"{rule}:{city.equipment[eq].prefix}/lamp_{i:02d}/status", "equipment": eq,
            "rule": rule, "service": "lighting", "priority": "diagnostic", "message": f"Luminaire {i} of {eq} failed",
            "active": event == "condition_on"}


def test_auto_rule_creates_one_order_per_equipment_and_links_the_others(book: Book, city: CityConfig) -> None:
    events = [lamp(city, "C0001", 3), lamp(city, "C0001", 7), lamp(city, "C0002", 1),
              lamp(city, "C0003", 2, rule="lamp_day_burner")]  # not an auto rule, no open order: nothing
    book.orders.on_alarm_events(events, AUTO, T0)
    total, orders = book.store.query(OrderQuery())
    assert total == 2
    c1 = next(o for o in orders if o.equipment == "C0001")
    assert c1.alarms == (events[0]["id"], events[1]["id"]) and c1.source == "auto" and c1.status is Status.NEW
    assert (c1.service, c1.commune, c1.priority, c1.lat) == ("lighting", "Dijon", 4, city.equipment["C0001"].lat)
    assert c1.due_ms == T0 + 3 * 24 * HOUR  # crews.yaml: lighting, priority 4 → 3 days
    assert c1.what == "Luminaire 3 of C0001 failed" and c1.created_by == "system"
    # a failure of another rule on an equipment with an open order attaches to it
    book.orders.on_alarm_events([lamp(city, "C0001", 9, rule="lamp_day_burner")], AUTO, T0 + MIN)
    assert len(book.store.get(c1.id).alarms) == 3  # type: ignore[union-attr]
    assert book.store.query(OrderQuery())[0] == 2
    # every link reached the alarm journal's hook, with the alarms newly linked only
    assert [(oid, len(a)) for oid, a, _ in book.links if oid == c1.id] == [(c1.id, 2), (c1.id, 1)]


def test_one_click_from_an_alarm_joins_the_open_order(book: Book, city: CityConfig) -> None:
    a = lamp(city, "C0001", 3)
    ref = AlarmRef.of_view(a)
    first, created = book.orders.from_alarm(ref, "op", T0)
    assert created and first.source == "alarm" and first.alarms == (a["id"],) and first.created_by == "op"
    second, created = book.orders.from_alarm(AlarmRef.of_view(lamp(city, "C0001", 4)), "op", T0 + MIN)
    assert not created and second.id == first.id and len(second.alarms) == 2
    with pytest.raises(Refused) as exc:
        book.orders.create("op", "NOPE", "x", 3, T0)
    assert exc.value.code is Refusal.NOT_FOUND


def test_crew_cycle_resolves_when_done_and_alarms_back_to_normal(book: Book, city: CityConfig) -> None:
    a = lamp(city, "C0001", 3)
    book.active["C0001"] = [a["id"]]
    book.orders.on_alarm_events([a], AUTO, T0)
    oid = book.store.open_for("C0001").id  # type: ignore[union-attr]
    o = book.orders.act(oid, Action.ASSIGN, "op", T0 + 10 * MIN, {"crew": "lighting-day"})
    assert (o.status, o.crew, o.vehicle) == (Status.ASSIGNED, "lighting-day", "V006")  # the crew's first vehicle
    with pytest.raises(Refused) as exc:
        book.orders.act(oid, Action.ASSIGN, "op", T0, {"crew": "lighting-day", "vehicle": "V001"})
    assert exc.value.code is Refusal.INVALID and "not one of" in exc.value.why
    with pytest.raises(Refused) as exc:  # another crew does not see this mission
        book.orders.act(oid, Action.EN_ROUTE, "crew.x", T0, crew="traffic-east")
    assert exc.value.code is Refusal.NOT_FOUND
    book.orders.act(oid, Action.EN_ROUTE, "crew.lighting-day", T0 + 20 * MIN, crew="lighting-day")
    book.orders.act(oid, Action.ON_SITE, "crew.lighting-day", T0 + 40 * MIN, crew="lighting-day")
    o = book.orders.act(oid, Action.DONE, "crew.lighting-day", T0 + HOUR, {"text": "lamp replaced"},
                        crew="lighting-day")
    assert o.status is Status.DONE  # the alarm is still active: not resolved yet
    book.active.pop("C0001")
    changed = book.orders.on_alarm_events([lamp(city, "C0001", 3, "condition_off")], AUTO, T0 + 2 * HOUR)
    o = book.store.get(oid)  # type: ignore[assignment]
    assert [c.id for c in changed] == [oid] and o.status is Status.RESOLVED and o.resolved_ms == T0 + 2 * HOUR
    assert o.notes[0].text == "lamp replaced"
    # a supervisor could close it; here nothing recurs for a day: it closes by itself
    closed, _ = book.orders.tick(T0 + 2 * HOUR + 23 * HOUR)
    assert closed == []
    closed, _ = book.orders.tick(T0 + 2 * HOUR + 24 * HOUR)
    assert [c.id for c in closed] == [oid] and closed[0].status is Status.CLOSED
    history = [r.change.action for r in book.store.history(oid)]
    assert history == [Action.CREATE, Action.ASSIGN, Action.EN_ROUTE, Action.ON_SITE, Action.DONE, Action.RESOLVE,
                       Action.AUTO_CLOSE]


def test_done_with_alarms_already_normal_resolves_at_once_and_recurrence_reopens(book: Book, city: CityConfig) -> None:
    order, _ = book.orders.create("op", "J001", "cabinet door damaged", 2, T0)
    assert order.service == "traffic" and order.due_ms == T0 + 4 * HOUR
    for action, data in ((Action.ASSIGN, {"crew": "traffic-west"}), (Action.ON_SITE, {}), (Action.DONE, {})):
        order = book.orders.act(order.id, action, "maint", T0 + HOUR, data)
    assert order.status is Status.RESOLVED
    # a new failure of the equipment while resolved: the order recurs, back in the queue
    book.orders.on_alarm_events([{"event": "condition_on", "id": "junction_bad_plan:x", "equipment": "J001",
                                  "rule": "junction_bad_plan", "priority": 3, "message": "bad plan"}], AUTO,
                                T0 + 2 * HOUR)
    o = book.store.get(order.id)
    assert o is not None and (o.status, o.recurrences, o.crew) == (Status.NEW, 1, None)
    assert o.resolved_ms == T0 + HOUR  # the first resolution stays on record


def test_sla_breach_cancel_and_idempotent_retry(book: Book, city: CityConfig) -> None:
    order, _ = book.orders.create("op", "B001", "fire panel fault", 1, T0, idem="console-key-0001")
    retried, _ = book.orders.create("op", "B001", "fire panel fault", 1, T0 + 1, idem="console-key-0001")
    assert retried == order and book.store.count() == (1, 1)  # the retried creation made nothing more
    _, overdue = book.orders.tick(T0 + 2 * HOUR - 1)
    assert overdue == []
    _, overdue = book.orders.tick(T0 + 2 * HOUR + 1)
    assert [o.id for o in overdue] == [order.id]
    rows = book.orders.orders(OrderQuery(), T0 + 3 * HOUR)[1]
    assert rows[0].id == order.id  # overdue first
    book.orders.act(order.id, Action.ASSIGN, "op", T0, {"crew": "buildings-1"}, idem="tablet-key-0001")
    again = book.orders.act(order.id, Action.ASSIGN, "op", T0 + MIN, {"crew": "buildings-1"}, idem="tablet-key-0001")
    assert again.updated_ms == T0 and len(book.store.history(order.id)) == 2  # applied once
    with pytest.raises(Refused):
        book.orders.act(order.id, Action.CANCEL, "op", T0 + MIN, {})
    o = book.orders.act(order.id, Action.CANCEL, "op", T0 + MIN, {"reason": "duplicate"})
    assert o.status is Status.CANCELLED and book.orders.tick(T0 + 5 * HOUR)[1] == []
    with pytest.raises(Refused) as exc:
        book.orders.act(order.id, Action.NOTE, "op", T0 + 2 * MIN, {"text": "late"})
    assert exc.value.code is Refusal.WORK_ORDER_REFUSED
    with pytest.raises(Refused) as exc:
        book.orders.act(order.id, Action.RESOLVE, "op", T0 + 2 * MIN)
    assert exc.value.code is Refusal.INVALID  # a system action is not a user's
