"""Widgets without a server: change the console model, check the widget (pixels included).

The console is fed the demo city's equipment and synthetic rows in the WebSocket format; the pixel
checks implement AC-HMI-01 (no alarm colour in an all-normal scene), AC-HMI-02 (priorities
distinguishable in greyscale) and AC-HMI-03 (alarm colours defined once).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pytestqt.qtbot import QtBot

from hmi import style
from hmi.bridge import Reply
from hmi.console import ConsoleModel
from hmi.models.live import EquipmentInfo, Session
from hmi.screenshots import alarm_pixels, grab, pixels, saturated_pixels, settle

ROOT = Path(__file__).resolve().parents[2]

NORMAL_VALUES = {"mains_ok": True, "contactor_closed": True, "door_open": False, "link": 1, "recording": True,
                 "fault": False, "presence": False, "intrusion_alarm": False, "intrusion_armed": True, "status": 0,
                 "phase_reds": 0b1100, "phase_yellows": 0, "phase_greens": 0b0011, "unit_flash_status": 2,
                 "unit_control_status": 6, "coord_pattern_status": 1, "local_free_status": 2, "position": 0,
                 "mode": 0, "message": "Bienvenue", "team": "T1"}


@pytest.fixture(scope="module")
def city() -> Any:
    from scada.config import load_city

    return load_city(ROOT / "tags.yaml", ROOT / "alarms.yaml")


def normal_rows(city: Any) -> list[list[Any]]:
    rows = []
    for t in city.tags:
        short = t.tag.rsplit("/", 1)[-1]
        if short in NORMAL_VALUES:
            v: Any = NORMAL_VALUES[short]
        elif t.tag.startswith("lamp_") and short == "status":
            v = 0
        elif t.tag.startswith("fire_zone_"):
            v = 0
        elif t.tag.startswith("door_"):
            v = False
        elif t.tag in ("lat", "lon"):
            e = city.equipment[t.equipment]
            v = e.lat if t.tag == "lat" else e.lon
        elif t.dtype == "bool":
            v = False
        elif t.dtype == "string":
            v = ""
        else:
            v = 1
        rows.append([t.name, v, "good", 1_700_000_000_000])
    return rows


@pytest.fixture
def console(qtbot: QtBot, city: Any) -> ConsoleModel:
    c = ConsoleModel(None)
    c.set_equipment([EquipmentInfo(e.id, e.template, e.kind, e.domain, e.commune, e.lat, e.lon, e.device)
                     for e in city.equipment.values()])
    c.session = Session("op", "operator", frozenset({"read", "alarm.ack", "alarm.shelve", "command.operate"}))
    c.set_stale(False)
    c.feed(normal_rows(city), alarm_snapshot=[])
    return c


def p1(eq: str = "J003", aid: str = "junction_fault_flash:dijon/junction/J003/unit_flash_status") -> dict[str, Any]:
    return {"id": aid, "priority": 1, "state": "unack", "equipment": eq, "commune": "Dijon", "area": "Dijon",
            "service": "traffic", "message": f"Junction {eq} (Dijon): conflict monitor flash", "since_ms": 5}


# ---------------------------------------------------------------------- AC-HMI-01/02/03
def test_all_normal_displays_have_no_alarm_colour(qtbot: QtBot, console: ConsoleModel) -> None:
    from hmi.mainwindow import MainWindow

    w = MainWindow(console)
    qtbot.addWidget(w)
    w.resize(1500, 900)
    w.show()
    shots = {}
    for page in ("overview", "traffic", "lighting", "buildings", "cameras", "parking"):
        w.show_page(page)
        settle(0.2)
        shots[page] = grab(w)
    for eq in ("J003", "C0001", "B001", "BL01", "P01"):
        w.open_equipment(eq)
        settle(0.2)
        shots[eq] = grab(w)
    for name, img in shots.items():
        found = {c: n for c, n in alarm_pixels(img).items() if n}
        assert not found, f"{name}: alarm-palette pixels in an all-normal scene: {found}"
        assert saturated_pixels(img) < 50, f"{name}: coloured pixels in an all-normal scene"
    # the overview really drew the city (markers, greys) and the luminaires
    assert console.map.lum_x.size == 12 * 30 and console.map.counts()["unknown"] == 0


def test_active_p1_shows_its_colour_on_map_banner_and_list(qtbot: QtBot, console: ConsoleModel) -> None:
    from hmi.mainwindow import MainWindow

    w = MainWindow(console)
    qtbot.addWidget(w)
    w.resize(1500, 900)
    w.show()
    console.feed([], alarm_events=[p1()])
    settle(0.2)
    img = grab(w.overview)
    assert alarm_pixels(img)[style.P1] > 30
    assert alarm_pixels(grab(w.banner))[style.P1] > 100  # the P1 cell is filled while unacked
    assert "1 unack / 1 active" in w.banner.cells[1].text.text()
    assert "J003" in w.banner.newest.text()
    # one click on the newest P1 opens its equipment (Level 3)
    qtbot.mouseClick(w.banner.newest, pytest.importorskip("PyQt6.QtCore").Qt.MouseButton.LeftButton)
    assert w.current == "equipment" and w.equipment is not None and w.equipment.eq.id == "J003"
    # acknowledged then returned to normal: the colour goes away
    console.feed([], alarm_events=[{**p1(), "state": "normal"}])
    w.show_page("overview")
    settle(0.2)
    assert alarm_pixels(grab(w.overview))[style.P1] == 0


def test_priorities_distinguishable_in_greyscale(qtbot: QtBot) -> None:
    from hmi import qtstyle

    greys = []
    for p in (1, 2, 3, 4):
        img = qtstyle.priority_pixmap(p, 32).toImage().convertToFormat(pytest.importorskip(
            "PyQt6.QtGui").QImage.Format.Format_RGB32)
        rgb = pixels(img).astype(float)
        greys.append(rgb.mean(axis=2))
    for i in range(4):
        for j in range(i + 1, 4):
            assert np.abs(greys[i] - greys[j]).mean() > 8, (i + 1, j + 1)
    # and the text of every priority carries shape + number + word
    assert [style.priority_text(p) for p in (1, 2, 3, 4)] == ["■1 critical", "▲2 high", "◆3 medium", "●4 low"]


def test_alarm_colours_are_defined_once() -> None:
    hexes = {c.lower() for c in style.ALARM_PALETTE}
    for f in (ROOT / "hmi").rglob("*.py"):
        if f.name == "style.py":
            continue
        text = f.read_text().lower()
        for h in hexes:
            assert h not in text, f"{f}: alarm colour {h} used outside hmi/style.py"
        assert not re.search(r"globalcolor\.(red|yellow|magenta|cyan)", text), f"{f}: Qt alarm-like colour"


# ---------------------------------------------------------------------- overview
def test_overview_recolours_only_changed_spots(qtbot: QtBot, console: ConsoleModel) -> None:
    from hmi.overview import Overview

    ov = Overview(console)
    qtbot.addWidget(ov)
    ov.resize(1000, 700)
    ov.show()
    before = ov.lum_item.data["brush"].copy()
    name = "dijon/lighting/C0001/lamp_05/status"
    console.feed([[name, 1, "good", 2]])
    after = ov.lum_item.data["brush"]
    changed = np.flatnonzero([a is not b for a, b in zip(before, after, strict=True)])
    assert changed.tolist() == [console.map._lum_index[name]]
    assert console.map.lum_code[changed[0]] == style.ABNORMAL
    # the luminaire is drawn white (abnormal, not an alarm colour)
    assert alarm_pixels(grab(ov)) == {c: 0 for c in style.ALARM_PALETTE}


def test_overview_click_selects_and_double_click_opens(qtbot: QtBot, console: ConsoleModel) -> None:
    from PyQt6.QtCore import Qt

    from hmi.overview import Overview

    ov = Overview(console)
    qtbot.addWidget(ov)
    ov.resize(1000, 700)
    ov.show()
    settle(0.1)
    ov.center_on("J009")
    settle(0.1)
    ov.select(None)
    pt = ov.point_of("J009")
    assert pt is not None
    vp = ov.view.viewport()
    qtbot.mouseClick(vp, Qt.MouseButton.LeftButton, pos=pt.toPoint())
    assert ov.selection == "J009" and ov.open_btn.isEnabled()
    with qtbot.waitSignal(console.openEquipment, timeout=2000) as sig:
        qtbot.mouseDClick(vp, Qt.MouseButton.LeftButton, pos=pt.toPoint())
    assert sig.args == ["J009"]


def test_stale_overlay_and_commune_counts(qtbot: QtBot, console: ConsoleModel) -> None:
    from hmi.overview import Overview

    ov = Overview(console)
    qtbot.addWidget(ov)
    ov.show()
    console.feed([], alarm_events=[p1(), {**p1("C0001", "x:y"), "priority": 3}])
    assert "■1×1" in ov._labels["Dijon"].toPlainText() and "◆3×1" in ov._labels["Dijon"].toPlainText()
    assert not ov.overlay.isVisible()
    console.set_stale(True)
    assert ov.overlay.isVisible()
    console.set_stale(False)
    assert not ov.overlay.isVisible()


# ---------------------------------------------------------------------- alarm list and banner
def alarms_fixture() -> list[dict[str, Any]]:
    return [p1(),
            {"id": "a2", "priority": 2, "state": "acked", "equipment": "C0001", "commune": "Dijon", "service": "lighting",
             "message": "mains lost", "since_ms": 4},
            {"id": "a3", "priority": 3, "state": "unack", "equipment": "CAM001", "commune": "Dijon", "service": "cctv",
             "message": "camera offline", "since_ms": 3, "flags": ["shelved_timed"]},
            {"id": "a4", "priority": 4, "state": "rtn_unack", "equipment": "PK01", "commune": "Dijon",
             "service": "parking", "message": "parking full", "since_ms": 2}]


def test_banner_counts(qtbot: QtBot, console: ConsoleModel) -> None:
    from PyQt6.QtCore import Qt

    from hmi.alarms_view import Banner

    b = Banner(console)
    qtbot.addWidget(b)
    console.feed([], alarm_snapshot=alarms_fixture())
    assert b.cells[1].text.text() == "P1 critical: 1 unack / 1 active"
    assert b.cells[2].text.text() == "P2 high: 0 unack / 1 active"
    assert b.cells[4].text.text() == "P4 low: 1 unack / 0 active"
    assert "Shelved 1" in b.hidden.text() and "Out of service 0" in b.hidden.text()
    console.set_stale(True)
    assert "STALE" in b.link.text()
    # audible annunciation (hmi.annunciator, tests/hmi/test_annunciator.py): the P1 sounds; Silence quiets it
    assert b.annunciator.state == "sounding" and b.annunciator.priority == 1 and b.silence.isEnabled()
    qtbot.mouseClick(b.silence, Qt.MouseButton.LeftButton)
    assert b.annunciator.state == "silenced" and not b.silence.isEnabled()


def test_alarm_list_actions_disabled_with_reasons_and_two_clicks(qtbot: QtBot, console: ConsoleModel) -> None:
    from PyQt6.QtCore import Qt

    from hmi.alarms_view import AlarmList

    al = AlarmList(console)
    qtbot.addWidget(al)
    al.resize(1400, 600)
    al.show()
    console.feed([], alarm_snapshot=alarms_fixture())
    al.refresh()
    assert [a.id for a in (al.model.alarm(r) for r in range(al.model.rowCount())) if a] == [
        p1()["id"], "a2", "a4"]  # shelved one hidden
    assert al.buttons["ack"].toolTip() == "select an alarm first"
    # 2 clicks from an alarm to its equipment: select the row, press "Open equipment"
    rect = al.table.visualRect(al.model.index(0, 4))
    qtbot.mouseClick(al.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert [a.id for a in al.selected()] == [p1()["id"]]
    assert not al.buttons["shelve"].isEnabled()
    assert "priority-1" in al.buttons["shelve"].toolTip()
    with qtbot.waitSignal(console.openEquipment, timeout=1000) as sig:
        qtbot.mouseClick(al.buttons["open"], Qt.MouseButton.LeftButton)
    assert sig.args == ["J003"]
    # a flood reported by the engine groups the list by equipment (priority 1 on top) until it ends
    flood = {"subsystems": {"alarms": {"status": "ok", "stats": {"flood_areas": ["Dijon"]}}}}
    console.health = flood
    console.healthChanged.emit(flood)
    assert al.group == "equipment" and "FLOOD" in al.flood_label.text()
    assert al.model.rows[0].worst == 1  # type: ignore[union-attr]
    console.healthChanged.emit({"subsystems": {"alarms": {"status": "ok", "stats": {"flood_areas": []}}}})
    assert al.group == "none" and not al.flood_label.text()
    # a viewer may not acknowledge: disabled, and the tooltip says why
    console.session = Session("v", "viewer", frozenset({"read"}))
    console.sessionChanged.emit()
    assert not al.buttons["ack"].isEnabled() and "viewer" in al.buttons["ack"].toolTip()
    # grouping keeps priority 1 on top; the hidden list shows the shelved alarm
    al.group_box.setCurrentText("service")
    assert al.model.rows[0].key == "traffic"  # type: ignore[union-attr]
    al.show_box.setCurrentIndex(2)
    assert [a.id for a in (al.model.alarm(r) for r in range(al.model.rowCount())) if a] == ["a3"]
    # without a server an action answers "not connected"
    console.session = Session("op", "operator", frozenset({"read", "alarm.ack", "alarm.shelve"}))
    console.sessionChanged.emit()
    al.show_box.setCurrentIndex(0)
    al.group_box.setCurrentText("none")
    al.select_ids(["a4"])
    al.dialog_answers = {"ack": {"comment": "x"}}
    r = al.do("ack")
    assert r is not None
    qtbot.waitUntil(lambda: "not connected" in al.result.text(), timeout=2000)


# ---------------------------------------------------------------------- level 3
def test_junction_unknown_on_comm_loss(qtbot: QtBot, console: ConsoleModel) -> None:
    from hmi.equipment_views import EquipmentDisplay

    d = EquipmentDisplay(console, "J003")
    qtbot.addWidget(d)
    d.resize(1300, 700)
    d.show()
    syn = d.synoptic
    assert syn.current().known  # type: ignore[attr-defined]
    assert [a.state for a in syn.current().aspects] == ["G", "G", "R", "R"]  # type: ignore[attr-defined]
    lit_before = _lit_lamps(grab(syn))
    console.feed([["dijon/junction/J003/phase_greens", 3, "bad_comm", 9]])
    v = syn.current()  # type: ignore[attr-defined]
    assert not v.known and "communication lost" in v.why_unknown and {a.state for a in v.aspects} == {"?"}
    img = grab(syn)
    assert _lit_lamps(img) < lit_before / 4  # no lit aspect is drawn any more
    hatch = np.abs(pixels(img).astype(int) - np.array([0x3c, 0x3c, 0x3c])).max(axis=2) < 8
    assert hatch.sum() > 200  # hatched grey "unknown" heads and banner
    assert alarm_pixels(img) == {c: 0 for c in style.ALARM_PALETTE}
    # a stale console is "unknown" too, even with good qualities
    console.feed([["dijon/junction/J003/phase_greens", 3, "good", 10]])
    assert syn.current().known  # type: ignore[attr-defined]
    console.set_stale(True)
    assert not syn.current().known  # type: ignore[attr-defined]


def _lit_lamps(img: Any) -> int:
    px = pixels(img).astype(int)
    return int((np.abs(px - np.array([0xF0, 0xF0, 0xF0])).max(axis=2) < 6).sum())


def test_command_panel_disabled_with_reason_for_viewer(qtbot: QtBot, console: ConsoleModel) -> None:
    from hmi.commands_view import CommandPanel
    from tests.hmi.test_models import VOCAB

    console.vocabulary = VOCAB
    console.vocabulary_error = ""
    panel = CommandPanel(console, "J003", "junction")
    qtbot.addWidget(panel)
    assert set(panel.buttons) == {"select_plan", "flash", "return_to_local"}
    assert panel.buttons["flash"].isEnabled()
    console.session = Session("v", "viewer", frozenset({"read"}))
    console.sessionChanged.emit()
    assert not panel.buttons["flash"].isEnabled()
    assert "viewer" in panel.buttons["flash"].toolTip()
    console.vocabulary, console.vocabulary_error = {}, "failsafe not available"
    console.vocabularyChanged.emit()
    assert not panel.buttons


def test_command_dialog_shows_what_will_be_sent(qtbot: QtBot, console: ConsoleModel) -> None:
    from hmi.commands_view import CommandDialog
    from hmi.models.commands import verbs_for
    from tests.hmi.test_models import VOCAB

    form = next(f for f in verbs_for(VOCAB, "junction") if f.verb == "select_plan")
    d = CommandDialog(console, form, ["J003"])
    qtbot.addWidget(d)
    d.inputs["plan"].setValue(3)  # type: ignore[union-attr]
    d.lease.setValue(20)
    assert "Command: select plan on J003" in d.summary.text() and "plan = 3" in d.summary.text()
    assert "20 min" in d.summary.text() and "Select-before-operate" in d.steps.text()
    assert d.send_btn.isEnabled() and not d.operate_btn.isEnabled()
    d.ticket = {"id": "t1", "state": "selected", "deadline": 4e9}
    d.show_ticket()
    assert d.operate_btn.isEnabled() and "Selected" in d.status.text()
    d.ticket = {"id": "t1", "state": "finished", "outcome": "rejected", "reason": "plan 3 unknown"}
    d.show_ticket()
    assert d.status.text() == "REJECTED: plan 3 unknown" and not d.operate_btn.isEnabled()


# ---------------------------------------------------------------------- trends, journal, layouts
def test_trend_gaps_and_cursor(qtbot: QtBot, console: ConsoleModel) -> None:
    from hmi.trends_view import TrendView

    tv = TrendView(console)
    qtbot.addWidget(tv)
    tv.show()
    tag = "dijon/lighting/C0001/power"
    tv.add(tag)
    r = Reply("GET", "/history/decimated")
    r.status, r.done = 200, True
    t0 = 1_700_000_000_000
    r.data = {"points": [{"t_ms": t0, "value": 10.0, "quality": "good"},
                         {"t_ms": t0 + 60_000, "value": 20.0, "quality": "good"},
                         {"t_ms": t0 + 120_000, "value": None, "quality": "bad_comm"},
                         {"t_ms": t0 + 300_000, "value": 30.0, "quality": "good"}]}
    tv.livebuf[tag].t = np.zeros(0)
    tv.livebuf[tag].v = np.zeros(0)
    tv.livebuf[tag].q = []
    tv._history(tag, r)
    assert len(tv.gap_items) == 1 and tv.gap_items[0].getRegion() == (t0 / 1000 + 120, t0 / 1000 + 300)
    tv.set_cursor(t0 / 1000 + 90)
    assert "C0001/power: 20" in tv.readout.text()
    tv.set_cursor(t0 / 1000 + 200)
    assert "? communication lost" in tv.readout.text()  # the quality in words
    _x, y = tv.curves[tag].getData()
    assert y[2] == 20.0 and np.isnan(y[3]) and y[4] == 30.0  # 20 held up to the bad sample, then the gap


def test_journal_csv_export(qtbot: QtBot, console: ConsoleModel, tmp_path: Path) -> None:
    from hmi.journal_view import JournalView

    jv = JournalView(console)
    qtbot.addWidget(jv)
    jv.fields["equipment"].setText("C0001")
    assert jv.filter().params()["equipment"] == "C0001"
    r = Reply("GET", "/journal")
    r.status, r.done = 200, True
    r.data = {"entries": [{"id": 1, "ts_ms": 1_700_000_000_000, "event": "acknowledge", "user": "op",
                           "comment": "seen, crew sent", "equipment": "C0001", "message": "6 luminaires failed"}]}
    jv._loaded(r)
    assert jv.table.rowCount() == 1
    out = tmp_path / "j.csv"
    assert jv.export_csv(out) == 1
    text = out.read_text()
    assert text.startswith("time,event,equipment,message,user,comment,id") and "seen, crew sent" in text
    assert ",acknowledged," in text  # the journal's code in words, as on screen


def test_check_layouts_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cli.main import main

    assert main(["hmi", "--check-layouts"]) == 0
    bad = tmp_path / "l.yaml"
    bad.write_text("corridors:\n  - name: x\n    junctions: [J1]\nviews: 3\n")
    assert main(["hmi", "--check-layouts", "--layouts", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:4: views: must be a list, got 3" in err


def test_check_layouts_cli_in_french(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """``scada --lang fr hmi --check-layouts``: the problems, a YAML syntax error and the summary lines in French."""
    from cli.main import main

    monkeypatch.delenv("SCADA_LANG", raising=False)
    try:
        assert main(["--lang", "fr", "hmi", "--check-layouts"]) == 0
        out = capsys.readouterr().out
        assert re.fullmatch(r".*city\.yaml : correct \(schémas de carrefour : \d+, carrefours : \d+, couloirs : \d+, "
                            r"vues : \d+\)\n", out), out
        broken = tmp_path / "broken.yaml"
        broken.write_text("views:\n  - name: x\n    columns: [a, b\n", encoding="utf-8")
        assert main(["--lang", "fr", "hmi", "--check-layouts", "--layouts", str(broken)]) == 1
        err = capsys.readouterr().err
        assert err == (f"{broken}:4: erreur de syntaxe YAML : ',' ou ']' attendu (un crochet ou une accolade non "
                       f"fermé ?), trouvé la fin du fichier\n1 problème dans {broken}\n"), err
        two = tmp_path / "two.yaml"
        two.write_text("views: 3\ncorridors: 4\n", encoding="utf-8")
        assert main(["--lang", "fr", "hmi", "--check-layouts", "--layouts", str(two)]) == 1
        err = capsys.readouterr().err
        assert err.endswith(f"2 problèmes dans {two}\n") and "problem" not in err.replace("problème", ""), err
    finally:
        monkeypatch.delenv("SCADA_LANG", raising=False)  # --lang put it in the environment for child processes


def test_vectorised_restyle_draws_what_pyqtgraph_would(qtbot: QtBot) -> None:
    """set_points/recolour write pyqtgraph's columns directly: the picture must equal pyqtgraph's own path."""
    import pyqtgraph as pg
    from PyQt6.QtCore import QRectF

    from hmi.overview import KIND_STYLES, brush_table, pen_table, recolour, set_points

    rng = np.random.default_rng(3)
    n = 3000
    x, y = rng.uniform(0, 1000, n), rng.uniform(0, 600, n)
    kinds = rng.integers(0, len(KIND_STYLES), n).astype(np.uint8)
    codes = rng.choice([0, 1, 2, 4, 5, 6, 7], n).astype(np.uint8)
    brushes, pens = brush_table(style.EQUIPMENT), pen_table()

    def view() -> tuple[pg.GraphicsView, pg.ViewBox]:
        v = pg.GraphicsView(background=style.BACKGROUND)
        vb = pg.ViewBox(lockAspect=True, enableMenu=False)
        v.setCentralItem(vb)
        v.resize(700, 450)
        qtbot.addWidget(v)
        v.show()
        return v, vb

    def image(v: pg.GraphicsView, vb: pg.ViewBox) -> np.ndarray:
        vb.setRange(QRectF(0, 0, 1000, 600), padding=0)
        settle(0.1)
        return pixels(grab(v))

    va, a = view()
    ref = pg.ScatterPlotItem(pxMode=True)
    a.addItem(ref)
    vb_, b = view()
    fast = pg.ScatterPlotItem(pxMode=True)
    b.addItem(fast)
    for step in range(3):
        if step == 0:
            set_points(fast, x, y, codes, brushes, pens, kinds, KIND_STYLES)
        else:  # a delta on 5 % of the spots
            idx = np.sort(rng.choice(n, n // 20, replace=False)).astype(np.int64)
            codes[idx] = rng.choice([0, 1, 2, 7], idx.size).astype(np.uint8)
            recolour(fast, idx, codes[idx], brushes, pens, kinds, KIND_STYLES)
        ref.setData(x=x, y=y, symbol=[KIND_STYLES[k][0] for k in kinds.tolist()],
                    size=[KIND_STYLES[k][1] for k in kinds.tolist()], brush=list(brushes[codes]), pen=list(pens[codes]))
        assert np.array_equal(image(va, a), image(vb_, b)), f"step {step}: pictures differ"


def test_trend_pan_zoom_requeries_history(qtbot: QtBot, console: ConsoleModel) -> None:
    from hmi.trends_view import TrendView

    tv = TrendView(console)
    qtbot.addWidget(tv)
    tv.resize(900, 500)
    tv.show()
    tv.add("dijon/lighting/C0001/power")
    before = tv.queries
    x0, x1 = tv.x_range()
    tv.plot.setXRange(x0 - 7200, x1 - 3600, padding=0)  # pan two hours back
    qtbot.waitUntil(lambda: tv.queries > before, timeout=3000)  # one decimated query after the gesture settles
