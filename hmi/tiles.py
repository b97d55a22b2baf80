"""The street base map on the Level-1 map: Web Mercator tiles as pyqtgraph ImageItems under the outlines.

    Overview's ViewBox ──sigRangeChanged (150 ms rest)──► BaseMap.refresh()
        view rect (metres) ─unproject (MapModel's lat0/lon0)─► lon/lat box ─► zoom, tiles (hmi.models.tiles)
        each tile (centre first, PER_TURN per turn of the event loop: a zoom never freezes the console):
                    in memory ─► shown
                    MBTiles    ─► read now (a local SQLite file)
                    XYZ        ─► the disk cache ─► else QNetworkAccessManager GET (asynchronous, no thread)
                                  ─► written to the cache ─► drawn when it arrives
        image: decoded by QImage, turned grey (ISA-101: colour is for alarms only), faint (opacity), drawn
               between the tile's projected corners at z −10 (under the outlines at z 0)
    attribution: a label in the map's lower-right corner, always visible while tiles are drawn

``scada hmi`` draws it when ``hmi/layouts/city.yaml`` has a ``basemap`` section (see
:mod:`hmi.models.tiles` for its keys and checks); without one, nothing here runs. XYZ tiles are cached
in ``<the console's cache folder>/tiles/<source>/`` (``~/.cache/city-scada/tiles`` on Linux) unless the
section names its own ``cache``; a second load of the same area makes no request.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import QEvent, QObject, QRectF, QStandardPaths, QTimer, QUrl
from PyQt6.QtGui import QImage
from PyQt6.QtNetwork import QNetworkAccessManager, QNetworkReply, QNetworkRequest
from PyQt6.QtWidgets import QLabel, QWidget

from hmi.console import ConsoleModel
from hmi.models.tiles import BaseMapSpec, MBTilesSource, XyzCache, tile_bounds, tiles_for, zoom_for
from scada.geo import M_PER_DEG_LAT
from scada.i18n import _

log = logging.getLogger(__name__)

Z_VALUE = -10.0
KEEP = 256  # tile images kept in memory (about 64 MB of RGBA at most)
PER_TURN = 4  # tiles decoded per turn of the event loop
USER_AGENT = b"city-scada-console"


def cache_folder(spec: BaseMapSpec) -> Path:
    """Where XYZ tiles of this source are kept: the section's ``cache``, else the console's cache folder."""
    if spec.cache:
        return Path(spec.cache)
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.GenericCacheLocation)
    digest = hashlib.sha256(spec.source.encode()).hexdigest()[:12]  # two sources never share tiles
    return Path(base or ".") / "city-scada" / "tiles" / digest


def decode(data: bytes) -> np.ndarray[Any, Any] | None:
    """PNG/JPEG bytes → a grey RGBA array indexed [x, y] with y = 0 at the south (the map's y goes up)."""
    img = QImage.fromData(data)
    if img.isNull():
        return None
    rgba: np.ndarray[Any, Any] = pg.imageToArray(img.convertToFormat(QImage.Format.Format_RGBA8888), copy=True,
                                                 transpose=True)
    grey = (rgba[..., 0] * 0.299 + rgba[..., 1] * 0.587 + rgba[..., 2] * 0.114).astype(np.uint8)
    out = np.empty_like(rgba)
    out[..., 0] = out[..., 1] = out[..., 2] = grey
    out[..., 3] = rgba[..., 3]
    return out[:, ::-1]  # image rows run north → south; the view's y runs south → north


class BaseMap(QObject):
    """The tiles of one :class:`BaseMapSpec` in a ViewBox, following its range."""

    def __init__(self, console: ConsoleModel, vb: pg.ViewBox, view: QWidget, spec: BaseMapSpec,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.console, self.vb, self.view, self.spec = console, vb, view, spec
        self.items: dict[tuple[int, int, int], pg.ImageItem] = {}
        self.wanted: list[tuple[int, int, int]] = []
        self.requests = 0  # network requests made (the disk cache spares them)
        self.pending: dict[tuple[int, int, int], QNetworkReply] = {}
        self.mbtiles: MBTilesSource | None = None
        self.cache: XyzCache | None = None
        self.net: QNetworkAccessManager | None = None
        if spec.kind == "mbtiles":
            self.mbtiles = MBTilesSource(Path(spec.source))
        else:
            self.cache = XyzCache(spec.source, cache_folder(spec))
            self.net = QNetworkAccessManager(self)
        self.credit = QLabel(spec.attribution, view)
        self.credit.setStyleSheet("background: rgba(255, 255, 255, 200); color: #000; padding: 1px 4px;")
        self.credit.setAccessibleName(_("base map attribution"))
        self.credit.show()
        view.installEventFilter(self)
        self._place_credit()
        self._rest = QTimer(self)
        self._rest.setSingleShot(True)
        self._rest.setInterval(150)  # a pan or zoom asks for tiles once it rests
        self._rest.timeout.connect(self.refresh)
        self.queue: list[tuple[int, int, int]] = []
        self._pump = QTimer(self)
        self._pump.setInterval(0)
        self._pump.timeout.connect(self._next)
        vb.sigRangeChanged.connect(lambda *_: self._rest.start())
        console.equipmentLoaded.connect(self.reset)  # a new map model: a new projection origin

    # ------------------------------------------------------------------ projection
    def _lonlat_box(self) -> tuple[float, float, float, float]:
        m = self.console.map
        r = self.vb.viewRect()
        x1, _ = m.project(m.lat0, m.lon0 + 1.0)  # metres per degree of longitude: the map's own projection
        kx = float(x1) or M_PER_DEG_LAT
        return (m.lon0 + r.left() / kx, m.lat0 + r.top() / M_PER_DEG_LAT,
                m.lon0 + r.right() / kx, m.lat0 + r.bottom() / M_PER_DEG_LAT)

    def _rect(self, z: int, x: int, y: int) -> QRectF:
        west, south, east, north = tile_bounds(z, x, y)
        xs, ys = self.console.map.project(np.array([south, north]), np.array([west, east]))
        return QRectF(float(xs[0]), float(ys[0]), float(xs[1] - xs[0]), float(ys[1] - ys[0]))

    # ------------------------------------------------------------------ tiles
    def refresh(self) -> list[tuple[int, int, int]]:
        """Show the tiles of the current view (loading the missing ones); returns the tiles wanted."""
        if not len(self.console.map.equipment):
            return []
        west, south, east, north = self._lonlat_box()
        z = zoom_for(float(self.vb.viewPixelSize()[0]), self.console.map.lat0, self.spec.min_zoom,
                     self.spec.max_zoom)
        self.wanted = tiles_for(west, min(south, north), east, max(south, north), z)
        wanted = set(self.wanted)
        for key, item in self.items.items():
            item.setVisible(key in wanted)
        # decoding takes ~7 ms a tile: a few per turn of the event loop, centre first, so a zoom never
        # freezes the console for the whole screenful
        self.queue = [key for key in self.wanted if key not in self.items]
        self._forget(wanted)
        self._pump.start()
        return self.wanted

    def loaded(self) -> bool:
        """Every tile wanted is loaded or asked for (tests wait on it)."""
        return not self.queue and not self.pending

    def _next(self) -> None:
        for key in self.queue[:PER_TURN]:
            if key in self.wanted and key not in self.items:
                self._load(key)
        del self.queue[:PER_TURN]
        if not self.queue:
            self._pump.stop()

    def _load(self, key: tuple[int, int, int]) -> None:
        if self.mbtiles is not None:
            data = self.mbtiles.get(*key)
            if data is not None:
                self._draw(key, data)
            return
        if self.cache is None or self.net is None:
            return
        data = self.cache.get(*key)
        if data is not None:
            self._draw(key, data)
            return
        if key in self.pending:
            return
        req = QNetworkRequest(QUrl(self.cache.url(*key)))
        req.setRawHeader(b"User-Agent", USER_AGENT)
        reply = self.net.get(req)
        if reply is None:
            return
        self.requests += 1
        self.pending[key] = reply
        reply.finished.connect(lambda k=key, r=reply: self._arrived(k, r))

    def _arrived(self, key: tuple[int, int, int], reply: QNetworkReply) -> None:
        self.pending.pop(key, None)
        reply.deleteLater()
        if reply.error() != QNetworkReply.NetworkError.NoError:
            log.warning("basemap: tile %s/%s/%s: %s", *key, reply.errorString())
            return
        data = bytes(reply.readAll().data())
        if self.cache is not None and decode(data) is not None:
            self.cache.put(*key, data)
        if key in self.wanted:
            self._draw(key, data)

    def _draw(self, key: tuple[int, int, int], data: bytes) -> None:
        image = decode(data)
        if image is None:
            log.warning("basemap: tile %s/%s/%s is not an image", *key)
            return
        item = pg.ImageItem(image, levels=(0, 255))
        item.setRect(self._rect(*key))
        item.setZValue(Z_VALUE)
        item.setOpacity(self.spec.opacity)
        self.vb.addItem(item, ignoreBounds=True)  # "Fit city" fits the city, not the tiles
        self.items[key] = item

    def _forget(self, wanted: set[tuple[int, int, int]]) -> None:
        if len(self.items) <= KEEP:
            return
        for key in [k for k in self.items if k not in wanted][: len(self.items) - KEEP]:
            self.vb.removeItem(self.items.pop(key))

    def reset(self) -> None:
        """The map model changed (a new projection origin): redraw every tile."""
        for item in self.items.values():
            self.vb.removeItem(item)
        self.items = {}
        self.refresh()

    def close(self) -> None:
        self._pump.stop()
        for reply in self.pending.values():
            reply.abort()
        if self.mbtiles is not None:
            self.mbtiles.close()

    # ------------------------------------------------------------------ attribution
    def _place_credit(self) -> None:
        self.credit.adjustSize()
        self.credit.move(max(0, self.view.width() - self.credit.width() - 4),
                         max(0, self.view.height() - self.credit.height() - 4))
        self.credit.raise_()

    def eventFilter(self, obj: QObject | None, ev: QEvent | None) -> bool:
        if obj is self.view and ev is not None and ev.type() == QEvent.Type.Resize:
            self._place_credit()
        return False


__all__ = ["BaseMap", "cache_folder", "decode"]
