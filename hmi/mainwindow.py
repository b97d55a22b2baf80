"""The operator console window: banner always on top, navigation, the displays.

    ┌ Banner: P1..P4 unack/active · shelved · suppressed · OOS · newest P1 ▶ · ONLINE/STALE · user ┐
    ├ [Overview L1] [Traffic] [Lighting] [Buildings] [Cameras] [Parking] [Bollards] [Panels] [Vehicles]  [⧉ Detach] ┤
    │ [Alarms] [Work orders] [Journal] [Trends] [Approvals] [Crisis] [Diagnostics L4]  [Change password] [Log out] │
    ├──────────────────────────────────────────────────────────────────────────────────────────────┤
    │ QStackedWidget: one page per display; "equipment" = the current Level-3 display              │
    └ status bar: last message ──────────────────────────────────── [Area: Dijon, Talant · lighting] ┘

"Detach" moves the current display into its own window (a second screen: :mod:`hmi.detach`), back when
that window closes; the area of responsibility (:mod:`hmi.area`) is always shown in the status bar.

Navigation: any alarm → its equipment in ≤ 2 clicks (select + "Open equipment", or double click;
the banner's newest P1 in one click); a map marker → double click.

No dead ends: "Log out" (or the server ending the session: expiry, idle, password or role changed)
brings the login dialog over the window (switch user); its "Close console" is the only way out
besides closing the window, which asks first when ``confirm_close`` (``scada hmi`` sets it: the
server goes on supervising and journalling, a closed console is a deliberate act). The window never
grows past its size: long texts are elided (banner); the display buttons, in two rows, all fit a
1280-pixel screen in French and scroll sideways when narrower, so the link indicator (banner) and
"Log out" stay visible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PyQt6.QtCore import QByteArray, Qt
from PyQt6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QStackedWidget,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from hmi import style
from hmi.alarms_view import AlarmList, Banner
from hmi.area import AreaIndicator, AreaSettings
from hmi.area_views import CorridorView, EquipmentTable, VehiclesView
from hmi.bridge import Reply
from hmi.commands_view import ApprovalInbox, CrisisPanel
from hmi.console import ConsoleModel
from hmi.detach import Detacher
from hmi.diagnostics import Diagnostics
from hmi.equipment_views import EquipmentDisplay
from hmi.journal_view import JournalView
from hmi.language import use_qt_translations
from hmi.overview import Overview
from hmi.startup_banner import StartupBanner
from hmi.trends_view import TrendView
from hmi.workorders_view import OrderLayer, WorkOrderFeed, WorkOrderList
from scada.format import zone_label
from scada.i18n import N_, _


class LoginDialog(QDialog):
    """User + password; the server's refusal (wrong password, lock-out with its delay) is shown as is."""

    def __init__(self, console: ConsoleModel, user: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.console = console
        self.setWindowTitle(_("Log in — city supervisory console"))
        self.user = QLineEdit(user)
        self.password = QLineEdit()
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.error = QLabel()
        self.error.setWordWrap(True)
        server = QLabel(console.bridge.url if console.bridge else _("(no server)"))
        form = QFormLayout(self)
        form.addRow(_("server"), server)
        form.addRow(_("user"), self.user)
        form.addRow(_("password"), self.password)
        form.addRow(self.error)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        assert ok is not None  # noqa: S101 - the box was built with an Ok button (Qt's stub says Optional)
        ok.setText(_("Log in"))
        self.buttons.accepted.connect(self.submit)
        self.buttons.rejected.connect(self.reject)
        form.addRow(self.buttons)
        if user:
            self.password.setFocus()

    def submit(self) -> Reply | None:
        if not self.user.text().strip() or not self.password.text():
            self.error.setText(_("enter a user name and a password"))
            return None
        self.error.setText(_("logging in…"))
        self.buttons.setEnabled(False)
        r = self.console.login(self.user.text().strip(), self.password.text())
        r.finished.connect(self._answer)
        return r

    def _answer(self, r: Reply) -> None:
        self.buttons.setEnabled(True)
        if r.ok and isinstance(r.data, dict) and r.data.get("must_change_password"):
            # the password was set under an older policy: nothing opens until it is changed
            old = self.password.text()
            self.password.clear()
            change = PasswordDialog(self.console, self, required=True)
            change.current.setText(old)
            if change.exec() == QDialog.DialogCode.Accepted:
                self.accept()
            else:
                self.error.setText(_("the password must be changed before the console opens"))
        elif r.ok:
            self.password.clear()
            self.accept()
        else:
            self.error.setText(_("refused: {why}").format(why=r.why()))


class PasswordDialog(QDialog):
    """Change one's own password (``POST /api/v1/auth/password``): the server's policy refusals are shown as
    they come (at least 15 characters, not a common password, not the user name); the user's other
    sessions end, this console's goes on."""

    def __init__(self, console: ConsoleModel, parent: QWidget | None = None, required: bool = False) -> None:
        super().__init__(parent)
        self.console = console
        self.setWindowTitle(_("Change password"))
        self.current, self.new, self.again = QLineEdit(), QLineEdit(), QLineEdit()
        for field in (self.current, self.new, self.again):
            field.setEchoMode(QLineEdit.EchoMode.Password)
        self.error = QLabel(_("Your password was set under an older policy: choose a new one.") if required else "")
        self.error.setWordWrap(True)
        form = QFormLayout(self)
        form.addRow(QLabel(_("A few unrelated words make a good password (at least 15 characters).")))
        form.addRow(_("current password"), self.current)
        form.addRow(_("new password"), self.new)
        form.addRow(_("new password again"), self.again)
        form.addRow(self.error)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.submit)
        self.buttons.rejected.connect(self.reject)
        form.addRow(self.buttons)

    def submit(self) -> Reply | None:
        if self.new.text() != self.again.text():
            self.error.setText(_("the two new passwords differ"))
            return None
        if not self.current.text() or not self.new.text() or self.console.bridge is None:
            self.error.setText(_("enter the current password and a new one"))
            return None
        self.error.setText(_("changing…"))
        self.buttons.setEnabled(False)
        r = self.console.bridge.change_password(self.current.text(), self.new.text())
        r.finished.connect(self._answer)
        return r

    def _answer(self, r: Reply) -> None:
        self.buttons.setEnabled(True)
        if r.ok:
            for field in (self.current, self.new, self.again):
                field.clear()
            self.console.message.emit(_("password changed; your other sessions were ended"))
            self.accept()
        else:
            self.error.setText(_("refused: {why}").format(why=r.why()))


NAV = (("overview", N_("Overview (L1)")), ("traffic", N_("Traffic")), ("lighting", N_("Lighting")),
       ("buildings", N_("Buildings")), ("cameras", N_("Cameras")), ("parking", N_("Parking")),
       ("bollards", N_("Bollards")), ("panels", N_("Panels")), ("vehicles", N_("Vehicles")), ("alarms", N_("Alarms")),
       ("workorders", N_("Work orders")), ("journal", N_("Journal")), ("trends", N_("Trends")),
       ("approvals", N_("Approvals")), ("crisis", N_("Crisis plans")), ("diagnostics", N_("Diagnostics (L4)")))
#: the first row of display buttons: the map and the domains (the second: the lists and tools)
NAV_FIRST_ROW = 9
#: the link states the status bar names (the banner shows its own, shorter)
STATES = {"online": N_("online"), "offline": N_("offline"), "connecting": N_("connecting"),
          "reconnecting": N_("reconnecting"), "logged_out": N_("logged out")}


@dataclass(frozen=True, slots=True)
class ViewState:
    """What a window shows, carried into the window built in its place (:meth:`MainWindow.view_state`)."""

    page: str
    equipment: str  # the open Level-3 display's equipment ("": none)
    trend_tags: tuple[str, ...]
    geometry: bytes  # QWidget.saveGeometry
    visible: bool
    confirm_close: bool


class MainWindow(QMainWindow):
    def __init__(self, console: ConsoleModel, area_settings: AreaSettings | None = None) -> None:
        super().__init__()
        use_qt_translations()  # Qt's own buttons and dialogs (OK, Cancel, Yes, file dialogs) in our language
        self.console = console
        self.setWindowTitle(_("City supervisory console"))
        self.setStyleSheet(style.stylesheet())
        self.banner = Banner(console)
        self.stack = QStackedWidget()
        self.pages: dict[str, QWidget] = {}
        self.overview = Overview(console)
        self.alarm_list = AlarmList(console)
        self.workorder_feed = WorkOrderFeed(console, self)  # pushed (WebSocket): the list and the map's layer share it
        self.workorders = WorkOrderList(console, self.workorder_feed)
        self.order_layer = OrderLayer(self.overview, self.workorder_feed)
        self.journal = JournalView(console)
        self.trends = TrendView(console)
        self.approvals = ApprovalInbox(console)
        self.crisis = CrisisPanel(console)
        self.diagnostics = Diagnostics(console)
        self.corridors = CorridorView(console)
        self.pages.update(overview=self.overview, traffic=self.corridors, alarms=self.alarm_list,
                          workorders=self.workorders,
                          journal=self.journal, trends=self.trends, approvals=self.approvals, crisis=self.crisis,
                          diagnostics=self.diagnostics)
        lay = console.layouts
        for key in ("lighting", "buildings", "cameras", "parking", "bollards", "panels", "vehicles"):
            spec = lay.view(key)
            if spec is None:
                self.pages[key] = QLabel(_("no '{view}' view in {file}").format(view=key, file=lay.file))
            elif key == "vehicles":
                self.pages[key] = VehiclesView(console, spec)
            else:
                self.pages[key] = EquipmentTable(console, spec)
        for w in self.pages.values():
            self.stack.addWidget(w)
        self.equipment: EquipmentDisplay | None = None
        self.nav_buttons: dict[str, QPushButton] = {}
        # the display buttons in two rows (the map and the domains; then the lists and tools), so that all of
        # them fit a 1280-pixel screen in French; narrower still, they scroll sideways: they never widen the
        # window, and the session buttons on the right stay visible
        strip = QWidget()
        strip_lay = QVBoxLayout(strip)
        strip_lay.setContentsMargins(0, 0, 0, 0)
        strip_lay.setSpacing(2)
        rows = (QHBoxLayout(), QHBoxLayout())
        for n, (key, text) in enumerate(NAV):
            b = QPushButton(_(text))
            b.setCheckable(True)
            b.setAccessibleName(_("show the {display} display").format(display=_(text)))
            b.clicked.connect(lambda _=False, k=key: self.show_page(k))
            self.nav_buttons[key] = b
            rows[n >= NAV_FIRST_ROW].addWidget(b)
        for row in rows:
            row.setSpacing(2)
            row.addStretch(1)
            strip_lay.addLayout(row)
        self.nav_scroll = QScrollArea()
        self.nav_scroll.setWidget(strip)
        self.nav_scroll.setWidgetResizable(True)
        self.nav_scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.nav_scroll.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.nav_scroll.setFixedHeight(strip.sizeHint().height() + 14)  # room for the sideways scroll bar
        self.nav_scroll.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.nav_scroll.setAccessibleName(_("displays"))
        nav = QHBoxLayout()
        nav.setSpacing(2)
        nav.addWidget(self.nav_scroll, 1)
        session = QVBoxLayout()  # beside the two rows: [Detach] above [Change password] [Log out]
        session.setSpacing(2)
        session_rows = (QHBoxLayout(), QHBoxLayout())
        for row in session_rows:
            row.setSpacing(2)
            row.addStretch(1)
            session.addLayout(row)
        nav.addLayout(session)
        self.detacher = Detacher(self.stack, style.stylesheet())
        # Qt's own "restore window" icon rather than a symbol in the text: the ⧉ it had is in no font the
        # console ships with (DejaVu), so it drew an empty box
        self.detach_btn = QPushButton(_("Detach"))
        qstyle = self.style()
        if qstyle is not None:  # a widget always has a style (the stubs say Optional)
            self.detach_btn.setIcon(qstyle.standardIcon(QStyle.StandardPixmap.SP_TitleBarNormalButton))
        self.detach_btn.setAccessibleName(_("detach the current display into its own window"))
        self.detach_btn.setToolTip(_("show the current display in its own window (a second screen); closing that "
                                     "window brings it back"))
        self.detach_btn.clicked.connect(self.detach_current)
        session_rows[0].addWidget(self.detach_btn)
        self.password_btn = QPushButton(_("Change password"))
        self.password_btn.setAccessibleName(_("change my password"))
        self.password_btn.clicked.connect(self.change_password)
        session_rows[1].addWidget(self.password_btn)
        self.logout_btn = QPushButton(_("Log out"))
        self.logout_btn.setAccessibleName(_("log out (switch user)"))
        self.logout_btn.clicked.connect(self.logout)
        session_rows[1].addWidget(self.logout_btn)
        self.confirm_close = False  # scada hmi: closing the window asks first
        self.login_dialog: LoginDialog | None = None
        self.banner.setAccessibleName(_("alarm banner"))
        self.stack.setAccessibleName(_("current display"))
        self.overview.setAccessibleName(_("city map (level 1)"))
        self.alarm_list.setAccessibleName(_("alarm list"))
        self.trends.setAccessibleName(_("trends"))
        self.journal.setAccessibleName(_("alarm journal"))
        central = QWidget()
        v = QVBoxLayout(central)
        v.setContentsMargins(4, 4, 4, 4)
        v.addWidget(self.banner)
        v.addWidget(StartupBanner(console))  # "starting: n/N devices read" while the city's first reads go on
        v.addLayout(nav)
        v.addWidget(self.stack, 1)
        self.setCentralWidget(central)
        self.status = self.statusBar()
        self.area = AreaIndicator(console, area_settings)
        # one clock, named once: every time on screen is in the site's zone (scada.format; GET /config sets it)
        self.clock = QLabel()
        self.clock.setObjectName("clock")
        self.clock.setAccessibleName(_("time zone of the times shown"))
        self._show_zone()
        console.siteChanged.connect(self._show_zone)
        if self.status is not None:
            self.status.addPermanentWidget(self.clock)
            self.status.addPermanentWidget(self.area)
        # bound methods only on the console's signals: a window rebuilt in another language (hmi.window_host)
        # leaves none behind
        console.message.connect(self._message)
        console.openEquipment.connect(self.open_equipment)
        console.openTrend.connect(self.open_trend)
        console.openWorkOrder.connect(self.open_work_order)
        console.connectionChanged.connect(self._connection)
        console.sessionEnded.connect(self.ask_login)
        if lay.file and console.layout_problems:
            console.message.emit(_("layouts: {n} problem(s): {problems}").format(
                n=len(console.layout_problems), problems="; ".join(str(p) for p in console.layout_problems[:3])))
        self.show_page("overview")
        self.resize(1600, 960)
        if console.session.logged_in:  # built after the login (scada hmi: in the server's language): catch up
            console.replay()

    def _show_zone(self) -> None:
        self.clock.setText(zone_label())

    def _message(self, text: str) -> None:
        if self.status is not None:
            self.status.showMessage(text, 15000)

    def show_page(self, key: str) -> QWidget:
        w = self.pages[key] if key != "equipment" else self.equipment
        if w is None:  # the equipment page exists once an equipment was opened
            raise ValueError(f"no {key!r} page to show yet")
        self.stack.setCurrentWidget(self.detacher.slot_of(w))
        self.detacher.raise_window(w)  # a detached display: its window comes to the front
        for k, b in self.nav_buttons.items():
            b.setChecked(k == key)
        self.current = key
        if key == "alarms":  # the keyboard acts on the list at once (Space ack, S shelve, Enter open)
            self.alarm_list.table.setFocus()
        return w

    def open_equipment(self, eq_id: str) -> EquipmentDisplay:
        if self.equipment is not None:
            self.stack.removeWidget(self.equipment)
            self.equipment.hide()
            self.equipment.deleteLater()
        self.equipment = EquipmentDisplay(self.console, eq_id)
        self.equipment.diagnostics.connect(self.open_diagnostics)
        self.stack.addWidget(self.equipment)
        self.show_page("equipment")
        self.overview.select(eq_id) if eq_id in self.console.map.index else None
        return self.equipment

    def view_state(self) -> ViewState:
        """What the operator has open, for a window built again (hmi.window_host)."""
        return ViewState(page=getattr(self, "current", "overview"),
                         equipment=self.equipment.eq.id if self.equipment is not None else "",
                         trend_tags=tuple(self.trends.curves), geometry=bytes(self.saveGeometry().data()),
                         visible=self.isVisible(), confirm_close=self.confirm_close)

    def restore_view(self, state: ViewState) -> None:
        """Open what ``state`` had open: its page, its equipment display, its trended tags, its place on screen."""
        self.restoreGeometry(QByteArray(state.geometry))
        self.confirm_close = state.confirm_close
        if state.trend_tags:
            self.trends.set_tags(list(state.trend_tags))
        if state.equipment and self.console.registry.get(state.equipment) is not None:
            self.open_equipment(state.equipment)
        if state.page in self.pages or (state.page == "equipment" and self.equipment is not None):
            self.show_page(state.page)

    def retire(self) -> None:
        """This window is replaced (hmi.window_host): its detached displays come back, it hides without asking (its
        displays let go of their subscriptions), the horn goes quiet, and it is deleted at the next turn of the loop."""
        self.confirm_close = False
        self.detacher.close_all()
        self.banner.annunciator.sounder.stop()
        self.hide()
        self.deleteLater()

    def detach_current(self) -> QWidget | None:
        """The current display into its own window; the equipment display is handed over for good (the next
        one opens here), every other display comes back to its place when its window closes."""
        key = getattr(self, "current", "")
        w = self.pages.get(key) if key != "equipment" else self.equipment
        if w is None or self.detacher.is_detached(w):
            return None
        title = _(dict(NAV)[key]) if key in dict(NAV) else key
        if key == "equipment" and self.equipment is not None:
            title = _("Equipment {id}").format(id=self.equipment.eq.id)
            self.equipment = None
            self.detacher.detach(w, title, keep_slot=False)
            self.show_page("overview")
        else:
            self.detacher.detach(w, title)
        return w

    def open_work_order(self, order_id: str) -> WorkOrderList:
        """The work-order list with ``order_id`` selected (at the next answer of the feed if not there yet)."""
        self.show_page("workorders")
        if not self.workorders.select_order(order_id):
            self.workorders.pending_select = order_id
            self.workorder_feed.refresh()
        return self.workorders

    def open_trend(self, tags: list[str]) -> None:
        self.trends.set_tags(tags)
        self.show_page("trends")

    def open_diagnostics(self, eq_id: str) -> None:
        self.show_page("diagnostics")
        self.diagnostics.show_equipment(eq_id)
        self.console.refresh_health()

    def _connection(self, state: str, detail: str) -> None:
        if self.status is not None:
            said = _(STATES[state]) if state in STATES else state
            self.status.showMessage(f"{said}: {detail}" if detail else said, 10000)

    def change_password(self) -> PasswordDialog:
        dialog = PasswordDialog(self.console, self)
        dialog.open()
        return dialog

    def logout(self) -> None:
        """End the session; the login dialog follows (``sessionEnded`` → :meth:`ask_login`)."""
        self.console.logout()

    def ask_login(self, why: str = "") -> LoginDialog:
        """The login dialog over the (stale) window: the same user again or another one; "Close console"
        closes the window. One dialog at a time: a second reason only updates its text."""
        if self.login_dialog is not None:
            self.login_dialog.error.setText(why)
            return self.login_dialog
        logged_out = why == _("logged out")  # the operator's own log out (hmi.bridge says it so)
        user = "" if logged_out else self.console.last_user
        d = LoginDialog(self.console, user, self)
        d.setWindowTitle(_("Log in (switch user) — city supervisory console"))
        d.error.setText(_("logged out: log in as the next operator") if logged_out else why)
        cancel = d.buttons.button(QDialogButtonBox.StandardButton.Cancel)
        if cancel is not None:
            cancel.setText(_("Close console"))
        d.finished.connect(lambda result, dialog=d: self._login_done(dialog, result))
        self.login_dialog = d
        d.open()
        return d

    def _login_done(self, dialog: LoginDialog, result: int) -> None:
        if self.login_dialog is dialog:
            self.login_dialog = None
        dialog.deleteLater()
        if result != QDialog.DialogCode.Accepted:
            self.confirm_close = False  # "Close console" was the decision
            self.close()

    def closeEvent(self, ev: Any) -> None:
        if self.confirm_close and QMessageBox.question(
                self, _("Close the console"),
                _("Close this operator console? The server keeps supervising the city and journalling alarms, "
                  "but nobody sees them on this screen.")) != QMessageBox.StandardButton.Yes:
            ev.ignore()
            return
        self.detacher.close_all()
        super().closeEvent(ev)


__all__ = ["LoginDialog", "MainWindow", "PasswordDialog", "Qt", "ViewState"]
