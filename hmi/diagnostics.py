"""Level 4 — diagnostics: raw tags with quality and both timestamps, tag definitions, driver statistics.

    ┌ raw tags: [pattern or equipment ______] [Query]     ┐ ┌ server subsystems (GET /health) ────────┐
    │ name · value · quality · source time · receive time  │ │ poll ok 62 devices · historian …         │
    │ (select a row → its definition: device, address,     │ ├ drivers: device · status · requests ·     │
    │  type, access, enum, deadband)                       │ │ errors · latency · last error             │
    └──────────────────────────────────────────────────────┘ └───────────────────────────────────────────┘
"""

from __future__ import annotations

from typing import Any

from PyQt6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from hmi.bridge import Reply
from hmi.console import ConsoleModel
from hmi.models.journal import local_time
from hmi.qtstyle import hide_row_numbers
from hmi.widgets import fmt_value


def _table(headers: list[str]) -> QTableWidget:
    t = QTableWidget(0, len(headers))
    t.setHorizontalHeaderLabels(headers)
    t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    hide_row_numbers(t)
    return t


class Diagnostics(QWidget):
    def __init__(self, console: ConsoleModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.console = console
        self.query = QLineEdit()
        self.query.setPlaceholderText("equipment id (J003) or a tag glob (*/junction/J003/*)")
        self.query.returnPressed.connect(self.load_tags)
        go = QPushButton("Query")
        go.clicked.connect(self.load_tags)
        self.tags = _table(["tag", "value", "quality", "source time", "receive time", "units"])
        self.tags.itemSelectionChanged.connect(self.describe)
        self.detail = QLabel("select a tag for its definition")
        self.detail.setWordWrap(True)
        self.subsystems = _table(["subsystem", "status", "detail"])
        self.drivers = _table(["device", "status", "requests", "errors", "overruns", "latency ms", "period ms",
                               "last success", "last error"])
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.load_health)
        left = QVBoxLayout()
        q = QHBoxLayout()
        q.addWidget(QLabel("<b>Level 4 — raw tags</b>"))
        q.addWidget(self.query, 1)
        q.addWidget(go)
        left.addLayout(q)
        left.addWidget(self.tags, 1)
        left.addWidget(self.detail)
        right = QVBoxLayout()
        h = QHBoxLayout()
        h.addWidget(QLabel("<b>Server subsystems</b>"), 1)
        h.addWidget(refresh)
        right.addLayout(h)
        right.addWidget(self.subsystems)
        right.addWidget(QLabel("<b>Driver statistics (per device)</b>"))
        right.addWidget(self.drivers, 1)
        lay = QHBoxLayout(self)
        lay.addLayout(left, 3)
        lay.addLayout(right, 2)
        self.rows: list[dict[str, Any]] = []
        console.healthChanged.connect(self.show_health)

    def show_equipment(self, eq_id: str) -> Reply:
        self.query.setText(eq_id)
        return self.load_tags()

    def load_tags(self) -> Reply:
        q = self.query.text().strip()
        params: dict[str, Any] = {"limit": 2000}
        if any(c in q for c in "*?[/"):
            params["pattern"] = q
        else:
            params["equipment"] = q
        r = self.console.call("GET", "/tags", **params)
        r.finished.connect(self._tags)
        return r

    def _tags(self, r: Reply) -> None:
        if not r.ok:
            self.detail.setText(f"query refused: {r.why()}")
            self.rows = []
        else:
            self.rows = list((r.data or {}).get("tags", []))
            self.detail.setText(f"{(r.data or {}).get('total', len(self.rows))} tag(s)")
        self.tags.setRowCount(len(self.rows))
        for i, t in enumerate(self.rows):
            vals = [t["name"], fmt_value(t.get("value")), t.get("quality", ""),
                    local_time(t["source_ms"]) if t.get("source_ms") else "never",
                    local_time(t["receive_ms"]) if t.get("receive_ms") else "never", t.get("units", "")]
            for c, v in enumerate(vals):
                self.tags.setItem(i, c, QTableWidgetItem(str(v)))
        self.tags.resizeColumnsToContents()

    def describe(self) -> None:
        rows = sorted({i.row() for i in self.tags.selectedItems()})
        if not rows or rows[0] >= len(self.rows):
            return
        name = self.rows[rows[0]]["name"]
        r = self.console.call("GET", f"/tags/{name}")
        r.finished.connect(lambda rep: self.detail.setText(
            "<br>".join(f"<b>{k}</b>: {v}" for k, v in (rep.data or {}).items()) if rep.ok else rep.why()))

    def load_health(self) -> None:
        self.console.refresh_health()

    def show_health(self, health: dict[str, Any]) -> None:
        subs = health.get("subsystems") or {}
        self.subsystems.setRowCount(len(subs))
        for i, (name, s) in enumerate(sorted(subs.items())):
            for c, v in enumerate([name, str(s.get("status", "")).upper(), s.get("detail", "")]):
                self.subsystems.setItem(i, c, QTableWidgetItem(str(v)))
        per = ((subs.get("poll") or {}).get("stats") or {}).get("per_device") or {}
        self.drivers.setRowCount(len(per))
        for i, (dev, s) in enumerate(sorted(per.items())):
            vals = [dev, s.get("status", ""), s.get("requests", ""), s.get("errors", ""), s.get("overruns", ""),
                    s.get("latency_ms", ""), s.get("period_ms", ""),
                    local_time(s["last_success_ms"]) if s.get("last_success_ms") else "never", s.get("last_error", "")]
            for c, v in enumerate(vals):
                self.drivers.setItem(i, c, QTableWidgetItem(str(v if v is not None else "")))
        self.subsystems.resizeColumnsToContents()
