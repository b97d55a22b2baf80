"""Level 1 — the city overview: every equipment and luminaire on a map drawn from their coordinates.

    ┌ pg.GraphicsView ─ ViewBox (aspect locked, wheel zoom, drag pan) ─────────────┬ side panel ────────┐
    │  street tiles   optional base map, grey and faint, under all (hmi.tiles)      │                    │
    │  outlines       the 23 communes (scada.geo), one curve, thin grey, no fill    │ legend (shapes)    │
    │  luminaires     one ScatterPlotItem, 'o' 4 px       ← recoloured per spot     │ layers ☑ per domain│
    │  cabinets (LOD) one mark per cabinet, worst luminaire state                   │  ☑ luminaires      │
    │  equipment      one ScatterPlotItem, shape = type   ← recoloured per spot     │  ☑ vehicles        │
    │  clusters (LOD) a count + the worst alarm priority per grid cell              │  ☐ alarms only     │
    │  vehicles       small item, moved when they move                              │ alarms per domain  │
    │  alarm marks    priority shape + number next to the equipment                 │ selected equipment │
    │  commune names  inside each outline where no marker is, counts under the name │  [Open display]    │
    │  stale overlay  hatched + "DATA STALE" while the console is disconnected      │ [Fit] · credit     │
    └──────────────────────────────────────────────────────────────────────────────┴────────────────────┘

Level of detail: on a big city (≥ LOD_MIN_MARKERS markers) zoomed out beyond LOD_M_PER_PX metres per
pixel, the luminaires give way to one mark per cabinet (its worst luminaire state) and equipment
sharing a grid cell of ~CLUSTER_PX pixels become one cluster mark with its count and worst alarm
priority. The grid is in map metres with a power-of-two cell, so panning regroups nothing and a zoom
regroups only when the cell size changes: a pan frame paints ~3,000 marks instead of 36,000.

Commune labels (the name, and under it the alarm counts "■1×2 ▲2×1") are placed for the zoom that shows
the whole city, each where its box fits inside its commune with no marker under it, nearest the commune's
label point, and clear of the labels placed before it (:meth:`MapModel.place_label`); a label whose counts
appear or go is placed again, and all of them after a resize.

Colour appears only when abnormal: normal markers are grey; a marker takes its worst alarm's
priority colour (with the priority mark beside it), white when abnormal without an alarm, hatched
grey when its state is unknown. No command buttons on this level (ISA-101): a click selects, a
double click or "Open display" goes to the equipment's Level-3 display.

Deltas recolour only the changed spots (:func:`recolour`): the brush/pen columns and the atlas
rectangles of the changed rows are written with numpy from a table of a few shared styles — O(changed)
with no Python loop per spot, so a 1 % delta on 34,000 luminaires costs well under a millisecond plus
one repaint. See bench/bench_hmi.py for the numbers and the naive baseline.
"""

from __future__ import annotations

import html
import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pyqtgraph as pg
from PyQt6.QtCore import QPointF, QRectF, Qt, QTimer, pyqtSignal
from PyQt6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPaintEvent
from PyQt6.QtWidgets import (
    QCheckBox,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from hmi import qtstyle, style
from hmi.console import ConsoleModel
from hmi.models.mapmodel import KIND_CODE, KINDS, Clusters, MapDelta
from hmi.qtstyle import hide_row_numbers
from hmi.tiles import BaseMap
from scada import geo
from scada.geo import ATTRIBUTION
from scada.i18n import N_, _

I64 = npt.NDArray[np.int64]
KIND_STYLES: tuple[tuple[str, float], ...] = tuple((style.KIND_SYMBOLS[k][0], float(style.KIND_SYMBOLS[k][1]))
                                                  for k in KINDS)
LUM_SIZE = 4.0
CABINET_SIZE = 7.0  # a cabinet's aggregated luminaires (zoomed out)
CLUSTER_SIZE = 26.0
#: Level of detail: only a city this big aggregates (the demo's few hundred marks never need it) ...
LOD_MIN_MARKERS = 5_000
#: ... and only zoomed out beyond this (luminaires 22 m apart would be < 6 px apart)
LOD_M_PER_PX = 4.0
CLUSTER_PX = 48.0  # equipment closer than about this many pixels share a cluster (cells of 34 to 68 px)
OUTLINE_WIDTH = 1.0


#: the map's layers besides the domains (English msgids)
#: how far (pixels) a label keeps from a marker's centre: half a marker (12 px) and a little air
LABEL_CLEAR_PX = 8
LAYER_NAMES = {"luminaires": N_("luminaires"), "vehicles": N_("vehicles"), "alarms_only": N_("alarms only")}


class StaleOverlay(QWidget):
    """A see-through hatch with a clear message, laid over a display while its data is stale."""

    def __init__(self, parent: QWidget, text: str = "") -> None:
        super().__init__(parent)
        self.text = text or _("DATA STALE — reconnecting to the server")
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.hide()

    def paintEvent(self, ev: QPaintEvent | None) -> None:
        p = QPainter(self)
        c = QColor(style.UNKNOWN_LINE)
        c.setAlpha(90)
        p.fillRect(self.rect(), pg.mkBrush(c))
        p.fillRect(self.rect(), pg.QtGui.QBrush(QColor(0, 0, 0, 60), Qt.BrushStyle.BDiagPattern))
        f = QFont()
        f.setPointSize(18)
        f.setBold(True)
        p.setFont(f)
        box = QRectF(self.rect()).adjusted(40, 40, -40, -40)
        p.setPen(QColor("#000000"))
        p.setBrush(QColor("#ffffff"))
        r = p.boundingRect(box, Qt.AlignmentFlag.AlignCenter, self.text).adjusted(-16, -10, 16, 10)
        p.drawRect(r)
        p.drawText(box, Qt.AlignmentFlag.AlignCenter, self.text)
        p.end()


def brush_table(normal_hex: str) -> npt.NDArray[np.object_]:
    return np.array([qtstyle.code_brush(c, normal_hex) for c in range(style.N_CODES)], dtype=object)


def pen_table() -> npt.NDArray[np.object_]:
    return np.array([qtstyle.code_pen(c) for c in range(style.N_CODES)], dtype=object)


def recolour(item: pg.ScatterPlotItem, idx: I64, codes: npt.NDArray[np.uint8], brushes: npt.NDArray[np.object_],
             pens: npt.NDArray[np.object_], kinds: npt.NDArray[np.uint8] | None = None,
             kind_styles: tuple[tuple[str, float], ...] = (("o", 4.0),)) -> None:
    """Restyle only the spots ``idx``, with numpy: no Python loop per spot.

    The brush/pen columns of those rows get shared QBrush/QPen objects, and their atlas rectangles
    (where pyqtgraph finds the pre-rendered symbol) are looked up once per distinct (shape, state)
    style — a handful — then scattered to the rows. pyqtgraph's own path (``SpotItem.setBrush`` or
    ``updateSpots``) looks each spot up in Python: 1.2 s for 34,000 spots here (see BENCHMARKS.md).
    ``kinds`` (per spot of the item) selects the (symbol, size) of each spot in ``kind_styles``.
    """
    if idx.size == 0:
        return
    data = item.data
    data["brush"][idx] = brushes[codes]
    data["pen"][idx] = pens[codes]
    k = kinds[idx].astype(np.int64) if kinds is not None else np.zeros(idx.size, dtype=np.int64)
    combo = k * style.N_CODES + codes.astype(np.int64)
    uniq, inv = np.unique(combo, return_inverse=True)
    styles = []
    for u in uniq.tolist():
        sym, size = kind_styles[u // style.N_CODES]
        c = u % style.N_CODES
        styles.append((sym, size, pens[c], brushes[c]))
    coords = item.fragmentAtlas[styles]
    rects = np.array([tuple(c) for c in coords], dtype=data["sourceRect"].dtype)
    data["sourceRect"][idx] = rects[inv.ravel()]
    item._updateMaxSpotSizes()
    item.invalidate()


def set_points(item: pg.ScatterPlotItem, x: npt.NDArray[np.float64], y: npt.NDArray[np.float64],
               codes: npt.NDArray[np.uint8], brushes: npt.NDArray[np.object_], pens: npt.NDArray[np.object_],
               kinds: npt.NDArray[np.uint8] | None = None,
               kind_styles: tuple[tuple[str, float], ...] = (("o", 4.0),)) -> None:
    """Replace every spot of ``item`` (what ``setData`` does) without pyqtgraph's per-spot atlas loop."""
    n = int(np.asarray(x).size)
    k = kinds.astype(np.int64) if kinds is not None else np.zeros(n, dtype=np.int64)
    data = np.empty(n, dtype=item.data.dtype)  # object columns start as None
    data["x"] = x
    data["y"] = y
    data["size"] = np.array([sz for _, sz in kind_styles], dtype=float)[k]
    data["symbol"] = np.array([sym for sym, _ in kind_styles] + [None], dtype=object)[:-1][k]
    data["visible"] = True
    data["hovered"] = False
    data["sourceRect"] = 0
    item.prepareGeometryChange()
    item.data = data
    item.bounds = [None, None]
    item.informViewBoundsChanged()
    recolour(item, np.arange(n, dtype=np.int64), codes, brushes, pens, kinds, kind_styles)
    item.sigPlotChanged.emit(item)


class PixelLabels(pg.GraphicsObject):  # type: ignore[misc]
    """Short texts centred on map points, drawn at a fixed pixel size by one item.

    One TextItem per cluster would cost a transform update per item on every pan frame (pyqtgraph
    re-anchors each one in Python: ~9 ms for 150 labels); this item maps its points once per paint.
    """

    def __init__(self) -> None:
        super().__init__()
        self.x = np.zeros(0)
        self.y = np.zeros(0)
        self.texts: list[str] = []
        self.font = QFont()
        self.font.setPointSize(8)
        self.font.setBold(True)
        self._bounds = QRectF()

    def set_labels(self, x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], texts: list[str]) -> None:
        self.prepareGeometryChange()
        self.x, self.y, self.texts = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64), texts
        self._bounds = QRectF() if not texts else QRectF(
            float(self.x.min()), float(self.y.min()), float(np.ptp(self.x)), float(np.ptp(self.y)))
        self.update()

    def viewTransformChanged(self) -> None:
        self.prepareGeometryChange()  # the margin around the points (in pixels) changes with the zoom

    def boundingRect(self) -> QRectF:
        if not self.texts:
            return QRectF()
        px, py = self.pixelVectors()
        mx = 40 * (px.length() if px is not None else 0.0)
        my = 20 * (py.length() if py is not None else 0.0)
        return self._bounds.adjusted(-mx, -my, mx, my)

    def paint(self, p: QPainter, *_: Any) -> None:
        if not self.texts:
            return
        tr = p.transform()
        p.resetTransform()
        p.setFont(self.font)
        p.setPen(QColor(style.TEXT))
        centre = Qt.AlignmentFlag.AlignCenter
        for x, y, text in zip(self.x.tolist(), self.y.tolist(), self.texts, strict=True):
            d = tr.map(QPointF(x, y))
            p.drawText(QRectF(d.x() - 40, d.y() - 10, 80, 20), centre, text)


class MapView(pg.GraphicsView):  # type: ignore[misc]
    """The map canvas (its own class so clicks map to scene coordinates)."""

    clicked = pyqtSignal(float, float, bool)  # x, y in metres, double

    def __init__(self) -> None:
        super().__init__(background=style.BACKGROUND)
        self.vb = pg.ViewBox(lockAspect=True, enableMenu=False)
        self.vb.setBackgroundColor(style.BACKGROUND)
        self.setCentralItem(self.vb)
        self.scene().sigMouseClicked.connect(self._click)

    def _click(self, ev: Any) -> None:
        if ev.button() != Qt.MouseButton.LeftButton or ev.double():
            return  # double clicks: mouseDoubleClickEvent below
        p = self.vb.mapSceneToView(ev.scenePos())
        self.clicked.emit(float(p.x()), float(p.y()), False)

    def mouseDoubleClickEvent(self, ev: Any) -> None:
        super().mouseDoubleClickEvent(ev)
        if ev is not None and ev.button() == Qt.MouseButton.LeftButton:
            p = self.vb.mapSceneToView(self.mapToScene(ev.position().toPoint()))
            self.clicked.emit(float(p.x()), float(p.y()), True)


class Overview(QWidget):
    """Level 1. Takes the console model; redraws from its signals."""

    selected = pyqtSignal(str)

    def __init__(self, console: ConsoleModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.console = console
        self.selection: str | None = None
        self.view = MapView()
        self.vb = self.view.vb
        self.outline_item = pg.PlotCurveItem(pen=pg.mkPen(style.COMMUNE_LINE, width=OUTLINE_WIDTH, cosmetic=True),
                                             connect="finite", antialias=False)
        self.lum_item = pg.ScatterPlotItem(pxMode=True, size=LUM_SIZE, symbol="o")
        self.cab_item = pg.ScatterPlotItem(pxMode=True)
        self.eq_item = pg.ScatterPlotItem(pxMode=True)
        self.cluster_item = pg.ScatterPlotItem(pxMode=True)
        self.veh_item = pg.ScatterPlotItem(pxMode=True)
        self.mark_item = pg.ScatterPlotItem(pxMode=True)
        self.sel_item = pg.ScatterPlotItem(pxMode=True, size=26, symbol="o", brush=None,
                                           pen=pg.mkPen("#000000", width=2))
        for z, it in enumerate((self.outline_item, self.lum_item, self.cab_item, self.eq_item, self.cluster_item,
                                self.veh_item, self.mark_item, self.sel_item)):
            self.vb.addItem(it)
            it.setZValue(z)
        self._labels: dict[str, pg.TextItem] = {}
        self._label_sizes: dict[str, tuple[float, float]] = {}  # the box each label was placed for (map metres)
        self._label_markers = np.zeros((0, 2))  # the markers a label keeps clear of (mapmodel.label_markers)
        self._label_clear = 0.0  # and by how much (map metres)
        self._relabel = QTimer(self)  # a resize re-places the commune labels once it has settled
        self._relabel.setSingleShot(True)
        self._relabel.setInterval(150)
        self._relabel.timeout.connect(self._place_labels)
        self.cluster_labels = PixelLabels()  # the clusters' counts
        self.cluster_labels.setZValue(9)
        self.vb.addItem(self.cluster_labels)
        self.clusters: Clusters | None = None  # the equipment clusters drawn (level of detail), None when off
        self.lod = False
        self.lod_min_markers: float = LOD_MIN_MARKERS  # the benchmark sets inf to draw every luminaire
        self._lod_cell = 0.0
        self._cab_idx = np.zeros(0, dtype=np.int64)  # cabinets drawn as aggregated marks (level of detail)
        self._cab_codes = np.zeros(0, dtype=np.uint8)
        self._shown = np.zeros(0, dtype=bool)  # per equipment: its layer is on (and, alarms only, it has one)
        self._lum_brushes = brush_table(style.LUMINAIRE)
        self._eq_brushes = brush_table(style.EQUIPMENT)
        self._cluster_brushes = brush_table(style.PANEL)  # light: its count is written on it
        self._pens = pen_table()
        self._veh_idx = np.zeros(0, dtype=np.int64)
        self._eq_idx = np.zeros(0, dtype=np.int64)  # equipment index → spot index in eq_item (-1: vehicle)
        self._eq_spot = np.zeros(0, dtype=np.int64)
        self._spot_kind = np.zeros(0, dtype=np.uint8)

        # side panel
        self.legend = QLabel()
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.legend.setText(self._legend_html())
        self.domains = QTableWidget(0, 5)
        self.domains.setHorizontalHeaderLabels([_("domain"),
                                                *[style.PRIORITIES[p].symbol + str(p) for p in (1, 2, 3, 4)]])
        hide_row_numbers(self.domains)
        self.domains.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.domains.setMaximumHeight(230)
        # the panel's width, never wider: the domain column takes what the four counts leave (elided)
        header, rows = self.domains.horizontalHeader(), self.domains.verticalHeader()
        if header is not None and rows is not None:  # a QTableWidget always has them (the stubs say Optional)
            header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
            rows.setDefaultSectionSize(self.fontMetrics().height() + 6)  # compact rows: more domains in view
        self.domains.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        # layers: one box per equipment domain, then luminaires, vehicles and "alarms only"
        self.layer_box: dict[str, QCheckBox] = {}
        self._layer_grid = QGridLayout()
        self._layer_grid.setContentsMargins(0, 0, 0, 0)
        layers = QWidget()
        layers.setLayout(self._layer_grid)
        self.extra_layers = QVBoxLayout()  # layers other modules add (hmi.workorders_view.OrderLayer)
        self.extra_layers.setContentsMargins(0, 0, 0, 0)
        self.info = QLabel(_("Click a marker to select it."))
        self.info.setWordWrap(True)
        self.open_btn = QPushButton(_("Open display"))
        self.open_btn.setEnabled(False)
        self.open_btn.setToolTip(_("select an equipment first"))
        self.open_btn.clicked.connect(self._open_selection)
        fit = QPushButton(_("Fit city"))
        fit.clicked.connect(self.fit)
        side = QVBoxLayout()
        self.title = QLabel("<b>" + _("Level 1 — city overview") + "</b>")
        # the panel has a fixed width: its texts wrap rather than being cut at the edge
        for label in (self.title, self.legend):
            label.setWordWrap(True)
        side.addWidget(self.title)
        side.addWidget(self.legend)
        side.addWidget(QLabel("<b>" + _("Layers") + "</b>"))
        side.addWidget(layers)
        side.addLayout(self.extra_layers)
        side.addWidget(QLabel("<b>" + _("Annunciated alarms per domain") + "</b>"))
        side.addWidget(self.domains)
        side.addWidget(QLabel("<b>" + _("Selection") + "</b>"))
        side.addWidget(self.info)
        side.addWidget(self.open_btn)
        side.addStretch(1)
        side.addWidget(fit)
        credit = QLabel(ATTRIBUTION)  # the outlines' licence asks for it wherever they are shown
        credit.setWordWrap(True)
        f = credit.font()
        f.setPointSizeF(max(6.0, f.pointSizeF() * 0.8))
        credit.setFont(f)
        side.addWidget(credit)
        panel = QWidget()
        panel.setLayout(side)
        panel.setFixedWidth(300)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.view, 1)
        lay.addWidget(panel)
        self.overlay = StaleOverlay(self.view)
        # the city's street base map, when its layouts file configures one (drawn under the outlines)
        spec = console.layouts.basemap
        self.basemap = BaseMap(console, self.vb, self.view, spec, self) if spec is not None else None

        console.equipmentLoaded.connect(self.rebuild)
        console.mapChanged.connect(self.on_delta)
        console.alarmsChanged.connect(self.on_alarms)
        console.staleChanged.connect(self.on_stale)
        self.view.clicked.connect(self.on_click)
        self.vb.sigRangeChanged.connect(self._on_range)
        self.on_stale(console.stale)
        if len(console.registry):
            self.rebuild()

    # ------------------------------------------------------------------ drawing
    def _legend_html(self) -> str:
        glyph = {"o": "●", "s": "■", "+": "✚", "t1": "▲", "d": "◆", "h": "⬢", "t": "▼", "p": "⬟", "star": "★"}
        kinds = [f"{glyph.get(sym, '•')} {html.escape(_(text))}"
                 for k, (sym, _size, text) in style.KIND_SYMBOLS.items() if k != "other"]
        # two columns: the panel is narrow and the map's height is what the rest of the panel needs
        cells = "".join("<tr>" + "".join(f"<td width='50%'>{c}</td>" for c in kinds[i:i + 2]) + "</tr>"
                        for i in range(0, len(kinds), 2))
        notes = (_("grey = normal · white = abnormal · hatched = unknown"),
                 _("colour + shape + number = alarm priority"))
        return (f"<table width='100%' cellspacing='0' cellpadding='0'>{cells}</table>"
                + "<br>".join(html.escape(n) for n in notes))

    def rebuild(self) -> None:
        """Full redraw (after the equipment list or new luminaires): the only non-incremental path."""
        m = self.console.map
        kinds = m.eq_kind
        is_vehicle = kinds == KIND_CODE["vehicle"]
        self._veh_idx = np.flatnonzero(is_vehicle)
        self._eq_idx = np.flatnonzero(~is_vehicle)
        self._eq_spot = np.full(len(m.equipment), -1, dtype=np.int64)
        self._eq_spot[self._eq_idx] = np.arange(self._eq_idx.size)
        self._spot_kind = kinds[self._eq_idx]
        self._build_layers()
        self._shown = self._shown_mask()
        set_points(self.eq_item, m.eq_x[self._eq_idx], m.eq_y[self._eq_idx], m.eq_code[self._eq_idx],
                   self._eq_brushes, self._pens, self._spot_kind, KIND_STYLES)
        self.outline_item.setData(*m.outlines())
        self._draw_luminaires()
        self._place_labels()
        self.fit()
        self._update_lod(force=True)

    # ------------------------------------------------------------------ layers and level of detail
    def _build_layers(self) -> None:
        """One check box per domain of the city's (non-vehicle) equipment, then the fixed layers."""
        domains = sorted({e.domain or "(other)" for e in self.console.map.equipment if e.template != "vehicle"})
        keys = [f"domain:{d}" for d in domains] + ["luminaires", "vehicles", "alarms_only"]
        if list(self.layer_box) == keys:
            return
        was = {k: b.isChecked() for k, b in self.layer_box.items()}
        for box in self.layer_box.values():
            self._layer_grid.removeWidget(box)
            box.deleteLater()
        self.layer_box = {}
        for n, key in enumerate(keys):
            box = QCheckBox(style.domain_text(key.removeprefix("domain:"), short=True) if key.startswith("domain:")
                            else _(LAYER_NAMES.get(key, key)))
            box.setChecked(was.get(key, key != "alarms_only"))
            box.setAccessibleName(_("map layer {layer}").format(layer=box.text()))
            box.toggled.connect(self._apply_layers)
            self._layer_grid.addWidget(box, n // 2, n % 2)
            self.layer_box[key] = box

    def layer_on(self, key: str) -> bool:
        box = self.layer_box.get(key)
        return key != "alarms_only" if box is None else box.isChecked()

    def _shown_mask(self) -> npt.NDArray[np.bool_]:
        """Per equipment: its layer is on and, with "alarms only", it has an annunciated alarm."""
        m = self.console.map
        shown = np.array([self.layer_on("vehicles" if e.template == "vehicle" else f"domain:{e.domain or '(other)'}")
                          for e in m.equipment], dtype=bool)
        if self.layer_on("alarms_only"):
            shown &= m.eq_alarm > 0
        return shown

    def _apply_layers(self) -> None:
        self._shown = self._shown_mask()
        self._update_lod(force=True)

    def _on_range(self, *_: Any) -> None:
        self._offset_marks()
        self._update_lod()

    def _update_lod(self, force: bool = False) -> None:
        """Switch the level of detail when the zoom crosses a threshold or the cluster cell changes size.

        The cell is a power of two of metres near CLUSTER_PX pixels: a pan keeps it (nothing to redo), a
        zoom redoes the clusters only when it doubles or halves.
        """
        m = self.console.map
        px = float(self.vb.viewPixelSize()[0])
        lod = m.lum_x.size + len(m.equipment) >= self.lod_min_markers and px > LOD_M_PER_PX
        cell = 2.0 ** round(math.log2(px * CLUSTER_PX)) if lod else 0.0
        if not force and lod == self.lod and cell == self._lod_cell:
            return
        self.lod, self._lod_cell = lod, cell
        self._draw_clusters()
        self._draw_equipment_visibility()
        self._draw_luminaire_layer()
        self._draw_vehicles()
        self._draw_marks()

    def _draw_clusters(self) -> None:
        m = self.console.map
        if not self.lod or self._shown.size != len(m.equipment):
            self.clusters = None
            self.cluster_item.setData([])
            self.cluster_labels.set_labels(np.zeros(0), np.zeros(0), [])
            return
        groupable = self._shown.copy()
        groupable[self._veh_idx] = False  # vehicles move: always drawn on their own
        c = m.clusters(self._lod_cell, groupable)
        self.clusters = c
        set_points(self.cluster_item, c.x, c.y, c.code, self._cluster_brushes, self._pens,
                   kind_styles=(("o", CLUSTER_SIZE),))
        texts = [f"{n}" + (f" {style.PRIORITIES[p].symbol}{p}" if p else "")
                 for n, p in zip(c.count.tolist(), c.priority.tolist(), strict=True)]
        self.cluster_labels.set_labels(c.x, c.y, texts)

    def _clustered(self) -> npt.NDArray[np.bool_]:
        n = len(self.console.map.equipment)
        return self.clusters.members >= 0 if self.clusters is not None else np.zeros(n, dtype=bool)

    def _draw_equipment_visibility(self) -> None:
        if self._shown.size != len(self.console.map.equipment) or self.eq_item.data.size != self._eq_idx.size:
            return
        self.eq_item.data["visible"] = (self._shown & ~self._clustered())[self._eq_idx]
        self.eq_item.invalidate()
        self.eq_item.update()

    def _draw_luminaire_layer(self) -> None:
        """Every luminaire, or zoomed out on a big city one mark per cabinet (its worst luminaire)."""
        m = self.console.map
        on = self.layer_on("luminaires") and not self.layer_on("alarms_only")  # a luminaire carries no alarm
        self.lum_item.setVisible(on and not self.lod)
        if on and self.lod:
            self._cab_idx, codes = m.cabinet_codes()
            self._cab_codes = codes
            set_points(self.cab_item, m.eq_x[self._cab_idx], m.eq_y[self._cab_idx], codes, self._lum_brushes,
                       self._pens, kind_styles=(("o", CABINET_SIZE),))
            self._offset_marks()
        self.cab_item.setVisible(on and self.lod)

    def _restyle_equipment(self, spots: I64) -> None:
        m = self.console.map
        recolour(self.eq_item, spots, m.eq_code[self._eq_idx[spots]], self._eq_brushes, self._pens,
                 self._spot_kind, KIND_STYLES)

    def _draw_luminaires(self) -> None:
        """All luminaires in one item (a full redraw: the luminaire set changed)."""
        m = self.console.map
        set_points(self.lum_item, m.lum_x, m.lum_y, m.lum_code, self._lum_brushes, self._pens,
                   kind_styles=(("o", LUM_SIZE),))

    def _draw_vehicles(self) -> None:
        m = self.console.map
        v = self._veh_idx[self._shown[self._veh_idx]] if self._shown.size == len(m.equipment) else self._veh_idx
        sym, size, _ = style.KIND_SYMBOLS["vehicle"]
        self.veh_item.setData(x=m.eq_x[v], y=m.eq_y[v], symbol=sym, size=size,
                              brush=list(self._eq_brushes[m.eq_code[v]]), pen=list(self._pens[m.eq_code[v]]))

    def _label_box(self, text: str) -> tuple[float, float]:
        """A commune label's (width, height) in map metres at the zoom that shows the whole city (labels are
        drawn at a fixed pixel size: zoomed in, they have more room still)."""
        fm = QFontMetrics(self._label_font())
        lines = text.split("\n")
        px = self._fit_pixel()
        return ((max(fm.horizontalAdvance(line) for line in lines) + 8) * px,  # TextItem's margins
                (len(lines) * fm.height() + 6) * px)

    @staticmethod
    def _label_font() -> QFont:
        f = QFont()
        f.setPointSize(8)
        return f

    def _draw_labels(self) -> None:
        """The communes' names, each where it fits inside its commune with no marker under it (mapmodel)."""
        for item in self._labels.values():
            self.vb.removeItem(item)
        self._labels = {}
        m = self.console.map
        boxes = {c.name: [self._label_box(c.name)] for c in m.outline_communes()}
        self._label_sizes = {name: b[0] for name, b in boxes.items()}
        snap = min((h for (_w, h), in boxes.values()), default=0.0) / 4
        self._label_markers = m.label_markers(snap)  # kept: a label whose counts change is placed again
        self._label_clear = LABEL_CLEAR_PX * self._fit_pixel() + snap / 2
        for name, x, y in m.commune_anchors(boxes, self._label_clear, self._label_markers):
            t = pg.TextItem(name, color=style.COMMUNE_TEXT, anchor=(0.5, 0.5))
            t.setFont(self._label_font())
            t.setPos(x, y)
            t.setZValue(6)
            self.vb.addItem(t)
            self._labels[name] = t

    def _fit_rect(self) -> QRectF:
        x0, y0, x1, y1 = self.console.map.bounds()
        pad = max(x1 - x0, y1 - y0) * 0.04 + 100
        return QRectF(x0 - pad, y0 - pad, x1 - x0 + 2 * pad, y1 - y0 + 2 * pad)

    def _fit_pixel(self) -> float:
        """Metres per pixel when the whole city is in view (:meth:`fit`; the view keeps its aspect)."""
        r = self._fit_rect()
        return float(max(r.width() / max(1, self.view.width()), r.height() / max(1, self.view.height())))

    def fit(self) -> None:
        self.vb.setRange(self._fit_rect(), padding=0)

    def _place_labels(self) -> None:
        self._draw_labels()
        self._draw_counts()

    # ------------------------------------------------------------------ deltas
    def on_delta(self, d: MapDelta) -> None:
        m = self.console.map
        if d.rebuilt:
            self._draw_luminaires()
            if self.lod:
                self._draw_luminaire_layer()
            else:  # the luminaires came after the equipment list: the city may now be big enough to aggregate
                self._update_lod()
        elif d.luminaires.size:
            recolour(self.lum_item, d.luminaires, m.lum_code[d.luminaires], self._lum_brushes, self._pens)
            if self.lod and self.cab_item.isVisible():
                idx, codes = m.cabinet_codes()
                changed = np.flatnonzero(codes != self._cab_codes) if idx.size == self._cab_idx.size else None
                if changed is None:
                    self._draw_luminaire_layer()
                else:
                    self._cab_codes = codes
                    recolour(self.cab_item, changed, codes[changed], self._lum_brushes, self._pens,
                             kind_styles=(("o", CABINET_SIZE),))
        if d.equipment.size and self._eq_spot.size:
            spots = self._eq_spot[d.equipment]
            self._restyle_equipment(spots[spots >= 0])
            if (spots < 0).any():
                self._draw_vehicles()
            if self.clusters is not None and (self.clusters.members[d.equipment] >= 0).any():
                self._draw_clusters()  # a member's state changed: the cluster's worst state may have
        if d.moved:
            self._draw_vehicles()
            self._draw_marks()
            self._draw_selection()

    def on_alarms(self) -> None:
        if self.layer_on("alarms_only") or self.lod:
            # which equipment is shown (alarms only) and the clusters' worst priority follow the alarms
            self._shown = self._shown_mask()
            self._draw_clusters()
            self._draw_equipment_visibility()
            self._draw_vehicles()
        self._draw_marks()
        self._draw_counts()

    def _draw_marks(self) -> None:
        """Alarm indicators: the worst priority's shape with its number, beside each alarmed equipment.

        Hidden layers and clustered equipment have none (a cluster shows its members' worst priority).
        """
        m = self.console.map
        levels = m.eq_alarm
        drawn = levels > 0
        if self._shown.size == levels.size:
            drawn &= self._shown & ~self._clustered()
        idx = np.flatnonzero(drawn)
        if idx.size == 0:
            self.mark_item.setData([])
            return
        pr = levels[idx].astype(int)
        self.mark_item.setData(
            x=m.eq_x[idx], y=m.eq_y[idx], size=15,
            symbol=[qtstyle.priority_symbol(int(p)) for p in pr.tolist()],
            brush=[qtstyle.brush(style.ALARM_COLOURS[int(p)]) for p in pr.tolist()],
            pen=[qtstyle.pen("#000000", 1.0)] * idx.size)
        self._offset_marks()

    def _offset_marks(self) -> None:
        # the marks sit up-right of their equipment, a fixed number of pixels away whatever the zoom;
        # a cabinet's aggregated luminaires down-left of the cabinet's own marker
        px = self.vb.viewPixelSize()
        self.mark_item.setPos(px[0] * 11, px[1] * 11)
        self.cab_item.setPos(-px[0] * 8, -px[1] * 8)

    def _draw_counts(self) -> None:
        counts = self.console.alarms.counts_by("commune")
        for name, item in self._labels.items():
            c = counts.get(name)
            parts = [f"{style.PRIORITIES[p].symbol}{p}×{n}" for p, n in sorted((c or {}).items()) if n]
            text = name + ("\n" + " ".join(parts) if parts else "")  # the counts under the name
            if text != item.toPlainText():
                item.setText(text)
                self._replace_label(name, text)
        by_domain = self.console.alarms.counts_by("domain", self.console.domain_of())
        domains = sorted({e.domain for e in self.console.registry.items.values()} | set(by_domain))
        self.domains.setRowCount(len(domains))
        for r, d in enumerate(domains):
            item = QTableWidgetItem(style.domain_text(d, short=True))
            item.setToolTip(style.domain_text(d))
            self.domains.setItem(r, 0, item)
            c = by_domain.get(d, {})
            for p in (1, 2, 3, 4):
                n = c.get(p, 0)
                it = QTableWidgetItem(str(n) if n else "")
                it.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                if n:
                    it.setIcon(qtstyle.priority_icon(p))
                self.domains.setItem(r, p, it)
        for col in (1, 2, 3, 4):
            self.domains.resizeColumnToContents(col)

    def _replace_label(self, name: str, text: str) -> None:
        """Place a commune's label again when its text grew (a line of counts) or shrank back: a few ms."""
        box = self._label_box(text)
        commune = geo.communes().get(name)
        if commune is None or self._label_sizes.get(name) == box or name not in self._labels:
            return
        self._label_sizes[name] = box
        at = self.console.map.place_label(commune, [box], self._label_markers, self._label_clear)
        if at is not None:
            self._labels[name].setPos(*at)

    def on_stale(self, stale: bool) -> None:
        self.overlay.text = (_("LOADING — waiting for the server's data") if self.console.state == "connecting"
                             else _("DATA STALE — reconnecting to the server"))
        self.overlay.setVisible(stale and len(self.console.registry) > 0)
        self.overlay.resize(self.view.size())

    def resizeEvent(self, ev: Any) -> None:
        super().resizeEvent(ev)
        self.overlay.resize(self.view.size())
        if self._labels:  # the zoom that shows the whole city changed: place the labels again, once settled
            self._relabel.start()

    # ------------------------------------------------------------------ selection
    def on_click(self, x: float, y: float, double: bool) -> None:
        px = self.vb.viewPixelSize()
        c = self.clusters
        if c is not None and c.count.size:
            d = np.hypot(c.x - x, c.y - y)
            i = int(np.argmin(d))
            if d[i] <= max(px) * CLUSTER_SIZE / 2:  # a cluster: zoom in on it (4 times closer)
                w, h = self.vb.viewRect().width() / 4, self.vb.viewRect().height() / 4
                self.vb.setRange(QRectF(float(c.x[i]) - w / 2, float(c.y[i]) - h / 2, w, h), padding=0)
                return
        shown = self._shown & ~self._clustered() if self._shown.size == len(self.console.map.equipment) else None
        eq = self.console.map.pick(x, y, max(px) * 9, shown, luminaires=self.lum_item.isVisible())
        self.select(eq)
        if eq and double:
            self.console.openEquipment.emit(eq)

    def select(self, eq: str | None) -> None:
        self.selection = eq
        self._draw_selection()
        if eq is None:
            self.info.setText(_("Click a marker to select it."))
            self.open_btn.setEnabled(False)
            return
        e = self.console.registry.get(eq)
        alarms = self.console.alarms.of_equipment(eq)
        kind = _(style.KIND_SYMBOLS.get(e.template, style.KIND_SYMBOLS["other"])[2]) if e else ""
        lines = [f"<b>{html.escape(self.console.registry_named(eq))}</b>", html.escape(kind),
                 html.escape(", ".join(x for x in ((e.address, e.commune) if e else ()) if x))]
        for a in alarms[:4]:
            lines.append(html.escape(f"{style.priority_text(a.priority)}: {a.message}"))
        if not alarms:
            lines.append(_("no alarm"))
        self.info.setText("<br>".join(lines))
        self.open_btn.setEnabled(True)
        self.open_btn.setToolTip("")
        self.selected.emit(eq)

    def _draw_selection(self) -> None:
        m = self.console.map
        i = m.index.get(self.selection or "")
        if i is None:
            self.sel_item.setData([])
        else:
            self.sel_item.setData(x=[m.eq_x[i]], y=[m.eq_y[i]])

    def _open_selection(self) -> None:
        if self.selection:
            self.console.openEquipment.emit(self.selection)

    def center_on(self, eq: str) -> None:
        m = self.console.map
        i = m.index.get(eq)
        if i is not None:
            self.vb.setRange(QRectF(m.eq_x[i] - 600, m.eq_y[i] - 400, 1200, 800), padding=0)
            self.select(eq)

    def point_of(self, eq: str) -> QPointF | None:
        """Widget coordinates of an equipment marker (tests click there)."""
        m = self.console.map
        i = m.index.get(eq)
        if i is None:
            return None
        scene = self.vb.mapViewToScene(QPointF(float(m.eq_x[i]), float(m.eq_y[i])))
        return QPointF(self.view.mapFromScene(scene))
