"""The console in French for real: every view and dialog opened against the real server + simulator, with
the visible-English checker (tests/hmi/i18n_check.py) run over each; then the same console in English.

    LiveStack (demo city, real protocol servers) ◄── Bridge ── ConsoleModel ── MainWindow (offscreen)
        every page of the navigation · one Level-3 display per kind of equipment · the dialogs: log in,
        change password, shelve (reason), command, tag browser, area of responsibility, dispatch, a detached
        display's placeholder   ──►  visible_english(widget) == []

What may stay as it is, being data and not English text: equipment ids and units (the checker never
reads them as words), the allow-list below (each entry with why), the tags' own names from tags.yaml
(``power``, ``status``: ids, like ``J001``: :func:`_data_texts`), and in the Level-4 diagnostics the parts of a
server detail or driver error the console's catalogue does not know, shown marked "message du serveur : …"
(:mod:`hmi.models.server_text`; every detail of the demo server is known: checked). The language is one per process
(:func:`scada.i18n.set_language`): the server in the same process answers in it too, as a French site's
server would.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PyQt6.QtCore import QPoint
from PyQt6.QtGui import QFontMetrics
from PyQt6.QtWidgets import (
    QAbstractButton,
    QApplication,
    QCheckBox,
    QComboBox,
    QDialog,
    QLabel,
    QPushButton,
    QStyle,
    QStyleOptionComboBox,
    QWidget,
)
from pytestqt.qtbot import QtBot

from hmi.alarms_view import ReasonDialog
from hmi.area import AreaDialog
from hmi.bridge import Bridge, wait_reply
from hmi.commands_view import CommandDialog
from hmi.console import ConsoleModel
from hmi.equipment_views import EquipmentDisplay
from hmi.mainwindow import NAV, LoginDialog, MainWindow, PasswordDialog
from hmi.models.server_text import SEPARATORS, untranslated
from scada.format import enum_label, site_zone, zone_label
from scada.i18n import set_language
from tests.hmi.i18n_check import Finding, english_words, visible_english
from tests.hmi.stack import PASSWORDS, LiveStack

ROOT = Path(__file__).resolve().parents[2]
#: data that reads as English to the word list and is not the console's text
ALLOW = (
    # commands.yaml's crisis plan: its name and description are configuration data (a French site writes its own)
    "emergency_corridor_centre",
    "Emergency corridor through the centre: junctions to flashing amber, bollards lowered",
)
TEMPLATES = ("junction", "lighting_cabinet", "building", "bollard", "panel", "camera", "parking", "vehicle")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    s = LiveStack(tmp_path_factory.mktemp("hmi-french")).start()
    try:
        yield s
    finally:
        s.stop()


def _wait(qtbot: QtBot, cond: Callable[[], Any], timeout_s: float = 20.0) -> None:
    qtbot.waitUntil(lambda: bool(cond()), timeout=int(timeout_s * 1000))


def _console(qtbot: QtBot, stack: LiveStack) -> tuple[ConsoleModel, MainWindow]:
    bridge = Bridge(stack.url, "hmi-french")
    bridge.start()
    console = ConsoleModel(bridge)
    window = MainWindow(console)
    qtbot.addWidget(window)
    window.show()
    r = wait_reply(console.login("op", PASSWORDS["op"]), 30)
    assert r.ok, r.why()
    _wait(qtbot, lambda: console.state == "online" and len(console.tags.values) > 400, 30)
    _wait(qtbot, lambda: bool(console.config_info) and bool(console.vocabulary))
    return console, window


def _shown(qtbot: QtBot, w: QWidget) -> QWidget:
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    return w


def _data_texts(c: ConsoleModel) -> frozenset[str]:
    """Texts shown whole that are identifiers: the tags' own names (see the module docstring)."""
    return frozenset(name.rsplit("/", 1)[-1] for name in c.tags.values)


def _quoted(text: str) -> bool:
    """Whether every English word of ``text`` is in a part marked as the server's own message (Level 4: a detail
    or error whose shape the console's catalogue does not know, hmi.models.server_text)."""
    parts = SEPARATORS.split(text)[::2]
    return all(untranslated(p) or not english_words(p) for p in parts)


def walk(qtbot: QtBot, stack: LiveStack) -> dict[str, list[Finding]]:
    """Every view and dialog of the console, each with what the checker found on it (in the process's language)."""
    c, w = _console(qtbot, stack)
    found: dict[str, list[Finding]] = {}

    def check(name: str, widget: QWidget) -> None:
        qtbot.wait(50)  # the pending relayouts and elisions
        data = _data_texts(c)
        found[name] = [f for f in visible_english(widget, allow=ALLOW) if f.text not in data and not _quoted(f.text)]

    try:
        # the pages of the navigation, each once its data is there
        w.journal.fields["equipment"].setText("C0001")
        assert wait_reply(w.journal.load(), 15).ok
        w.trends.add(c.registry.tag("C0001", "power"))
        w.diagnostics.show_equipment("J001")
        c.refresh_health()
        _wait(qtbot, lambda: w.diagnostics.tags.rowCount() > 0 and w.diagnostics.subsystems.rowCount() > 0)
        # the server's details of the demo all have a known shape: none is left as the server's English
        subs = w.diagnostics.subsystems
        details = {subs.item(r, 0).text(): subs.item(r, 2).text() for r in range(subs.rowCount())}
        assert len(details) >= 8 and not [t for t in details.values() if untranslated(t)], details
        for key, _title in NAV:
            w.show_page(key)
            if key == "crisis":
                _wait(qtbot, lambda: w.crisis.list.count() > 0)
            check(f"page {key}", w)
        # one Level-3 display per kind of equipment
        for template in TEMPLATES:
            eq = c.registry.of_template(template)[0].id
            shown = w.open_equipment(eq)

            def loaded(d: EquipmentDisplay = shown) -> bool:
                return bool(d.sheet.data) and d.tags_table.rowCount() > 0

            _wait(qtbot, loaded)
            if template in ("junction", "lighting_cabinet"):
                # an enumerated tag's code reads as its tags.yaml label in the console's language (Level-3 tags)
                table = shown.tags_table
                name = "unit_flash_status" if template == "junction" else "mode"

                def row_of(t: Any = table, n: str = name) -> int | None:
                    return next((r for r in range(t.rowCount()) if t.item(r, 0) and t.item(r, 0).text() == n), None)

                _wait(qtbot, lambda t=table: bool(t.enums) and row_of() is not None)  # its live value, its labels
                row = row_of()
                assert row is not None
                full = c.registry.tag(eq, name)
                tv = c.tags.get(full)
                assert tv is not None and tv.value is not None
                assert table.item(row, 1).text() == enum_label(tv.value, table.enums[full]), table.item(row, 1).text()
                assert not table.item(row, 1).text().isdigit()
            check(f"equipment {template} {eq}", w)
        # the dialogs
        login = LoginDialog(c, "op", w)
        check("log-in dialog", _shown(qtbot, login))
        check("password dialog", _shown(qtbot, PasswordDialog(c, w, required=True)))
        w.show_page("alarms")
        check("shelve dialog", _shown(qtbot, ReasonDialog("Mise en attente", [("reason", "Motif", True)], None, w)))
        d = w.open_equipment("C0001")
        _wait(qtbot, lambda: "set_level" in d.commands.buttons)
        check("command dialog", _shown(qtbot, CommandDialog(c, d.commands.forms["set_level"], ["C0001"], w)))
        browser = w.trends.browse()
        qtbot.addWidget(browser)
        _wait(qtbot, lambda: browser.table.rowCount() > 0)
        check("tag browser", browser)
        check("area dialog", _shown(qtbot, AreaDialog(c, w)))
        made = wait_reply(c.create_order("C0001", "contrôle des luminaires", 3), 15)
        assert made.ok, made.why()
        w.open_work_order(str(made.data["id"]))
        _wait(qtbot, lambda: w.workorders.selected() is not None)
        check("page workorders, an order selected", w)
        dispatch = w.workorders.do("dispatch")
        assert isinstance(dispatch, QDialog)
        qtbot.addWidget(dispatch)
        _wait(qtbot, lambda: dispatch.table.rowCount() > 0 or "crews.yaml" in dispatch.source.text())
        check("dispatch dialog", dispatch)
        w.show_page("alarms")
        detached = w.detach_current()
        assert detached is not None
        check("detached display's window", w.detacher.windows[detached])
        check("placeholder of a detached display", w)
        w.detacher.close_all()
        for widget in (login, dispatch, browser):
            widget.close()
    finally:
        c.close()
        w.close()
    return found


def test_every_view_and_dialog_in_french(qtbot: QtBot, stack: LiveStack) -> None:
    set_language("fr")  # the site's language (tags.yaml site lang: fr); conftest puts English back after
    found = walk(qtbot, stack)
    assert len(found) >= len(NAV) + len(TEMPLATES) + 9, sorted(found)  # every view and dialog was looked at
    english = {name: [(f.where, f.text, f.words) for f in fs] for name, fs in found.items() if fs}
    assert english == {}, "\n".join(f"{name}: {f}" for name, fs in english.items() for f in fs)


def test_the_same_console_in_english(qtbot: QtBot, stack: LiveStack) -> None:
    """The switch works: the same walk in English finds the console's own texts as English on every page."""
    found = walk(qtbot, stack)
    pages = [name for name in found if name.startswith("page ")]
    assert all(found[name] for name in pages), [name for name in pages if not found[name]]
    texts = {f.text for fs in found.values() for f in fs}
    assert {"Log out", "Acknowledge", "Change password"} <= texts


def test_one_clock_named_once_in_the_status_bar(qtbot: QtBot, stack: LiveStack) -> None:
    """The site's zone comes from GET /config and is named in the status bar; the alarm list's times are in it."""
    set_language("fr")
    c, w = _console(qtbot, stack)
    try:
        assert c.config_info["timezone"] == site_zone().key == "Europe/Paris"
        assert w.clock.text() == zone_label() and w.clock.text().startswith("fuseau horaire Europe/Paris (UTC+0")
        stack.inject("C0003", "lamp_failure", count=8)  # cabinet_many_failures: an annunciated P3
        _wait(qtbot, lambda: any(a.equipment == "C0003" and a.priority == 3 for a in c.alarms.alarms.values()), 30)
        w.show_page("alarms")
        w.alarm_list.refresh()
        model = w.alarm_list.model
        row = next(r for r in range(model.rowCount()) if (a := model.alarm(r)) is not None
                   and a.equipment == "C0003" and a.priority == 3)
        alarm = model.alarm(row)
        assert alarm is not None
        assert not english_words(alarm.message), alarm.message  # the alarm's message in the server's French
        since = model.data(model.index(row, 2), 0)
        assert re.fullmatch(r"\d\d/\d\d/\d{4} \d\d:\d\d:\d\d", since), since
        # the equipment with its name beside the id, its address in the tooltip
        named = model.data(model.index(row, 4), 0)
        info = c.registry.get("C0003")
        assert info is not None and info.name and named == f"C0003 — {info.name}"
    finally:
        stack.clear("C0003")
        c.close()
        w.close()


def _elided(box: QComboBox) -> bool:
    """Whether the box's current text is wider than the field Qt draws it in (it is then cut)."""
    opt = QStyleOptionComboBox()
    box.initStyleOption(opt)
    qstyle = box.style()
    assert qstyle is not None
    field = qstyle.subControlRect(QStyle.ComplexControl.CC_ComboBox, opt, QStyle.SubControl.SC_ComboBoxEditField, box)
    return box.fontMetrics().horizontalAdvance(box.currentText()) > field.width() - 2  # drawn 1 px in on each side


def test_the_french_window_stays_inside_1280_pixels(qtbot: QtBot) -> None:
    """French texts are longer than English ones: every page still fits a 1280-pixel window, "Se déconnecter"
    and the link indicator on screen (the console's promise of tests/hmi/test_deadends.py, in French); the
    work-order and alarm lists show every choice of their filter boxes whole and need no sideways scroll bar."""
    from scada.config import load_city
    from tests.hmi.test_map_geography import make_console

    set_language("fr")
    city = load_city(ROOT / "tags.yaml", ROOT / "alarms.yaml")
    console = make_console(city)  # every commune of the demo, its services as GET /config names them
    console.config_info = {"services": list(city.services), "timezone": city.timezone}
    w = MainWindow(console)
    qtbot.addWidget(w)
    w.resize(1280, 900)
    w.show()
    now = int(time.time() * 1000)
    console.feed([], [{"id": "J003.conflict", "priority": 1, "state": "unack", "equipment": "J003",
                       "commune": "Dijon", "service": "traffic", "message": "vert conflictuel " + "x" * 300,
                       "since_ms": now, "ts_ms": now}])
    w.workorder_feed.apply([{"id": "WO-000001", "equipment": "C0001", "commune": "Saint-Apollinaire",
                             "service": "lighting", "what": "contrôle des luminaires " + "x" * 200, "priority": 3,
                             "status": "en_route", "crew": "lighting-day-north", "created_ms": now,
                             "due_ms": now - 600_000, "updated_ms": now, "overdue": True}])
    try:
        assert w.logout_btn.text() == "Se déconnecter" and w.banner.link.text() == "EN LIGNE"
        for key, _title in NAV:
            w.show_page(key)
            QApplication.processEvents()
            assert w.width() <= 1280 and w.minimumSizeHint().width() <= 1280, (key, w.minimumSizeHint())
            for widget in (w.banner.link, w.logout_btn):
                right = widget.mapTo(w, QPoint(widget.width(), widget.height())).x()
                assert widget.isVisible() and 0 < right <= w.width(), (key, widget, right)
        wl, al = w.workorders, w.alarm_list
        for key, boxes, table in (
                ("workorders", (wl.status_box, wl.service_box, wl.commune_box, wl.crew_box, wl.sort_box), wl.table),
                ("alarms", (al.show_box, al.state_box, al.area_box, al.service_box, al.sort_box, al.group_box),
                 al.table)):
            w.show_page(key)
            QApplication.processEvents()
            assert table.model().rowCount() >= 1, key  # a row in the table: its columns are laid out for real
            for box in boxes:
                assert box.count() >= 2, (key, box.currentText())
                for i in range(box.count()):  # every choice, as the operator would pick it
                    box.setCurrentIndex(i)
                    QApplication.processEvents()
                    assert box.isVisible() and not _elided(box), (key, box.currentText(), box.width())
                box.setCurrentIndex(0)
            QApplication.processEvents()
            assert w.width() <= 1280
            bar = table.horizontalScrollBar()
            header = table.horizontalHeader()
            assert bar is not None and header is not None
            assert bar.maximum() == 0 and not bar.isVisible(), (key, header.length(), table.viewport().width())
            assert header.length() <= table.viewport().width(), key
    finally:
        w.close()


def test_console_polish_seen_on_the_french_screenshots(qtbot: QtBot) -> None:
    """What the README's French screenshots showed, each fixed where a person sees it (no server needed: the
    demo inventory fed as the server would, logged in as an operator):

    - the status bar names the role in French ("op (opérateur)", not "op (operator)");
    - the journal's service column reads in words ("éclairage", not "lighting");
    - the junction synoptic labels its approaches Nord / Sud / Est / Ouest;
    - an alarm named by its id (a work order's alarms, their history) reads as its priority and message, or
      its equipment once gone: never "fire_alarm:dijon/building/B003/fire_zone_2";
    - no visible text has a character the console's font lacks (the "Détacher ⧉" box): the detach button
      has Qt's own icon instead;
    - at 1280 pixels every display button is whole (no sideways scrolling: "Alarmes" was cut), and the map's
      side panel clips nothing (its title and legend wrap; each layer box has its full width).
    """
    from hmi.equipment_views import JunctionSynoptic
    from hmi.models import journal as jm
    from hmi.models.alarms import parse_alarm
    from hmi.models.workorders import history_rows
    from scada.config import load_city
    from tests.hmi.test_map_geography import make_console

    set_language("fr")
    c = make_console(load_city(ROOT / "tags.yaml", ROOT / "alarms.yaml"))
    w = MainWindow(c)
    qtbot.addWidget(w)
    w.resize(1280, 800)
    w.show()
    qtbot.waitExposed(w)
    fire = "fire_alarm:dijon/building/B003/fire_zone_2"
    try:
        # the role, as the banner names the user
        w.banner.refresh_link()
        assert w.banner.user.text() == "op (opérateur)"
        # the journal's service column, through the journal model's one cell()
        assert jm.cell({"service": "lighting"}, "service") == "éclairage"
        assert jm.cell({"service": "fire"}, "service") == "pompiers"
        # the junction's approaches (J003: cross4; J001: tee)
        for eq, expected in (("J003", ["Nord", "Sud", "Est", "Ouest"]),
                             ("J001", ["Ouest (axe principal)", "Est (axe principal)", "Sud (voie secondaire)"])):
            info = c.registry.get(eq)
            assert info is not None
            syn = JunctionSynoptic(c, info)
            assert [name for name, _side, _phases in syn.approaches(syn.current())] == expected
            syn.deleteLater()
        # an alarm by its id: its priority and message while the console holds it, its equipment after
        assert c.alarms.describe(fire, c.registry_named) == "une alarme de " + c.registry_named("B003")
        c.alarms.replace([{"id": fire, "priority": 1, "state": "unack", "equipment": "B003", "commune": "Dijon",
                           "service": "fire", "message": "FEU dans B003 (Dijon), zone 2"}])
        assert c.alarms.describe(fire, c.registry_named) == "■1 critique — FEU dans B003 (Dijon), zone 2"
        rows = history_rows([{"ts_ms": 0, "user": "op", "action": "create", "status": "new",
                              "data": {"alarms": [fire]}}], w.workorders._alarm_text)
        assert rows[0][3].endswith("■1 critique — FEU dans B003 (Dijon), zone 2") and fire not in rows[0][3], rows
        assert parse_alarm({"id": fire}).id == fire  # (the id stays the key; only the text changed)
        # the detach button: a glyph-free text with Qt's icon; no visible character missing from the font
        assert w.detach_btn.text() == "Détacher" and not w.detach_btn.icon().isNull()
        w.show_page("overview")
        QApplication.processEvents()
        missing = [(type(x).__name__, x.text()) for x in w.findChildren((QLabel, QAbstractButton)) if x.isVisibleTo(w)
                   if any(not QFontMetrics(x.font()).inFontUcs4(ord(ch)) for ch in x.text() if not ch.isspace())]
        assert missing == []
        # 1280 pixels: every display button whole, no sideways scrolling
        assert w.width() == 1280
        assert w.nav_scroll.horizontalScrollBar().maximum() == 0
        viewport = w.nav_scroll.viewport()
        for key, b in w.nav_buttons.items():
            left = b.mapTo(viewport, QPoint(0, 0)).x()
            assert left >= 0 and left + b.width() <= viewport.width(), (key, left, b.width(), viewport.width())
            assert b.width() >= b.sizeHint().width(), (key, b.text())
        # the map's side panel: texts wrap or have their full width; the domain table needs no scroll bar
        panel = w.overview.legend.parentWidget()
        assert panel is not None
        for x in panel.findChildren(QWidget):
            if not x.isVisibleTo(w):
                continue
            if isinstance(x, QLabel):  # whole: on one line, or wrapped with the height its lines need
                assert (x.heightForWidth(x.width()) <= x.height() if x.wordWrap()
                        else x.width() >= x.sizeHint().width()), x.text()
            elif isinstance(x, (QCheckBox, QPushButton)):
                assert x.width() >= x.sizeHint().width(), x.text()
        assert w.overview.title.text().startswith("<b>Niveau 1 — vue d'ensemble de la ville")
        domains = w.overview.domains
        assert domains.horizontalScrollBar().maximum() == 0
        assert domains.horizontalHeader().length() <= domains.viewport().width()
    finally:
        w.close()


def test_the_servers_words_and_the_layout_problems_in_french(tmp_path: Path) -> None:
    """Level 4: the server's details and driver errors of a known shape read in French, part by part; any other
    part is marked as the server's message, untranslated. A layouts file's problems read in French too."""
    from hmi.models.layouts import COLUMN_KEYS, TOP_KEYS, VIEW_KEYS, check_against, load_layouts
    from hmi.models.server_text import server_text
    from hmi.models.tiles import KEYS as BASEMAP_KEYS

    set_language("fr")
    assert server_text("1836 alarms from 21 rules; 0 states restored from the journal") == \
        "1\u202f836 alarmes issues de 21 règles; 0 états repris du journal"
    assert server_text("6 commandable types, 1 crisis plans | layouts: 24 verified against the field") == \
        "6 types commandables, 1 plans de crise | schémas : 24 vérifiés sur le terrain"
    assert server_text("TimeoutError: cycle did not finish within 0.8 s") == \
        "pas de réponse : le cycle de lecture n'a pas fini en 0.8 s"
    assert server_text("http://127.0.0.1:8480") == "http://127.0.0.1:8480"  # data, as it is
    odd = server_text("5 devices; ModbusIOException: [Input/Output] no response received")
    assert odd == "5 appareils; message du serveur : ModbusIOException: [Input/Output] no response received"
    assert _quoted(odd) and not _quoted("the alarm was lost")  # the walk lets only the marked part through
    set_language("en")
    assert server_text("1836 alarms from 21 rules") == "1,836 alarms from 21 rules"
    set_language("fr")
    bad = tmp_path / "city.yaml"
    bad.write_text("junction_layouts:\n  tee: {approaches: []}\njunctions: {J001: te}\ncorridors: J003\n"
                   "views:\n  - {name: cameras, template: camera, colums: []}\n  - {name: cameras, template: camera}\n"
                   "basemap: {xyz: 'ftp://x', min_zoom: 30}\nlegend: {}\n", encoding="utf-8")
    layouts, problems = load_layouts(bad)
    problems += check_against(layouts, [("J001", "junction")])
    texts = [str(p).split(": ", 1)[1] for p in problems]  # without the file name and line
    assert len(texts) >= 8, texts
    # what stays as written: the file's own keys and values (quoted, or the list of sections and keys; a missing
    # value is shown as its repr, None)
    keys = {*TOP_KEYS, *VIEW_KEYS, *COLUMN_KEYS, *BASEMAP_KEYS, "None"}
    assert [t for t in texts if english_words(re.sub(r"'[^']*'", " ", t), allow=keys)] == [], texts
    assert any("vouliez-vous dire 'columns'" in t for t in texts), texts


def test_the_console_speaks_the_servers_language(qtbot: QtBot, stack: LiveStack, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """``scada hmi`` builds its window after the login, in the language GET /config names (the test server speaks
    English: its settings' lang; the site's tags.yaml says fr), unless ``--lang`` / ``$SCADA_LANG`` chose one. The
    login dialog before it is in the console's first language, French."""
    import signal

    from cli.main import main as scada
    from hmi.language import follow_site

    set_language("fr")
    console = ConsoleModel(Bridge(stack.url, "hmi-lang"))
    assert console.bridge is not None
    console.bridge.start()
    try:
        login = _shown(qtbot, LoginDialog(console, "op"))
        assert login.windowTitle().startswith("Connexion")  # French before the server is known
        login.password.setText(PASSWORDS["op"])
        with qtbot.waitSignal(login.accepted, timeout=30_000):
            login.submit()
        assert follow_site(console) == "en" and console.config_info["lang"] == "en"
        w = MainWindow(console)  # built now, in English, and caught up with what arrived before it
        qtbot.addWidget(w)
        assert w.logout_btn.text() == "Log out" and w.windowTitle() == "City supervisory console"
        _wait(qtbot, lambda: len(console.registry) > 0)
        _wait(qtbot, lambda: w.alarm_list.area_box.count() > 1 and w.workorders.commune_box.count() > 1)
        w.close()
    finally:
        console.close()
    # the command line: the same, through scada hmi (its --screenshots run logs in, saves the levels and exits)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}  # scada hmi installs its own
    monkeypatch.setenv("SCADA_PASSWORD", PASSWORDS["op"])
    monkeypatch.delenv("SCADA_LANG", raising=False)
    try:
        for chosen, expected in ((None, "en"), ("fr", "fr")):
            set_language("fr")
            lang = ["--lang", chosen] if chosen else []
            assert scada([*lang, "hmi", "--server", stack.url, "--user", "op",
                          "--screenshots", str(tmp_path / (chosen or "site"))]) == 0
            from scada.i18n import get_language

            assert get_language() == expected, chosen
            monkeypatch.delenv("SCADA_LANG", raising=False)  # --lang put it in the environment for child processes
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
