"""The alarm journal view: the API's filters, a table, CSV export.

One clock: the table's times, the pickers (read as the site's time) and the CSV's time column are in the
site's zone (:mod:`scada.format`, named once in the status bar); the CSV adds an explicit UTC column.
The journal's codes (events, states, flags) read as words and the equipment with its name
(:mod:`hmi.models.journal`).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from PyQt6.QtCore import QDateTime
from PyQt6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QDateTimeEdit,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from hmi.bridge import Reply
from hmi.console import ConsoleModel
from hmi.models import journal as jm
from hmi.qtstyle import hide_row_numbers
from scada.format import site_zone
from scada.i18n import N_, _, ngettext


class JournalView(QWidget):
    def __init__(self, console: ConsoleModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.console = console
        self.entries: list[dict[str, Any]] = []
        self.cols: list[str] = []  # every column (the CSV's)
        self.shown: list[str] = []  # the table's
        self.fields: dict[str, QLineEdit] = {}
        grid = QGridLayout()
        for k, (key, label) in enumerate((("equipment", N_("equipment")), ("commune", N_("commune")),
                                          ("service", N_("service")), ("priority", N_("priority (1,2 / diagnostic)")),
                                          ("state", N_("state (unack, acked, rtn_unack, normal)")),
                                          ("text", N_("text")), ("user", N_("user")))):
            w = QLineEdit()
            w.setPlaceholderText(_(label))
            w.returnPressed.connect(self.load)
            self.fields[key] = w
            grid.addWidget(w, k // 4, k % 4)
        self.use_since = QCheckBox(_("since"))
        self.use_until = QCheckBox(_("until"))
        # the pickers show and take the site's time (not this machine's): one clock
        now = dt.datetime.now(site_zone()).replace(tzinfo=None, second=0, microsecond=0)
        self.since = QDateTimeEdit(QDateTime(now - dt.timedelta(days=1)))
        self.until = QDateTimeEdit(QDateTime(now))
        for dte in (self.since, self.until):
            dte.setDisplayFormat("dd/MM/yyyy HH:mm")
            dte.setCalendarPopup(True)
        self.limit = QSpinBox()
        self.limit.setRange(10, 10_000)
        self.limit.setValue(500)
        row = QHBoxLayout()
        for widget in (self.use_since, self.since, self.use_until, self.until, QLabel(_("rows")), self.limit):
            row.addWidget(widget)
        self.query_btn = QPushButton(_("Query"))
        self.query_btn.clicked.connect(self.load)
        self.csv_btn = QPushButton(_("Export CSV…"))
        self.csv_btn.clicked.connect(self.export_dialog)
        row.addStretch(1)
        row.addWidget(self.query_btn)
        row.addWidget(self.csv_btn)
        self.table = QTableWidget(0, 0)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        hide_row_numbers(self.table)
        self.table.cellDoubleClicked.connect(self._open)
        self.status = QLabel()
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel("<b>" + _("Alarm journal") + "</b> — "
                             + _("every transition and operator action (newest first)")))
        lay.addLayout(grid)
        lay.addLayout(row)
        lay.addWidget(self.table, 1)
        lay.addWidget(self.status)

    def filter(self) -> jm.JournalFilter:
        def when(on: QCheckBox, w: QDateTimeEdit) -> dt.datetime | None:
            if not on.isChecked():
                return None
            return w.dateTime().toPyDateTime().replace(tzinfo=site_zone())

        f = self.fields
        return jm.JournalFilter(since=when(self.use_since, self.since), until=when(self.use_until, self.until),
                                limit=self.limit.value(), equipment=f["equipment"].text(), commune=f["commune"].text(),
                                service=f["service"].text(), priority=f["priority"].text(), state=f["state"].text(),
                                text=f["text"].text(), user=f["user"].text())

    def load(self) -> Reply:
        r = self.console.call("GET", "/journal", **self.filter().params())
        r.finished.connect(self._loaded)
        self.status.setText(_("querying…"))
        return r

    def _loaded(self, r: Reply) -> None:
        if not r.ok:
            self.status.setText(_("journal query refused: {why}").format(why=r.why()))
            return
        self.entries = list((r.data or {}).get("entries", []))
        self.cols = jm.columns(self.entries) or ["ts_ms", "event", "message"]
        self.shown = jm.shown_columns(self.cols)
        self.table.setColumnCount(len(self.shown))
        self.table.setHorizontalHeaderLabels([jm.title(c) for c in self.shown])
        self.table.setRowCount(len(self.entries))
        named = self.console.registry_named
        for i, e in enumerate(self.entries):
            for c, col in enumerate(self.shown):
                item = QTableWidgetItem(jm.cell(e, col, named))
                if col == "equipment" and e.get("equipment"):
                    item.setToolTip(self.console.registry_named(str(e["equipment"]), address=True))
                self.table.setItem(i, c, item)
        self.table.resizeColumnsToContents()
        n = len(self.entries)
        self.status.setText(ngettext("{n} entry", "{n} entries", n).format(n=n))

    def export_csv(self, path: Path | str) -> int:
        Path(path).write_text(jm.to_csv(self.entries, self.cols), encoding="utf-8")
        self.status.setText(_("{n} entries written to {file}").format(n=len(self.entries), file=path))
        return len(self.entries)

    def export_dialog(self) -> None:
        path, _filter = QFileDialog.getSaveFileName(self, _("Export the journal"), "journal.csv", "CSV (*.csv)")
        if path:
            self.export_csv(path)

    def _open(self, row: int, _col: int) -> None:
        eq = self.entries[row].get("equipment") if 0 <= row < len(self.entries) else None
        if eq:
            self.console.openEquipment.emit(str(eq))
