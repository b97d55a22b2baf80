"""Small shared widgets: live value text with its quality mark, table cells, an alarm strip per equipment.

Quality is never shown by colour alone (AC-HMI-05): a value that is not ``good`` carries a mark
(``~`` uncertain/stale, ``?`` communication lost, ``!`` device error) and is drawn italic on a
hatched grey, and a stale console marks every value ``~``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from PyQt6.QtCore import Qt
from PyQt6.QtGui import QBrush, QColor, QFont
from PyQt6.QtWidgets import QHBoxLayout, QLabel, QTableWidgetItem, QWidget

from hmi import qtstyle, style
from hmi.console import ConsoleModel
from hmi.models.journal import word
from hmi.models.live import TagValue
from scada.format import boolean, enum_label, quantity
from scada.i18n import _


def fmt_value(v: Any, units: str = "", enum: Mapping[int, str] | None = None) -> str:
    """A raw value for people (:mod:`scada.format`: French numbers in French, units understood, yes/no; an
    enumerated tag's code as its tags.yaml label, translated: ``2`` → ``clignotant``)."""
    if v is None:
        return "—"
    if enum and isinstance(v, (bool, int, float)) and math.isfinite(v):
        return enum_label(v, enum)
    if isinstance(v, bool):
        return boolean(v)
    if isinstance(v, (int, float)):
        return quantity(v, units)
    return f"{v} {units}".strip() if units else str(v)


def value_text(tv: TagValue | None, stale: bool, text: str | None = None) -> str:
    """``"230.4 W"`` / ``"? 230.4 W (communication lost)"`` / ``"— (no value)"`` (in the console's language)."""
    if tv is None:
        return "— " + _("(no value)")
    body = text if text is not None else fmt_value(tv.value)
    if tv.quality != "good":
        return f"{style.quality_mark(tv.quality)} {body} ({word(tv.quality)})"
    if stale:
        return f"~ {body} " + _("(stale)")
    return body


def style_item(item: QTableWidgetItem, tv: TagValue | None, stale: bool, abnormal: bool = False) -> None:
    """Table cell look: unknown = italic on a hatched grey; abnormal = inverted (never an alarm colour)."""
    f = QFont()
    if tv is None or tv.quality != "good" or stale:
        f.setItalic(True)
        item.setBackground(QBrush(QColor(style.UNKNOWN_FILL), Qt.BrushStyle.Dense4Pattern))
        item.setForeground(QBrush(QColor(style.TEXT)))
    elif abnormal:
        f.setBold(True)
        item.setBackground(QBrush(QColor("#000000")))
        item.setForeground(QBrush(QColor(style.ABNORMAL_FILL)))
    else:
        item.setBackground(QBrush())
        item.setForeground(QBrush(QColor(style.TEXT)))
    item.setFont(f)


class AlarmStrip(QWidget):
    """The active alarms of one equipment: priority icon + text each (or "no alarm")."""

    def __init__(self, console: ConsoleModel, eq_id: str, parent: QWidget | None = None, limit: int = 6) -> None:
        super().__init__(parent)
        self.console = console
        self.eq_id = eq_id
        self.limit = limit
        self.lay = QHBoxLayout(self)
        self.lay.setContentsMargins(0, 0, 0, 0)
        console.alarmsChanged.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        while self.lay.count():
            it = self.lay.takeAt(0)
            w = it.widget() if it is not None else None
            if w is not None:
                w.deleteLater()
        alarms = [a for a in self.console.alarms.of_equipment(self.eq_id) if not a.diagnostic]
        if not alarms:
            self.lay.addWidget(QLabel(_("no alarm")))
        for a in alarms[: self.limit]:
            icon = QLabel()
            icon.setPixmap(qtstyle.priority_pixmap(a.priority, 18))
            self.lay.addWidget(icon)
            t = QLabel(f"{a.message}" + (f" [{a.flag_text}]" if a.flag_text else "") +
                       ("  " + _("(unack)") if a.unacked else ""))
            t.setToolTip(a.id)
            self.lay.addWidget(t)
        self.lay.addStretch(1)


def enum_of(row: Mapping[str, Any]) -> dict[int, str] | None:
    """The labels a ``GET /tags`` row carries for an enumerated tag (JSON keys are strings), by code."""
    labels = row.get("enum")
    return {int(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) and labels else None
