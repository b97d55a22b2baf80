"""Level 4 — the edge pollers (Sparkplug edge nodes) as the server sees them, from GET /api/v1/edges.

    ┌ Edge pollers ─────────────────────────────────────────────────────────────────────────────────────┐
    │ edge · online · last birth · last data · seq. gaps · store (backlog / bound) · dropped ·          │
    │ configuration (same as the server / DIFFERENT) · epoch (obeyed / REFUSED) · devices ok / total    │
    └───────────────────────────────────────────────────────────────────────────────────────────────────┘

Refreshed with the console's health (``ConsoleModel.healthChanged``) and by :meth:`EdgesView.load`; hidden
while the server has no edge partition. What needs
an operator's eye reads in capitals (ISA-101: no colour for the normal state): an edge offline, a configuration
not the server's, an epoch the edge no longer obeys, a store-and-forward in alarm. :func:`edge_rows` turns the
route's answer into the table's texts (no Qt: tested alone).
"""

from __future__ import annotations

from typing import Any

from PyQt6.QtWidgets import QAbstractItemView, QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from hmi.bridge import Reply
from hmi.console import ConsoleModel
from hmi.models.journal import local_time
from hmi.qtstyle import hide_row_numbers
from scada.i18n import N_, _

COLUMNS = (N_("edge"), N_("online"), N_("last birth"), N_("last data"), N_("sequence gaps"),
           N_("store-and-forward"), N_("dropped"), N_("configuration"), N_("epoch"), N_("devices ok"))  # through _()


def edge_rows(data: dict[str, Any]) -> list[list[str]]:
    """GET /edges → one row of texts per edge node, in the order of :data:`COLUMNS`."""
    rows = []
    for e in data.get("edges") or []:
        age = e.get("last_data_age_s")
        fp_ok = e.get("fingerprint_ok")
        obeyed = e.get("epoch_obeyed")
        backlog, bound = int(e.get("store_backlog") or 0), int(e.get("store_capacity") or 0)
        store = (f"{backlog} / {bound}" if bound else str(backlog)) + (
            " — " + _("ALARM") if e.get("store_alarm") else "")
        rows.append([
            str(e.get("node", "")),
            _("yes") if e.get("online") else _("NO"),
            local_time(float(e["last_birth"]) * 1000) if e.get("last_birth") else _("never"),
            _("{s:.1f} s ago").format(s=float(age)) if age is not None else _("never"),
            str(e.get("seq_gaps", 0)),
            store,
            str(e.get("store_dropped", 0)),
            _("not checked") if fp_ok is None else _("same as the server") if fp_ok else _("DIFFERENT"),
            _("not known") if obeyed is None else _("obeyed") if obeyed else _("REFUSED"),
            f"{e.get('devices_ok', 0)} / {e.get('devices', 0)}",
        ])
    return rows


class EdgesView(QWidget):
    """The table of edge pollers (``console``: the console model, its calls go to the server's API)."""

    def __init__(self, console: ConsoleModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.console = console
        self.title = QLabel("<b>" + _("Edge pollers (Sparkplug)") + "</b>")
        self.note = QLabel("")
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels([_(c) for c in COLUMNS])
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        hide_row_numbers(self.table)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.title)
        lay.addWidget(self.note)
        lay.addWidget(self.table)
        # a bound method: its connection goes with this widget when a reload rebuilds the window (hmi.window_host)
        console.healthChanged.connect(self._on_health)
        self.hide()  # until the server says it has edges

    def _on_health(self, _health: object) -> None:
        self.load()

    def load(self) -> Reply:
        r = self.console.call("GET", "/edges")
        r.finished.connect(self.fill)
        return r

    def fill(self, r: Reply) -> None:
        if r.status == 404:  # a server older than the route: nothing to show
            self.setVisible(False)
            return
        if not r.ok or not isinstance(r.data, dict):
            self.note.setText(_("edge pollers not read: {why}").format(why=r.why()))
            return
        self.setVisible(bool(r.data.get("enabled")))  # shown only where some partition is polled by an edge
        rows = edge_rows(r.data)
        self.note.setText("")
        self.table.setRowCount(len(rows))
        for i, row in enumerate(rows):
            for c, text in enumerate(row):
                self.table.setItem(i, c, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()
