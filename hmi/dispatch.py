"""The dispatch dialog: send a crew to one work order, the crews ranked by the server.

    ┌ Dispatch WO-000012 — C0002 · Talant · lighting · P4 ───────────────────────────────────────────┐
    │ ranked by estimated travel time (straight line × urban detour at urban speed) ☐ every service │
    │  #  crew            service   vehicle  ETA          distance  available                        │
    │  1  lighting-day    lighting  V006     ETA: 7 min   2.1 km    yes                              │
    │  2  lighting-night  lighting  V011     ETA: 9 min   2.9 km    no: off shift                    │
    │ note [                                        ]                                               │
    │                                                              [Send the crew] [Cancel]          │
    └────────────────────────────────────────────────────────────────────────────────────────────────┘

    GET  /workorders/{id}/candidates[?any_service=true] ──► the rows, in the server's order (the best
         proposed: selected); the estimate is the server's (scada.workorders.dispatch), not redone here
    POST /workorders/{id}/dispatch {crew, note?} ──► the order assigned, the mission sent to the vehicle
         through the command gate (en route once confirmed); ``mission_error`` (no vehicle, gate refused,
         not confirmed) is shown: the order stays assigned and can be dispatched again

The dialog acts through :class:`~hmi.console.ConsoleModel`; the server decides, and a refusal is shown
as it comes.
"""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import quote

from PyQt6.QtCore import pyqtSignal
from PyQt6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from hmi import style
from hmi.bridge import Reply
from hmi.console import ConsoleModel
from hmi.models.workorders import Candidate, Order, candidates_from_api, word
from hmi.qtstyle import hide_row_numbers
from scada.format import quantity
from scada.i18n import N_, _

COLUMNS = ("#", N_("crew"), N_("service"), N_("vehicle"), N_("ETA"), N_("distance"), N_("available"))  # _(them)


class DispatchDialog(QDialog):
    """See the module docstring. ``assigned(order_json)`` once the server took the crew."""

    assigned = pyqtSignal(dict)

    def __init__(self, console: ConsoleModel, order: Order, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.console = console
        self.order = order
        self.candidates: list[Candidate] = []
        self.mission_error = ""
        self.setWindowTitle(_("Dispatch {order}").format(order=order.id))
        self.head = QLabel(f"<b>{order.id}</b> — " + html.escape(" · ".join(x for x in (
            console.registry_named(order.equipment, address=True), order.commune, style.domain_text(order.service))
            if x)) + f" · P{order.priority}<br>{html.escape(order.what)}")
        self.head.setWordWrap(True)
        self.source = QLabel(_("ranking the crews…"))
        self.source.setWordWrap(True)
        self.any_service = QCheckBox(_("every service"))
        self.any_service.setToolTip(_("also the crews of other services (ranked after the order's own)"))
        self.any_service.toggled.connect(lambda _on: self.load())
        top = QHBoxLayout()
        top.addWidget(self.source, 1)
        top.addWidget(self.any_service)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels([_(c) if c != "#" else c for c in COLUMNS])
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setAccessibleName(_("crews ranked for this order"))
        hide_row_numbers(self.table)
        self.table.itemSelectionChanged.connect(self._check)
        self.table.doubleClicked.connect(lambda *_: self.send())
        self.note = QLineEdit()
        self.note.setPlaceholderText(_("note for the crew (optional)"))
        self.outcome = QLabel()
        self.outcome.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        assert ok is not None  # noqa: S101 - the box was built with an Ok button (Qt's stub says Optional)
        self.ok = ok
        self.ok.setText(_("Send the crew"))
        self.buttons.accepted.connect(self.send)
        self.buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(self.head)
        lay.addLayout(top)
        for w in (self.table, self.note, self.outcome, self.buttons):
            lay.addWidget(w)
        self.resize(760, 380)
        self._check()
        self.load()

    # ------------------------------------------------------------------ ranking (the server's)
    def _path(self, tail: str) -> str:
        return f"/workorders/{quote(self.order.id, safe='')}/{tail}"

    def load(self) -> Reply:
        self.source.setText(_("ranking the crews…"))
        r = self.console.call("GET", self._path("candidates"), any_service="true" if self.any_service.isChecked()
                              else None)
        r.finished.connect(self._on_candidates)
        return r

    def _on_candidates(self, r: Reply) -> None:
        if not r.ok:
            self.source.setText(_("cannot rank the crews: {why}").format(why=r.why()))
            self.show_candidates([])
            return
        cands = candidates_from_api(r.data)
        self.source.setText(_("ranked by the server: available first, then by estimated travel time")
                            if cands else _("no crew of this service in crews.yaml: try every service"))
        self.show_candidates(cands)

    def show_candidates(self, cands: list[Candidate]) -> None:
        self.candidates = cands
        self.table.setRowCount(len(cands))
        for row, c in enumerate(cands):
            dist = quantity(round(c.distance_m / 1000, 1), "km") if c.distance_m is not None else ""
            for col, text in enumerate((str(row + 1), c.crew, style.domain_text(c.service), c.vehicle or "",
                                        c.eta_text, dist,
                                        c.availability_text)):
                item = QTableWidgetItem(text)
                item.setToolTip(c.why)
                self.table.setItem(row, col, item)
        self.table.resizeColumnsToContents()
        if cands:
            self.table.selectRow(0)  # the best ranked is proposed; the operator confirms or picks another
        self._check()

    # ------------------------------------------------------------------ choosing, sending
    def chosen(self) -> Candidate | None:
        rows = sorted({i.row() for i in self.table.selectedIndexes()})
        return self.candidates[rows[0]] if rows and rows[0] < len(self.candidates) else None

    def choose(self, crew: str) -> None:
        for row, c in enumerate(self.candidates):
            if c.crew == crew:
                self.table.selectRow(row)
                return
        raise KeyError(f"crew {crew!r} is not offered for {self.order.id}")

    def _check(self) -> None:
        c = self.chosen()
        self.ok.setEnabled(c is not None)
        self.ok.setToolTip("" if c is not None else _("choose a crew"))

    def send(self) -> Reply | None:
        c = self.chosen()
        if c is None:
            return None
        body: dict[str, Any] = {"crew": c.crew}
        if self.note.text().strip():
            body["note"] = self.note.text().strip()
        self.ok.setEnabled(False)
        self.outcome.setText(_("sending {crew}…").format(crew=c.crew))
        r = self.console.order_action(self.order.id, "dispatch", body)
        r.finished.connect(self._on_done)
        return r

    def _on_done(self, r: Reply) -> None:
        data = r.data if r.ok and isinstance(r.data, dict) else None
        order = data.get("order") if data is not None else None
        if not isinstance(order, dict):
            self.outcome.setText(_("REFUSED — {why}").format(why=r.why()))
            self._check()
            return
        self.mission_error = str(data.get("mission_error") or "") if data is not None else ""
        self.assigned.emit(order)
        if self.mission_error:  # assigned, but the vehicle did not get its mission: say so, stay open
            self.outcome.setText(_("{order} assigned to {crew}, but the mission did not reach the vehicle: {why} — "
                                   "send again to retry").format(order=self.order.id, crew=order.get("crew"),
                                                                 why=self.mission_error))
            self._check()
        else:
            self.outcome.setText(f"{self.order.id}: {word(str(order.get('status', '')))} — {order.get('crew')}")
            self.accept()


__all__ = ["DispatchDialog"]
