"""Level 4 — diagnostics: raw tags with quality and both timestamps, tag definitions, driver statistics.

    ┌ raw tags: [pattern or equipment ______] [Query]     ┐ ┌ server subsystems (GET /health) ────────┐
    │ name · value · quality · source time · receive time  │ │ poll ok 62 devices · historian …         │
    │ (select a row → its definition: device, address,     │ ├ drivers: device · status · requests ·     │
    │  type, access, enum, deadband)                       │ │ errors · latency · last error             │
    └──────────────────────────────────────────────────────┘ └───────────────────────────────────────────┘

The server's details and errors are its own English: those with a known shape are shown in the console's
language, the others marked "server message: …" (:mod:`hmi.models.server_text`).
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
from hmi.edges_view import EdgesView
from hmi.failover import detail_text
from hmi.models.journal import local_time, title, word
from hmi.models.server_text import server_text
from hmi.qtstyle import hide_row_numbers
from hmi.widgets import fmt_value
from scada.i18n import N_, _

#: the server's subsystems (GET /health) in words (English msgids); one not listed reads as its name
SUBSYSTEMS = {"alarms": N_("alarms"), "api": N_("API"), "edge": N_("edge pollers"), "failsafe": N_("fail-safe gate"),
              "ha": N_("failover"), "historian": N_("historian"), "journal": N_("journal"), "poll": N_("polling"),
              "stale": N_("stale data watch"), "tagdb": N_("tag database"), "workorders": N_("work orders")}


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
        self.query.setPlaceholderText(_("equipment id ({id}) or a tag glob ({glob})").format(
            id="J003", glob="*/junction/J003/*"))
        self.query.returnPressed.connect(self.load_tags)
        go = QPushButton(_("Query"))
        go.clicked.connect(self.load_tags)
        self.tags = _table([_("tag"), _("value"), _("quality"), _("source time"), _("receive time"), _("units")])
        self.tags.itemSelectionChanged.connect(self.describe)
        self.detail = QLabel(_("select a tag for its definition"))
        self.detail.setWordWrap(True)
        self.subsystems = _table([_("subsystem"), _("status"), _("detail")])
        self.drivers = _table([_("device"), _("status"), _("requests"), _("errors"), _("overruns"), _("latency ms"),
                               _("period ms"), _("last success"), _("last error")])
        refresh = QPushButton(_("Refresh"))
        refresh.clicked.connect(self.load_health)
        left = QVBoxLayout()
        q = QHBoxLayout()
        q.addWidget(QLabel("<b>" + _("Level 4 — raw tags") + "</b>"))
        q.addWidget(self.query, 1)
        q.addWidget(go)
        left.addLayout(q)
        left.addWidget(self.tags, 1)
        left.addWidget(self.detail)
        right = QVBoxLayout()
        h = QHBoxLayout()
        h.addWidget(QLabel("<b>" + _("Server subsystems") + "</b>"), 1)
        h.addWidget(refresh)
        right.addLayout(h)
        right.addWidget(self.subsystems)
        right.addWidget(QLabel("<b>" + _("Driver statistics (per device)") + "</b>"))
        right.addWidget(self.drivers, 1)
        self.edges = EdgesView(console)  # the edge pollers (hmi.edges_view), refreshed with the health
        right.addWidget(self.edges)
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
            self.detail.setText(_("query refused: {why}").format(why=r.why()))
            self.rows = []
        else:
            self.rows = list((r.data or {}).get("tags", []))
            self.detail.setText(_("{n} tag(s)").format(n=(r.data or {}).get("total", len(self.rows))))
        self.tags.setRowCount(len(self.rows))
        for i, t in enumerate(self.rows):
            vals = [t["name"], fmt_value(t.get("value")), word(str(t.get("quality", ""))),
                    local_time(t["source_ms"]) if t.get("source_ms") else _("never"),
                    local_time(t["receive_ms"]) if t.get("receive_ms") else _("never"), t.get("units", "")]
            for c, v in enumerate(vals):
                self.tags.setItem(i, c, QTableWidgetItem(str(v)))
        self.tags.resizeColumnsToContents()

    def describe(self) -> None:
        rows = sorted({i.row() for i in self.tags.selectedItems()})
        if not rows or rows[0] >= len(self.rows):
            return
        name = self.rows[rows[0]]["name"]
        r = self.console.call("GET", f"/tags/{name}")
        r.then(self, lambda rep: self.detail.setText(
            "<br>".join(f"<b>{title(k)}</b>: {v}" for k, v in (rep.data or {}).items()) if rep.ok else rep.why()))

    def load_health(self) -> None:
        self.console.refresh_health()

    def show_health(self, health: dict[str, Any]) -> None:
        subs = health.get("subsystems") or {}
        self.subsystems.setRowCount(len(subs))
        for i, (name, s) in enumerate(sorted(subs.items())):
            for c, v in enumerate([_(SUBSYSTEMS[name]) if name in SUBSYSTEMS else name,
                                   word(str(s.get("status", ""))).upper(),
                                   # structured (the failover pair's): each part translated (hmi.failover)
                                   detail_text(s) if "messages" in s else server_text(str(s.get("detail") or ""))]):
                self.subsystems.setItem(i, c, QTableWidgetItem(str(v)))
        per = ((subs.get("poll") or {}).get("stats") or {}).get("per_device") or {}
        self.drivers.setRowCount(len(per))
        for i, (dev, s) in enumerate(sorted(per.items())):
            vals = [dev, word(str(s.get("status", ""))), s.get("requests", ""), s.get("errors", ""),
                    s.get("overruns", ""), s.get("latency_ms", ""), s.get("period_ms", ""),
                    local_time(s["last_success_ms"]) if s.get("last_success_ms") else _("never"),
                    server_text(str(s.get("last_error") or ""))]
            for c, v in enumerate(vals):
                self.drivers.setItem(i, c, QTableWidgetItem(str(v if v is not None else "")))
        self.subsystems.resizeColumnsToContents()
