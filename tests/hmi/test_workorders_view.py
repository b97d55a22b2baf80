"""Work orders in the console (issue 18), against a real simulator + server (one stack for the module).

    orders made over the API ──► the list: overdue first whatever the sort, filters, detail + change history,
                                 actions by role (an operator cancels, only a supervisor closes)
    "Dispatch…" ──► the ranked crews (the order's service first) ──► "Send the crew" ──► assigned in the API
    a bollard in fault ──► "Work order" (one click) ──► out of service offers that order ──► linked
                      ──► another alarm: out of service "create one from this alarm" ──► a new order, linked
    the overview's layer: a mark per equipment with an open order, coloured only while it is alarmed

The pure model (filter, order, roles, ranking without the server's ETA) is checked first, without Qt.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PyQt6.QtCore import Qt
from pytestqt.qtbot import QtBot

from hmi.models.workorders import (
    CREATE_FROM_ALARM,
    Order,
    OrderFilter,
    candidates_from_api,
    history_rows,
    select,
    why_not,
)
from tests.hmi.stack import PASSWORDS, LiveStack
from tests.hmi.test_live import UI

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------- the model, without Qt
def order(oid: str, **kw: Any) -> Order:
    d: dict[str, Any] = {"id": oid, "equipment": "C0001", "commune": "Dijon", "service": "lighting", "what": "x",
                         "priority": 3, "status": "new", "crew": None, "vehicle": None, "created_ms": 0,
                         "due_ms": 1000, "updated_ms": 0, "overdue": False}
    d.update(kw)
    return Order.from_json(d)


def test_select_puts_overdue_first_and_filters() -> None:
    rows = [order("WO-1", created_ms=1, due_ms=50), order("WO-2", created_ms=2, overdue=True, due_ms=10),
            order("WO-3", created_ms=3, service="traffic", equipment="J001", crew="traffic-east", status="assigned"),
            order("WO-4", created_ms=4, status="closed", due_ms=500)]
    assert [o.id for o in select(rows, OrderFilter(), "created")] == ["WO-2", "WO-3", "WO-1"]  # newest, overdue 1st
    assert [o.id for o in select(rows, OrderFilter(status="all"), "due")] == ["WO-2", "WO-1", "WO-4", "WO-3"]
    assert [o.id for o in select(rows, OrderFilter(service="traffic"))] == ["WO-3"]
    assert [o.id for o in select(rows, OrderFilter(crew="(none)"), "created")] == ["WO-2", "WO-1"]
    assert [o.id for o in select(rows, OrderFilter(crew="traffic-east"))] == ["WO-3"]
    assert [o.id for o in select(rows, OrderFilter(text="j001"))] == ["WO-3"]
    assert [o.id for o in select(rows, OrderFilter(status="closed"))] == ["WO-4"]


def test_actions_follow_role_and_state() -> None:
    op = frozenset({"workorder.read", "workorder.assign"})
    sup = op | {"workorder.close"}
    assert why_not("assign", order("WO-1"), op) == ""
    assert "may not close" in why_not("close", order("WO-1", status="done"), op)
    assert why_not("close", order("WO-1", status="done"), sup) == ""
    assert "is new: cannot close" in why_not("close", order("WO-1"), sup)  # the server's state machine
    assert "cannot cancel" in why_not("cancel", order("WO-1", status="closed"), op)
    assert why_not("assign", None, op) == "select a work order first"


def test_candidates_and_history_rows() -> None:
    # the server's ranking (GET /workorders/{id}/candidates) is kept in its order, with its estimate
    got = candidates_from_api([
        {"crew": "lighting-day", "service": "lighting", "vehicle": "V006", "lat": 47.3, "lon": 5.0,
         "distance_m": 2100.0, "eta_s": 393.0, "available": True, "on_shift": True, "busy_with": None, "why": ""},
        {"crew": "lighting-night", "service": "lighting", "vehicle": "V011", "lat": None, "lon": None,
         "distance_m": None, "eta_s": None, "available": False, "on_shift": False, "busy_with": None,
         "why": "off shift"}])
    assert [(c.crew, c.eta_text, c.availability_text) for c in got] == [
        ("lighting-day", "ETA: 7 min", "yes"), ("lighting-night", "ETA: —", "no: off shift")]
    assert history_rows([{"ts_ms": 0, "user": "op", "action": "cancel", "data": {"reason": "dup"},
                          "status": "cancelled"}])[0][1:] == ("op", "cancelled", "reason: dup", "cancelled")


# ---------------------------------------------------------------------- against the real server
@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    tmp = tmp_path_factory.mktemp("hmi-workorders")
    # the shipped crews beside the test city's tags.yaml, a buildings priority-1 order due within a second
    (tmp / "city").mkdir()
    text = (ROOT / "crews.yaml").read_text(encoding="utf-8")
    (tmp / "city" / "crews.yaml").write_text(text.replace("sla: {1: 2h, 2: 8h, 3: 2d, 4: 5d}",
                                                          "sla: {1: 1s, 2: 8h, 3: 2d, 4: 5d}"), encoding="utf-8")
    s = LiveStack(tmp).start()
    try:
        yield s
    finally:
        s.stop()
        shutil.rmtree(tmp / "city", ignore_errors=True)


@pytest.fixture(scope="module")
def api(stack: LiveStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url + "/api/v1", timeout=30) as c:
        r = c.post("/auth/login", json={"user": "op", "password": PASSWORDS["op"]})
        assert r.status_code == 200, r.text
        c.headers["Authorization"] = f"Bearer {r.json()['token']}"
        yield c


@pytest.fixture(scope="module")
def made(api: httpx.Client) -> dict[str, str]:
    """Three orders by hand: the buildings' priority 1 (overdue a second later) made first."""
    out = {}
    for key, eq, what, prio in (("late", "B001", "fire panel fault", 1), ("lamp", "C0003", "lamps flicker", 3),
                                ("loop", "J002", "detector loop cut", 2)):
        r = api.post("/workorders", json={"equipment": eq, "what": what, "priority": prio})
        assert r.status_code == 200, r.text
        out[key] = r.json()["id"]
    return out


def ui_for(qtbot: QtBot, stack: LiveStack, user: str) -> UI:
    return UI(qtbot, stack, user)


@pytest.fixture
def ui(qtbot: QtBot, stack: LiveStack) -> Iterator[UI]:
    u = ui_for(qtbot, stack, "op")
    try:
        yield u
    finally:
        u.console.close()
        u.window.close()


def rows_of(u: UI) -> list[Order]:
    return list(u.window.workorders.model.rows)


def test_list_overdue_first_filters_detail_and_history(ui: UI, made: dict[str, str], api: httpx.Client) -> None:
    w = ui.window
    wl = w.workorders
    w.show_page("workorders")
    assert w.nav_buttons["workorders"].isChecked()
    wl.sort_box.setCurrentText("created")  # newest first: the overdue one, made first, still leads
    # 60 s: once under the full suite's load (two workers, servers and consoles on 2 cores) 20 s did not suffice
    ui.wait(lambda: {made["late"], made["lamp"], made["loop"]} <= {o.id for o in rows_of(ui)}
            and wl.feed.orders[made["late"]].overdue, 60)
    ids = [o.id for o in rows_of(ui)]
    assert ids[0] == made["late"] and ids.index(made["loop"]) < ids.index(made["lamp"])
    assert wl.model.index(0, 3).data().startswith("OVERDUE")
    assert wl.model.index(0, 0).data(Qt.ItemDataRole.FontRole).bold()
    assert "overdue" in wl.count.full_text
    # filters: service, then text
    wl.service_box.setCurrentText("lighting")
    assert {o.service for o in rows_of(ui)} == {"lighting"} and made["lamp"] in [o.id for o in rows_of(ui)]
    wl.service_box.setCurrentIndex(0)
    wl.text_box.setText("J002")
    assert [o.id for o in rows_of(ui)] == [made["loop"]]
    # the detail pane and the change history of the selected order
    assert wl.select_order(made["loop"])
    assert "detector loop cut" in wl.detail.text() and "J002" in wl.detail.text()
    ui.wait(lambda: wl.history.rowCount() >= 1 and wl.history.item(0, 2) is not None, 10)
    assert wl.history.item(0, 2).text() == "created" and wl.history.item(0, 1).text() == "op"
    # an operator cancels (a reason), never closes (a supervisor's action)
    assert not wl.buttons["close"].isEnabled() and "may not close" in wl.buttons["close"].toolTip()
    assert wl.buttons["cancel"].isEnabled()
    wl.status_box.setCurrentText("all")  # a cancelled order leaves the "open" list: keep it in view
    assert wl.selected() is not None and wl.selected().id == made["loop"]
    wl.dialog_answers = {"cancel": {"reason": "made twice"}}
    with ui.qtbot.waitSignal(wl.actionDone, timeout=10_000) as sig:
        ui.qtbot.mouseClick(wl.buttons["cancel"], Qt.MouseButton.LeftButton)
    assert sig.args is not None and sig.args[1].ok, sig.args[1].why() if sig.args else ""
    assert api.get(f"/workorders/{made['loop']}").json()["status"] == "cancelled"

    def history() -> list[tuple[str, ...]]:
        return [tuple(wl.history.item(r, c).text() for c in (1, 2, 3, 4)) for r in range(wl.history.rowCount())]

    # the history follows the change (a failure of J002 meanwhile may have been linked too: the server's rule)
    ui.wait(lambda: ("op", "cancelled", "reason: made twice", "cancelled") in history(), 10)
    assert "REFUSED" not in wl.result.text() and "cancelled" in wl.result.text()
    # the map's layer: a mark per equipment with an open order (the cancelled one has none), colour-free
    layer = w.order_layer
    ui.wait(lambda: "J002" not in layer.marked, 10)
    assert {"B001", "C0003"} <= set(layer.marked) and not {"B001", "C0003"} & set(layer.alarmed)
    layer.box.setChecked(False)
    assert layer.marked == []
    layer.box.setChecked(True)


def test_dispatch_dialog_assigns_the_chosen_crew(ui: UI, made: dict[str, str], api: httpx.Client) -> None:
    w = ui.window
    wl = w.workorders
    w.show_page("workorders")
    ui.wait(lambda: made["lamp"] in wl.feed.orders, 15)
    wl.refresh()
    assert wl.select_order(made["lamp"])
    qb = ui.qtbot
    qb.mouseClick(wl.buttons["dispatch"], Qt.MouseButton.LeftButton)
    d = wl.dispatch_dialog
    assert d is not None and d.isVisible()
    ui.wait(lambda: d.candidates, 15)
    cands = d.candidates
    # the server's ranking: the order's crews (lighting), available first, then by ETA; the best proposed
    assert {c.service for c in cands} == {"lighting"} and "ranked by the server" in d.source.text()
    avail = [c.available for c in cands]
    assert avail == sorted(avail, reverse=True)
    etas = [c.eta_s for c in cands if c.available and c.eta_s is not None]
    assert etas == sorted(etas)
    assert d.table.item(0, 4).text() == cands[0].eta_text and d.chosen() == cands[0]
    # every service: the other services' crews are offered too
    d.any_service.setChecked(True)
    ui.wait(lambda: len({c.service for c in d.candidates}) > 1, 15)
    d.choose(cands[-1].crew)  # the operator may pick another than the proposed one
    crew = cands[-1].crew
    qb.mouseClick(d.ok, Qt.MouseButton.LeftButton)
    ui.wait(lambda: api.get(f"/workorders/{made['lamp']}").json()["crew"] == crew, 15)
    ui.wait(lambda: wl.feed.orders[made["lamp"]].crew == crew, 5)  # its event: shown even before the dialog's answer
    ui.wait(lambda: not d.isVisible() or bool(d.mission_error), 15)  # the dispatch answered (the mission sent)
    got = api.get(f"/workorders/{made['lamp']}").json()
    assert got["status"] in ("assigned", "en_route"), got
    if d.mission_error:  # the vehicle did not get its mission: the dialog says so and stays for a retry
        assert d.isVisible() and "did not reach the vehicle" in d.outcome.text()
        d.reject()
    else:
        assert not d.isVisible() and got["status"] == "en_route"
    assert crew in wl.result.text()


def _select_alarm(u: UI, alarm_id: str) -> None:
    al = u.window.alarm_list
    al.refresh()
    al.select_ids([alarm_id])
    assert [a.id for a in al.selected()] == [alarm_id]


@pytest.fixture
def maint(qtbot: QtBot, stack: LiveStack) -> Iterator[UI]:
    u = ui_for(qtbot, stack, "maint")  # maintenance takes alarms out of service (an operator may not)
    try:
        yield u
    finally:
        u.console.close()
        u.window.close()


def test_out_of_service_needs_and_links_a_work_order(maint: UI, api: httpx.Client) -> None:
    ui = maint
    w, c = ui.window, ui.console
    al = w.alarm_list
    ui.stack.inject("BL02", "bollard_fault")
    ui.stack.inject("BL03", "bollard_fault")
    ui.wait(lambda: ui.alarms_of("BL02") and ui.alarms_of("BL03"), 20)
    a2, a3 = ui.alarms_of("BL02")[0], ui.alarms_of("BL03")[0]
    w.show_page("alarms")
    # one click: a work order from the alarm, linked to it
    _select_alarm(ui, a2.id)
    assert al.buttons["workorder"].isEnabled()
    with ui.qtbot.waitSignal(al.actionDone, timeout=10_000) as sig:
        ui.qtbot.mouseClick(al.buttons["workorder"], Qt.MouseButton.LeftButton)
    r = sig.args[1] if sig.args else None
    assert r is not None and r.ok, r.why() if r else ""
    wo = r.data
    assert wo["equipment"] == "BL02" and wo["alarms"] == [a2.id] and wo["source"] == "alarm"
    assert wo["id"] in al.result.text()
    # the map's layer: BL02 has an open order and is alarmed, so its mark takes the alarm's colour
    w.workorder_feed.refresh()
    ui.wait(lambda: "BL02" in w.order_layer.alarmed, 10)
    # out of service offers the equipment's open order; the free-text box is gone
    al.dialog_answers = {"oos": {"work_order": f"{wo['id']} — anything", "reason": "crew on its way"}}
    _select_alarm(ui, a2.id)
    assert al.why_disabled("oos") == ""
    with ui.qtbot.waitSignal(al.actionDone, timeout=15_000) as sig:
        assert al.do("oos") is not None, al.result.text()
    assert sig.args is not None and sig.args[1].ok, sig.args[1].why() if sig.args else ""
    assert al.oos_choices[0].startswith(wo["id"]) and al.oos_choices[-1] == CREATE_FROM_ALARM
    ui.wait(lambda: c.alarms.alarms[a2.id].out_of_service, 10)
    assert f"with work order {wo['id']}" in al.result.text()
    # another alarm, no order yet: "create one from this alarm", then out of service linked to it
    _select_alarm(ui, a3.id)
    al.dialog_answers = {"oos": {"work_order": CREATE_FROM_ALARM, "reason": "waiting for a part"}}
    assert al.why_disabled("oos") == ""
    with ui.qtbot.waitSignal(al.actionDone, timeout=15_000) as sig:
        assert al.do("oos") is not None, al.result.text()
    assert sig.args is not None and sig.args[1].ok, sig.args[1].why() if sig.args else ""
    assert al.oos_choices == [CREATE_FROM_ALARM]
    ui.wait(lambda: c.alarms.alarms[a3.id].out_of_service, 10)
    orders = api.get("/workorders", params={"equipment": "BL03"}).json()["orders"]
    assert len(orders) == 1 and orders[0]["alarms"] == [a3.id] and orders[0]["status"] == "new"
    assert f"with work order {orders[0]['id']}" in al.result.text()
    # the alarm journal shows the link
    journal = api.get("/journal", params={"text": orders[0]["id"]}).json()["entries"]
    assert any(a3.id in str(e.get("detail", "")) for e in journal), journal
    for eq in ("BL02", "BL03"):
        ui.stack.clear(eq)


def test_equipment_display_creates_a_work_order(ui: UI, api: httpx.Client) -> None:
    disp = ui.window.open_equipment("C0009")
    assert disp.order_btn.isEnabled()
    disp.order_answers = {"what": "pole leaning after a crash", "priority": "2"}
    with ui.qtbot.waitSignal(ui.console.message, timeout=10_000) as sig:
        r = disp.create_order()
    assert r is not None and sig.args is not None and "created for C0009" in sig.args[0]
    rows = api.get("/workorders", params={"equipment": "C0009"}).json()["orders"]
    assert [(o["what"], o["priority"], o["source"]) for o in rows] == [("pole leaning after a crash", 2, "manual")]
    # then the work-order list, the new order selected (to dispatch it)
    wl = ui.window.workorders
    ui.wait(lambda: ui.window.current == "workorders" and wl.selected() is not None
            and wl.selected().id == rows[0]["id"], 10)


def test_a_viewer_cannot_create_nor_act(qtbot: QtBot, stack: LiveStack, made: dict[str, str]) -> None:
    u = ui_for(qtbot, stack, "view")
    try:
        wl = u.window.workorders
        u.wait(lambda: made["late"] in wl.feed.orders, 15)
        wl.refresh()
        assert wl.select_order(made["late"])
        for key in ("dispatch", "cancel", "close"):
            assert not wl.buttons[key].isEnabled() and "your role may not" in wl.buttons[key].toolTip()
        assert not u.window.open_equipment("C0009").order_btn.isEnabled()
    finally:
        u.console.close()
        u.window.close()


def test_orders_arrive_by_the_websocket_not_by_polling(ui: UI, api: httpx.Client) -> None:
    """The console reads the list once its subscription is there, then each order made or changed elsewhere (here
    through the API, as another console or the crews' page would) arrives as an event: no list read again; a new
    snapshot of the subscription (a reconnection, a resync) reads it again. An order due meanwhile turns overdue
    by itself (no request)."""
    feed = ui.window.workorder_feed
    wl = ui.window.workorders
    ui.wait(lambda: feed.loaded and ui.console.workorder_syncs >= 1, 15)
    reads = feed.reads
    made = api.post("/workorders", json={"equipment": "CAM001", "what": "camera lens dirty", "priority": 2})
    assert made.status_code == 200, made.text
    oid = made.json()["id"]
    ui.wait(lambda: oid in feed.orders, 10)
    ui.wait(lambda: oid in {o.id for o in wl.model.rows}, 5)  # the list shows it (and the map's layer)
    assert "CAM001" in ui.window.order_layer.marked
    assert feed.reads == reads, "the new order came as an event, not by reading the list again"
    cancelled = api.post(f"/workorders/{oid}/cancel", json={"reason": "seen from the street: clean"})
    assert cancelled.status_code == 200, cancelled.text
    ui.wait(lambda: feed.orders[oid].status == "cancelled", 10)
    ui.wait(lambda: "CAM001" not in ui.window.order_layer.marked, 5)
    assert feed.reads == reads
    # the subscription again (what a reconnection does): its snapshot makes the console read the list once more
    assert ui.console.bridge is not None
    ui.console.bridge.set_channel("alarms", {"alarms": True, "workorders": True})
    ui.wait(lambda: feed.reads == reads + 1 and feed.loaded and not feed._inflight, 10)
    assert feed.orders[oid].status == "cancelled"
    # time alone: an order past its due time is marked overdue at that time, by the console itself
    late = api.post("/workorders", json={"equipment": "B002", "what": "fire door jammed", "priority": 1})
    assert late.status_code == 200, late.text
    lid = late.json()["id"]
    ui.wait(lambda: lid in feed.orders, 10)
    assert not feed.orders[lid].overdue  # due in a second (the buildings' P1 SLA of this test city)
    ui.wait(lambda: feed.orders[lid].overdue, 10)
    assert feed.reads == reads + 1
