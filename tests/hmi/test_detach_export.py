"""Detachable displays (hmi.detach) and the alarm list's print/export (hmi.alarm_export), offscreen.

- "Detach" moves the current display into its own top-level window — the same widget, still live —
  and closing that window (or "Bring it back here") puts it back in its place in the stack;
- an equipment display detached is handed over to its window (the next one opens in the main window);
- Export CSV writes what the list shows, spreadsheet-safe (scada.csvsafe), with a time_utc column;
  Export PDF writes a PDF file (QPdfWriter) of the same rows.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest
from PyQt6 import sip
from PyQt6.QtCore import QSettings, Qt
from PyQt6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from hmi.area import AreaSettings
from hmi.console import ConsoleModel
from hmi.detach import DetachedWindow, Placeholder
from hmi.mainwindow import MainWindow
from hmi.models.area import Area
from hmi.models.live import EquipmentInfo, Session

T0 = 1_780_000_000_000  # ms


def alarm(aid: str, priority: int, message: str, equipment: str = "C0001", commune: str = "Dijon",
          state: str = "unack") -> dict[str, Any]:
    return {"id": aid, "priority": priority, "state": state, "equipment": equipment, "commune": commune,
            "service": "lighting", "message": message, "since_ms": T0 + priority * 1000, "tag": f"x/{aid}"}


@pytest.fixture
def window(qtbot: QtBot, tmp_path: Path) -> MainWindow:
    c = ConsoleModel(None)
    c.set_equipment([EquipmentInfo("C0001", "lighting_cabinet", "lighting", "lighting", "Dijon", 47.32, 5.04),
                     EquipmentInfo("C0003", "lighting_cabinet", "lighting", "lighting", "Talant", 47.34, 5.0),
                     EquipmentInfo("J001", "junction", "junction", "traffic", "Talant", 47.34, 5.01)])
    c.session = Session("op", "operator", frozenset({"read", "alarm.ack"}))
    c.set_stale(False)
    w = MainWindow(c, AreaSettings(QSettings(str(tmp_path / "desk.ini"), QSettings.Format.IniFormat)))
    qtbot.addWidget(w)
    w.show()
    return w


def test_detach_the_alarm_list_and_bring_it_back(qtbot: QtBot, window: MainWindow) -> None:
    w, c = window, window.console
    w.show_page("alarms")
    index = w.stack.indexOf(w.alarm_list)
    qtbot.mouseClick(w.detach_btn, Qt.MouseButton.LeftButton)
    win = w.alarm_list.window()
    assert isinstance(win, DetachedWindow) and win is not w and win.isVisible()
    assert win.windowTitle().startswith("Alarms — ")
    assert w.stack.indexOf(w.alarm_list) == -1
    ph = w.stack.currentWidget()
    assert isinstance(ph, Placeholder) and w.stack.indexOf(ph) == index and "Alarms" in ph.label.text()
    # still the same, live widget: a new alarm shows in the detached list
    c.feed([], alarm_snapshot=[alarm("a1", 1, "cabinet mains lost")])
    qtbot.waitUntil(lambda: [a.id for a in w.alarm_list.shown()] == ["a1"], timeout=3000)
    # going to the display again brings its window to the front; the other displays still work here
    w.show_page("overview")
    assert w.stack.currentWidget() is w.overview
    w.show_page("alarms")
    assert w.stack.currentWidget() is ph and win.isVisible()
    assert w.detach_current() is None  # already detached
    # closing the window: back in its place, current again, nothing left behind
    win.close()
    assert w.stack.indexOf(w.alarm_list) == index and w.stack.currentWidget() is w.alarm_list
    assert w.alarm_list.window() is w and not w.detacher.windows and not w.detacher.placeholders
    # "Bring it back here" does the same
    w.detach_current()
    ph = w.stack.currentWidget()
    assert isinstance(ph, Placeholder)
    qtbot.mouseClick(ph.back_btn, Qt.MouseButton.LeftButton)
    assert w.stack.currentWidget() is w.alarm_list and not w.detacher.windows


def test_detached_equipment_displays_stay_on_the_second_screen(qtbot: QtBot, window: MainWindow) -> None:
    w = window
    first = w.open_equipment("C0001")
    w.detach_current()
    assert w.equipment is None and isinstance(first.window(), DetachedWindow)
    assert w.current == "overview"
    second = w.open_equipment("J001")  # the next one opens in the main window
    assert w.stack.currentWidget() is second and first.isVisible()
    w.detach_current()
    assert len(w.detacher.windows) == 2
    first.window().close()
    QApplication.sendPostedEvents(None, 0)  # deleteLater
    assert sip.isdeleted(first) and not sip.isdeleted(second)
    # closing the console closes its detached windows
    w.close()
    assert not w.detacher.windows


def test_export_csv_is_what_the_list_shows_and_spreadsheet_safe(qtbot: QtBot, window: MainWindow,
                                                               tmp_path: Path) -> None:
    w, c = window, window.console
    c.feed([], alarm_snapshot=[alarm("a1", 1, '=HYPERLINK("http://x","click")'),
                               alarm("a2", 2, "-2+3 luminaires"),
                               alarm("a3", 3, "camera offline", "J001", "Talant"),
                               alarm("a4", 4, "@SUM(A1)", state="acked")])
    w.show_page("alarms")
    al = w.alarm_list
    al.prio[4].setChecked(False)  # the operator's filter: what is shown is what is exported
    al.refresh()
    out = al.export_csv(tmp_path / "alarms.csv")
    assert out == tmp_path / "alarms.csv" and "exported 3 alarm(s)" in al.result.text()
    with out.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    head, body = rows[0], rows[1:]
    assert head[:4] == ["priority", "state", "since (Europe/Paris)", "time_utc"]
    assert [r[head.index("alarm")] for r in body] == ["a1", "a2", "a3"]
    msg = {r[head.index("alarm")]: r[head.index("message")] for r in body}
    assert msg["a1"] == "'" + '=HYPERLINK("http://x","click")' and msg["a2"] == "'-2+3 luminaires"
    assert msg["a3"] == "camera offline"
    utc = body[0][head.index("time_utc")]
    assert dt.datetime.fromisoformat(utc) == dt.datetime.fromtimestamp((T0 + 1000) / 1000, tz=dt.UTC)
    assert body[0][head.index("since (Europe/Paris)")] == dt.datetime.fromtimestamp(
        (T0 + 1000) / 1000, tz=dt.UTC).astimezone(dt.timezone(dt.timedelta(hours=2))).strftime("%d/%m/%Y %H:%M:%S")
    # the console's area bounds the export too
    c.set_area(Area(frozenset({"Talant"})))
    al.refresh()
    al.export_csv(out)
    with out.open(encoding="utf-8", newline="") as f:
        assert [r[head.index("alarm")] for r in list(csv.reader(f))[1:]] == ["a3"]
    assert "area: Talant" in al.heading()


def test_export_pdf_writes_a_pdf(qtbot: QtBot, window: MainWindow, tmp_path: Path) -> None:
    w, c = window, window.console
    c.feed([], alarm_snapshot=[alarm(f"a{i}", 1 + i % 4, f"alarm number {i}") for i in range(120)])
    w.show_page("alarms")
    out = w.alarm_list.export_pdf(tmp_path / "alarms.pdf")
    assert out is not None
    data = out.read_bytes()
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    assert len(re.findall(rb"/Type\s*/Page(?!s)", data)) >= 2  # 120 rows: several A4 pages
    assert "exported 120 alarm(s)" in w.alarm_list.result.text()
