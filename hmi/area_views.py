"""Level 2 — domain / area views: traffic corridors, lighting districts, buildings, cameras, parking, vehicles.

    EquipmentTable   one row per equipment of a template (columns from hmi/layouts/city.yaml `views:`),
                     grouped by commune; the first column is the equipment's worst alarm (shape +
                     number + colour), abnormal values inverted, unknown values hatched with a mark.
                     Lighting adds the luminaires' state (from the city channel) and energy today
                     (historian: max − min of the cabinet's energy counter since local midnight);
                     parking adds an occupancy bar.
    CorridorView     the junctions of a corridor in driving order, each a small synoptic (aspects,
                     plan, control mode) that opens the Level-3 display on click.
    VehiclesView     the vehicle table beside a map of the vehicles with their team.

Every view declares what it needs live (``console.set_interest``) while it is shown.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import QRectF, Qt, QTimer
from PyQt6.QtGui import QColor, QFont, QMouseEvent, QPainter, QPaintEvent, QPen
from PyQt6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from hmi import qtstyle, style
from hmi.bridge import Reply
from hmi.console import ConsoleModel
from hmi.models import junction as jmodel
from hmi.models.layouts import Corridor, ViewSpec
from hmi.models.live import EquipmentInfo, TagValue
from hmi.qtstyle import hide_row_numbers
from hmi.widgets import style_item, value_text
from scada.format import quantity, site_zone
from scada.i18n import N_, _


class Page(QWidget):
    """A display that subscribes to what it shows only while visible."""

    interest_owner = ""

    def interest(self) -> tuple[list[str], list[str]]:
        return [], []

    def showEvent(self, ev: Any) -> None:
        super().showEvent(ev)
        tags, eqs = self.interest()
        self.console.set_interest(self.interest_owner or str(id(self)), tags, eqs)  # type: ignore[attr-defined]

    def hideEvent(self, ev: Any) -> None:
        super().hideEvent(ev)
        self.console.set_interest(self.interest_owner or str(id(self)))  # type: ignore[attr-defined]


class EquipmentTable(Page):
    def __init__(self, console: ConsoleModel, spec: ViewSpec, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.console = console
        self.spec = spec
        self.interest_owner = f"view:{spec.name}"
        self.commune = QComboBox()
        self.commune.currentIndexChanged.connect(self.rebuild)
        self.table = QTableWidget(0, 0)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        hide_row_numbers(self.table)
        self.table.cellDoubleClicked.connect(self._open)
        self.extra = self._extra_columns()
        self.energy: dict[str, float | None] = {}
        self.energy_note = ""
        title = QLabel("<b>" + _("Level 2 — {view}").format(view=_(spec.title)) + "</b>  "
                       + _("(double-click a row for its Level-3 display)"))
        top = QHBoxLayout()
        top.addWidget(title, 1)
        if spec.group_by == "commune":
            top.addWidget(QLabel(_("commune")))
            top.addWidget(self.commune)
        self.note = QLabel()
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.table, 1)
        lay.addWidget(self.note)
        self._cells: dict[str, tuple[int, int]] = {}
        self._rows: list[EquipmentInfo] = []
        console.equipmentLoaded.connect(self._fill_communes)
        console.tagsChanged.connect(self.on_tags)
        # bound methods, never lambdas, on the console's signals: Qt drops those connections with the widget (a
        # window rebuilt in another language, hmi.window_host), a lambda would call a deleted one
        console.alarmsChanged.connect(self._alarms_shown)
        console.staleChanged.connect(self._stale)
        console.mapChanged.connect(self._lamps_later)
        self._lamp_timer = QTimer(self)
        self._lamp_timer.setSingleShot(True)
        self._lamp_timer.setInterval(300)
        self._lamp_timer.timeout.connect(self._lamps)
        self._fill_communes()

    def _extra_columns(self) -> list[str]:
        if self.spec.template == "lighting_cabinet":
            return [_("Luminaires state"), _("Energy today")]
        if self.spec.template == "parking":
            return [_("Occupancy")]
        return []

    def kind(self) -> str:
        eqs = self.console.registry.of_template(self.spec.template)
        return eqs[0].kind if eqs else self.spec.template

    def interest(self) -> tuple[list[str], list[str]]:
        k = self.kind()
        return [f"*/{k}/*/{c.tag}" for c in self.spec.columns], []

    def _fill_communes(self) -> None:
        eqs = self.console.registry.of_template(self.spec.template)
        communes = sorted({e.commune for e in eqs})
        self.commune.blockSignals(True)
        self.commune.clear()
        self.commune.addItem(_("all communes"))
        self.commune.addItems(communes)
        if "Dijon" in communes and len(eqs) > 200:
            self.commune.setCurrentText("Dijon")  # full scale: start with one district, not 1,100 rows
        self.commune.blockSignals(False)
        if self.isVisible():
            self.rebuild()
            tags, eqs2 = self.interest()
            self.console.set_interest(self.interest_owner, tags, eqs2)

    def rebuild(self) -> None:
        c = None if self.commune.currentIndex() <= 0 else self.commune.currentText()
        rows = sorted(self.console.registry.of_template(self.spec.template, c), key=lambda e: (e.commune, e.id))
        self._rows = rows
        headers = [_("Alarm"), _("Equipment"), _("Commune"), *[_(col.title) for col in self.spec.columns], *self.extra]
        self.table.setColumnCount(len(headers))
        self.table.setHorizontalHeaderLabels(headers)
        self.table.setRowCount(len(rows))
        self._cells = {}
        for r, e in enumerate(rows):
            named = QTableWidgetItem(self.console.registry_named(e.id))  # id — name; the address in the tooltip
            named.setToolTip(self.console.registry_named(e.id, address=True))
            self.table.setItem(r, 1, named)
            self.table.setItem(r, 2, QTableWidgetItem(e.commune))
            for j, col in enumerate(self.spec.columns):
                name = self.console.registry.tag(e.id, col.tag)
                self._cells[name] = (r, 3 + j)
                self._set_cell(r, 3 + j, name)
        self._alarms()
        self._lamps()
        self.table.resizeColumnsToContents()
        if self.spec.template == "lighting_cabinet" and self.isVisible():
            self.load_energy()

    def _set_cell(self, r: int, c: int, name: str) -> None:
        col = self.spec.columns[c - 3]
        tv = self.console.tags.get(name)
        item = self.table.item(r, c)
        if item is None:
            item = QTableWidgetItem()
            self.table.setItem(r, c, item)
        text = col.text(tv.value) if tv is not None else None
        item.setText(value_text(tv, self.console.stale, text))
        style_item(item, tv, self.console.stale, tv is not None and col.is_abnormal(tv.value))

    def on_tags(self, names: set[str]) -> None:
        if not self.isVisible():
            return
        cells = self._cells
        touched = False
        for n in names & cells.keys() if len(names) > len(cells) else (n for n in names if n in cells):
            self.registry_learn(n)
            r, c = cells[n]
            self._set_cell(r, c, n)
            touched = True
        if touched and self.spec.template == "parking":
            self._parking()

    def registry_learn(self, name: str) -> None:
        pass

    def _alarms_shown(self) -> None:
        if self.isVisible():
            self._alarms()

    def _stale(self, _stale: bool) -> None:
        if self.isVisible():
            self.rebuild()

    def _alarms(self) -> None:
        levels = self.console.alarms.equipment_levels(e.id for e in self._rows)
        for r, e in enumerate(self._rows):
            p = levels.get(e.id)
            item = QTableWidgetItem(style.priority_text(p) if p else "")
            if p:
                item.setIcon(qtstyle.priority_icon(p))
            self.table.setItem(r, 0, item)

    def _lamps_later(self, _delta: object = None) -> None:
        if self.spec.template == "lighting_cabinet" and self.isVisible():
            self._lamp_timer.start()

    def _lamps(self) -> None:
        if self.spec.template == "lighting_cabinet":
            m = self.console.map
            base = 3 + len(self.spec.columns)
            for r, e in enumerate(self._rows):
                idx = m.luminaires_of(e.id)
                codes = m.lum_code[idx]
                ok = int(np.count_nonzero(codes == style.NORMAL))
                bad = int(np.count_nonzero(codes == style.ABNORMAL))
                unk = int(np.count_nonzero(codes == style.UNKNOWN))
                item = QTableWidgetItem(_("{ok} ok · {failed} failed").format(ok=ok, failed=bad)
                                        + (f" · {unk} ?" if unk else ""))
                style_item(item, None if unk and not ok and not bad else self._fake_good(), self.console.stale,
                           bad > 0)
                self.table.setItem(r, base, item)
                en = self.energy.get(e.id)
                self.table.setItem(r, base + 1, QTableWidgetItem("…" if e.id not in self.energy else
                                                                 (quantity(en, "kWh") if en is not None else "—")))
        elif self.spec.template == "parking":
            self._parking()

    def _fake_good(self) -> Any:
        return TagValue(0, "good", 0)

    def _parking(self) -> None:
        base = 3 + len(self.spec.columns)
        for r, e in enumerate(self._rows):
            cap = self.console.tags.value(self.console.registry.tag(e.id, "capacity"))
            occ = self.console.tags.value(self.console.registry.tag(e.id, "occupied"))
            if isinstance(cap, int) and isinstance(occ, int) and cap > 0:
                frac = max(0.0, min(1.0, occ / cap))
                n = round(frac * 20)
                text = "█" * n + "░" * (20 - n) + " " + quantity(round(frac * 100), "%")
            else:
                text = "?"
            self.table.setItem(r, base, QTableWidgetItem(text))

    def load_energy(self) -> None:
        """Energy today per cabinet: max − min of the energy counter since local midnight (historian)."""
        midnight = dt.datetime.now(site_zone()).replace(hour=0, minute=0, second=0, microsecond=0)  # the site's day
        for e in self._rows[:200]:
            tag = self.console.registry.tag(e.id, "energy")
            r = self.console.call("GET", "/history/aggregate", tag=tag, start=midnight.isoformat(),
                                  interval_s=86400, functions="min,max")
            r.then(self, lambda rep, eq=e.id: self._energy(eq, rep))

    def _energy(self, eq: str, r: Reply) -> None:
        val: float | None = None
        if r.ok and isinstance(r.data, dict):
            pts = [p for p in r.data.get("points", []) if p.get("max") is not None and p.get("min") is not None]
            if pts:
                val = float(pts[-1]["max"]) - float(pts[0]["min"])
        else:
            self.energy_note = _("energy today unavailable: {why}").format(why=r.why())
            self.note.setText(self.energy_note)
        self.energy[eq] = val
        self._lamps()

    def showEvent(self, ev: Any) -> None:
        super().showEvent(ev)
        self.rebuild()

    def _open(self, row: int, _col: int) -> None:
        if 0 <= row < len(self._rows):
            self.console.openEquipment.emit(self._rows[row].id)


# ---------------------------------------------------------------------- traffic corridor
def draw_head(p: QPainter, rect: QRectF, aspect: str, label: str = "") -> None:
    """One signal head as a labelled aspect icon: three lamps, the lit one white with its letter (R/A/G).

    Unknown → the whole head hatched grey with "?"; flashing amber → the middle lamp lit with "A~".
    Never drawn in an alarm colour (AC-HMI-03).
    """
    p.save()
    if aspect == jmodel.UNKNOWN:
        qtstyle.hatch_rect(p, rect)
        f = QFont()
        f.setBold(True)
        f.setPixelSize(int(rect.width() * 0.6))
        p.setFont(f)
        p.setPen(QColor("#000000"))
        p.drawText(rect, Qt.AlignmentFlag.AlignCenter, "?")
    else:
        p.setPen(QPen(QColor("#000000"), 1))
        p.setBrush(QColor(style.ASPECT_HOUSING))
        p.drawRoundedRect(rect, 3, 3)
        lit = {jmodel.RED: 0, jmodel.AMBER: 1, jmodel.FLASH: 1, jmodel.GREEN: 2}.get(aspect)
        d = rect.width() * 0.72
        f = QFont()
        f.setBold(True)
        f.setPixelSize(max(7, int(d * 0.55)))
        p.setFont(f)
        for k, letter in enumerate(("R", "A", "G")):
            c = QRectF(rect.center().x() - d / 2, rect.top() + rect.height() * (k + 0.5) / 3 - d / 2, d, d)
            on = k == lit
            p.setPen(QPen(QColor("#000000"), 1))
            p.setBrush(QColor(style.ASPECT_LIT if on else style.ASPECT_DARK))
            p.drawEllipse(c)
            if on:
                p.setPen(QColor("#000000"))
                p.drawText(c, Qt.AlignmentFlag.AlignCenter, "A~" if aspect == jmodel.FLASH else letter)
    if label:
        f = QFont()
        f.setPixelSize(10)
        p.setFont(f)
        p.setPen(QColor(style.TEXT))
        p.drawText(QRectF(rect.left() - 10, rect.bottom() + 1, rect.width() + 20, 12), Qt.AlignmentFlag.AlignCenter,
                   label)
    p.restore()


class JunctionMini(QWidget):
    """A junction in a corridor: id, alarm mark, phase heads, plan and mode (click → Level 3)."""

    def __init__(self, console: ConsoleModel, eq_id: str) -> None:
        super().__init__()
        self.console = console
        self.eq_id = eq_id
        self.setFixedSize(190, 170)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setToolTip(_("{equipment}: click for the Level-3 display").format(
            equipment=console.registry_named(eq_id, address=True)))

    def names(self) -> dict[str, str]:
        return {t: self.console.registry.tag(self.eq_id, t) for t in jmodel.STATUS_TAGS}

    def paintEvent(self, ev: QPaintEvent | None) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.fillRect(self.rect(), QColor(style.PANEL))
        p.setPen(QColor("#555555"))
        p.drawRect(self.rect().adjusted(0, 0, -1, -1))
        lay = self.console.layouts.layout_of(self.eq_id)
        v = jmodel.view(self.console.tags, self.names(), lay.phases if lay else None)
        f = QFont()
        f.setBold(True)
        p.setFont(f)
        p.setPen(QColor(style.TEXT))
        p.drawText(QRectF(6, 4, 120, 16), Qt.AlignmentFlag.AlignLeft, self.eq_id)
        levels = self.console.alarms.equipment_levels([self.eq_id])
        if self.eq_id in levels:
            p.drawPixmap(160, 3, qtstyle.priority_pixmap(levels[self.eq_id], 20))
        n = len(v.aspects)
        w = min(22.0, (self.width() - 12) / max(n, 1) - 4)
        for k, a in enumerate(v.aspects):
            draw_head(p, QRectF(8 + k * (w + 4), 26, w, w * 2.6), a.state, str(a.phase))
        f.setBold(False)
        f.setPixelSize(11)
        p.setFont(f)
        p.setPen(QColor(style.TEXT))
        text = (f"{v.pattern} · {v.mode}" if v.known else _("STATE UNKNOWN") + f"\n{v.why_unknown}")
        p.drawText(QRectF(6, 26 + w * 2.6 + 16, self.width() - 12, 40), Qt.TextFlag.TextWordWrap, text)
        p.end()

    def mousePressEvent(self, ev: QMouseEvent | None) -> None:
        self.console.openEquipment.emit(self.eq_id)


class CorridorView(Page):
    interest_owner = "view:corridor"

    def __init__(self, console: ConsoleModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.console = console
        self.box = QComboBox()
        self.box.currentIndexChanged.connect(self.rebuild)
        self.inner = QWidget()
        self.row = QHBoxLayout(self.inner)
        scroll = QScrollArea()
        scroll.setWidget(self.inner)
        scroll.setWidgetResizable(True)
        top = QHBoxLayout()
        top.addWidget(QLabel("<b>" + _("Level 2 — traffic corridor") + "</b> "
                             + _("(junctions in driving order; click one)")), 1)
        top.addWidget(self.box)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(scroll, 1)
        self.minis: list[JunctionMini] = []
        console.equipmentLoaded.connect(self.fill)
        console.tagsChanged.connect(self._tags)
        console.alarmsChanged.connect(self._update_minis)
        console.staleChanged.connect(self._update_minis)
        self.fill()

    def corridors(self) -> list[Corridor]:
        out = list(self.console.layouts.corridors)
        known = [c for c in out if all(self.console.registry.get(j) for j in c.junctions)]
        junctions = sorted(e.id for e in self.console.registry.of_template("junction"))
        known.append(Corridor(N_("all junctions"), tuple(junctions[:60])))
        return known

    def fill(self) -> None:
        self.box.blockSignals(True)
        self.box.clear()
        self._corridors = self.corridors()
        self.box.addItems([_(c.name) for c in self._corridors])  # msgids: the layouts' texts are extracted
        self.box.blockSignals(False)
        self.rebuild()

    def current(self) -> Corridor | None:
        i = self.box.currentIndex()
        return self._corridors[i] if 0 <= i < len(self._corridors) else None

    def interest(self) -> tuple[list[str], list[str]]:
        c = self.current()
        return [], list(c.junctions) if c else []

    def _update_minis(self, *_args: object) -> None:
        for m in self.minis:
            m.update()

    def rebuild(self) -> None:
        while self.row.count():
            it = self.row.takeAt(0)
            w = it.widget() if it is not None else None
            if w is not None:
                w.deleteLater()
        c = self.current()
        self.minis = [JunctionMini(self.console, j) for j in (c.junctions if c else ())]
        for k, m in enumerate(self.minis):
            if k:
                arrow = QLabel("→")
                arrow.setStyleSheet("font-size: 20px;")
                self.row.addWidget(arrow)
            self.row.addWidget(m)
        self.row.addStretch(1)
        if self.isVisible():
            tags, eqs = self.interest()
            self.console.set_interest(self.interest_owner, tags, eqs)

    def _tags(self, names: set[str]) -> None:
        if self.isVisible():
            for m in self.minis:
                m.update()


# ---------------------------------------------------------------------- vehicles
class VehiclesView(Page):
    interest_owner = "view:vehicles"

    def __init__(self, console: ConsoleModel, spec: ViewSpec, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.console = console
        self.table = EquipmentTable(console, spec)
        self.plot = pg.PlotWidget(background=style.BACKGROUND)
        self.plot.setAspectLocked(True)
        self.plot.hideAxis("left")
        self.plot.hideAxis("bottom")
        self.scatter = pg.ScatterPlotItem(pxMode=True, size=12, symbol="star")
        self.plot.addItem(self.scatter)
        lay = QHBoxLayout(self)
        lay.addWidget(self.table, 3)
        lay.addWidget(self.plot, 2)
        console.tagsChanged.connect(self._tags)
        console.staleChanged.connect(self._stale)
        self.labels_by_eq: dict[str, pg.TextItem] = {}

    def interest(self) -> tuple[list[str], list[str]]:
        return self.table.interest()

    def _tags(self, names: set[str]) -> None:
        if self.isVisible() and any("/vehicle/" in n for n in names):
            self.redraw()

    def _stale(self, _stale: bool) -> None:
        if self.isVisible():
            self.redraw()

    def redraw(self) -> None:
        m = self.console.map
        xs, ys, brushes = [], [], []
        for e in self.console.registry.of_template("vehicle"):
            i = m.index.get(e.id)
            if i is None:
                continue
            x, y = float(m.eq_x[i]), float(m.eq_y[i])
            xs.append(x)
            ys.append(y)
            brushes.append(qtstyle.code_brush(int(m.eq_code[i]), style.EQUIPMENT))
            team = self.console.tags.value(self.console.registry.tag(e.id, "team")) or ""
            status = self.console.tags.value(self.console.registry.tag(e.id, "status"))
            state = {0: _("available"), 1: _("busy"), 2: _("off duty")}.get(status, "?")
            text = f"{self.console.registry_named(e.id)} {team} {state}"
            t = self.labels_by_eq.get(e.id)
            if t is None:
                t = self.labels_by_eq[e.id] = pg.TextItem(text, color=style.TEXT, anchor=(0, 1))
                self.plot.addItem(t)
            elif t.toPlainText() != text:
                t.setText(text)
            t.setPos(x, y)
        self.scatter.setData(x=xs, y=ys, brush=brushes, pen=qtstyle.pen("#000000"))
        if not hasattr(self, "_city"):  # the rest of the city, faint, for orientation
            self._city = pg.ScatterPlotItem(x=m.eq_x, y=m.eq_y, size=3, pen=None, brush=pg.mkBrush("#8a8a8a"))
            self.plot.addItem(self._city)
            self._city.setZValue(-1)

    def showEvent(self, ev: Any) -> None:
        super().showEvent(ev)
        self.redraw()


__all__ = ["CorridorView", "EquipmentTable", "JunctionMini", "Page", "VehiclesView", "draw_head"]
