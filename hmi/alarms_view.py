"""The always-visible alarm banner and the alarm list (ISA-18.2 actions with reasons).

    Banner ┌────────────────────────────────────────────────────────────────────────────────────────┐
           │ ■1 crit 2 unack/3 │ ▲2 high 0/1 │ ◆3 … │ ●4 … │ SHV 1 · SUP 0 · OOS 2 │ [Silence] │ newest ■1 ▶ │ ONLINE │
           └────────────────────────────────────────────────────────────────────────────────────────┘
           [Silence] (or F12): the horn (hmi.annunciator) sounds per priority until silenced
    AlarmList: filters (priority, state, area, service, text, hidden lists) · sort · group
               table (priority = colour + shape + number + word) · actions, each disabled with the
               reason in its tooltip (role, priority 1 cannot be shelved, nothing selected...)
               double click / "Open equipment" → the Level-3 display (≤ 2 clicks from any alarm)

Work orders: "Work order" (one click) makes a work order from the alarm, or links the alarm to its equipment's
open one (``POST /workorders/from-alarm``). "Out of service…" needs a work order: it offers the
equipment's open orders and "create one from this alarm", then puts the alarm out of service linked to it:

    GET /workorders?equipment=&open=true ──► choose (an open order | create one) + reason
        ──► [create: POST /workorders/from-alarm] ──► POST /alarms/{id}/out-of-service {work_order}

Keyboard (the list has the focus when the page is shown): Enter opens the selected alarm's equipment,
Space (or A) acknowledges, S shelves (the reason dialog follows), T trends its tag; arrows move.
Each key does exactly what its button does, refused the same way (the button's tooltip says why).
The Age column is live: it is redrawn every second while the list is visible.
The banner never widens the window: the newest priority-1 text is elided to the room it has.
Export CSV / Export PDF / Print take the alarms shown (filters, sort, the console's area): hmi.alarm_export.
"""

from __future__ import annotations

import datetime as dt
import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from PyQt6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, QSize, Qt, QTimer, pyqtSignal
from PyQt6.QtGui import QBrush, QColor, QFont, QKeyEvent, QKeySequence, QResizeEvent, QShortcut
from PyQt6.QtPrintSupport import QPrintDialog, QPrinter
from PyQt6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from hmi import alarm_export, qtstyle, style
from hmi.annunciator import Annunciator
from hmi.bridge import Reply
from hmi.console import ConsoleModel
from hmi.models.alarms import GROUPS, SORTS, STATE_TEXT, Alarm, AlarmFilter, Group, age_text, grouped, select
from hmi.models.journal import local_time, word
from hmi.models.workorders import CREATE_FROM_ALARM, Order, order_id_of
from hmi.qtstyle import hide_row_numbers
from scada.format import timestamp
from scada.i18n import N_, _, localise

Index = QModelIndex | QPersistentModelIndex


# ---------------------------------------------------------------------- banner
class PriorityCell(QFrame):
    def __init__(self, priority: int) -> None:
        super().__init__()
        self.priority = priority
        st = style.PRIORITIES[priority]
        self.icon = QLabel()
        self.text = QLabel()  # never elided (the counts are what the banner is for): on two lines when narrow
        self.text.setWordWrap(True)
        f = QFont()
        f.setBold(True)
        self.text.setFont(f)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(6, 2, 6, 2)
        lay.addWidget(self.icon)
        lay.addWidget(self.text)
        self.setFrameShape(QFrame.Shape.Box)
        self.setToolTip(_("priority {priority} ({label}): unacknowledged / active alarms").format(
            priority=priority, label=_(st.label)))
        self.set(0, 0)

    def set(self, unacked: int, active: int) -> None:
        st = style.PRIORITIES[self.priority]
        head = f"P{self.priority} {_(st.label)}:"
        counts = _("{unacked} unack / {active} active").format(unacked=unacked, active=active)
        self.text.setText(f"{head} {counts}")
        # wrapped, it takes two lines at most: never narrower than its longer half
        fm = self.text.fontMetrics()
        self.text.setMinimumWidth(max(fm.horizontalAdvance(head), fm.horizontalAdvance(counts)) + 4)
        self.icon.setPixmap(qtstyle.priority_pixmap(self.priority, 20, active=bool(unacked or active)))
        # the cell is filled with the priority colour only while that priority has unacknowledged alarms
        if unacked:
            self.setStyleSheet(f"PriorityCell {{ background: {st.colour}; border: 2px solid #000; }} "
                               f"QLabel {{ background: transparent; color: #000; }}")
        else:
            self.setStyleSheet(f"PriorityCell {{ background: {style.PANEL}; border: 1px solid #777; }} "
                               f"QLabel {{ background: transparent; color: {style.TEXT_MUTED}; }}")


def elide_later(widget: QWidget, elide: Callable[[], None]) -> QTimer:
    """A single-shot timer (the widget's child: it dies with it) that elides after the pending relayout."""
    t = QTimer(widget)
    t.setSingleShot(True)
    t.setInterval(0)
    t.timeout.connect(elide)
    return t


class ElidedLabel(QLabel):
    """A one-line label that asks for its full text's width but accepts less: its text is then elided
    (``…``) with the full text in the tooltip. ``text()`` is what is shown; ``full_text`` what was set."""

    def __init__(self, text: str = "", min_width: int = 60) -> None:
        super().__init__()
        self.full_text = ""
        self.min_width = min_width
        self.base_tooltip = ""  # shown under the full text
        self._later = elide_later(self, self._elide)
        self.set_full_text(text)

    def set_full_text(self, text: str) -> None:
        """Show ``text`` now; it is elided once the layout has given the label its new width."""
        self.full_text = text
        self.setToolTip(f"{text}\n{self.base_tooltip}" if self.base_tooltip else text)
        self.setText(text)
        self.updateGeometry()
        self._later.start()

    def sizeHint(self) -> QSize:
        return QSize(self.fontMetrics().horizontalAdvance(self.full_text) + 2 * self.margin() + 8,
                     super().sizeHint().height())

    def minimumSizeHint(self) -> QSize:
        return QSize(min(self.min_width, self.sizeHint().width()), super().minimumSizeHint().height())

    def resizeEvent(self, ev: QResizeEvent | None) -> None:
        super().resizeEvent(ev)
        if not self._later.isActive():  # else a new text waits for its relayout: the timer elides it then
            self._elide()

    def _elide(self) -> None:
        if not self.isVisible():  # not laid out yet: its width means nothing; resizeEvent elides when shown
            return
        room = max(0, self.width() - 2 * self.margin() - 4)
        self.setText(self.fontMetrics().elidedText(self.full_text, Qt.TextElideMode.ElideRight, room))


class ElidedButton(QPushButton):
    """A flat button whose text is elided to its width: a 300-character alarm message never widens the
    window (it asks for at most ``max_width``, accepts 140 px, and takes what is left over); the full text
    is in ``full_text`` and the tooltip."""

    def __init__(self, text: str = "", tooltip: str = "", max_width: int = 640) -> None:
        super().__init__()
        self.full_text = ""
        self.base_tooltip = tooltip
        self.max_width = max_width
        self.setFlat(True)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self._later = elide_later(self, self._elide)
        self.set_full_text(text)

    def _chrome(self) -> int:
        return (self.iconSize().width() + 8 if not self.icon().isNull() else 0) + 24

    def sizeHint(self) -> QSize:
        want = self.fontMetrics().horizontalAdvance(self.full_text) + self._chrome()
        return QSize(min(self.max_width, want), super().sizeHint().height())

    def minimumSizeHint(self) -> QSize:
        return QSize(min(140, self.sizeHint().width()), super().minimumSizeHint().height())

    def set_full_text(self, text: str) -> None:
        self.full_text = text
        self.setToolTip(f"{text}\n{self.base_tooltip}" if self.base_tooltip else text)
        self.setAccessibleDescription(text)
        self.setText(text)
        self.updateGeometry()
        self._later.start()

    def resizeEvent(self, ev: QResizeEvent | None) -> None:
        super().resizeEvent(ev)
        if not self._later.isActive():  # else a new text waits for its relayout: the timer elides it then
            self._elide()

    def _elide(self) -> None:
        if not self.isVisible():  # not laid out yet: its width means nothing; resizeEvent elides when shown
            return
        room = max(0, self.width() - self._chrome())
        self.setText(self.fontMetrics().elidedText(self.full_text, Qt.TextElideMode.ElideRight, room))


class Banner(QFrame):
    """Counts of unacked alarms per priority, shelved, suppressed, out of service; the newest P1; link state."""

    def __init__(self, console: ConsoleModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.console = console
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setFixedHeight(46)
        self.cells = {p: PriorityCell(p) for p in (1, 2, 3, 4)}
        self.hidden = QLabel()  # two short lines: never elided, never wide
        self.hidden.setToolTip(_("alarms kept off the operator's list: shelved (operator), suppressed (by design "
                                 "or by a supervisor), out of service (maintenance work order)"))
        self.newest = ElidedButton(_("no priority-1 alarm"),
                                   _("the newest priority-1 alarm: click to open its equipment"))
        self.newest.setAccessibleName(_("newest priority-1 alarm"))
        self.newest.clicked.connect(self._open_newest)
        self.link = QLabel()
        self.link.setAccessibleName(_("link to the server"))
        f = QFont()
        f.setBold(True)
        self.link.setFont(f)
        self.engine = QLabel()
        self.user = QLabel()  # who is logged in: never elided
        lay = QHBoxLayout(self)
        lay.setContentsMargins(4, 2, 4, 2)
        for c in self.cells.values():
            lay.addWidget(c)
        lay.addWidget(self.hidden)
        lay.addWidget(self.newest)  # no stretch factor: with one, Qt shrinks it first when room is short
        lay.addWidget(self.engine)
        self.link.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Preferred)  # never squeezed out
        lay.addWidget(self.link)
        lay.addWidget(self.user)
        self._newest_eq = ""
        # audible annunciation per priority, repeating until silenced (F12 or the button; hmi.annunciator)
        self.annunciator = Annunciator(console, parent=self)
        self.silence = QPushButton(_("Silence"))  # short: the banner never widens the window (F12 in the tooltip)
        self.silence.setAccessibleName(_("silence the alarm horn"))
        self.silence.clicked.connect(self.annunciator.silence)
        self._silence_key = QShortcut(QKeySequence("F12"), self, context=Qt.ShortcutContext.WindowShortcut)
        self._silence_key.activated.connect(self.annunciator.silence)
        self.annunciator.changed.connect(self._horn)
        lay.insertWidget(lay.indexOf(self.hidden) + 1, self.silence)
        self._horn()
        console.alarmsChanged.connect(self.refresh)
        console.connectionChanged.connect(self.refresh_link)  # (bound methods: dropped with the banner)
        console.sessionChanged.connect(self.refresh_link)
        console.healthChanged.connect(self.refresh_link)
        self.refresh()
        self.refresh_link()

    def refresh(self) -> None:
        b = self.console.alarms.banner()
        for p, cell in self.cells.items():
            cell.set(b.unacked[p], b.active[p])
        self.hidden.setText(_("Shelved {shelved} · Suppressed {suppressed}").format(
            shelved=b.shelved, suppressed=b.suppressed) + "\n" + _(
            "Out of service {out_of_service} · Diagnostic {diagnostic}").format(
            out_of_service=b.out_of_service, diagnostic=b.diagnostic))
        if b.newest_p1 is not None:
            a = b.newest_p1
            self._newest_eq = a.equipment
            self.newest.setIcon(qtstyle.priority_icon(1))
            self.newest.set_full_text(f"{style.PRIORITIES[1].symbol}1 {self.console.registry_named(a.equipment)} — "
                                      f"{a.message}  ▶")
            self.newest.setEnabled(bool(a.equipment))
        else:
            self._newest_eq = ""
            self.newest.setIcon(qtstyle.priority_icon(5))
            self.newest.set_full_text(_("no priority-1 alarm"))
            self.newest.setEnabled(False)

    def _horn(self) -> None:
        a = self.annunciator
        self.silence.setEnabled(a.state == a.SOUNDING)
        self.silence.setToolTip({a.SOUNDING: _("priority {priority} sounding: silence it (F12)"),
                                 a.SILENCED: _("silenced; a new alarm above priority {priority} sounds again"),
                                 a.IDLE: _("nothing unacknowledged")}[a.state].format(priority=a.priority)
                                + ("" if a.enabled else " " + _("(sound off: scada hmi --no-audible)")))

    def refresh_link(self, *_args: object) -> None:
        st = self.console.state
        text = {"online": _("ONLINE"), "reconnecting": _("DATA STALE — reconnecting"), "offline": _("OFFLINE"),
                "connecting": _("CONNECTING — loading the city"),
                "logged_out": _("LOGGED OUT")}.get(st, st.upper())
        self.link.setText(text)
        self.link.setToolTip(self.console.state_detail or text)
        # stale/offline: inverted (white on black) — a state, not an alarm colour
        self.link.setStyleSheet("" if st == "online" else "background: #000; color: #fff; padding: 2px 6px;")
        status, detail = self.console.subsystem("alarms")
        if status in ("ok", "unknown"):
            self.engine.setText("")
            self.engine.setStyleSheet("")
        else:
            self.engine.setText(_("ALARM ENGINE {status}").format(status=status.upper()))
            self.engine.setToolTip(detail or _("the alarm engine is not running: an empty list does not mean "
                                               "all is normal"))
            self.engine.setStyleSheet("background: #000; color: #fff; padding: 2px 6px;")
        s = self.console.session
        self.user.setText(f"{s.user} ({word(s.role)})" if s.logged_in else _("not logged in"))

    def _open_newest(self) -> None:
        if self._newest_eq:
            self.console.openEquipment.emit(self._newest_eq)


# ---------------------------------------------------------------------- the list's model
COLUMNS = (N_("Priority"), N_("State"), N_("Since"), N_("Age"), N_("Equipment"), N_("Commune"), N_("Service"),
           N_("Message"), N_("Flags"))  # English keys (COLUMNS.index("Age")); the header shows _(them)


class AlarmTableModel(QAbstractTableModel):
    """Rows are alarms, or group headers when grouped (lazy: only visible cells are formatted)."""

    def __init__(self, named: Callable[..., str] | None = None) -> None:
        super().__init__()
        self.rows: list[Alarm | Group] = []
        self.now_ms = 0
        # "J001 — Carrefour rue des Écoles / rue des Vignes": the console's registry names the equipment
        self.named: Callable[..., str] = named or (lambda eq_id, address=False: eq_id)

    def set_rows(self, rows: list[Alarm | Group]) -> None:
        self.beginResetModel()
        self.rows = rows
        self.now_ms = time.time_ns() // 1_000_000
        self.endResetModel()

    def tick(self) -> None:
        """Move the Age column to now (only that column is redrawn)."""
        self.now_ms = time.time_ns() // 1_000_000
        if self.rows:
            col = COLUMNS.index("Age")
            self.dataChanged.emit(self.index(0, col), self.index(len(self.rows) - 1, col),
                                  [Qt.ItemDataRole.DisplayRole])

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = 0) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return _(COLUMNS[section])
        return None

    def alarm(self, row: int) -> Alarm | None:
        r = self.rows[row] if 0 <= row < len(self.rows) else None
        return r if isinstance(r, Alarm) else None

    def data(self, index: Index, role: int = 0) -> Any:
        if not index.isValid():
            return None
        r = self.rows[index.row()]
        col = index.column()
        if isinstance(r, Group):
            if role == Qt.ItemDataRole.DisplayRole and col == 0:
                return f"{style.priority_text(r.worst)}"
            if role == Qt.ItemDataRole.DisplayRole and col == 4:
                return _("{group} — {n} alarm(s), {unacked} unacked").format(
                    group=r.key, n=len(r.alarms), unacked=r.unacked)
            if role == Qt.ItemDataRole.FontRole:
                f = QFont()
                f.setBold(True)
                return f
            if role == Qt.ItemDataRole.BackgroundRole:
                return QBrush(QColor(style.PANEL_DARK))
            if role == Qt.ItemDataRole.DecorationRole and col == 0:
                return qtstyle.priority_icon(r.worst)
            return None
        a = r
        if role == Qt.ItemDataRole.DisplayRole:
            t = a.since_ms or a.ts_ms
            return (style.priority_text(a.priority), _(STATE_TEXT[a.state]) if a.state in STATE_TEXT else a.state,
                    local_time(t) if t else "", age_text(t, self.now_ms), self.named(a.equipment), a.commune,
                    style.domain_text(a.service) if a.service else "", a.message, a.flag_text)[col]
        if role == Qt.ItemDataRole.DecorationRole and col == 0:
            return qtstyle.priority_icon(a.priority)
        if role == Qt.ItemDataRole.FontRole and a.unacked:
            f = QFont()
            f.setBold(True)
            return f
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{a.id}\n{self.named(a.equipment, address=True)}\n{a.message}\n" + _("value: {value}").format(
                value=a.value)
        return None


# ---------------------------------------------------------------------- dialogs
class ReasonDialog(QDialog):
    """Asks for the reason (and more) of an alarm action; OK stays disabled until the required fields are filled."""

    def __init__(self, title: str, fields: list[tuple[str, str, bool]], choices: dict[str, list[str]] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.inputs: dict[str, QLineEdit | QComboBox] = {}
        form = QFormLayout(self)
        self.required = [k for k, _, req in fields if req]
        for key, label, req in fields:
            w: QLineEdit | QComboBox
            if choices and key in choices:
                w = QComboBox()
                w.addItems(choices[key])
            else:
                w = QLineEdit()
                w.setPlaceholderText(_("required") if req else _("optional"))
                w.textChanged.connect(self._check)
            self.inputs[key] = w
            form.addRow(label + (" *" if req else ""), w)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        form.addRow(self.buttons)
        self._check()

    def _check(self) -> None:
        ok = all(self.value(k).strip() for k in self.required)
        btn = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        assert btn is not None  # noqa: S101 - the box was built with an Ok button (Qt's stub says Optional)
        btn.setEnabled(ok)
        btn.setToolTip("" if ok else _("fill in the required fields (*)"))

    def value(self, key: str) -> str:
        w = self.inputs[key]
        return w.currentText() if isinstance(w, QComboBox) else w.text()


SHELVE_CHOICES = {N_("15 min"): 900.0, N_("1 h"): 3600.0, N_("4 h"): 14400.0, N_("8 h (end of shift)"): 28800.0,
                  N_("until it returns to normal (one-shot)"): 0.0}  # English keys; the dialog shows _(them)


def shelve_seconds(choice: str) -> float:
    """The shelving time of a duration choice, as shown (in the console's language) or as its English key."""
    for key, seconds in SHELVE_CHOICES.items():
        if choice in (key, _(key)):
            return seconds
    return 3600.0


#: what a role must be allowed to do for each action (a tooltip says it when it may not)
PERMITS = {"ack": N_("acknowledge alarms"), "ack_visible": N_("acknowledge alarms"), "shelve": N_("shelve alarms"),
           "unshelve": N_("unshelve alarms"), "suppress": N_("suppress alarms"), "unsuppress": N_("unsuppress alarms"),
           "oos": N_("take alarms out of service"), "rts": N_("return alarms to service"),
           "reset": N_("reset latched alarms"), "workorder": N_("create work orders")}
#: what a result line calls each action (its key is the button's)
ACTION_NAMES = {"open": N_("open equipment"), "trend": N_("trend"), "ack": N_("acknowledge"),
                "ack_visible": N_("acknowledge all shown"), "shelve": N_("shelve"), "unshelve": N_("unshelve"),
                "suppress": N_("suppress"), "unsuppress": N_("unsuppress"), "oos": N_("out of service"),
                "rts": N_("return to service"), "reset": N_("reset"), "workorder": N_("work order")}


# ---------------------------------------------------------------------- the list
class AlarmTable(QTableView):
    """The alarm table; its keys (see the module docstring) go to the list's actions."""

    KEYS: ClassVar[dict[int, str]] = {
        Qt.Key.Key_Return.value: "open", Qt.Key.Key_Enter.value: "open", Qt.Key.Key_Space.value: "ack",
        Qt.Key.Key_A.value: "ack", Qt.Key.Key_S.value: "shelve", Qt.Key.Key_T.value: "trend"}

    keyAction = pyqtSignal(str)

    def keyPressEvent(self, e: QKeyEvent | None) -> None:
        # the keypad's Enter carries KeypadModifier: it counts as no modifier
        plain = e is not None and not (e.modifiers() & ~Qt.KeyboardModifier.KeypadModifier)
        action = self.KEYS.get(e.key()) if e is not None and plain else None
        if e is None or action is None:
            super().keyPressEvent(e)
            return
        e.accept()
        self.keyAction.emit(action)


class AlarmList(QWidget):
    """The alarm list page. ``dialog_factory`` lets tests answer the reason dialogs."""

    actionDone = pyqtSignal(str, object)  # action, Reply

    def __init__(self, console: ConsoleModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.console = console
        self.filter = AlarmFilter()
        self.sort = "priority"
        self.group = "none"
        self.model = AlarmTableModel(console.registry_named)
        self.table = AlarmTable()
        self.table.setModel(self.model)
        self.table.setAccessibleName(_("alarms"))
        self.table.setAccessibleDescription(_("Enter: open equipment · Space or A: acknowledge · S: shelve · "
                                              "T: trend"))
        self.table.keyAction.connect(self.do)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setAlternatingRowColors(False)
        hide_row_numbers(self.table)
        # every column but the message as wide as its usual content, the message the rest of the width (elided,
        # whole in its tooltip): no sideways scrolling at 1280 px
        px = qtstyle.text_px
        t = self.table
        qtstyle.fit_columns(t, {
            0: px(t, [_(COLUMNS[0]), style.priority_text(1), style.priority_text(4)], pad=40),  # + the icon
            1: px(t, [_(COLUMNS[1]), *(_(s) for s in STATE_TEXT.values())]),
            2: px(t, [_(COLUMNS[2]), "00/00/0000 00:00:00"]), 3: px(t, [_(COLUMNS[3]), "59 min 59 s"]),
            4: px(t, [_(COLUMNS[4]), "C0000 — Armoire EP"]), 5: px(t, [_(COLUMNS[5]), "Saint-Apollinaire"]),
            6: px(t, [_(COLUMNS[6]), style.domain_text("lighting")]), 8: px(t, [_(COLUMNS[8]), _("SHELVED")]),
        }, stretch=7)
        self.table.doubleClicked.connect(self._double)
        sel = self.table.selectionModel()
        assert sel is not None  # noqa: S101 - setModel() above created it (Qt's stub says Optional)
        sel.selectionChanged.connect(lambda *_: self.update_actions())
        self.dialog_answers: dict[str, dict[str, str]] | None = None  # tests: skip the dialogs
        self.oos_choices: list[str] = []  # the work orders "Out of service…" offered last
        self._group_chosen = False
        self._auto = False

        # filters
        self.prio = {p: QCheckBox(f"P{p}") for p in (1, 2, 3, 4)}
        bar = QHBoxLayout()
        for p, cb in self.prio.items():
            cb.setChecked(True)
            cb.setIcon(qtstyle.priority_icon(p))
            cb.toggled.connect(self._filters_changed)
            bar.addWidget(cb)
        self.show_box = QComboBox()
        self.show_box.addItems([_("annunciated"), _("annunciated + hidden"),
                                _("shelved / suppressed / out of service only")])
        self.show_box.currentIndexChanged.connect(self._filters_changed)
        self.state_box = QComboBox()
        self.state_box.addItems([_("all states"), _("unacknowledged"), _("active"), _("returned, unacked")])
        self.state_box.currentIndexChanged.connect(self._filters_changed)
        self.area_box = QComboBox()
        self.area_box.addItem(_("all communes"))
        self.area_box.currentIndexChanged.connect(self._filters_changed)
        self.service_box = QComboBox()
        self.service_box.addItem(_("all services"))
        self.service_box.currentIndexChanged.connect(self._filters_changed)
        self.text_box = QLineEdit()
        self.text_box.setPlaceholderText(_("filter: equipment, text…"))
        self.text_box.textChanged.connect(self._filters_changed)
        self.sort_box = QComboBox()  # the shown text translated, the key in the item's data
        for key in SORTS:
            self.sort_box.addItem(_(key), key)
        self.sort_box.currentIndexChanged.connect(self._sort_changed)
        self.group_box = QComboBox()
        for key in GROUPS:
            self.group_box.addItem(_(key), key)
        self.group_box.currentIndexChanged.connect(self._sort_changed)
        for w in (self.show_box, self.state_box, self.area_box, self.service_box, self.sort_box, self.group_box):
            qtstyle.fit_choices(w, 360 if w is self.show_box else qtstyle.CHOICE_MAX_PX)  # each choice whole
        for w in (self.show_box, self.state_box, self.area_box, self.service_box):
            bar.addWidget(w)
        bar.addStretch(1)
        bar2 = QHBoxLayout()  # whole filter boxes take two rows to fit a 1280-pixel window in French
        bar2.addWidget(self.text_box, 1)
        bar2.addWidget(QLabel(_("sort")))
        bar2.addWidget(self.sort_box)
        bar2.addWidget(QLabel(_("group")))
        bar2.addWidget(self.group_box)

        # actions
        self.buttons: dict[str, QPushButton] = {}
        self.export_buttons: dict[str, QPushButton] = {}
        acts = QHBoxLayout()  # the operator's actions; below, the supervisor's and maintenance's (two rows:
        acts2 = QHBoxLayout()  # the list fits a 1280-pixel window)
        for key, text in (("open", _("Open equipment ▶")), ("ack", _("Acknowledge")),
                          ("ack_visible", _("Ack all shown")), ("shelve", _("Shelve…")), ("unshelve", _("Unshelve")),
                          ("suppress", _("Suppress…")), ("unsuppress", _("Unsuppress")),
                          ("oos", _("Out of service…")), ("rts", _("Return to service")),
                          ("reset", _("Reset (latched)")), ("trend", _("Trend")), ("workorder", _("Work order"))):
            b = QPushButton(text)
            b.setAccessibleName(text.rstrip(" ▶…").lower())
            b.clicked.connect(lambda _=False, k=key: self.do(k))
            self.buttons[key] = b
            (acts if key in ("open", "ack", "ack_visible", "shelve", "unshelve", "trend") else acts2).addWidget(b)
        # print / export what is shown (hmi.alarm_export): CSV safe for spreadsheets, PDF, a printer
        for key, text, slot in (("csv", _("Export CSV…"), self.export_csv), ("pdf", _("Export PDF…"), self.export_pdf),
                                ("print", _("Print…"), self.print_list)):
            b = QPushButton(text)
            b.setAccessibleName(text.rstrip("…").lower())
            b.clicked.connect(lambda _=False, f=slot: f())
            self.export_buttons[key] = b
            acts2.addWidget(b)
        acts.addStretch(1)
        acts2.addStretch(1)
        self.count = ElidedLabel(min_width=80)
        self.flood_label = ElidedLabel(min_width=80)
        acts.addWidget(self.flood_label)
        acts.addWidget(self.count)
        self.result = QLabel()
        self.result.setWordWrap(True)

        lay = QVBoxLayout(self)
        lay.addLayout(bar)
        lay.addLayout(bar2)
        lay.addWidget(self.table, 1)
        lay.addLayout(acts)
        lay.addLayout(acts2)
        lay.addWidget(self.result)
        # focus order: the table first (where the keys act), then the actions, then the filters
        order: list[QWidget] = [self.table, *self.buttons.values(), *self.prio.values(), self.show_box,
                                self.state_box, self.area_box, self.service_box, self.text_box, self.sort_box,
                                self.group_box]
        for first, then in itertools.pairwise(order):
            QWidget.setTabOrder(first, then)
        self.text_box.setAccessibleName(_("filter alarms by text"))

        self._age = QTimer(self)
        self._age.setInterval(1000)
        self._age.timeout.connect(self.model.tick)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(150)  # a flood refreshes the list at most ~7 times a second
        self._timer.timeout.connect(self.refresh)
        console.alarmsChanged.connect(self._timer.start)
        console.sessionChanged.connect(self.update_actions)
        console.equipmentLoaded.connect(self._fill_combos)
        console.healthChanged.connect(self._flood)
        self.refresh()

    def showEvent(self, ev: Any) -> None:
        super().showEvent(ev)
        self.model.tick()
        self._age.start()

    def hideEvent(self, ev: Any) -> None:
        super().hideEvent(ev)
        self._age.stop()

    # ------------------------------------------------------------------ filters
    def _fill_combos(self) -> None:
        self.area_box.blockSignals(True)
        self.area_box.clear()
        self.area_box.addItem(_("all communes"))
        self.area_box.addItems(self.console.registry.communes())
        self.area_box.blockSignals(False)
        services = sorted({a.service for a in self.console.alarms.alarms.values() if a.service} |
                          set(self.console.config_info.get("services", [])))
        self.service_box.blockSignals(True)
        self.service_box.clear()
        self.service_box.addItem(_("all services"))
        for service in services:  # shown in words, filtered by its code
            self.service_box.addItem(style.domain_text(service), service)
        self.service_box.blockSignals(False)

    def _filters_changed(self) -> None:
        show = self.show_box.currentIndex()
        states = {0: frozenset({"unack", "acked", "rtn_unack"}), 1: frozenset({"unack", "rtn_unack"}),
                  2: frozenset({"unack", "acked"}), 3: frozenset({"rtn_unack"})}[self.state_box.currentIndex()]
        self.filter = AlarmFilter(
            priorities=frozenset(p for p, cb in self.prio.items() if cb.isChecked()), states=states,
            area="" if self.area_box.currentIndex() <= 0 else self.area_box.currentText(),
            service="" if self.service_box.currentIndex() <= 0 else str(self.service_box.currentData()),
            text=self.text_box.text().strip(), show_hidden=show >= 1, only_hidden=show == 2)
        self.refresh()

    def _sort_changed(self) -> None:
        self.sort = str(self.sort_box.currentData())
        if self.group != self.group_box.currentData() and not self._auto:
            self._group_chosen = True  # the operator chose: a flood no longer regroups the list
        self.group = str(self.group_box.currentData())
        self.refresh()

    def _flood(self, health: dict[str, Any]) -> None:
        """During an alarm flood (the engine reports the areas) the list groups by equipment by itself,
        priority-1 groups on top, unless the operator chose a grouping."""
        alarms = (health.get("subsystems") or {}).get("alarms") or {}
        areas = list((alarms.get("stats") or {}).get("flood_areas") or [])
        self.flood_label.set_full_text(_("ALARM FLOOD in {areas}: grouped by equipment, priority 1 on top").format(
            areas=", ".join(map(str, areas[:6]))) if areas else "")
        self.flood_label.setStyleSheet("background: #000; color: #fff; padding: 2px 6px;" if areas else "")
        want = "equipment" if areas else "none"
        if not self._group_chosen and self.group != want:
            self._auto = True
            self.group_box.setCurrentIndex(self.group_box.findData(want))
            self._auto = False

    def refresh(self) -> None:
        keep = {a.id for a in self.selected()}
        alarms = select(self.console.alarms, self.filter, self.sort)
        rows: list[Alarm | Group] = []
        if self.group == "none":
            rows = list(alarms)
        else:
            for g in grouped(alarms, self.group):
                rows.append(g)
                rows.extend(g.alarms)
        self.model.set_rows(rows)
        if keep:
            sel = self.table.selectionModel()
            assert sel is not None  # noqa: S101 - the model is set in the constructor (Qt's stub says Optional)
            for r, item in enumerate(rows):
                if isinstance(item, Alarm) and item.id in keep:
                    sel.select(self.model.index(r, 0), sel.SelectionFlag.Select | sel.SelectionFlag.Rows)
        self.count.set_full_text(_("{shown} shown / {stored} in the store").format(
            shown=len(alarms), stored=len(self.console.alarms)))
        self.update_actions()

    # ------------------------------------------------------------------ print / export
    def shown(self) -> list[Alarm]:
        """The alarms the list shows (filters, sort, area), group headers left out; a refresh still waiting
        for its timer is done first (an export is of the alarms now)."""
        if self._timer.isActive():
            self._timer.stop()
            self.refresh()
        return [r for r in self.model.rows if isinstance(r, Alarm)]

    def heading(self) -> str:
        f = self.filter
        parts = [_("area: {area}").format(area=self.console.alarms.area.text),
                 _("priorities {list}").format(list=",".join(str(p) for p in sorted(f.priorities))),
                 self.state_box.currentText(), self.show_box.currentText()]
        parts += [x for x in (f.area, f.service, f'"{f.text}"' if f.text else "") if x]
        return _("Alarm list — {filters}").format(filters=" · ".join(parts))

    def _save_path(self, what: str, suffix: str, path: Path | None) -> Path | None:
        if path is not None:
            return path
        name, _filter = QFileDialog.getSaveFileName(self, _("Export the alarm list ({format})").format(format=what),
                                                    f"alarms-{dt.datetime.now():%Y%m%d-%H%M}{suffix}",
                                                    f"{what} (*{suffix})")
        return Path(name) if name else None

    def export_csv(self, path: Path | None = None) -> Path | None:
        target = self._save_path("CSV", ".csv", path)
        if target is None:
            return None
        alarm_export.write_csv(target, self.shown())
        self.result.setText(self._said(_("exported {n} alarm(s) to {file}").format(n=len(self.shown()), file=target)))
        return target

    def export_pdf(self, path: Path | None = None) -> Path | None:
        target = self._save_path("PDF", ".pdf", path)
        if target is None:
            return None
        alarm_export.write_pdf(target, self.shown(), self.heading())
        self.result.setText(self._said(_("exported {n} alarm(s) to {file}").format(n=len(self.shown()), file=target)))
        return target

    def print_list(self) -> None:
        printer = QPrinter()
        if QPrintDialog(printer, self).exec() == QDialog.DialogCode.Accepted:
            alarm_export.print_list(printer, self.shown(), self.heading())

    # ------------------------------------------------------------------ selection and actions
    def selected(self) -> list[Alarm]:
        sel = self.table.selectionModel()
        if sel is None:
            return []
        out = []
        for idx in sel.selectedRows():
            a = self.model.alarm(idx.row())
            if a is not None:
                out.append(a)
        return out

    def select_ids(self, ids: list[str]) -> None:
        sel = self.table.selectionModel()
        assert sel is not None  # noqa: S101 - the model is set in the constructor (Qt's stub says Optional)
        sel.clearSelection()
        for r, item in enumerate(self.model.rows):
            if isinstance(item, Alarm) and item.id in ids:
                sel.select(self.model.index(r, 0), sel.SelectionFlag.Select | sel.SelectionFlag.Rows)

    def why_disabled(self, key: str) -> str:
        s = self.console.session
        sel = self.selected()
        perm = {"ack": "alarm.ack", "ack_visible": "alarm.ack", "shelve": "alarm.shelve", "unshelve": "alarm.shelve",
                "suppress": "alarm.suppress", "unsuppress": "alarm.suppress", "oos": "alarm.out_of_service",
                "rts": "alarm.out_of_service", "reset": "alarm.reset", "workorder": "workorder.create"}.get(key)
        if perm:
            why = s.why_not(perm, _(PERMITS[key]))
            if why:
                return why
        if key == "ack_visible":
            return "" if any(isinstance(r, Alarm) and r.unacked for r in self.model.rows) else \
                _("no unacknowledged alarm shown")
        if not sel:
            return _("select an alarm first")
        one = len(sel) == 1
        a = sel[0]
        if key in ("open", "trend", "workorder") and not one:
            return "select one alarm"
        if key == "workorder":
            return "" if a.equipment else _("this alarm has no equipment to repair")
        if key == "open":
            return "" if a.equipment else _("this alarm has no equipment")
        if key == "trend":
            return "" if a.tag else _("this alarm has no tag to trend")
        if key == "ack":
            return "" if any(x.unacked for x in sel) else _("the selected alarms are already acknowledged")
        if key in ("shelve", "suppress", "oos", "unshelve", "unsuppress", "rts", "reset") and not one:
            return "select one alarm"
        if key in ("shelve", "suppress") and a.priority == 1:
            return _("priority-1 alarms cannot be shelved or suppressed")
        if key == "shelve" and a.shelved:
            return _("already shelved")
        if key == "unshelve" and not a.shelved:
            return _("this alarm is not shelved")
        if key == "suppress" and a.suppressed:
            return _("already suppressed")
        if key == "unsuppress" and not a.suppressed:
            return _("this alarm is not suppressed")
        if key == "oos" and a.out_of_service:
            return _("already out of service")
        if key == "oos" and not a.equipment:
            return _("out of service needs a work order of the alarm's equipment: this alarm has none")
        if key == "rts" and not a.out_of_service:
            return _("this alarm is in service")
        if key == "reset" and not a.latched:
            return _("only latched alarms need a reset")
        return ""

    KEY_HINT: ClassVar[dict[str, str]] = {"open": N_("Enter"), "ack": N_("Space or A"), "shelve": "S", "trend": "T"}

    def update_actions(self) -> None:
        for key, b in self.buttons.items():
            why = self.why_disabled(key)
            b.setEnabled(not why)
            hint = self.KEY_HINT.get(key)
            b.setToolTip(why or (_("key: {key} in the list").format(key=_(hint)) if hint else ""))

    def _double(self, index: QModelIndex) -> None:
        a = self.model.alarm(index.row())
        if a is not None and a.equipment:
            self.console.openEquipment.emit(a.equipment)

    def _ask(self, key: str, title: str, fields: list[tuple[str, str, bool]],
             choices: dict[str, list[str]] | None = None) -> dict[str, str] | None:
        if self.dialog_answers is not None:
            return self.dialog_answers.get(key)
        d = ReasonDialog(title, fields, choices, self)
        if d.exec() != QDialog.DialogCode.Accepted:
            return None
        return {k: d.value(k) for k, _, _ in fields}

    def do(self, key: str) -> Reply | None:
        why = self.why_disabled(key)
        if why:
            if self.sender() is self.table:  # a key: say why nothing happened (a button is disabled instead)
                self.result.setText(self._said(f"{_(ACTION_NAMES[key])}: {why}"))
            return None
        sel = self.selected()
        c = self.console
        reply: Reply | None = None
        if key == "open":
            c.openEquipment.emit(sel[0].equipment)
        elif key == "trend":
            c.openTrend.emit([sel[0].tag])
        elif key in ("ack", "ack_visible"):
            targets = sel if key == "ack" else [r for r in self.model.rows if isinstance(r, Alarm)]
            ans = self._ask(key, _("Acknowledge"), [("comment", _("Comment"), False)])
            if ans is None:
                return None
            reply = c.ack([a.id for a in targets if a.unacked], ans.get("comment", ""))
        elif key == "shelve":
            ans = self._ask(key, _("Shelve {alarm}").format(alarm=sel[0].id),
                            [("reason", _("Reason"), True), ("duration", _("For"), False)],
                            {"duration": [_(k) for k in SHELVE_CHOICES]})
            if ans is None:
                return None
            dur = shelve_seconds(ans.get("duration", "1 h"))
            reply = c.shelve(sel[0].id, ans["reason"], dur or None, one_shot=not dur)
        elif key == "suppress":
            ans = self._ask(key, _("Suppress {alarm}").format(alarm=sel[0].id), [("reason", _("Reason"), True)])
            if ans is None:
                return None
            reply = c.alarm_action(sel[0].id, "suppress", {"reason": ans["reason"]})
        elif key == "workorder":
            reply = c.order_from_alarm(sel[0].id)
        elif key == "oos":
            # the equipment's open orders first: the operator picks one or has one created from the alarm
            a = sel[0]
            reply = c.open_orders_of(a.equipment)
            reply.then(self, lambda r, alarm=a: self._oos_choose(alarm, r))
            return reply
        else:
            action = {"unshelve": "unshelve", "unsuppress": "unsuppress", "rts": "return-to-service",
                      "reset": "reset"}[key]
            ans = self._ask(key, _(ACTION_NAMES[key]).capitalize(), [("comment", _("Comment"), False)])
            if ans is None:
                return None
            reply = c.alarm_action(sel[0].id, action, {"comment": ans.get("comment", "")})
        if reply is not None:
            reply.then(self, lambda r, k=key: self._done(k, r))
        return reply

    def _oos_choose(self, a: Alarm, r: Reply) -> None:
        """Out of service, step 2: which work order (an open one of the equipment, or a new one)."""
        if not r.ok:
            self._done("oos", r)
            return
        orders = [Order.from_json(d) for d in (r.data or {}).get("orders", [])] if isinstance(r.data, dict) else []
        choices = [o.label() for o in orders if o.open] + [_(CREATE_FROM_ALARM)]
        self.oos_choices = choices
        ans = self._ask("oos", _("Out of service: {alarm}").format(alarm=a.id),
                        [("work_order", _("Work order"), True), ("reason", _("Reason"), False)],
                        {"work_order": choices})
        if ans is None:
            return
        reason = ans.get("reason", "")
        if ans["work_order"] in (CREATE_FROM_ALARM, _(CREATE_FROM_ALARM)):
            made = self.console.order_from_alarm(a.id)
            made.then(self, lambda m: self._oos_put(a, m, reason) if m.ok and isinstance(m.data, dict)
                                  else self._done("oos", m))
        else:
            self._oos_put(a, None, reason, order_id_of(ans["work_order"]))

    def _oos_put(self, a: Alarm, made: Reply | None, reason: str, order_id: str = "") -> None:
        """Out of service, step 3: the alarm out of service, linked to the order (the server links it)."""
        if made is not None:
            order_id = str(made.data["id"])
        reply = self.console.alarm_action(a.id, "out-of-service", {"work_order": order_id, "reason": reason})
        note = " " + _("with work order {order}").format(order=order_id)
        reply.then(self, lambda r: self._done("oos", r, note))

    def _done(self, key: str, r: Reply, note: str = "") -> None:
        if r.ok and key == "workorder" and isinstance(r.data, dict):
            text = _("work order {order} ({status}) for {equipment}: the alarm is linked to it").format(
                order=r.data.get("id"), status=_(str(r.data.get("status", "")).replace("_", " ")),
                equipment=self.console.registry_named(str(r.data.get("equipment", ""))))
        elif r.ok:
            results = (r.data or {}).get("results", []) if isinstance(r.data, dict) else []
            refused = [x for x in results if isinstance(x, dict) and x.get("outcome") not in (None, "done", "ok")]
            text = _("{action}: done").format(action=_(ACTION_NAMES[key])) + (
                " " + _("({n} alarm(s))").format(n=len(results)) if results else "") + note
            if refused:
                text += "; " + _("refused: {reasons}").format(reasons="; ".join(
                    f"{x.get('alarm') or x.get('id', '')}: {localise(str(x.get('reason', '')))}" for x in refused[:5]))
        elif r.status == 404 and r.code == "not_found" and r.error == "Not Found" and "%2F" in r.path:
            # the route did not match: this server cannot take an alarm id containing '/' in a URL path
            text = _("{action}: NOT POSSIBLE — this server cannot address alarm ids containing '/' in {request} "
                     "requests (server API limitation); use acknowledge, or the server's CLI").format(
                action=_(ACTION_NAMES[key]), request=r.path.rsplit("/", 1)[-1])
        else:
            text = _("{action}: REFUSED — {why}").format(action=_(ACTION_NAMES[key]), why=r.why())
        self.result.setText(self._said(text))
        self.actionDone.emit(key, r)

    @staticmethod
    def _said(text: str) -> str:
        """A result line: the time (site zone, like every time on screen) and what happened."""
        return f"{timestamp(time.time_ns(), date=False)} {text}"
