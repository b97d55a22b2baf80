"""The street base map (hmi.tiles) on a real offscreen Level-1 map, with no network:

- an MBTiles file generated here (PNG tiles drawn with QImage, TMS rows) is drawn under the outlines,
  each tile between its projected corners, north up, grey, with the attribution on the map;
- an XYZ template served by a local http.server (127.0.0.1, port 0, stopped at the end) fills the
  disk cache: a second console on the same area makes no request;
- a wrong ``basemap`` section is refused with ``file:line`` problems (scada hmi --check-layouts).
"""

from __future__ import annotations

import http.server
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PyQt6.QtCore import QBuffer, QByteArray, QIODevice
from PyQt6.QtGui import QColor, QImage, QPainter
from pytestqt.qtbot import QtBot

from hmi.console import ConsoleModel
from hmi.models import tiles as tm
from hmi.models.layouts import Layouts, load_layouts
from hmi.models.live import EquipmentInfo, Session
from hmi.screenshots import grab, pixels, settle

# a few equipment spanning the Dijon area (the map fits them)
CITY = [EquipmentInfo("J001", "junction", "junction", "traffic", "Dijon", 47.322, 5.041),
        EquipmentInfo("J002", "junction", "junction", "traffic", "Talant", 47.336, 4.998),
        EquipmentInfo("J003", "junction", "junction", "traffic", "Chenôve", 47.292, 5.008),
        EquipmentInfo("J004", "junction", "junction", "traffic", "Quetigny", 47.313, 5.106)]
ZOOMS = range(9, 14)
WEST, SOUTH, EAST, NORTH = 4.70, 47.10, 5.45, 47.55  # wider than any view of the test


def png(z: int, x: int, y: int) -> bytes:
    """A 256-px tile: black north-west quarter (orientation), the rest a grey that encodes (x + y) % 2."""
    img = QImage(256, 256, QImage.Format.Format_RGB32)
    img.fill(QColor(200, 200, 200) if (x + y) % 2 else QColor(120, 120, 120))
    p = QPainter(img)
    p.fillRect(0, 0, 128, 128, QColor(0, 0, 0))
    p.end()
    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    img.save(buf, "PNG")
    return bytes(data.data())


def area_tiles() -> list[tuple[int, int, int]]:
    return [t for z in ZOOMS for t in tm.tiles_for(WEST, SOUTH, EAST, NORTH, z, limit=10_000)]


def write_mbtiles(path: Path) -> Path:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE metadata (name TEXT, value TEXT)")
    db.execute("CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_data BLOB)")
    db.executemany("INSERT INTO metadata VALUES (?, ?)", [("name", "test streets"), ("format", "png"),
                                                           ("attribution", "© test tiles (generated)"),
                                                           ("minzoom", str(ZOOMS[0])), ("maxzoom", str(ZOOMS[-1]))])
    db.executemany("INSERT INTO tiles VALUES (?, ?, ?, ?)",
                   [(z, x, 2 ** z - 1 - y, png(z, x, y)) for z, x, y in area_tiles()])  # TMS: row 0 south
    db.commit()
    db.close()
    return path


def layouts_with(tmp: Path, section: str) -> tuple[Layouts, list[Any]]:
    f = tmp / "city.yaml"  # a layouts file with only the base map (the other sections are optional)
    f.write_text("# the console's layouts\n" + section, encoding="utf-8")
    return load_layouts(f)


def overview(qtbot: QtBot, layouts: Layouts) -> Any:
    from hmi.overview import Overview

    c = ConsoleModel(None, layouts)
    c.set_equipment(CITY)
    c.session = Session("op", "operator", frozenset({"read"}))
    c.set_stale(False)
    ov = Overview(c)
    qtbot.addWidget(ov)
    ov.resize(1000, 700)
    ov.show()
    settle(0.3)
    return ov


def test_mbtiles_drawn_under_the_outlines_north_up_with_attribution(qtbot: QtBot, tmp_path: Path) -> None:
    write_mbtiles(tmp_path / "streets.mbtiles")
    lay, problems = layouts_with(tmp_path, "basemap:\n  mbtiles: streets.mbtiles\n  opacity: 1\n")
    assert problems == [] and lay.basemap is not None
    assert lay.basemap.attribution == "© test tiles (generated)"  # from the file's metadata
    assert (lay.basemap.min_zoom, lay.basemap.max_zoom) == (ZOOMS[0], ZOOMS[-1])
    ov = overview(qtbot, lay)
    bm = ov.basemap
    assert bm is not None
    wanted = bm.refresh()
    qtbot.waitUntil(bm.loaded, timeout=10_000)  # a few tiles per turn of the event loop
    assert wanted and all(k in bm.items and bm.items[k].isVisible() for k in wanted)
    # under the outlines and every marker
    assert all(item.zValue() < ov.outline_item.zValue() for item in bm.items.values())
    # each tile between its projected corners: the tile holding J001 contains J001's map position
    z = wanted[0][0]
    key = (z, *tm.tile_of(CITY[0].lat, CITY[0].lon, z))
    assert key in bm.items
    m = ov.console.map
    x, y = m.project(CITY[0].lat, CITY[0].lon)
    rect = bm.items[key].mapRectToParent(bm.items[key].boundingRect())
    assert rect.contains(float(x), float(y))
    west, south, east, north = tm.tile_bounds(*key)
    x0, y0 = m.project(south, west)
    x1, y1 = m.project(north, east)
    assert (rect.left(), rect.top(), rect.right(), rect.bottom()) == pytest.approx(
        (float(x0), float(y0), float(x1), float(y1)), abs=1e-6)
    # north up: the black quarter of the PNG (its top-left) is at the rect's high-y, low-x corner
    img = bm.items[key].image
    assert img.shape[:2] == (256, 256)
    assert img[10, 250, 0] == 0 and img[10, 5, 0] > 100 and img[250, 250, 0] > 100
    # grey (ISA-101: colour is for alarms only) and the tile really painted on screen
    assert (img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all()
    shot = pixels(grab(ov.view))
    assert (shot[..., :3] == 0).all(axis=-1).sum() > 1000  # the tiles' black quarters
    # the attribution is on the map, inside the view, visible
    assert bm.credit.isVisible() and bm.credit.text() == "© test tiles (generated)"
    assert ov.view.rect().contains(bm.credit.geometry())
    # zooming in changes the zoom level and the tiles
    ov.vb.scaleBy((0.25, 0.25))
    again = bm.refresh()
    qtbot.waitUntil(bm.loaded, timeout=10_000)
    assert again[0][0] > z and all(k in bm.items and bm.items[k].isVisible() for k in again)
    assert not any(bm.items[k].isVisible() for k in wanted)  # the coarser tiles are hidden
    bm.close()


class TileServer:
    """PNG tiles over HTTP on 127.0.0.1 (port 0); counts requests; stopped by the fixture."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(self.path)
                try:
                    z, x, y = (int(p) for p in self.path.strip("/").removesuffix(".png").split("/"))
                    body = png(z, x, y)
                except ValueError:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="tile-server", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def tile_server() -> Iterator[TileServer]:
    s = TileServer()
    try:
        yield s
    finally:
        s.stop()


def test_xyz_tiles_fetched_once_then_read_from_the_disk_cache(qtbot: QtBot, tmp_path: Path,
                                                             tile_server: TileServer) -> None:
    cache = tmp_path / "cache"
    section = (f"basemap:\n  xyz: http://127.0.0.1:{tile_server.port}/{{z}}/{{x}}/{{y}}.png\n"
               f"  attribution: '© local test server'\n  cache: {cache}\n  max_zoom: {ZOOMS[-1]}\n")
    lay, problems = layouts_with(tmp_path, section)
    assert problems == [] and lay.basemap is not None and lay.basemap.kind == "xyz"
    first = overview(qtbot, lay)
    bm = first.basemap
    assert bm is not None
    wanted = bm.refresh()
    qtbot.waitUntil(lambda: all(k in bm.items for k in wanted), timeout=20_000)
    assert bm.requests >= len(wanted) and len(tile_server.requests) == bm.requests
    assert all((cache / str(z) / str(x) / f"{y}.tile").is_file() for z, x, y in wanted)
    assert bm.credit.text() == "© local test server"
    seen = len(tile_server.requests)
    # a second console over the same area: every tile from the disk, no request
    second = overview(qtbot, lay)
    bm2 = second.basemap
    assert bm2 is not None
    assert bm2.refresh() == wanted
    qtbot.waitUntil(bm2.loaded, timeout=5_000)
    assert all(k in bm2.items for k in wanted)  # drawn from the disk cache
    qtbot.wait(300)
    assert bm2.requests == 0 and len(tile_server.requests) == seen
    img = bm2.items[wanted[0]].image
    assert img[10, 250, 0] == 0  # the same tile, north up
    bm.close()
    bm2.close()


def test_a_wrong_basemap_section_is_refused_with_its_line(tmp_path: Path) -> None:
    _lay, problems = layouts_with(tmp_path, "basemap:\n  xyz: ftp://tiles/{z}/{x}.png\n  max_zom: 18\n")
    text = [str(p) for p in problems]
    assert any("'xyz' must be an http(s) URL template" in t for t in text), text
    assert any("unknown key 'max_zom' (did you mean 'max_zoom'?)" in t for t in text), text
    assert any("'attribution' must be" in t for t in text), text
    assert all(t.startswith(str(tmp_path / "city.yaml") + ":") for t in text)
    assert all(int(t.split(":")[1]) > 0 for t in text)  # every problem has its line
    _lay, problems = layouts_with(tmp_path, "basemap:\n  mbtiles: nowhere.mbtiles\n  attribution: x\n")
    assert len(problems) == 1 and "'mbtiles' must be a readable MBTiles file" in str(problems[0])
    _lay, problems = layouts_with(tmp_path, "basemap:\n  xyz: https://t/{z}/{x}/{y}.png\n  mbtiles: a\n")
    assert any("exactly one tile source" in str(p) for p in problems)


def test_tile_arithmetic_round_trips() -> None:
    for z in (10, 14, 18):
        x, y = tm.tile_of(47.3220, 5.0415, z)
        west, south, east, north = tm.tile_bounds(z, x, y)
        assert west <= 5.0415 < east and south < 47.3220 <= north
    # zoom for the pixel size: one tile pixel per screen pixel
    assert tm.zoom_for(2.0, 47.3, 0, 22) == round(np.log2(tm.M_PER_PX_Z0 * np.cos(np.radians(47.3)) / 2.0))
    assert tm.zoom_for(0.001, 47.3, 0, 18) == 18
