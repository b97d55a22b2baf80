"""Level 3 — one equipment: synoptic, live tags, identity sheet (alarm and command history), commands.

    ┌ J003 — junction, Dijon (47.3192, 5.0414)   [■1 …alarm strip…]          [Trend] [Diagnostics L4] ┐
    │ ┌ synoptic ───────────────────────────────┐ ┌ tabs: Tags · Identity sheet · History ───────────┐ │
    │ │ junction: approaches with signal heads   │ │                                                   │ │
    │ │   (labelled aspect icons R/A/G, hatched  │ │                                                   │ │
    │ │    "?" + STATE UNKNOWN on comm loss)      │ │                                                   │ │
    │ │ cabinet: luminaire grid · building: fire │ │                                                   │ │
    │ │ zones/intrusion/doors · bollard · panel  │ │                                                   │ │
    │ └──────────────────────────────────────────┘ └───────────────────────────────────────────────────┘ │
    │ Commands: [select plan…] [flash ▲ safety…] [return to local…]   (disabled + tooltip when not allowed) │
    └──────────────────────────────────────────────────────────────────────────────────────────────────┘

The focus channel subscribes to this equipment while the display is shown.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any, ClassVar

from PyQt6.QtCore import QRectF, Qt, pyqtSignal
from PyQt6.QtGui import QColor, QFont, QPainter, QPaintEvent, QPen
from PyQt6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

from hmi import qtstyle, style
from hmi.alarms_view import ReasonDialog
from hmi.area_views import Page, draw_head
from hmi.bridge import Reply
from hmi.commands_view import CommandPanel
from hmi.console import ConsoleModel
from hmi.models import journal as jm
from hmi.models import junction as jmodel
from hmi.models.journal import local_time, word
from hmi.models.live import EquipmentInfo, TagValue
from hmi.qtstyle import hide_row_numbers
from hmi.widgets import AlarmStrip, enum_of, fmt_value, style_item, value_text
from scada.format import number
from scada.i18n import _


# ---------------------------------------------------------------------- synoptics
class Synoptic(QWidget):
    """Base: a painted picture of one equipment from its live tags."""

    def __init__(self, console: ConsoleModel, eq: EquipmentInfo) -> None:
        super().__init__()
        self.console = console
        self.eq = eq
        self.setMinimumSize(460, 380)

    def tv(self, tag: str) -> TagValue | None:
        return self.console.tags.get(self.console.registry.tag(self.eq.id, tag))

    def v(self, tag: str) -> Any:
        tv = self.tv(tag)
        return None if tv is None else tv.value

    def ok(self, tag: str) -> bool:
        return self.console.tags.trusted(self.console.registry.tag(self.eq.id, tag))

    def box(self, p: QPainter, rect: QRectF, title: str, tag: str, text: str | None = None,
            abnormal: bool = False) -> None:
        """A labelled value box: hatched + mark when unknown, inverted when abnormal."""
        tv = self.tv(tag)
        p.save()
        known = tv is not None and tv.quality == "good" and not self.console.stale
        if not known:
            qtstyle.hatch_rect(p, rect)
        else:
            p.setPen(QPen(QColor("#000000"), 1))
            p.setBrush(QColor("#000000") if abnormal else QColor("#dcdcdc"))
            p.drawRect(rect)
        f = QFont()
        f.setPixelSize(10)
        p.setFont(f)
        p.setPen(QColor("#ffffff") if abnormal and known else QColor(style.TEXT))
        p.drawText(rect.adjusted(4, 2, -4, -2), Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft, title)
        f.setPixelSize(13)
        f.setBold(True)
        p.setFont(f)
        body = value_text(tv, self.console.stale, text if tv is not None else None)
        p.drawText(rect.adjusted(4, 12, -4, -2), Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, body)
        p.restore()

    def begin(self) -> QPainter:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.fillRect(self.rect(), QColor(style.BACKGROUND))
        return p


class JunctionSynoptic(Synoptic):
    """Approaches with their signal heads (labelled aspect icons) around a crossroads; "unknown" hatched."""

    SIDE_POS: ClassVar[dict[str, tuple[float, float]]] = {"n": (0.5, 0.12), "s": (0.5, 0.70), "e": (0.80, 0.41),
                                                          "w": (0.20, 0.41)}

    def names(self) -> dict[str, str]:
        return {t: self.console.registry.tag(self.eq.id, t) for t in jmodel.STATUS_TAGS}

    def current(self) -> jmodel.JunctionView:
        lay = self.console.layouts.layout_of(self.eq.id)
        return jmodel.view(self.console.tags, self.names(), lay.phases if lay else None)

    def approaches(self, v: jmodel.JunctionView) -> list[tuple[str, str, list[int]]]:
        """(label, side, phases) of each approach as drawn: the layout's names in the console's language
        (hmi/layouts/city.yaml's approach names are extracted into the catalogue by scada.locale.yaml_texts)."""
        lay = self.console.layouts.layout_of(self.eq.id)
        if lay is None:  # no layout: the phases in a row, labelled
            return [(_("phases"), "n", [a.phase for a in v.aspects])]
        return [(_(a.name), a.side, list(a.phases)) for a in lay.approaches]

    def paintEvent(self, ev: QPaintEvent | None) -> None:
        p = self.begin()
        w, h = float(self.width()), float(self.height()) * 0.84
        v = self.current()
        # roads (muted greys)
        road = QColor("#8e8e8e")
        p.fillRect(QRectF(w * 0.40, 0, w * 0.20, h), road)
        p.fillRect(QRectF(0, h * 0.38, w, h * 0.20), road)
        aspects = {a.phase: a for a in v.aspects}
        for name, side, phases in self.approaches(v):
            cx, cy = self.SIDE_POS[side]
            n = len(phases)
            hw = 24.0
            x0 = w * cx - (n * (hw + 8)) / 2
            for k, ph in enumerate(phases):
                a = aspects.get(ph, jmodel.Aspect(ph, jmodel.UNKNOWN))
                draw_head(p, QRectF(x0 + k * (hw + 8), h * cy, hw, hw * 2.6), a.state, f"ph {ph}")
            f = QFont()
            f.setPixelSize(11)
            p.setFont(f)
            p.setPen(QColor(style.TEXT))
            p.drawText(QRectF(w * cx - 90, h * cy - 16, 180, 14), Qt.AlignmentFlag.AlignCenter, name)
        # state text
        f = QFont()
        f.setPixelSize(13)
        f.setBold(True)
        p.setFont(f)
        rect = QRectF(8, h + 4, w - 16, float(self.height()) - h - 8)
        if not v.known:
            qtstyle.hatch_rect(p, rect)
            p.setPen(QColor("#000000"))
            p.drawText(rect, Qt.AlignmentFlag.AlignCenter, _("STATE UNKNOWN — {why}").format(why=v.why_unknown))
        else:
            p.setPen(QColor(style.TEXT))
            p.drawText(rect, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                       f"{v.pattern} · {v.mode} · {v.free}" + ("  · " + _("FLASHING AMBER") if v.flashing else ""))
        p.end()


class CabinetSynoptic(Synoptic):
    """Cabinet state boxes and a grid of its luminaires (level %, failed = inverted, unknown = hatched)."""

    def paintEvent(self, ev: QPaintEvent | None) -> None:
        p = self.begin()
        W = float(self.width())
        # (title, tag, labels or the unit, abnormal?): values for people, units as in tags.yaml
        Box = tuple[str, str, dict[Any, str] | str, Callable[[Any], bool]]
        boxes: list[Box] = [
            (_("Mains"), "mains_ok", {True: _("ok"), False: _("LOST")}, lambda v: v is False),
            (_("Contactor"), "contactor_closed", {True: _("closed"), False: _("open")}, lambda v: False),
            (_("Door"), "door_open", {True: _("OPEN"), False: _("closed")}, lambda v: v is True),
            (_("Mode"), "mode", {0: _("schedule"), 1: _("override"), 2: _("LOCAL MANUAL"), 3: _("off (day)")},
             lambda v: v == 2),
            (_("Schedule level"), "schedule_level", "%", lambda v: False),
            (_("Override level"), "override_level", "%", lambda v: False),
            (_("Lease left"), "override_remaining", "s", lambda v: False),
            (_("Power"), "power", "W", lambda v: False), (_("Energy"), "energy", "kWh", lambda v: False)]
        bw = (W - 16) / 3
        for k, (title, tag, labels, abn) in enumerate(boxes):
            r = QRectF(8 + (k % 3) * bw, 8 + (k // 3) * 46, bw - 6, 40)
            val = self.v(tag)
            text = None if val is None else (labels.get(val, fmt_value(val)) if isinstance(labels, dict)
                                             else fmt_value(val, labels))
            self.box(p, r, title, tag, text, abn(val))
        # luminaire grid
        n = self.v("luminaire_count")
        n = n if isinstance(n, int) and n > 0 else 0
        top = 8 + 3 * 46 + 10
        f = QFont()
        f.setPixelSize(11)
        p.setFont(f)
        p.setPen(QColor(style.TEXT))
        p.drawText(QRectF(8, top, W, 14), Qt.AlignmentFlag.AlignLeft,
                   _("Luminaires ({n}): level %, F = failed, D = day burner, ? = unknown").format(n=n))
        cols = 10
        cw = (W - 16) / cols
        for i in range(1, n + 1):
            tag = f"lamp_{i:02d}"
            st = self.tv(f"{tag}/status")
            lvl = self.v(f"{tag}/level")
            r = QRectF(8 + ((i - 1) % cols) * cw, top + 18 + ((i - 1) // cols) * 30, cw - 4, 26)
            known = st is not None and st.quality == "good" and not self.console.stale
            if not known:
                qtstyle.hatch_rect(p, r)
                label = f"{i} ?"
            elif st is not None and st.value in (1, 2):
                p.setPen(QPen(QColor("#000000"), 1.5))
                p.setBrush(QColor(style.ABNORMAL_FILL))
                p.drawRect(r)
                mark = _("F") if st.value == 1 else _("D")  # F = failed, D = day burner (the grid's legend)
                label = f"{i} {mark}"
            else:
                p.setPen(QPen(QColor("#555555"), 1))
                p.setBrush(QColor("#d0d0d0"))
                p.drawRect(r)
                label = f"{i}: {lvl}%" if lvl is not None else f"{i}"
            p.setPen(QColor("#000000"))
            p.drawText(r, Qt.AlignmentFlag.AlignCenter, label)
        p.end()


class BuildingSynoptic(Synoptic):
    def paintEvent(self, ev: QPaintEvent | None) -> None:
        p = self.begin()
        W = float(self.width())
        names = sorted(n.rsplit("/", 1)[-1] for n in self.console.tags.values
                       if n.startswith(self.console.registry.tag(self.eq.id, "")))
        zones = [n for n in names if n.startswith("fire_zone_")]
        doors = [n for n in names if n.startswith("door_")]
        y = 8.0
        p.setPen(QColor(style.TEXT))
        p.drawText(QRectF(8, y, W, 16), Qt.AlignmentFlag.AlignLeft, _("Fire zones"))
        y += 18
        for k, z in enumerate(zones):
            v = self.v(z)
            self.box(p, QRectF(8 + (k % 4) * ((W - 16) / 4), y + (k // 4) * 46, (W - 16) / 4 - 6, 40),
                     _("zone {n}").format(n=z.removeprefix("fire_zone_")), z,
                     {0: _("normal"), 1: _("FIRE"), 2: _("FAULT")}.get(v), v in (1, 2))
        y += 46 * max(1, (len(zones) + 3) // 4) + 10
        p.setPen(QColor(style.TEXT))
        p.drawText(QRectF(8, y, W, 16), Qt.AlignmentFlag.AlignLeft, _("Intrusion"))
        y += 18
        self.box(p, QRectF(8, y, (W - 16) / 2 - 6, 40), _("armed"), "intrusion_armed",
                 {True: _("armed"), False: _("disarmed")}.get(self.v("intrusion_armed")))
        self.box(p, QRectF(8 + (W - 16) / 2, y, (W - 16) / 2 - 6, 40), _("alarm"), "intrusion_alarm",
                 {True: _("ALARM"), False: _("none")}.get(self.v("intrusion_alarm")),
                 self.v("intrusion_alarm") is True)
        y += 56
        p.setPen(QColor(style.TEXT))
        p.drawText(QRectF(8, y, W, 16), Qt.AlignmentFlag.AlignLeft, _("Doors"))
        y += 18
        for k, d in enumerate(doors):
            v = self.v(d)
            self.box(p, QRectF(8 + (k % 4) * ((W - 16) / 4), y + (k // 4) * 46, (W - 16) / 4 - 6, 40),
                     _("door {n}").format(n=d.removeprefix("door_")), d,
                     {True: _("OPEN"), False: _("closed")}.get(v), v is True)
        p.end()


class BollardSynoptic(Synoptic):
    def paintEvent(self, ev: QPaintEvent | None) -> None:
        p = self.begin()
        W = float(self.width())
        pos = self.v("position")
        known = self.ok("position")
        # the bollard drawn: up (tall), down (flush), moving (half), unknown (hatched)
        ground = QRectF(40, 210, 200, 12)
        p.fillRect(ground, QColor("#6e6e6e"))
        body = QRectF(110, 90 if pos == 1 else (150 if pos == 2 else 200), 60, 120)
        if not known or pos not in (0, 1, 2):
            qtstyle.hatch_rect(p, QRectF(110, 90, 60, 120))
            p.setPen(QColor("#000000"))
            p.drawText(QRectF(110, 90, 60, 120), Qt.AlignmentFlag.AlignCenter, "?")
        else:
            p.setPen(QPen(QColor("#000000"), 1.5))
            p.setBrush(QColor("#d8d8d8"))
            p.drawRect(body.intersected(QRectF(0, 0, W, 210)))
        labels = {0: _("DOWN (passage open)"), 1: _("UP (passage closed)"), 2: _("MOVING"), 3: _("UNKNOWN")}
        self.box(p, QRectF(260, 20, W - 270, 40), _("Position"), "position", labels.get(pos), pos == 3)
        self.box(p, QRectF(260, 66, W - 270, 40), _("Presence loop"), "presence",
                 {True: _("VEHICLE on the loop"), False: _("clear")}.get(self.v("presence")))
        self.box(p, QRectF(260, 112, W - 270, 40), _("Fault"), "fault",
                 {True: _("FAULT"), False: _("ok")}.get(self.v("fault")), self.v("fault") is True)
        self.box(p, QRectF(260, 158, W - 270, 40), _("Command"), "command",
                 {0: _("local"), 1: _("lower"), 2: _("raise")}.get(self.v("command")))
        lease = self.v("lease_remaining")
        self.box(p, QRectF(260, 204, W - 270, 40), _("Lease left"), "lease_remaining",
                 None if lease is None else fmt_value(lease, "s"))
        p.end()


class PanelSynoptic(Synoptic):
    def paintEvent(self, ev: QPaintEvent | None) -> None:
        p = self.begin()
        W = float(self.width())
        r = QRectF(20, 30, W - 40, 120)
        msg = self.v("message")
        if not self.ok("message"):
            qtstyle.hatch_rect(p, r)
            text = "? " + _("message unknown")
        else:
            p.fillRect(r, QColor("#202020"))
            text = str(msg or _("(blank)"))
        f = QFont("DejaVu Sans Mono")
        f.setPixelSize(22)
        f.setBold(True)
        p.setFont(f)
        p.setPen(QColor("#e8e8e8") if self.ok("message") else QColor("#000000"))
        p.drawText(r, Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, text)
        st = self.v("status")
        self.box(p, QRectF(20, 170, (W - 40) / 2 - 6, 40), _("Status"), "status",
                 {0: _("ok"), 1: _("LED FAULT"), 2: _("POWER FAULT"), 3: _("COMM FAULT")}.get(st), st in (1, 2, 3))
        bright = self.v("brightness")
        self.box(p, QRectF(20 + (W - 40) / 2, 170, (W - 40) / 2, 40), _("Brightness"), "brightness",
                 None if bright is None else fmt_value(bright, "%"))
        p.end()


class GenericSynoptic(Synoptic):
    """Cameras, parking counters, vehicles...: one value box per tag."""

    def paintEvent(self, ev: QPaintEvent | None) -> None:
        p = self.begin()
        W = float(self.width())
        prefix = self.console.registry.tag(self.eq.id, "")
        tags = sorted(n[len(prefix):] for n in self.console.tags.values if n.startswith(prefix))
        bw = (W - 16) / 2
        for k, t in enumerate(tags[:24]):
            self.box(p, QRectF(8 + (k % 2) * bw, 8 + (k // 2) * 46, bw - 6, 40), t.replace("_", " "), t)
        if not tags:
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, _("no value received yet"))
        p.end()


SYNOPTICS: dict[str, type[Synoptic]] = {"junction": JunctionSynoptic, "lighting_cabinet": CabinetSynoptic,
                                        "building": BuildingSynoptic, "bollard": BollardSynoptic,
                                        "panel": PanelSynoptic}


# ---------------------------------------------------------------------- tabs
class TagsTable(QTableWidget):
    """Every live tag of the equipment: value (with its unit, or its enum label), quality, source time."""

    def __init__(self, console: ConsoleModel, eq: EquipmentInfo) -> None:
        super().__init__(0, 4)
        self.console = console
        self.eq = eq
        self.setHorizontalHeaderLabels([_("tag"), _("value"), _("quality"), _("source time")])
        self.units: dict[str, str] = {}  # tag → units (GET /tags?equipment=): values with their unit
        self.enums: dict[str, dict[int, str]] = {}  # tag → its enum labels (the same answer): a mode reads as a word
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        hide_row_numbers(self)
        self.rows: dict[str, int] = {}

    def refresh(self, names: set[str] | None = None) -> None:
        prefix = self.console.registry.tag(self.eq.id, "")
        mine = sorted(n for n in self.console.tags.values if n.startswith(prefix))
        if len(mine) != len(self.rows):
            self.setRowCount(len(mine))
            self.rows = {n: i for i, n in enumerate(mine)}
            names = None
        for n in mine if names is None else [n for n in names if n in self.rows]:
            r = self.rows[n]
            tv = self.console.tags.get(n)
            vals = [n[len(prefix):], fmt_value(tv.value, self.units.get(n, ""), self.enums.get(n)) if tv else "—",
                    word(tv.quality) if tv else "",
                    local_time(tv.ts_ms) if tv and tv.ts_ms else ""]
            for c, v in enumerate(vals):
                item = self.item(r, c)
                if item is None:
                    item = QTableWidgetItem()
                    self.setItem(r, c, item)
                item.setText(v)
                if c == 1:
                    style_item(item, tv, self.console.stale)
        if names is None:
            self.resizeColumnsToContents()

    def load_units(self) -> Reply:
        """The equipment's tag units and enum labels, once (a value then reads "1 200 W", a lease "12 min", a
        junction's mode "clignotant")."""
        r = self.console.call("GET", "/tags", equipment=self.eq.id, limit=2000)
        # a bound method, not a closure: PyQt drops the connection when this table is deleted (a display closed
        # before the answer), where a closure would keep it alive and call it on a deleted widget
        r.finished.connect(self._units)
        return r

    def _units(self, rep: Reply) -> None:
        if rep.ok and isinstance(rep.data, dict):
            rows = rep.data.get("tags", [])
            self.units = {str(t["name"]): str(t.get("units") or "") for t in rows}
            self.enums = {str(t["name"]): labels for t in rows if (labels := enum_of(t))}
            self.refresh()

    def selected_tags(self) -> list[str]:
        prefix = self.console.registry.tag(self.eq.id, "")
        rows = sorted({i.row() for i in self.selectedItems()})
        inv = {r: n for n, r in self.rows.items()}
        return [inv[r] for r in rows if r in inv] or [n for n in self.rows if n.startswith(prefix)][:1]


class IdentitySheet(QTextEdit):
    """Inventory data, location, device; alarm history; command history (GET /equipment/{id})."""

    def __init__(self, console: ConsoleModel, eq: EquipmentInfo) -> None:
        super().__init__()
        self.console = console
        self.eq = eq
        self.setReadOnly(True)
        self.data: dict[str, Any] = {}

    def load(self) -> Reply:
        r = self.console.call("GET", f"/equipment/{self.eq.id}", history=50)
        r.finished.connect(self._loaded)
        return r

    def _loaded(self, r: Reply) -> None:
        if not r.ok:
            self.setHtml("<p>" + html.escape(_("identity sheet unavailable: {why}").format(why=r.why())) + "</p>")
            return
        d = self.data = dict(r.data or {})
        def row(cells: list[Any], tag: str = "td") -> str:
            return "<tr>" + "".join(f"<{tag}>{html.escape(str(c))}</{tag}>" for c in cells) + "</tr>"

        ident = "".join(row([jm.title(k), v]) for k, v in (d.get("identity") or {}).items())
        params = "".join(row([jm.title(k), v]) for k, v in (d.get("params") or {}).items())
        hist = "".join(row([local_time(h["ts_ms"]) if h.get("ts_ms") else "", jm.word(str(h.get("event", ""))),
                            h.get("priority", ""), jm.word(str(h.get("state", ""))), h.get("user") or "",
                            h.get("message", ""), h.get("comment") or h.get("detail") or ""])
                       for h in d.get("alarm_history", []))
        cmds = "".join(row([c.get("kind", ""), c.get("verb", ""), c.get("user", ""), jm.word(str(c.get("state", ""))),
                            jm.word(str(c.get("outcome") or "")), c.get("reason") or ""])
                       for c in d.get("commands", []))
        notes = "".join(f"<li>{html.escape(str(n))}</li>" for n in d.get("notes", []))
        none = html.escape(_("none"))
        inventory, history, commands = (_("Inventory"), _("Alarm history (journal, newest first)"),
                                        _("Commands and interventions (audit log, newest first)"))
        where = _("{commune} · lat {lat} lon {lon} · device {device} ({protocol}) · defined at {source}").format(
            commune=d.get("commune"), lat=d.get("lat"), lon=d.get("lon"), device=d.get("device"),
            protocol=d.get("device_protocol"), source=d.get("source"))
        self.setHtml(
            f"<h3>{html.escape(self.console.registry_named(str(d.get('id', ''))))}</h3>"
            f"<p>{html.escape(str((d.get('identity') or {}).get('address') or ''))}</p>"
            f"<p>{html.escape(where)}</p>"
            f"<h4>{inventory}</h4><table border=1 cellpadding=3>{ident}{params}</table>"
            f"<h4>{history}</h4><table border=1 cellpadding=3>"
            + row([_("time"), _("event"), "P", _("state"), _("user"), _("message"), _("note")], "th")
            + f"{hist or f'<tr><td colspan=7>{none}</td></tr>'}</table>"
            f"<h4>{commands}</h4><table border=1 cellpadding=3>"
            + row([_("kind"), _("verb"), _("user"), _("state"), _("outcome"), _("reason")], "th")
            + f"{cmds or f'<tr><td colspan=6>{none}</td></tr>'}</table>"
            + (f"<ul>{notes}</ul>" if notes else ""))


# ---------------------------------------------------------------------- the display
class EquipmentDisplay(Page):
    """Level 3 for one equipment."""

    diagnostics = pyqtSignal(str)

    def __init__(self, console: ConsoleModel, eq_id: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.console = console
        self.interest_owner = "equipment"
        eq = console.registry.get(eq_id) or EquipmentInfo(eq_id, "", "", "", "", 0.0, 0.0)
        self.eq = eq
        kind = style.KIND_SYMBOLS.get(eq.template, style.KIND_SYMBOLS["other"])[2]
        head = QLabel("<b>" + html.escape(_("Level 3 — {equipment}").format(equipment=console.registry_named(eq.id)))
                      + "</b>  " + html.escape(" · ".join(x for x in (_(kind), eq.address, eq.commune) if x))
                      + f" · {number(eq.lat, decimals=5)}, {number(eq.lon, decimals=5)}")
        head.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)  # a long name never widens
        head.setMinimumWidth(200)
        head.setToolTip(head.text())
        self.trend_btn = QPushButton(_("Trend…"))
        self.trend_btn.setToolTip(_("trend the selected tags (Tags tab) or the main tag"))
        self.trend_btn.clicked.connect(self._trend)
        diag = QPushButton(_("Diagnostics (L4)"))
        diag.clicked.connect(lambda: self.diagnostics.emit(self.eq.id))
        top = QHBoxLayout()
        top.addWidget(head, 1)
        top.addWidget(self.trend_btn)
        top.addWidget(diag)
        # a work order by hand (the alarm list makes one from an alarm in one click)
        self.order_btn = QPushButton(_("Create work order…"))
        self.order_btn.setAccessibleName(_("create a work order for this equipment"))
        why = console.session.why_not("workorder.create", _("create work orders"))
        self.order_btn.setEnabled(not why)
        self.order_btn.setToolTip(why or _("a work order for this equipment: what is wrong, its priority"))
        self.order_btn.clicked.connect(self.create_order)
        self.order_answers: dict[str, str] | None = None  # tests: skip the dialog
        top.addWidget(self.order_btn)
        self.alarms = AlarmStrip(console, eq.id)
        # a long alarm message is cut at the display's edge (full text in the alarm list), never widens the window
        self.alarms.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.synoptic = SYNOPTICS.get(eq.template, GenericSynoptic)(console, eq)
        self.tags_table = TagsTable(console, eq)
        self.sheet = IdentitySheet(console, eq)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.tags_table, _("Live tags"))
        self.tabs.addTab(self.sheet, _("Identity sheet && history"))
        mid = QHBoxLayout()
        mid.addWidget(self.synoptic, 3)
        mid.addWidget(self.tabs, 4)
        self.commands = CommandPanel(console, eq.id, eq.template)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.alarms)
        lay.addLayout(mid, 1)
        lay.addWidget(self.commands)
        console.tagsChanged.connect(self._tags)
        console.staleChanged.connect(self._stale)
        console.alarmsChanged.connect(self.synoptic.update)
        self.tags_table.refresh()
        self.tags_table.load_units()

    def interest(self) -> tuple[list[str], list[str]]:
        return [], [self.eq.id]

    def _stale(self, _stale: bool) -> None:
        self.synoptic.update()
        self.tags_table.refresh()

    def showEvent(self, ev: Any) -> None:
        super().showEvent(ev)
        self.sheet.load()

    def _tags(self, names: set[str]) -> None:
        prefix = self.console.registry.tag(self.eq.id, "")
        mine = {n for n in names if n.startswith(prefix)} if len(names) < 50_000 else None
        if mine is None or mine:
            self.synoptic.update()
            self.tags_table.refresh(mine)

    def create_order(self) -> Reply | None:
        """Ask what is wrong and its priority, then ``POST /workorders``; the answer goes to the status bar and
        the work-order list opens with the new order selected (to dispatch it)."""
        ans = self.order_answers
        if ans is None:
            d = ReasonDialog(_("Work order for {equipment}").format(equipment=self.console.registry_named(self.eq.id)),
                             [("what", _("What is wrong"), True), ("priority", _("Priority"), True)],
                             {"priority": ["3", "4", "2", "1"]}, self)
            if d.exec() != QDialog.DialogCode.Accepted:
                return None
            ans = {"what": d.value("what"), "priority": d.value("priority")}
        r = self.console.create_order(self.eq.id, ans["what"], int(ans.get("priority") or 3))

        def done(r: Reply) -> None:
            if r.ok and isinstance(r.data, dict):
                self.console.message.emit(_("work order {order} created for {equipment}").format(
                    order=r.data.get("id"), equipment=self.eq.id))
                self.console.openWorkOrder.emit(str(r.data.get("id")))  # to the list, to dispatch it
            else:
                self.console.message.emit(_("work order for {equipment}: REFUSED — {why}").format(
                    equipment=self.eq.id, why=r.why()))

        r.then(self, done)
        return r

    def _trend(self) -> None:
        tags = self.tags_table.selected_tags()
        main = {"junction": "phase_greens", "lighting_cabinet": "power", "parking": "occupied",
                "vehicle": "speed", "camera": "in_octets", "panel": "brightness"}.get(self.eq.template)
        if self.tabs.currentWidget() is not self.tags_table and main:
            tags = [self.console.registry.tag(self.eq.id, main)]
        self.console.openTrend.emit(tags)


__all__ = ["EquipmentDisplay", "JunctionSynoptic", "style"]
