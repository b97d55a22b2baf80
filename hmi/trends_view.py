"""Trends (pyqtgraph): any tags, historical (decimated queries) + live, pan/zoom in time, cursor read-out.

    [tag ______] [Add] [Browse tags…] [range: 15 min | 1 h | 8 h | 24 h | 7 d] [Live ✓]
    Browse tags… → hmi.tag_browser.TagBrowser (the server's tags by text or glob, paged) → add
    ┌ PlotWidget, DateAxisItem (the site's time zone) ──────────────────────────────────┐
    │ one curve per tag; NaN where quality is not good → the curve breaks; bad-quality    │
    │ spans hatched grey (a gap is never drawn as a flat line)                            │
    │ vertical cursor: read-out of every curve at that time (value + quality)             │
    └─────────────────────────────────────────────────────────────────────────────────────┘
    pan/zoom → after 300 ms of rest, GET /history/decimated?tag&start&end&pixels=<plot width>
    add a tag → GET /tags/{name}: its type; anything but float is discrete and drawn as steps

One clock: the time axis, the queries and the cursor are in the site's zone (:mod:`scada.format`), not
this machine's; the cursor reads values for people (enum labels, units: :func:`scada.format.value`).

The curve is :func:`hmi.models.trends.drawn` of history + live, the last value held to now while the
live value is trusted (redrawn every second while shown); the cursor reads
:func:`hmi.models.trends.read_out` of the same series: the value drawn under it.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import Qt, QTimer
from PyQt6.QtGui import QBrush, QColor
from PyQt6.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget

from hmi import style
from hmi.bridge import Reply
from hmi.console import ConsoleModel
from hmi.models import journal as jm
from hmi.models import trends as tm
from hmi.tag_browser import TagBrowser
from scada.format import duration, site_zone, timestamp, value
from scada.i18n import _

# trend pens: greys and dark tones only (no alarm hue)
PENS = ["#111111", "#3b3b8f", "#2f6f4f", "#6b4a2b", "#555555", "#4b2f6f"]
RANGES = {"15 min": 900, "1 h": 3600, "8 h": 8 * 3600, "24 h": 86400, "7 d": 7 * 86400}  # shown through duration()


def _west_of_utc() -> int:
    """The site zone's offset now, as pyqtgraph's DateAxisItem takes it (seconds west of UTC, like time.timezone)."""
    off = dt.datetime.now(site_zone()).utcoffset() or dt.timedelta(0)
    return -int(off.total_seconds())


class TrendView(QWidget):
    def __init__(self, console: ConsoleModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.console = console
        self.tag_box = QLineEdit()
        self.tag_box.setPlaceholderText(_("full tag name, e.g. {example}").format(
            example="dijon/lighting/C0001/power"))
        self.tag_box.returnPressed.connect(lambda: self.add(self.tag_box.text().strip()))
        add = QPushButton(_("Add"))
        add.clicked.connect(lambda: self.add(self.tag_box.text().strip()))
        browse = QPushButton(_("Browse tags…"))
        browse.setAccessibleName(_("browse the server's tags to add to the trend"))
        browse.clicked.connect(self.browse)
        self.browser: TagBrowser | None = None
        clear = QPushButton(_("Clear"))
        clear.clicked.connect(self.clear)
        self.range_box = QComboBox()
        for seconds in RANGES.values():  # "1 h", fr "7 j": the key in the item's data
            self.range_box.addItem(duration(seconds), seconds)
        self.range_box.setCurrentIndex(self.range_box.findData(3600))
        self.range_box.currentIndexChanged.connect(lambda _i: self.show_last())
        self.live = QCheckBox(_("live"))
        self.live.setChecked(True)
        top = QHBoxLayout()
        top.addWidget(QLabel("<b>" + _("Trends") + "</b>"))
        top.addWidget(self.tag_box, 1)
        for w in (add, browse, clear, self.range_box, self.live):
            top.addWidget(w)
        self.axis = pg.DateAxisItem(utcOffset=_west_of_utc())  # the site's clock, not this machine's
        self.plot = pg.PlotWidget(background=style.PANEL, axisItems={"bottom": self.axis})
        self.plot.showGrid(x=True, y=True, alpha=0.25)
        self.plot.getAxis("left").setPen(pg.mkPen(style.TEXT))
        self.plot.getAxis("bottom").setPen(pg.mkPen(style.TEXT))
        self.time_cursor = pg.InfiniteLine(angle=90, movable=True, pen=pg.mkPen("#000000", width=1))
        self.plot.addItem(self.time_cursor, ignoreBounds=True)
        self.time_cursor.sigPositionChanged.connect(self.read_out)
        self.readout = QLabel(_("cursor: —"))
        self.note = QLabel()
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.plot, 1)
        lay.addWidget(self.readout)
        lay.addWidget(self.note)
        self.hist: dict[str, tm.Series] = {}
        self.livebuf: dict[str, tm.Series] = {}
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.gap_items: list[pg.LinearRegionItem] = []
        self._requery = QTimer(self)
        self._requery.setSingleShot(True)
        self._requery.setInterval(300)
        self._requery.timeout.connect(self.query_all)
        self._redraw = QTimer(self)
        self._redraw.setSingleShot(True)
        self._redraw.setInterval(250)
        self._redraw.timeout.connect(self.draw)
        self.plot.getViewBox().sigXRangeChanged.connect(lambda *_: self._requery.start())
        console.tagsChanged.connect(self._live)
        self.queries = 0
        self.step: dict[str, bool] = {}  # tag → discrete (from its type)
        self._now = QTimer(self)  # the held value follows the clock to now
        self._now.setInterval(1000)
        self._now.timeout.connect(self.draw)
        self.plot.setAccessibleName(_("trend chart"))
        self.readout.setAccessibleName(_("trend cursor read-out"))
        self.tag_box.setAccessibleName(_("tag to add to the trend"))
        self.meta: dict[str, tuple[str, str, dict[int, str] | None]] = {}  # tag → (type, units, enum labels)
        console.siteChanged.connect(self._site_clock)

    # ------------------------------------------------------------------ tags
    def add(self, tag: str) -> None:
        if not tag or tag in self.curves:
            return
        pen = pg.mkPen(PENS[len(self.curves) % len(PENS)], width=1.5)
        self.curves[tag] = self.plot.plot([], [], pen=pen, name=tag, connect="finite")
        step = self.step.get(tag, False)
        self.hist[tag] = tm.Series(tag, step=step)
        self.livebuf[tag] = tm.Series(tag, step=step)
        tv = self.console.tags.get(tag)
        if tv is not None:
            tm.append_live(self.livebuf[tag], tv.ts_ms / 1000.0 if tv.ts_ms else time.time(), tv.value, tv.quality)
        if tag not in self.step:
            self.console.call("GET", f"/tags/{tag}").then(self, lambda r, t=tag: self._typed(t, r))
        self.console.set_interest("trends", list(self.curves))
        if len(self.curves) == 1:
            self.plot.addLegend()
        self.show_last()

    def browse(self) -> TagBrowser:
        """The tag browser (one per trend view, kept between uses); each chosen tag is added."""
        if self.browser is None:
            self.browser = TagBrowser(self.console, self)
            self.browser.tagChosen.connect(self.add)
        self.browser.show()
        self.browser.raise_()
        if not self.browser.table.rowCount():
            self.browser.search()
        return self.browser

    def _typed(self, tag: str, r: Reply) -> None:
        """The tag's type is known: anything but a float is discrete (steps)."""
        if not r.ok or not isinstance(r.data, dict):
            return
        step = str(r.data.get("type", "float")) != "float"
        enum = r.data.get("enum")
        self.meta[tag] = (str(r.data.get("type", "float")), str(r.data.get("units") or ""),
                          {int(k): str(v) for k, v in enum.items()} if isinstance(enum, dict) else None)
        self.step[tag] = step
        for store in (self.hist, self.livebuf):
            if tag in store:
                store[tag].step = step
        self.draw()

    def set_tags(self, tags: list[str]) -> None:
        self.clear()
        for t in tags:
            self.add(t)

    def clear(self) -> None:
        for c in self.curves.values():
            self.plot.removeItem(c)
        self.curves, self.hist, self.livebuf = {}, {}, {}
        self._draw_gaps([])
        self.console.set_interest("trends")

    # ------------------------------------------------------------------ time range and queries
    def show_last(self) -> None:
        span = int(self.range_box.currentData() or 3600)
        now = time.time()
        self.plot.setXRange(now - span, now + span * 0.02, padding=0)
        self.query_all()

    def x_range(self) -> tuple[float, float]:
        (x0, x1), _ = self.plot.getViewBox().viewRange()
        return float(x0), float(x1)

    def query_all(self) -> None:
        x0, x1 = self.x_range()
        px = tm.pixels_for(self.plot.width())
        for tag in list(self.curves):
            self.query(tag, x0, x1, px)

    def query(self, tag: str, x0: float, x1: float, pixels: int) -> Reply:
        start = dt.datetime.fromtimestamp(x0, tz=dt.UTC).isoformat()  # an instant: the zone does not matter
        end = dt.datetime.fromtimestamp(min(x1, time.time()), tz=dt.UTC).isoformat()
        self.queries += 1
        r = self.console.call("GET", "/history/decimated", tag=tag, start=start, end=end, pixels=pixels)
        r.then(self, lambda rep, t=tag: self._history(t, rep))
        return r

    def _history(self, tag: str, r: Reply) -> None:
        if tag not in self.curves:
            return
        if not r.ok:
            self.note.setText(_("history of {tag} unavailable ({why}); showing live values only").format(
                tag=tag, why=r.why()))
        else:
            self.note.setText("")
            self.hist[tag] = tm.from_points(tag, (r.data or {}).get("points", []), time.time(),
                                            step=self.step.get(tag, False))
        self.draw()

    def _live(self, names: set[str]) -> None:
        if not self.live.isChecked() or not self.curves:
            return
        now = time.time()
        hit = False
        for tag in self.curves:
            if tag in names:
                tv = self.console.tags.get(tag)
                if tv is not None:
                    tm.append_live(self.livebuf[tag], tv.ts_ms / 1000.0 if tv.ts_ms else now, tv.value, tv.quality)
                    hit = True
        if hit and not self._redraw.isActive():
            self._redraw.start()

    # ------------------------------------------------------------------ drawing
    def series(self, tag: str) -> tm.Series:
        """History + live; the last value held to now while the live value is trusted (good, connected)."""
        step = self.step.get(tag, False)
        s = tm.merge(self.hist.get(tag, tm.Series(tag, step=step)), self.livebuf.get(tag, tm.Series(tag, step=step)))
        if self.live.isChecked() and self.console.tags.trusted(tag):
            s = tm.hold_to(s, time.time())
        return s

    def draw(self) -> None:
        gaps: list[tuple[float, float]] = []
        for tag, curve in self.curves.items():
            s = self.series(tag)
            x, y = tm.drawn(s)
            curve.setData(x, y, connect="finite")
            gaps.extend(s.gaps)
        self._draw_gaps(gaps)
        self.read_out()

    def _draw_gaps(self, gaps: list[tuple[float, float]]) -> None:
        for g in self.gap_items:
            self.plot.removeItem(g)
        self.gap_items = []
        brush = QBrush(QColor(style.UNKNOWN_LINE), Qt.BrushStyle.BDiagPattern)
        for t0, t1 in gaps[:200]:
            item = pg.LinearRegionItem((t0, max(t1, t0 + 1)), movable=False, brush=brush,
                                       pen=pg.mkPen(style.UNKNOWN_LINE))
            item.setZValue(-10)
            self.plot.addItem(item, ignoreBounds=True)
            self.gap_items.append(item)

    def read_out(self, *_args: Any) -> str:
        t = float(self.time_cursor.value())
        if not self.curves:
            self.readout.setText(_("cursor: —"))
            return ""
        parts = [timestamp(dt.datetime.fromtimestamp(t, tz=dt.UTC))]
        for tag in self.curves:
            v, q = tm.read_out(self.series(tag), t)
            short = tag.rsplit("/", 2)
            name = "/".join(short[-2:])
            if v is None:
                parts.append(f"{name}: {'? ' + jm.word(q) if q else '—'}")
            else:
                dtype, units, enum = self.meta.get(tag, ("float", "", None))
                parts.append(f"{name}: {value(v, dtype, units, enum)}" + (f" ({jm.word(q)})" if q != "good" else ""))
        text = _("cursor {readings}").format(readings=" · ".join(parts))
        self.readout.setText(text)
        return text

    def _site_clock(self) -> None:
        """GET /config named the site's zone: the axis follows it (and at each showing: summer time)."""
        self.axis.utcOffset = _west_of_utc()
        self.axis.picture = None  # pyqtgraph's cached drawing of the axis
        self.axis.update()

    def showEvent(self, ev: Any) -> None:
        super().showEvent(ev)
        self._site_clock()
        _x0, x1 = self.x_range()
        if not self.curves or x1 < 1e9:
            self.time_cursor.setValue(time.time())
        if self.curves:
            self.console.set_interest("trends", list(self.curves))
        self._now.start()

    def hideEvent(self, ev: Any) -> None:
        super().hideEvent(ev)
        self._now.stop()
        self.console.set_interest("trends")

    def set_cursor(self, t: float) -> None:
        self.time_cursor.setValue(t)

    def points(self, tag: str) -> np.ndarray[Any, Any]:
        return self.series(tag).v
