"""The Level-1 map's geography, layers and level of detail, on a real offscreen widget tree.

- the 23 commune outlines are drawn (pixels of the outline grey, gone when the outline layer is hidden)
  and Dijon's label lies inside Dijon's outline;
- the layer panel hides and shows a layer (the picture changes, hidden markers cannot be picked);
- at full scale (the generated 34,000-luminaire city), zoomed out, luminaires aggregate per cabinet and
  equipment clusters carry their count and worst alarm priority; zoomed in, every luminaire is back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PyQt6.QtCore import QPointF, QRectF
from pytestqt.qtbot import QtBot

from hmi import style
from hmi.console import ConsoleModel
from hmi.models.live import EquipmentInfo, Session
from hmi.screenshots import grab, pixels, settle
from scada import geo
from scada.config.inventory import LAMP_POSITIONS, parse_lamp_positions

ROOT = Path(__file__).resolve().parents[2]


def infos(city: Any) -> list[EquipmentInfo]:
    """What GET /equipment gives the console (lamp positions included), without a server."""
    return [EquipmentInfo(e.id, e.template, e.kind, e.domain, e.commune, e.lat, e.lon, e.device,
                          tuple(parse_lamp_positions(e.params.get(LAMP_POSITIONS))))
            for e in city.equipment.values()]


def normal_rows(city: Any) -> list[list[Any]]:
    """Every health tag and luminaire normal (what the map reads), in the WebSocket row format."""
    normal = {"mains_ok": True, "link": 1, "fault": False, "intrusion_alarm": False, "status": 0,
              "phase_greens": 3, "occupied": False}
    rows: list[list[Any]] = []
    for t in city.tags:
        short = t.tag.rsplit("/", 1)[-1]
        if t.tag.startswith("lamp_") and short == "status":
            rows.append([t.name, 0, "good", 1])
        elif t.tag in ("lat", "lon"):
            e = city.equipment[t.equipment]
            rows.append([t.name, e.lat if t.tag == "lat" else e.lon, "good", 1])
        elif short in normal and "/" not in t.tag:
            rows.append([t.name, normal[short], "good", 1])
    return rows


def make_console(city: Any) -> ConsoleModel:
    c = ConsoleModel(None)
    c.set_equipment(infos(city))
    c.session = Session("op", "operator", frozenset({"read"}))
    c.set_stale(False)
    c.feed(normal_rows(city), alarm_snapshot=[])
    return c


@pytest.fixture(scope="module")
def demo_city() -> Any:
    from scada.config import load_city

    return load_city(ROOT / "tags.yaml", ROOT / "alarms.yaml")


@pytest.fixture(scope="module")
def full_city(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from scada.config import load_city
    from scada.config.generate import generate

    tags = generate(tmp_path_factory.mktemp("dijon"), "dijon", 42, ROOT)
    return load_city(tags, tags.parent / "alarms.yaml")


def overview(qtbot: QtBot, console: ConsoleModel) -> Any:
    from hmi.overview import Overview

    ov = Overview(console)
    qtbot.addWidget(ov)
    ov.resize(1300, 850)
    ov.show()
    qtbot.waitExposed(ov)
    settle(0.2)
    return ov


def _rgb(hex_: str) -> np.ndarray:
    return np.array([int(hex_[i:i + 2], 16) for i in (1, 3, 5)])


def line_pixels(ov: Any) -> int:
    return int(np.count_nonzero((pixels(grab(ov.view)).astype(int) == _rgb(style.COMMUNE_LINE)).all(axis=2)))


def widget_point(ov: Any, x: float, y: float) -> QPointF:
    return QPointF(ov.view.mapFromScene(ov.vb.mapViewToScene(QPointF(x, y))))


def lat_lon(ov: Any, x: float, y: float) -> tuple[float, float]:
    m = ov.console.map
    return m.lat0 + y / geo.M_PER_DEG_LAT, m.lon0 + x / m._kx


def test_outlines_are_drawn_and_dijon_label_lies_inside_dijon(qtbot: QtBot, demo_city: Any) -> None:
    ov = overview(qtbot, make_console(demo_city))
    # 23 rings, one per commune (Neuilly-Crimolois's two source polygons merged), thin grey lines
    ox, _ = ov.outline_item.getData()
    assert int(np.isnan(ox).sum()) == sum(len(list(c.rings())) for c in geo.communes().values()) == 23
    drawn = line_pixels(ov)
    assert drawn > 2000, drawn
    # a vertex of Flavignerot's outline (far from any equipment) is drawn in the outline grey
    fl = geo.communes()["Flavignerot"]
    lon, lat = next(fl.rings())
    x, y = ov.console.map.project(float(lat[0]), float(lon[0]))
    p = widget_point(ov, float(x), float(y))
    img = pixels(grab(ov.view)).astype(int)
    r, c = round(p.y()), round(p.x())
    patch = img[r - 2:r + 3, c - 2:c + 3]
    assert (patch == _rgb(style.COMMUNE_LINE)).all(axis=2).any()
    # no fill: the communes' insides stay the display background (most of the map)
    view = pixels(grab(ov.view)).astype(int)
    assert np.count_nonzero((view == _rgb(style.BACKGROUND)).all(axis=2)) > 0.6 * view.shape[0] * view.shape[1]
    ov.outline_item.hide()
    settle(0.1)
    assert line_pixels(ov) < drawn / 20
    ov.outline_item.show()
    # every label sits at its label point; Dijon's whole label box lies inside Dijon's outline
    label = ov._labels["Dijon"]
    assert label.toPlainText().startswith("Dijon")
    rect = label.mapRectToView(label.boundingRect())
    corners = [(rect.left(), rect.top()), (rect.right(), rect.top()), (rect.left(), rect.bottom()),
               (rect.right(), rect.bottom()), (rect.center().x(), rect.center().y())]
    for x, y in corners:
        assert geo.contains("Dijon", *lat_lon(ov, x, y)), (x, y)
    # and the label is really painted there: dark text pixels inside its box
    tl, br = widget_point(ov, rect.left(), rect.top()), widget_point(ov, rect.right(), rect.bottom())
    r0, r1 = sorted((round(tl.y()), round(br.y())))
    c0, c1 = sorted((round(tl.x()), round(br.x())))
    text = pixels(grab(ov.view))[r0:r1, c0:c1].astype(int)
    assert np.count_nonzero(text.max(axis=2) < 80) > 20
    # the licence's credit line is on screen
    assert any(geo.ATTRIBUTION == w.text() for w in ov.findChildren(type(ov.info)))


def test_commune_labels_are_placed_where_no_marker_is(qtbot: QtBot, demo_city: Any) -> None:
    """The screenshots showed "Dijon ■1×2 ▲2×1 ◆3×1" written over the dense equipment of Dijon's centre: each
    label (its name over its alarm counts) now sits inside its commune where no marker is drawn under it."""
    c = make_console(demo_city)
    ov = overview(qtbot, c)
    # alarms in Dijon: its label carries a second line of counts
    dijon = [e.id for e in c.map.equipment if e.commune == "Dijon" and e.template == "building"]
    c.feed([], alarm_snapshot=[{"id": f"fire_alarm:dijon/building/{eq}/fire_zone_1", "priority": p, "state": "unack",
                                "equipment": eq, "commune": "Dijon", "service": "fire", "message": "FEU"}
                               for eq, p in zip(dijon[:3], (1, 2, 3), strict=True)])
    qtbot.waitUntil(lambda: "\n" in ov._labels["Dijon"].toPlainText(), timeout=5000)
    settle(0.3)  # the resize's re-placement
    m = c.map
    mx, my = np.concatenate([m.eq_x, m.lum_x]), np.concatenate([m.eq_y, m.lum_y])
    img = pixels(grab(ov.view)).astype(int)
    clear = []
    for name, label in ov._labels.items():
        rect = label.mapRectToView(label.boundingRect())
        inside = (mx > rect.left()) & (mx < rect.right()) & (my > rect.top()) & (my < rect.bottom())
        if not inside.any():
            clear.append(name)
        if name == "Dijon":
            assert not inside.any(), [m.equipment[i].id for i in np.flatnonzero(inside) if i < len(m.equipment)]
            # its centre inside Dijon (the name alone lies wholly inside: the test above; with its counts,
            # clear of the markers comes first), and no marker's grey among its pixels, only the text's
            assert geo.contains("Dijon", *lat_lon(ov, rect.center().x(), rect.center().y()))
            tl, br = widget_point(ov, rect.left(), rect.top()), widget_point(ov, rect.right(), rect.bottom())
            r0, r1 = sorted((round(tl.y()), round(br.y())))
            c0, c1 = sorted((round(tl.x()), round(br.x())))
            assert np.count_nonzero(img[r0:r1, c0:c1].max(axis=2) < 80) > 20  # the text is there
            # and under it, the label hidden: only the map's background and the outlines' grey, no marker
            label.hide()
            under = pixels(grab(ov.view)).astype(int)[r0:r1, c0:c1]
            label.show()
            plain = (under == _rgb(style.BACKGROUND)).all(axis=2) | (under == _rgb(style.COMMUNE_LINE)).all(axis=2)
            assert plain.all(), sorted({tuple(px) for px in under[~plain].tolist()})[:5]
    # the demo's 23 communes: all but a crowded one or two find a clear place
    assert len(clear) >= 21, sorted(set(ov._labels) - set(clear))


def test_layer_panel_hides_and_shows_a_layer(qtbot: QtBot, demo_city: Any) -> None:
    ov = overview(qtbot, make_console(demo_city))
    boxes = ov.layer_box
    assert {"domain:traffic", "luminaires", "vehicles", "alarms_only"} <= set(boxes)
    assert not boxes["alarms_only"].isChecked() and all(b.isChecked() for k, b in boxes.items() if k != "alarms_only")
    before = pixels(grab(ov.view)).copy()
    # luminaires off: their item disappears and the picture changes; on again: back as it was
    boxes["luminaires"].setChecked(False)
    settle(0.1)
    assert not ov.lum_item.isVisible()
    off = pixels(grab(ov.view))
    assert np.count_nonzero((off != before).any(axis=2)) > 200
    boxes["luminaires"].setChecked(True)
    settle(0.1)
    assert np.count_nonzero((pixels(grab(ov.view)) != before).any(axis=2)) == 0
    # a domain off: its markers are hidden (not pickable), the others stay
    m = ov.console.map
    junctions = [i for i, e in enumerate(m.equipment) if e.domain == "traffic"]
    j = junctions[0]
    x, y = float(m.eq_x[j]), float(m.eq_y[j])
    boxes["domain:traffic"].setChecked(False)
    settle(0.1)
    visible = ov.eq_item.data["visible"]
    hidden_ids = {m.equipment[int(i)].id for i in ov._eq_idx[~visible]}
    assert hidden_ids == {m.equipment[i].id for i in junctions}
    assert np.count_nonzero((pixels(grab(ov.view)) != before).any(axis=2)) > 100
    ov.on_click(x, y, False)
    assert ov.selection != m.equipment[j].id
    boxes["domain:traffic"].setChecked(True)
    # alarms only: just the equipment with an annunciated alarm remains
    ov.console.feed([], alarm_events=[{"id": "a1", "priority": 2, "state": "unack", "equipment": m.equipment[j].id,
                                       "commune": m.equipment[j].commune, "area": m.equipment[j].commune,
                                       "service": "traffic", "message": "test", "since_ms": 5}])
    boxes["alarms_only"].setChecked(True)
    settle(0.1)
    shown = {m.equipment[int(i)].id for i in ov._eq_idx[ov.eq_item.data["visible"]]}
    assert shown == {m.equipment[j].id} and not ov.lum_item.isVisible() and len(ov.veh_item.data) == 0
    boxes["alarms_only"].setChecked(False)
    settle(0.1)
    assert bool(ov.eq_item.data["visible"].all()) and ov.lum_item.isVisible()


def test_full_scale_zoomed_out_aggregates_luminaires_and_clusters_equipment(qtbot: QtBot, full_city: Any) -> None:
    from hmi.overview import LOD_M_PER_PX

    # as live: the equipment list first, the map drawn, then the luminaires' rows arrive
    console = ConsoleModel(None)
    console.set_equipment(infos(full_city))
    console.set_stale(False)
    ov = overview(qtbot, console)
    assert not ov.lod  # 1,948 markers: no aggregation yet
    console.feed(normal_rows(full_city), alarm_snapshot=[])
    settle(0.1)
    m = console.map
    assert m.lum_x.size == 34_000
    assert ov.vb.viewPixelSize()[0] > LOD_M_PER_PX and ov.lod
    cabinets = [i for i, e in enumerate(m.equipment) if e.template == "lighting_cabinet"]
    # luminaires: one mark per cabinet instead of 34,000
    assert not ov.lum_item.isVisible() and ov.cab_item.isVisible()
    assert len(ov.cab_item.data) == len(cabinets) == 1100
    # equipment: clusters with their counts; every non-vehicle equipment is in one mark exactly once
    c = ov.clusters
    assert c is not None and 0 < c.count.size < len(m.equipment)
    singles = int(ov.eq_item.data["visible"].sum())
    vehicles = sum(e.template == "vehicle" for e in m.equipment)
    assert int(c.count.sum()) + singles + vehicles == len(m.equipment)
    assert np.array_equal(np.bincount(c.members[c.members >= 0], minlength=c.count.size), c.count)
    painted = len(ov.cab_item.data) + singles + c.count.size + vehicles
    assert painted < (m.lum_x.size + len(m.equipment)) / 8
    labels = ov.cluster_labels
    assert [int(t.split()[0]) for t in labels.texts] == c.count.tolist()
    assert labels.x.tolist() == c.x.tolist() and labels.y.tolist() == c.y.tolist()
    # a failed lamp makes its cabinet's mark abnormal; a P1 on a clustered member shows on its cluster
    cab = m.equipment[cabinets[0]]
    name = next(n for n in m.lum_names if f"/{cab.id}/lamp_" in n)
    console.feed([[name, 1, "good", 5]])
    spot = int(np.flatnonzero(ov._cab_idx == cabinets[0])[0])
    assert ov._cab_codes[spot] == style.ABNORMAL
    member = int(np.flatnonzero(c.members >= 0)[0])
    eq = m.equipment[member]
    console.feed([], alarm_events=[{"id": "p1", "priority": 1, "state": "unack", "equipment": eq.id,
                                    "commune": eq.commune, "area": eq.commune, "service": eq.domain,
                                    "message": "test", "since_ms": 5}])
    c2 = ov.clusters
    assert c2 is not None and int(c2.priority[c2.members[member]]) == 1 and c2.code[c2.members[member]] == style.ALARM_P1
    assert ov.cluster_labels.texts[int(c2.members[member])].endswith(f"{style.PRIORITIES[1].symbol}1")
    # zoomed in on a street: every luminaire again, no cluster
    i = cabinets[0]
    ov.vb.setRange(QRectF(float(m.eq_x[i]) - 300, float(m.eq_y[i]) - 200, 600, 400), padding=0)
    settle(0.1)
    assert not ov.lod and ov.lum_item.isVisible() and not ov.cab_item.isVisible() and ov.clusters is None
    assert bool(ov.eq_item.data["visible"].all())


def test_live_console_draws_luminaires_where_the_inventory_puts_them(qtbot: QtBot, tmp_path: Path,
                                                                    demo_city: Any) -> None:
    """Real simulator + server: lamp positions travel inventory → GET /equipment → map, unchanged."""
    from hmi.bridge import Bridge, wait_reply
    from tests.hmi.stack import PASSWORDS, LiveStack

    stack = LiveStack(tmp_path).start()
    console: ConsoleModel | None = None
    try:
        bridge = Bridge(stack.url, "hmi-test")
        bridge.start()
        console = ConsoleModel(bridge)
        r = wait_reply(console.login("op", PASSWORDS["op"]), 30)
        assert r.ok, r.why()
        qtbot.waitUntil(lambda: console.state == "online" and console.map.lum_x.size == 360, timeout=30_000)
        ov = overview(qtbot, console)
        m = console.map
        for cab in ("C0001", "C0007", "C0012"):
            lamps = parse_lamp_positions(demo_city.equipment[cab].params[LAMP_POSITIONS])
            assert m.equipment[m.index[cab]].lamps == tuple(lamps)
            for k in (1, len(lamps)):
                j = m._lum_index[f"{demo_city.equipment[cab].prefix}/lamp_{k:02d}/status"]
                x, y = m.project(*lamps[k - 1])
                assert (m.lum_x[j], m.lum_y[j]) == pytest.approx((float(x), float(y)))
                assert geo.contains(demo_city.equipment[cab].commune, *lamps[k - 1])
        assert line_pixels(ov) > 2000 and ov.outline_item.isVisible()
    finally:
        if console is not None:
            console.close()
        stack.stop()
