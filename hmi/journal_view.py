"""The alarm journal view: the API's filters, a table, CSV export (times in Europe/Paris)."""

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


class JournalView(QWidget):
    def __init__(self, console: ConsoleModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.console = console
        self.entries: list[dict[str, Any]] = []
        self.cols: list[str] = []
        self.fields: dict[str, QLineEdit] = {}
        grid = QGridLayout()
        for k, (key, label) in enumerate((("equipment", "equipment"), ("commune", "commune"), ("service", "service"),
                                          ("priority", "priority (1,2 / diagnostic)"), ("state", "state"),
                                          ("text", "text"), ("user", "user"))):
            w = QLineEdit()
            w.setPlaceholderText(label)
            w.returnPressed.connect(self.load)
            self.fields[key] = w
            grid.addWidget(w, k // 4, k % 4)
        self.use_since = QCheckBox("since")
        self.since = QDateTimeEdit(QDateTime.currentDateTime().addDays(-1))
        self.use_until = QCheckBox("until")
        self.until = QDateTimeEdit(QDateTime.currentDateTime())
        for dte in (self.since, self.until):
            dte.setDisplayFormat("yyyy-MM-dd HH:mm")
            dte.setCalendarPopup(True)
        self.limit = QSpinBox()
        self.limit.setRange(10, 10_000)
        self.limit.setValue(500)
        row = QHBoxLayout()
        for widget in (self.use_since, self.since, self.use_until, self.until, QLabel("rows"), self.limit):
            row.addWidget(widget)
        self.query_btn = QPushButton("Query")
        self.query_btn.clicked.connect(self.load)
        self.csv_btn = QPushButton("Export CSV…")
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
        lay.addWidget(QLabel("<b>Alarm journal</b> — every transition and operator action (newest first)"))
        lay.addLayout(grid)
        lay.addLayout(row)
        lay.addWidget(self.table, 1)
        lay.addWidget(self.status)

    def filter(self) -> jm.JournalFilter:
        def when(on: QCheckBox, w: QDateTimeEdit) -> dt.datetime | None:
            if not on.isChecked():
                return None
            return w.dateTime().toPyDateTime().replace(tzinfo=jm.PARIS)

        f = self.fields
        return jm.JournalFilter(since=when(self.use_since, self.since), until=when(self.use_until, self.until),
                                limit=self.limit.value(), equipment=f["equipment"].text(), commune=f["commune"].text(),
                                service=f["service"].text(), priority=f["priority"].text(), state=f["state"].text(),
                                text=f["text"].text(), user=f["user"].text())

    def load(self) -> Reply:
        r = self.console.call("GET", "/journal", **self.filter().params())
        r.finished.connect(self._loaded)
        self.status.setText("querying…")
        return r

    def _loaded(self, r: Reply) -> None:
        if not r.ok:
            self.status.setText(f"journal query refused: {r.why()}")
            return
        self.entries = list((r.data or {}).get("entries", []))
        self.cols = jm.columns(self.entries) or ["ts_ms", "event", "message"]
        self.table.setColumnCount(len(self.cols))
        self.table.setHorizontalHeaderLabels(["time (local)" if c == "ts_ms" else c for c in self.cols])
        self.table.setRowCount(len(self.entries))
        for i, e in enumerate(self.entries):
            for c, col in enumerate(self.cols):
                self.table.setItem(i, c, QTableWidgetItem(jm.cell(e, col)))
        self.table.resizeColumnsToContents()
        self.status.setText(f"{len(self.entries)} entr{'y' if len(self.entries) == 1 else 'ies'}")

    def export_csv(self, path: Path | str) -> int:
        Path(path).write_text(jm.to_csv(self.entries, self.cols), encoding="utf-8")
        self.status.setText(f"{len(self.entries)} entries written to {path}")
        return len(self.entries)

    def export_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export the journal", "journal.csv", "CSV (*.csv)")
        if path:
            self.export_csv(path)

    def _open(self, row: int, _col: int) -> None:
        eq = self.entries[row].get("equipment") if 0 <= row < len(self.entries) else None
        if eq:
            self.console.openEquipment.emit(str(eq))
