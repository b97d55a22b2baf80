"""Work orders in the console: the live feed, the list with its detail pane, and the map's layer of open orders.

    WorkOrderFeed (one per window) ── pushed, never polled: the console subscribes its alarms channel with
        │ changed()                     "workorders": true; once that subscription's snapshot is there (the
        │                               server sends events from then on) GET /workorders reads the list, and
        │                               each event (created / changed, the whole order) replaces its order by id;
        │                               after any later snapshot (a reconnection, a slow consumer's resync) the
        │                               list is read again; an action's answer is shown at once. Time alone
        │                               makes an order overdue: re-evaluated locally (no request) at its due time
        ├──► WorkOrderList  ┌ status · service · commune · crew · text · sort ────────────────────────┐
        │                   │ table: overdue first (bold, "OVERDUE 12 min"), then the chosen sort      │
        │                   │ detail: the order, its notes, its change history (who, when, what)       │
        │                   │ [Dispatch…] [Cancel…] [Close…] [Open equipment ▶] — each disabled with   │
        │                   │ the reason in its tooltip (role, or a state the server would refuse)    │
        │                   └──────────────────────────────────────────────────────────────────────────┘
        └──► OrderLayer     the overview's "open work orders" layer: a hollow square down-right of each
                            equipment with an open order, grey; in its alarm's priority colour only while
                            the equipment is alarmed (ISA-101: colour means abnormal)

Actions go through the console (:meth:`~hmi.console.ConsoleModel.order_action`); "Dispatch…" opens
:class:`hmi.dispatch.DispatchDialog`. The pure logic (filter, order, permissions, history rows) is
:mod:`hmi.models.workorders`.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, Qt, QTimer, pyqtSignal
from PyQt6.QtGui import QFont
from PyQt6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from hmi import qtstyle, style
from hmi.alarms_view import ElidedLabel, ReasonDialog
from hmi.bridge import Reply
from hmi.console import ConsoleModel
from hmi.dispatch import DispatchDialog
from hmi.models.workorders import (
    SORTS,
    STATUS_CHOICES,
    Order,
    OrderFilter,
    due_text,
    history_rows,
    local_text,
    open_by_equipment,
    select,
    why_not,
    word,
)
from hmi.overview import Overview
from hmi.qtstyle import hide_row_numbers
from scada.format import timestamp
from scada.i18n import N_, _
from scada.workorders.model import WorkOrder

Index = QModelIndex | QPersistentModelIndex
LIMIT = 5000  # orders read at a time (the server answers overdue first, then the newest); the others arrive as events
AGES_MS = 15_000  # the list's "due in 12 min" texts are redrawn this often (a repaint, no request)


# ---------------------------------------------------------------------- the feed
class WorkOrderFeed(QObject):
    """The work orders as the server last told them: the list read once subscribed, then its events by id."""

    changed = pyqtSignal()

    def __init__(self, console: ConsoleModel, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.console = console
        self.orders: dict[str, Order] = {}
        self.raw: dict[str, Mapping[str, Any]] = {}  # each order as the server sent it (the overdue rule reads it)
        self.total = 0
        self.error = ""
        self.loaded = False
        self.reads = 0  # GET /workorders sent (a test checks that events, not reads, bring the new orders)
        self._inflight = False
        self._again = False  # a snapshot came while a read was under way: read once more after it
        self._during: dict[str, Mapping[str, Any]] = {}  # events that arrived while a read was under way
        # no polling: a single-shot timer at the next due time of an open order, to mark it overdue then
        self.due_timer = QTimer(self)
        self.due_timer.setSingleShot(True)
        self.due_timer.timeout.connect(self._due)
        console.workordersChanged.connect(self.apply)
        console.workordersResync.connect(self.refresh)
        console.sessionChanged.connect(self._session)
        self._session()

    def _session(self) -> None:
        # built after the subscription's snapshot (a window made after the login): read now, no snapshot will come
        if self.console.session.can("workorder.read") and self.console.workorder_syncs and not self.loaded:
            self.refresh()

    def refresh(self) -> Reply | None:
        if not self.console.session.can("workorder.read"):
            return None
        if self._inflight:
            self._again = True
            return None
        self._inflight = True
        self._during = {}
        self.reads += 1
        r = self.console.call("GET", "/workorders", limit=LIMIT)
        r.finished.connect(self._on_list)
        return r

    def _on_list(self, r: Reply) -> None:
        self._inflight = False
        if r.ok and isinstance(r.data, dict):
            raw = {str(d["id"]): d for d in r.data.get("orders", [])}
            for oid, d in self._during.items():  # an event newer than the list's answer keeps its word
                if int(d.get("updated_ms", 0)) >= int(raw.get(oid, {}).get("updated_ms", -1)):
                    raw[oid] = d
            self.raw = raw
            self.orders = {oid: Order.from_json(d) for oid, d in raw.items()}
            self.total, self.error, self.loaded = int(r.data.get("total", len(self.orders))), "", True
        else:
            self.error = r.why()
        self._during = {}
        self._due()
        if self._again:
            self._again = False
            self.refresh()

    def apply(self, events: list[dict[str, Any]]) -> None:
        """Orders the server pushed (created or changed: the whole order each), by id."""
        for d in events:
            oid = str(d.get("id", ""))
            if not oid:
                continue
            old = self.raw.get(oid)
            if old is not None and int(old.get("updated_ms", 0)) > int(d.get("updated_ms", 0)):
                continue  # an older state than the one shown (an action's answer came first)
            self.raw[oid] = d
            self.orders[oid] = Order.from_json(d)
            if self._inflight:
                self._during[oid] = d
        self._due()

    def put(self, order_json: dict[str, Any]) -> Order:
        """An order the server just answered (an action): shown at once, before its event."""
        self.apply([order_json])
        return self.orders[str(order_json["id"])]

    def _due(self) -> None:
        """Mark the orders whose due time passed as overdue (the server's own rule on the order it sent), tell
        the views, and set the timer for the next one."""
        now = time.time_ns() // 1_000_000
        for oid, o in list(self.orders.items()):
            if o.open and not o.overdue and o.due_ms <= now and oid in self.raw \
                    and WorkOrder.from_dict(self.raw[oid]).overdue(now):
                self.orders[oid] = replace(o, overdue=True)
        upcoming = [o.due_ms for o in self.orders.values() if o.open and not o.overdue and o.due_ms > now]
        if upcoming:
            self.due_timer.start(int(min(max(min(upcoming) - now + 1, 1), 3_600_000)))
        else:
            self.due_timer.stop()
        self.changed.emit()


# ---------------------------------------------------------------------- the list
COLUMNS = (N_("Order"), "P", N_("Status"), N_("Due"), N_("Equipment"), N_("Commune"), N_("Service"), N_("Crew"),
           N_("What"))  # shown through _()


class OrderTableModel(QAbstractTableModel):
    def __init__(self, named: Callable[..., str] | None = None) -> None:
        super().__init__()
        self.rows: list[Order] = []
        self.now_ms = 0
        # "C0001 — Armoire EP rue …": the console's registry names the equipment
        self.named: Callable[..., str] = named or (lambda eq_id, address=False: eq_id)

    def set_rows(self, rows: list[Order]) -> None:
        self.beginResetModel()
        self.rows = rows
        self.now_ms = time.time_ns() // 1_000_000
        self.endResetModel()

    def tick(self) -> None:
        """Time passed: redraw the due column ("due in 12 min", "OVERDUE 3 min") as of now."""
        self.now_ms = time.time_ns() // 1_000_000
        if self.rows:
            self.dataChanged.emit(self.index(0, 3), self.index(len(self.rows) - 1, 3))

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = 0) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return _(COLUMNS[section]) if COLUMNS[section] != "P" else "P"
        return None

    def data(self, index: Index, role: int = 0) -> Any:
        if not index.isValid():
            return None
        o = self.rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return (o.id, str(o.priority), o.status_text, due_text(o, self.now_ms), self.named(o.equipment),
                    o.commune, style.domain_text(o.service) if o.service else "", o.crew or "",
                    o.what)[index.column()]
        if role == Qt.ItemDataRole.FontRole and o.overdue:
            f = QFont()
            f.setBold(True)  # an SLA breach stands out by weight, not by colour (it is not an alarm itself)
            return f
        if role == Qt.ItemDataRole.ToolTipRole:
            return (f"{o.id}: {o.what}\n{self.named(o.equipment, address=True)}\n"
                    + _("due {time}").format(time=local_text(o.due_ms)) + ("  " + _("(OVERDUE)") if o.overdue else ""))
        return None


ACTION_NAMES = {"dispatch": N_("dispatch"), "cancel": N_("cancel"), "close": N_("close")}  # result lines


class WorkOrderList(QWidget):
    """The work-order page. ``dialog_answers`` lets tests answer the reason dialogs (as the alarm list's)."""

    actionDone = pyqtSignal(str, object)  # action, Reply

    def __init__(self, console: ConsoleModel, feed: WorkOrderFeed, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.console = console
        self.feed = feed
        self.filter = OrderFilter()
        self.sort = "due"
        self.dialog_answers: dict[str, dict[str, str]] | None = None
        self.dispatch_dialog: DispatchDialog | None = None
        self.pending_select = ""  # an order to select once the feed has it (MainWindow.open_work_order)
        self._history_of: tuple[str, int] = ("", 0)  # (order, updated_ms) whose history is shown

        self.status_box = QComboBox()
        self.status_box.addItems([word(s) for s in STATUS_CHOICES])
        self.service_box = QComboBox()
        self.commune_box = QComboBox()
        self.crew_box = QComboBox()
        self.text_box = QLineEdit()
        self.text_box.setPlaceholderText(_("filter: order, equipment, text…"))
        self.text_box.setAccessibleName(_("filter work orders by text"))
        self.sort_box = QComboBox()
        for key in SORTS:  # shown in words, the key in the item's data
            self.sort_box.addItem(word(key), key)
        self._fill_combos()
        bar = QHBoxLayout()
        for label, w in ((_("status"), self.status_box), (_("service"), self.service_box),
                         (_("commune"), self.commune_box), (_("crew"), self.crew_box)):
            bar.addWidget(QLabel(label))
            qtstyle.fit_choices(w)  # whole ("toutes les communes" was cut at 1280 px); the text box gives way
            w.currentIndexChanged.connect(self._filters_changed)
            bar.addWidget(w)
        self.text_box.setMinimumWidth(120)
        bar.addWidget(self.text_box, 1)
        bar.addWidget(QLabel(_("sort")))
        qtstyle.fit_choices(self.sort_box)
        bar.addWidget(self.sort_box)
        self.text_box.textChanged.connect(self._filters_changed)
        self.sort_box.currentTextChanged.connect(self._filters_changed)

        self.model = OrderTableModel(console.registry_named)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setAccessibleName(_("work orders"))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        hide_row_numbers(self.table)
        # every column but "What" as wide as its usual content, "What" the rest: no sideways scrolling at 1280 px
        # (an equipment's long name is elided: whole in the row's tooltip and the detail pane)
        px = qtstyle.text_px
        t = self.table
        qtstyle.fit_columns(t, {
            0: px(t, ["WO-000000", _(COLUMNS[0])]), 1: px(t, ["P", "4"]),
            2: px(t, [_(COLUMNS[2]), *(word(s) for s in STATUS_CHOICES[2:])]),
            3: px(t, [_(COLUMNS[3]), _("OVERDUE {late}").format(late="59 min"),
                      _("due in {left}").format(left="23 h")]),
            4: px(t, [_(COLUMNS[4]), "C0000 — Armoire EP"]), 5: px(t, [_(COLUMNS[5]), "Saint-Apollinaire"]),
            6: px(t, [_(COLUMNS[6]), style.domain_text("lighting")]), 7: px(t, [_(COLUMNS[7]), "lighting-day"]),
        }, stretch=8)
        self.table.doubleClicked.connect(lambda *_: self.do("dispatch"))
        sel = self.table.selectionModel()
        assert sel is not None  # noqa: S101 - setModel() above created it (Qt's stub says Optional)
        sel.selectionChanged.connect(lambda *_: self._selection())

        self.detail = QLabel(_("Select a work order."))
        self.detail.setWordWrap(True)
        self.detail.setTextFormat(Qt.TextFormat.RichText)
        self.detail.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.detail.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)  # long ids never widen
        self.detail.setMinimumWidth(200)
        self.history = QTableWidget(0, 5)
        self.history.setHorizontalHeaderLabels([_("when"), _("who"), _("what"), _("detail"), _("status")])
        self.history.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.history.setAccessibleName(_("change history of the selected work order"))
        hide_row_numbers(self.history)
        hh = self.history.horizontalHeader()
        if hh is not None:
            hh.setStretchLastSection(True)
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addWidget(self.detail)
        rl.addWidget(QLabel("<b>" + _("History") + "</b>"))
        rl.addWidget(self.history, 1)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.table)
        split.addWidget(right)
        split.setStretchFactor(0, 5)  # the table's columns fit beside a detail pane of a third of the page
        split.setStretchFactor(1, 2)

        self.buttons: dict[str, QPushButton] = {}
        acts = QHBoxLayout()
        for key, text in (("dispatch", _("Dispatch…")), ("cancel", _("Cancel order…")), ("close", _("Close…")),
                          ("open", _("Open equipment ▶")), ("refresh", _("Refresh"))):
            b = QPushButton(text)
            b.setAccessibleName(text.rstrip(" ▶…").lower())
            b.clicked.connect(lambda _=False, k=key: self.do(k))
            self.buttons[key] = b
            acts.addWidget(b)
        acts.addStretch(1)
        self.count = ElidedLabel(min_width=80)  # a changing text never changes the window's minimum size
        acts.addWidget(self.count)
        self.result = QLabel()
        self.result.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.addLayout(bar)
        lay.addWidget(split, 1)
        lay.addLayout(acts)
        lay.addWidget(self.result)

        feed.changed.connect(self.refresh)
        self.ages = QTimer(self)
        self.ages.setInterval(AGES_MS)
        self.ages.timeout.connect(self.model.tick)
        self.ages.start()
        console.sessionChanged.connect(self.update_actions)
        console.equipmentLoaded.connect(self._fill_combos)
        self.refresh()

    # ------------------------------------------------------------------ filters
    def _fill_combos(self) -> None:
        orders = self.feed.orders.values()
        services = sorted(set(self.console.config_info.get("services", [])) | {o.service for o in orders})
        communes = sorted(set(self.console.registry.communes()) | {o.commune for o in orders})
        crews = sorted({o.crew for o in self.feed.orders.values() if o.crew})
        # each item: shown text, and the value the filter takes in its data (a service reads in words)
        for box, first, items, text in ((self.service_box, [_("all services")], services, style.domain_text),
                                        (self.commune_box, [_("all communes")], communes, str),
                                        (self.crew_box, [_("any crew"), _("(none)")], crews, str)):
            keep = box.currentData()
            box.blockSignals(True)
            box.clear()
            for k, label in enumerate(first):
                box.addItem(label, "(none)" if k else "")
            for i in items:
                if i:
                    box.addItem(text(i), i)
            box.setCurrentIndex(max(0, box.findData(keep)))
            box.blockSignals(False)

    def _filters_changed(self) -> None:
        def pick(box: QComboBox, skip: int) -> str:
            return "" if box.currentIndex() < skip else str(box.currentData() or "")

        self.filter = OrderFilter(status=STATUS_CHOICES[max(0, self.status_box.currentIndex())],
                                  service=pick(self.service_box, 1), commune=pick(self.commune_box, 1),
                                  crew=pick(self.crew_box, 1), text=self.text_box.text().strip())
        self.sort = str(self.sort_box.currentData() or "due")
        self.refresh()

    # ------------------------------------------------------------------ rows, selection, detail
    def refresh(self) -> None:
        keep = self.selected()
        # a service, commune or crew the combos do not offer yet (a new crew at work, the config arrived)
        for box, values in ((self.service_box, {o.service for o in self.feed.orders.values()}),
                            (self.commune_box, {o.commune for o in self.feed.orders.values()}),
                            (self.crew_box, {o.crew for o in self.feed.orders.values()})):
            if {v for v in values if v} - {box.itemData(i) for i in range(box.count())}:
                self._fill_combos()
                break
        rows = select(self.feed.orders.values(), self.filter, self.sort)
        self.model.set_rows(rows)
        if self.pending_select and self.select_order(self.pending_select):
            self.pending_select = ""
        elif keep is not None:
            self.select_order(keep.id)
        overdue = sum(1 for o in rows if o.overdue)
        err = " — " + _("NOT UPDATED: {why}").format(why=self.feed.error) if self.feed.error else ""
        self.count.set_full_text(_("{shown} shown ({overdue} overdue) / {loaded} loaded").format(
            shown=len(rows), overdue=overdue, loaded=len(self.feed.orders)) + err)
        self._selection()

    def selected(self) -> Order | None:
        sel = self.table.selectionModel()
        rows = sel.selectedRows() if sel is not None else []
        return self.model.rows[rows[0].row()] if rows and rows[0].row() < len(self.model.rows) else None

    def select_order(self, order_id: str) -> bool:
        for r, o in enumerate(self.model.rows):
            if o.id == order_id:
                self.table.selectRow(r)
                return True
        return False

    def _selection(self) -> None:
        o = self.selected()
        self.update_actions()
        if o is None:
            self.detail.setText(_("Select a work order."))
            self.history.setRowCount(0)
            self._history_of = ("", 0)
            return
        notes = "".join(f"<br>· {local_text(ts)} {user}: {text}" for ts, user, text in o.notes)
        extra = "".join(f"<br>{k}: {html.escape(str(v))}" for k, v in (
            (_("reason"), o.reason), (_("cause"), o.cause), (_("action"), o.action)) if v)
        self.detail.setText(
            f"<b>{o.id}</b> — P{o.priority} · <b>{o.status_text}</b>"
            + (" · <b>" + _("OVERDUE") + "</b>" if o.overdue else "")
            + "<br>" + html.escape(" · ".join(x for x in (self.console.registry_named(o.equipment, address=True),
                                                           o.commune, style.domain_text(o.service)) if x))
            + f"<br>{html.escape(o.what)}"
            + "<br>" + _("created {time} ({source}) · due {due}").format(
                time=local_text(o.created_ms), source=word(o.source), due=local_text(o.due_ms))
            + ("<br>" + _("crew {crew}").format(crew=o.crew)
               + (" · " + _("vehicle {vehicle}").format(vehicle=o.vehicle) if o.vehicle else "") if o.crew else "")
            + ("<br>" + _("alarms: {alarms}").format(
                alarms=html.escape(" · ".join(self._alarm_text(a) for a in o.alarms))) if o.alarms else "")
            + extra + notes)
        self.detail.setToolTip("\n".join(o.alarms))  # the alarms' ids, for whoever needs them
        if self._history_of != (o.id, o.updated_ms):
            self._history_of = (o.id, o.updated_ms)
            r = self.console.call("GET", f"/workorders/{quote(o.id, safe='')}/history")
            r.then(self, lambda r, oid=o.id: self._on_history(oid, r))

    def _alarm_text(self, alarm_id: str) -> str:
        """An order's alarm by its message and priority (hmi.models.alarms), not its id."""
        return self.console.alarms.describe(alarm_id, self.console.registry_named)

    def _on_history(self, order_id: str, r: Reply) -> None:
        if self._history_of[0] != order_id:
            return  # another order was selected meanwhile
        rows = history_rows(r.data, self._alarm_text) if r.ok and isinstance(r.data, list) else \
            [("", "", _("cannot load the history"), r.why(), "")]
        self.history.setRowCount(len(rows))
        for i, row in enumerate(rows):
            for j, text in enumerate(row):
                self.history.setItem(i, j, QTableWidgetItem(text))

    # ------------------------------------------------------------------ actions
    def why_disabled(self, key: str) -> str:
        o = self.selected()
        perms = self.console.session.permissions
        if key == "refresh":
            return "" if self.console.session.can("workorder.read") else _("log in to read work orders")
        if key == "open":
            return "" if o is not None else _("select a work order first")
        return why_not({"dispatch": "assign"}.get(key, key), o, perms)

    def update_actions(self) -> None:
        for key, b in self.buttons.items():
            why = self.why_disabled(key)
            b.setEnabled(not why)
            b.setToolTip(why)

    def _ask(self, key: str, title: str, fields: list[tuple[str, str, bool]]) -> dict[str, str] | None:
        if self.dialog_answers is not None:
            return self.dialog_answers.get(key)
        d = ReasonDialog(title, fields, None, self)
        if d.exec() != QDialog.DialogCode.Accepted:
            return None
        return {k: d.value(k) for k, _, _ in fields}

    def do(self, key: str) -> Reply | DispatchDialog | None:
        why = self.why_disabled(key)
        o = self.selected()
        if why or (o is None and key != "refresh"):
            return None
        if key == "refresh":
            return self.feed.refresh()
        assert o is not None  # noqa: S101 - checked above
        if key == "open":
            self.console.openEquipment.emit(o.equipment)
            return None
        if key == "dispatch":
            d = DispatchDialog(self.console, o, self)
            d.assigned.connect(lambda data: self._acted("dispatch", data))
            self.dispatch_dialog = d
            d.open()
            return d
        if key == "cancel":
            ans = self._ask(key, _("Cancel {order}").format(order=o.id), [("reason", _("Reason"), True)])
            body = {"reason": ans["reason"]} if ans else None
        else:  # close (supervisors)
            ans = self._ask(key, _("Close {order}").format(order=o.id), [
                ("cause", _("Cause"), True), ("action", _("Action taken"), True), ("note", _("Note"), False)])
            body = {"cause": ans["cause"], "action": ans["action"]} if ans else None
            if ans and ans.get("note"):
                body = {**(body or {}), "note": ans["note"]}
        if body is None:
            return None
        r = self.console.order_action(o.id, key, body)
        r.then(self, lambda r, k=key: self._done(k, r))
        return r

    def _acted(self, key: str, data: dict[str, Any]) -> None:
        o = self.feed.put(data)
        self.result.setText(f"{timestamp(time.time_ns(), date=False)} {_(ACTION_NAMES[key])}: {o.id} {o.status_text}"
                            + (f" — {o.crew}" if o.crew else ""))

    def _done(self, key: str, r: Reply) -> None:
        if r.ok and isinstance(r.data, dict):
            self._acted(key, r.data)
        else:
            self.result.setText(f"{timestamp(time.time_ns(), date=False)} " + _("{action}: REFUSED — {why}").format(
                action=_(ACTION_NAMES[key]), why=r.why()))
        self.actionDone.emit(key, r)


# ---------------------------------------------------------------------- the map layer
class OrderLayer(QObject):
    """The overview's layer of open work orders (see the module docstring)."""

    def __init__(self, overview: Overview, feed: WorkOrderFeed) -> None:
        super().__init__(overview)
        self.overview = overview
        self.feed = feed
        self.item = pg.ScatterPlotItem(pxMode=True)
        self.item.setZValue(6.5)  # above the equipment, under the alarm marks
        overview.vb.addItem(self.item)
        self.box = QCheckBox(_("open work orders"))
        self.box.setChecked(True)
        self.box.setAccessibleName(_("map layer open work orders"))
        self.box.setToolTip(_("a square beside each equipment with an open work order; coloured only while the "
                              "equipment is alarmed"))
        overview.extra_layers.addWidget(self.box)
        self.marked: list[str] = []  # the equipment drawn, in spot order (tests read it)
        self.alarmed: list[str] = []
        self.box.toggled.connect(self.draw)
        feed.changed.connect(self.draw)
        overview.console.alarmsChanged.connect(self.draw)
        overview.console.equipmentLoaded.connect(self.draw)
        overview.vb.sigRangeChanged.connect(self._offset)
        self.draw()

    def draw(self) -> None:
        m = self.overview.console.map
        eqs = [e for e in sorted(open_by_equipment(self.feed.orders.values())) if e in m.index] \
            if self.box.isChecked() else []
        self.marked = eqs
        if not eqs:
            self.alarmed = []
            self.item.setData([])
            return
        idx = np.array([m.index[e] for e in eqs], dtype=np.int64)
        levels = m.eq_alarm[idx].astype(int).tolist()
        self.alarmed = [e for e, lv in zip(eqs, levels, strict=True) if lv > 0]
        # ISA-101: grey and hollow while normal; the alarm's priority colour only while it is alarmed
        brushes = [qtstyle.brush(style.ALARM_COLOURS[lv]) if lv in style.ALARM_COLOURS else None for lv in levels]
        self.item.setData(x=m.eq_x[idx], y=m.eq_y[idx], size=9, symbol="s", brush=brushes,
                          pen=[qtstyle.pen(style.TEXT, 1.5)] * idx.size, data=eqs)
        self._offset()

    def _offset(self, *_: Any) -> None:
        # down-right of its equipment, a fixed number of pixels whatever the zoom (alarm marks sit up-right)
        px = self.overview.vb.viewPixelSize()
        self.item.setPos(px[0] * 10, -px[1] * 10)


__all__ = ["OrderLayer", "WorkOrderFeed", "WorkOrderList"]
