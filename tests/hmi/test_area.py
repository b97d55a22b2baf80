"""Areas of responsibility (hmi.area, hmi.models.area) against a real simulator + server.

Two consoles, each with its own area, see the same city: the lamp failures of C0002 and C0004 (Dijon,
lighting) and C0003 (Sennecey-lès-Dijon, lighting) and a fire in B003 (Dijon, fire). Each console's banner
counts equal what the server answers for that area (``GET /alarms?area=&service=``), its alarm list,
map and horn hold only its area's alarms, and the status bar names the area. The area is kept per user
on this workstation (QSettings in a test file) and comes back at the next login.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PyQt6.QtCore import QSettings
from pytestqt.qtbot import QtBot

from hmi.area import AreaDialog, AreaSettings
from hmi.bridge import Bridge, wait_reply
from hmi.console import ConsoleModel
from hmi.mainwindow import MainWindow
from hmi.models.alarms import parse_alarm
from hmi.models.area import Area, from_json, to_json
from tests.hmi.stack import PASSWORDS, LiveStack

DIJON_LIGHTING = Area(frozenset({"Dijon"}), frozenset({"lighting"}))
SOUTH_WEST = Area(frozenset({"Sennecey-lès-Dijon", "Talant"}))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    s = LiveStack(tmp_path_factory.mktemp("hmi-area")).start()
    try:
        s.inject("C0002", "lamp_failure", count=8)
        s.inject("C0003", "lamp_failure", count=8)
        s.inject("C0004", "lamp_failure", count=8)  # Dijon has two cabinets in alarm, Sennecey one
        s.inject("B003", "fire_alarm", zone=1)
        yield s
    finally:
        s.stop()


class Desk:
    """One console window on its own workstation settings file."""

    def __init__(self, qtbot: QtBot, stack: LiveStack, user: str, settings: Path) -> None:
        self.qtbot = qtbot
        self.bridge = Bridge(stack.url, f"desk-{user}")
        self.bridge.start()
        self.console = ConsoleModel(self.bridge)
        self.settings = AreaSettings(QSettings(str(settings), QSettings.Format.IniFormat))
        self.window = MainWindow(self.console, self.settings)
        qtbot.addWidget(self.window)
        self.window.show()
        r = wait_reply(self.console.login(user, PASSWORDS[user]), 30)
        assert r.ok, r.why()
        self.wait(lambda: self.console.state == "online" and len(self.console.tags.values) > 400, 30)

    def wait(self, cond: Any, timeout_s: float = 20.0) -> None:
        self.qtbot.waitUntil(lambda: bool(cond()), timeout=int(timeout_s * 1000))

    def close(self) -> None:
        self.console.close()
        self.window.close()


def server_counts(stack: LiveStack, area: Area) -> tuple[dict[int, int], dict[int, int], set[str]]:
    """Unacknowledged and active annunciated alarms per priority in ``area``, asked of the server itself."""
    tok = httpx.post(f"{stack.url}/api/v1/auth/login", json={"user": "sup", "password": PASSWORDS["sup"]},
                     timeout=10).json()["token"]
    items: dict[str, dict[str, Any]] = {}
    for commune in sorted(area.communes) or [None]:
        for service in sorted(area.services) or [None]:
            params = {k: v for k, v in (("area", commune), ("service", service)) if v}
            r = httpx.get(f"{stack.url}/api/v1/alarms", params=params, timeout=10,
                          headers={"Authorization": f"Bearer {tok}"})
            r.raise_for_status()
            items.update({d["id"]: d for d in r.json()["alarms"]})
    unacked = {p: 0 for p in (1, 2, 3, 4)}
    active = {p: 0 for p in (1, 2, 3, 4)}
    for a in map(parse_alarm, items.values()):
        if a.diagnostic or a.hidden:
            continue
        unacked[a.priority] += a.unacked
        active[a.priority] += a.active
    return unacked, active, {a for a in items}


def console_counts(c: ConsoleModel) -> tuple[dict[int, int], dict[int, int]]:
    b = c.alarms.banner()
    return b.unacked, b.active


def test_two_consoles_with_different_areas_each_count_their_own(qtbot: QtBot, stack: LiveStack,
                                                                tmp_path: Path) -> None:
    a = Desk(qtbot, stack, "op", tmp_path / "desk-a.ini")
    b = Desk(qtbot, stack, "op2", tmp_path / "desk-b.ini")
    try:
        # every console starts on the whole city; both see the three injected equipment in alarm
        for d in (a, b):
            assert d.window.area.text() == "Area: whole city"
            d.wait(lambda d=d: {"C0002", "C0003", "C0004", "B003"} <= {x.equipment for x in d.console.alarms.alarms.values()
                                                               if not x.diagnostic and x.active}, 40)
        a.window.area.choose(DIJON_LIGHTING)
        b.window.area.choose(SOUTH_WEST)
        # the status bar names each console's area
        assert a.window.area.text() == "Area: Dijon · lighting"
        assert b.window.area.text() == "Area: Sennecey-lès-Dijon, Talant"
        # banner counts: what the server answers for each area (waiting out the field's own changes)
        for d, area in ((a, DIJON_LIGHTING), (b, SOUTH_WEST)):
            d.wait(lambda d=d, area=area: console_counts(d.console) == server_counts(stack, area)[:2], 20)
            unacked, _active = console_counts(d.console)
            cells = d.window.banner.cells
            assert all(f"{unacked[p]} unack" in cells[p].text.text() for p in (1, 2, 3, 4))
        assert console_counts(a.console)[1][3] >= 2 and console_counts(b.console)[1][3] >= 1
        assert console_counts(a.console) != console_counts(b.console)
        # the fire in Dijon is neither console's: not the lighting service, not their communes
        fire = [x for x in a.console.alarms.alarms.values() if x.equipment == "B003" and x.active]
        assert fire and not any(DIJON_LIGHTING.accepts(x) or SOUTH_WEST.accepts(x) for x in fire)
        # the alarm list: only the area's alarms (the list shows what the banner counts)
        for d, area, mine, other in ((a, DIJON_LIGHTING, "C0002", "C0003"), (b, SOUTH_WEST, "C0003", "C0002")):
            d.window.show_page("alarms")
            d.window.alarm_list.refresh()
            shown = d.window.alarm_list.shown()
            assert shown and all(area.accepts(x) for x in shown)
            assert mine in {x.equipment for x in shown}
            assert not {other, "B003"} & {x.equipment for x in shown}
            # the map: alarm levels only for the area's equipment; the horn sounds for the area only
            m = d.console.map
            assert m.eq_alarm[m.index[mine]] > 0 and m.eq_alarm[m.index[other]] == 0 and m.eq_alarm[m.index["B003"]] == 0
            horn = d.window.banner.annunciator
            assert set(horn.unacknowledged()) <= {x.id for x in d.console.alarms.in_area()}
        # back to the whole city: the fire is counted again, as the server counts it
        a.window.area.choose(Area())
        a.wait(lambda: console_counts(a.console) == server_counts(stack, Area())[:2], 20)
        assert a.console.map.eq_alarm[a.console.map.index["B003"]] == 1
    finally:
        a.close()
        b.close()


def test_area_kept_per_user_on_this_workstation(qtbot: QtBot, stack: LiveStack, tmp_path: Path) -> None:
    ini = tmp_path / "desk.ini"
    d = Desk(qtbot, stack, "op", ini)
    try:
        dialog = AreaDialog(d.console, d.window)
        assert {"Dijon", "Talant", "Sennecey-lès-Dijon"} <= set(dialog.communes)
        assert {"lighting", "fire"} <= set(dialog.services)
        dialog.communes["Talant"].setChecked(True)
        dialog.services["lighting"].setChecked(True)
        assert dialog.area() == Area(frozenset({"Talant"}), frozenset({"lighting"}))
        d.window.area.choose(dialog.area())
        assert d.window.area.text() == "Area: Talant · lighting"
        # the next operator at this desk has their own (none yet: the whole city)
        d.console.logout()
        d.wait(lambda: d.window.login_dialog is not None)
        login = d.window.login_dialog
        login.user.setText("sup")
        login.password.setText(PASSWORDS["sup"])
        login.submit()
        d.wait(lambda: d.console.session.user == "sup" and d.console.state == "online", 30)
        assert d.window.area.text() == "Area: whole city"
        # a new console on this workstation: op's area comes back at op's login
        d.close()
        d = Desk(qtbot, stack, "op", ini)
        d.wait(lambda: d.window.area.text() == "Area: Talant · lighting", 10)
        assert d.console.alarms.area == Area(frozenset({"Talant"}), frozenset({"lighting"}))
    finally:
        d.close()


def test_area_model() -> None:
    area = Area(frozenset({"Dijon", "Talant"}), frozenset({"lighting"}))
    assert area.text == "Dijon, Talant · lighting"
    assert Area().text == "whole city" and Area(services=frozenset({"fire"})).text == "all communes · fire brigade"  # services in words
    assert from_json(to_json(area)) == area
    assert from_json({"communes": "Dijon"}) == Area() and from_json(None) == Area()  # damaged: everything shown
    x = parse_alarm({"id": "a", "priority": 2, "state": "unack", "commune": "dijon", "service": "lighting"})
    assert area.accepts(x)
    x.service = "fire"
    assert not area.accepts(x)
