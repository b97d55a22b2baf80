"""The tag browser: find tags on the server and add them to a trend.

    ┌ Add tags to the trend ──────────────────────────────────────────────────────┐
    │ [filter: power               ] [Search]       text → *power*; a glob as is  │
    │ ┌ tag ─────────────────────────────┬ value ┬ units ┬ quality ┐               │
    │ │ dijon/lighting/C0001/power       │ 1200  │ W     │ good    │  (one page)   │
    │ └──────────────────────────────────┴───────┴───────┴─────────┘               │
    │ [◀ Previous] 1–50 of 412 [Next ▶]                  [Add to trend] [Close]    │
    └─────────────────────────────────────────────────────────────────────────────┘

One page at a time from ``GET /tags?pattern=&limit=&offset=`` (the server matches the glob over its
tag database; the console never holds the city's tag list). A text without ``* ? [`` is searched
anywhere in the name (``power`` → ``*power*``). Double click or "Add to trend" emits ``tagChosen``
for each selected tag; the dialog stays open for more.
"""

from __future__ import annotations

from typing import Any

from PyQt6.QtCore import pyqtSignal
from PyQt6.QtWidgets import (
    QAbstractItemView,
    QDialog,
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
from hmi.models.journal import word
from hmi.qtstyle import hide_row_numbers
from hmi.widgets import enum_of, fmt_value
from scada.i18n import _

PAGE = 50


def glob_of(text: str) -> str:
    """What the operator typed → the server's glob: a glob as is, a plain text anywhere in the name."""
    text = text.strip()
    if not text:
        return "*"
    return text if any(c in text for c in "*?[") else f"*{text}*"


class TagBrowser(QDialog):
    tagChosen = pyqtSignal(str)

    def __init__(self, console: ConsoleModel, parent: QWidget | None = None, page: int = PAGE) -> None:
        super().__init__(parent)
        self.console = console
        self.page = page
        self.offset = 0
        self.total = 0
        self.pattern = "*"
        self.setWindowTitle(_("Add tags to the trend"))
        self.filter = QLineEdit()
        self.filter.setPlaceholderText(_("text or glob: {examples}").format(
            examples="C0001 · */C0001/* · */lamp_01/status"))
        self.filter.setAccessibleName(_("tag filter"))
        self.filter.returnPressed.connect(self.search)
        find = QPushButton(_("Search"))
        find.clicked.connect(self.search)
        self.table = QTableWidget(0, 5)
        self.table.setHorizontalHeaderLabels([_("tag"), _("value"), _("quality"), _("equipment"), _("address")])
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAccessibleName(_("tags found"))
        self.table.setColumnWidth(0, 380)
        hide_row_numbers(self.table)
        self.table.doubleClicked.connect(lambda *_: self.add_selected())
        self.prev_btn = QPushButton(_("◀ Previous"))
        self.prev_btn.clicked.connect(lambda: self.load(self.offset - self.page))
        self.next_btn = QPushButton(_("Next ▶"))
        self.next_btn.clicked.connect(lambda: self.load(self.offset + self.page))
        self.where = QLabel("")
        self.add_btn = QPushButton(_("Add to trend"))
        self.add_btn.clicked.connect(self.add_selected)
        close = QPushButton(_("Close"))
        close.clicked.connect(self.close)
        top = QHBoxLayout()
        top.addWidget(self.filter, 1)
        top.addWidget(find)
        bottom = QHBoxLayout()
        for w in (self.prev_btn, self.where, self.next_btn):
            bottom.addWidget(w)
        bottom.addStretch(1)
        bottom.addWidget(self.add_btn)
        bottom.addWidget(close)
        for btn in (find, self.prev_btn, self.next_btn, self.add_btn, close):
            btn.setAutoDefault(False)  # Enter in the filter searches; it never presses a button of the dialog
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.table, 1)
        lay.addLayout(bottom)
        self.resize(760, 520)
        self._pages()

    def search(self) -> Reply:
        self.pattern = glob_of(self.filter.text())
        return self.load(0)

    def load(self, offset: int) -> Reply:
        self.offset = max(0, offset)
        self.where.setText(_("searching…"))
        r = self.console.call("GET", "/tags", pattern=self.pattern, limit=self.page, offset=self.offset)
        r.finished.connect(self._page)
        return r

    def _page(self, r: Reply) -> None:
        if not r.ok or not isinstance(r.data, dict):
            self.where.setText(_("search refused: {why}").format(why=r.why()))
            self.table.setRowCount(0)
            self.total = 0
            self._pages()
            return
        rows: list[dict[str, Any]] = list(r.data.get("tags", []))
        self.total = int(r.data.get("total", 0))
        self.table.setRowCount(len(rows))
        for i, t in enumerate(rows):
            # the value with its unit, the quality in words, the equipment with its name and address
            eq = str(t.get("equipment") or "")
            info = self.console.registry.get(eq)
            cells = (str(t.get("name", "")), fmt_value(t.get("value"), str(t.get("units") or ""), enum_of(t)),
                     word(str(t.get("quality") or "")), self.console.registry_named(eq) if eq else "",
                     info.address if info is not None else "")
            for j, text in enumerate(cells):
                self.table.setItem(i, j, QTableWidgetItem(text))
        first = self.offset + 1 if rows else 0
        self.where.setText(_("{first}–{last} of {total}").format(first=first, last=self.offset + len(rows),
                                                                total=self.total) if self.total else
                           _("no tag matches {pattern}").format(pattern=self.pattern))
        self._pages()

    def _pages(self) -> None:
        self.prev_btn.setEnabled(self.offset > 0)
        self.next_btn.setEnabled(self.offset + self.page < self.total)
        self.add_btn.setEnabled(self.table.rowCount() > 0)

    def names(self) -> list[str]:
        """The tags on this page, in order."""
        out = []
        for i in range(self.table.rowCount()):
            item = self.table.item(i, 0)
            if item is not None:
                out.append(item.text())
        return out

    def add_selected(self) -> list[str]:
        rows = sorted({i.row() for i in self.table.selectedIndexes()})
        names = self.names()
        chosen = [names[i] for i in rows if i < len(names)]
        for name in chosen:
            self.tagChosen.emit(name)
        if chosen:
            self.where.setText(_("added {tags}").format(tags=", ".join(chosen[:3]) + (" …" if len(chosen) > 3 else ""))
                               + " · " + _("{first}–{last} of {total}").format(
                                   first=self.offset + 1, last=self.offset + len(names), total=self.total))
        return chosen
