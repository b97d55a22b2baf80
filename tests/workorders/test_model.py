"""The work-order state machine: every (status, action) pair, and random action sequences through the real
store (hypothesis): never an illegal state, a refused action changes nothing, the journal replays to the
orders the store holds."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scada.config import CityConfig
from scada.errors import Refusal, Refused
from scada.workorders import Action, Change, CrewsConfig, Status, WorkOrder, WorkOrders, WorkOrderStore, apply, replay
from scada.workorders.model import TRANSITIONS
from tests.workorders.conftest import HOUR, MIN, T0

BASE = WorkOrder(id="WO-000001", equipment="C0001", template="lighting_cabinet", commune="Dijon", lat=47.3, lon=5.0,
                 service="lighting", what="lamp out", priority=4, created_ms=T0, due_ms=T0 + 72 * HOUR,
                 created_by="op")
#: a valid data for each action (the required fields present)
DATA: dict[Action, dict[str, Any]] = {Action.ASSIGN: {"crew": "lighting-day", "vehicle": "V006"}, Action.CANNOT_REPAIR: {"reason": "no part"},
        Action.CANCEL: {"reason": "duplicate"}, Action.NOTE: {"text": "seen"}, Action.LINK: {"alarms": ["a:1"]},
        Action.CLOSE: {"cause": "lamp", "action": "replaced"}, Action.PHOTOS_PURGED: {"photos": ["0123456789abcdef.jpg"]}}
USER_ACTIONS = [a for a in Action if a is not Action.CREATE]


@pytest.mark.parametrize(("status", "action"), list(itertools.product(list(Status), USER_ACTIONS)))
def test_every_status_action_pair(status: Status, action: Action) -> None:
    order = WorkOrder(**{**BASE.as_dict(), "status": status, "alarms": (), "notes": ()})
    allowed, target = TRANSITIONS[action]
    change = Change(order.id, T0 + MIN, "op", action, DATA.get(action, {}))
    if status in allowed:
        after = apply(order, change)
        assert after.status is (target if target is not None else status)
        assert after.updated_ms == T0 + MIN
    else:
        with pytest.raises(Refused) as exc:
            apply(order, change)
        assert exc.value.code is Refusal.WORK_ORDER_REFUSED and str(status) in exc.value.why


def test_required_fields_and_stage_times() -> None:
    with pytest.raises(Refused, match="give crew"):
        apply(BASE, Change(BASE.id, T0, "op", Action.ASSIGN, {}))
    with pytest.raises(Refused, match="give cause and action"):
        apply(replace(BASE, status=Status.DONE), Change(BASE.id, T0, "op", Action.CLOSE, {}))
    o = apply(BASE, Change(BASE.id, T0 + MIN, "op", Action.ASSIGN, {"crew": "c1"}))
    o = apply(o, Change(o.id, T0 + 2 * MIN, "c", Action.CANNOT_REPAIR, {"reason": "no ladder"}))
    assert (o.status, o.crew, o.reason, o.assigned_ms) == (Status.NEW, None, "no ladder", T0 + MIN)
    o = apply(o, Change(o.id, T0 + 3 * MIN, "op", Action.ASSIGN, {"crew": "c2"}))
    assert o.assigned_ms == T0 + MIN  # the first time is kept: the KPI counts from it
    with pytest.raises(Refused) as exc:
        apply(None, Change("WO-9", T0, "op", Action.NOTE, {"text": "x"}))
    assert exc.value.code is Refusal.NOT_FOUND


ACTIONS = st.sampled_from([Action.ASSIGN, Action.EN_ROUTE, Action.ON_SITE, Action.DONE, Action.CANNOT_REPAIR,
                           Action.CLOSE, Action.CANCEL, Action.NOTE, Action.LINK, "alarm_on", "alarm_off", "tick"])
STEPS = st.lists(st.tuples(st.integers(0, 2), ACTIONS, st.booleans()), min_size=1, max_size=40)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=STEPS)
def test_random_sequences_never_reach_an_illegal_state(tmp_path_factory: pytest.TempPathFactory, city: CityConfig,
                                                       crews: CrewsConfig, steps: list[tuple[int, object, bool]]) -> None:
    path: Path = tmp_path_factory.mktemp("wo") / "workorders.sqlite"
    active: dict[str, list[str]] = {}
    store = WorkOrderStore(path)
    book = WorkOrders(store, city, crews, alarms_active=lambda eq: active.get(eq, []))
    cabinets = ["C0001", "C0002", "C0003"]
    now = T0
    try:
        for which, action, flag in steps:
            now += 7 * MIN
            eq = cabinets[which]
            alarm = f"lamp_failed:{city.equipment[eq].prefix}/lamp_0{1 + int(flag)}/status"
            if action == "alarm_on":
                active.setdefault(eq, []).append(alarm)
                book.on_alarm_events([{"event": "condition_on", "id": alarm, "equipment": eq, "rule": "lamp_failed",
                                       "service": "lighting", "priority": "diagnostic", "message": "lamp"}],
                                     frozenset({"lamp_failed"}), now)
                continue
            if action == "alarm_off":
                active.pop(eq, None)
                book.on_alarm_events([{"event": "condition_off", "id": alarm, "equipment": eq, "active": False}],
                                     frozenset({"lamp_failed"}), now)
                continue
            if action == "tick":
                book.tick(now + (25 * HOUR if flag else 0))
                continue
            order = store.open_for(eq)
            if order is None:
                continue
            before = store.get(order.id)
            data = dict(DATA.get(Action(str(action)), {}))
            if not flag and data:
                data = {}  # the required fields missing: must be refused
            try:
                after = book.act(order.id, Action(str(action)), "op", now, data)
            except Refused as exc:
                assert exc.code in (Refusal.WORK_ORDER_REFUSED, Refusal.INVALID)
                assert store.get(order.id) == before  # a refusal changes nothing
                continue
            assert after.status in Status
            if after.status.in_field:
                assert after.crew is not None
            if after.status is Status.RESOLVED:
                assert not active.get(eq)  # resolved only with the equipment's alarms back to normal
        for o in store.iter_orders():
            assert o.status in Status and o.created_ms <= o.updated_ms
            assert o.done_ms is None or o.done_ms >= o.created_ms
        assert len([o for o in store.iter_orders() if o.open and o.equipment == "C0001"]) <= 1
        assert store.verify() == []  # the journal replays to exactly the stored orders
        assert replay(r.change for r in store.history()) == {o.id: o for o in store.iter_orders()}
    finally:
        store.close()
