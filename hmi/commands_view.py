"""Commands through the fail-safe gate: command panel, command dialog, approval inbox, crisis plans.

    CommandPanel (Level 3)  one button per verb of the equipment's type; disabled with the reason
                            (role, gate unavailable) in its tooltip
    CommandDialog           1. the form: parameters, lease duration, comment
                            2. "what will be sent" + the steps (approval, select-before-operate, read-back)
                            3. Send request → ticket; the dialog follows the ticket (GET /commands/{id})
                            4. Operate (select-before-operate, before the deadline) · Cancel
                            5. the outcome: DONE / REJECTED: why / FAILED: why / NOT CONFIRMED
    ApprovalInbox           supervisors: requests awaiting a second person → Approve / Refuse
    CrisisPanel             plans, their steps, Dry run (what would run / be refused), Activate
"""

from __future__ import annotations

import html
import time
from typing import Any

from PyQt6.QtCore import Qt, QTimer, pyqtSignal
from PyQt6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

from hmi import style
from hmi.bridge import Reply
from hmi.console import ConsoleModel
from hmi.models import commands as cm
from hmi.models.journal import word
from hmi.qtstyle import hide_row_numbers
from scada.format import duration, timestamp
from scada.i18n import _, localise

POLL_MS = 500


class CommandDialog(QDialog):
    """One command, from the form to the outcome. ``outcome`` holds the final ticket text."""

    finishedOutcome = pyqtSignal(dict)

    def __init__(self, console: ConsoleModel, form: cm.VerbForm, targets: list[str],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.console = console
        self.form = form
        self.targets = targets
        self.ticket: dict[str, Any] = {}
        self.outcome: cm.TicketText | None = None
        # the targets as every view names them: id, name, address (the operator checks what will move)
        self.named = [console.registry_named(t, address=True) for t in targets]
        self.setWindowTitle(_("Command: {verb} on {targets}").format(
            verb=form.title, targets=", ".join(console.registry_named(t) for t in targets)))
        self.setMinimumWidth(560)
        self.inputs: dict[str, QSpinBox | QDoubleSpinBox | QLineEdit] = {}
        lay = QVBoxLayout(self)
        box = QFormLayout()
        for p in form.params:
            w: QSpinBox | QDoubleSpinBox | QLineEdit
            if p.type == "int":
                w = QSpinBox()
                w.setRange(int(p.min if p.min is not None else -(2**31)),
                           int(p.max if p.max is not None else 2**31 - 1))
                w.valueChanged.connect(self.refresh_summary)
            elif p.type == "float":
                w = QDoubleSpinBox()
                w.setRange(p.min if p.min is not None else -1e9, p.max if p.max is not None else 1e9)
                w.valueChanged.connect(self.refresh_summary)
            else:
                w = QLineEdit()
                w.textChanged.connect(self.refresh_summary)
            self.inputs[p.name] = w
            box.addRow(cm.param_title(p.name), w)
        self.lease = QSpinBox()
        self.lease.setSuffix(" min")  # the minute's symbol: the same in French
        if form.has_lease:
            self.lease.setRange(1, max(1, int((form.lease_max_s or 3600) // 60)))
            self.lease.setValue(max(1, int((form.lease_default_s or 900) // 60)))
            self.lease.valueChanged.connect(self.refresh_summary)
            box.addRow(_("lease"), self.lease)
        self.comment = QLineEdit()
        self.comment.setPlaceholderText(_("optional note for the audit log"))
        box.addRow(_("comment"), self.comment)
        lay.addLayout(box)
        lay.addWidget(QLabel("<b>" + _("What will be sent") + "</b>"))
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        lay.addWidget(self.summary)
        lay.addWidget(QLabel("<b>" + _("Steps") + "</b>"))
        self.steps = QLabel("\n".join(cm.steps(form)))
        lay.addWidget(self.steps)
        lay.addWidget(QLabel("<b>" + _("Progress") + "</b>"))
        self.status = QLabel(_("not sent"))
        self.status.setWordWrap(True)
        f = self.status.font()
        f.setBold(True)
        self.status.setFont(f)
        lay.addWidget(self.status)
        self.log = QTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumHeight(120)
        lay.addWidget(self.log)
        btns = QHBoxLayout()
        self.send_btn = QPushButton(_("Send request"))
        self.operate_btn = QPushButton(_("Operate"))
        self.cancel_btn = QPushButton(_("Cancel command"))
        self.close_btn = QPushButton(_("Close"))
        for b in (self.send_btn, self.operate_btn, self.cancel_btn, self.close_btn):
            btns.addWidget(b)
        lay.addLayout(btns)
        self.send_btn.clicked.connect(self.send)
        self.operate_btn.clicked.connect(self.operate)
        self.cancel_btn.clicked.connect(self.cancel)
        self.close_btn.clicked.connect(self.accept)
        self.timer = QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self.poll)
        self._set_buttons()
        self.refresh_summary()

    def values(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, w in self.inputs.items():
            out[name] = w.text() if isinstance(w, QLineEdit) else w.value()
        return out

    def lease_s(self) -> float | None:
        return float(self.lease.value() * 60) if self.form.has_lease else None

    def refresh_summary(self) -> None:
        lines = cm.summary(self.form, self.named, self.values(), self.lease_s())
        problems = cm.check_params(self.form, self.values())
        self.summary.setText("\n".join(lines) + ("\n" + "; ".join(problems) if problems else ""))
        self._set_buttons()

    def _set_buttons(self) -> None:
        sent = bool(self.ticket)
        why = cm.why_disabled(self.form, self.console.session, self.console.subsystem("failsafe")[0]
                              if self.console.health else "ok")
        problems = cm.check_params(self.form, self.values())
        self.send_btn.setEnabled(not sent and not why and not problems)
        self.send_btn.setToolTip(why or "; ".join(problems) or (_("already sent") if sent else ""))
        nxt = cm.describe(self.ticket).next_action if sent else None
        self.operate_btn.setEnabled(nxt == "operate")
        self.operate_btn.setToolTip("" if nxt == "operate" else
                                    _("available once the equipment is selected (select-before-operate) or approved"))
        final = self.outcome is not None and self.outcome.final
        self.cancel_btn.setEnabled(sent and not final and nxt in ("operate", "wait_approval"))
        self.cancel_btn.setToolTip("" if self.cancel_btn.isEnabled() else _("nothing pending to cancel"))

    def _note(self, text: str) -> None:
        self.log.append(f"{timestamp(time.time_ns(), date=False)} {text}")  # the site's clock

    def send(self) -> Reply:
        body = cm.request_body(self.form, self.targets, self.values(), self.lease_s(), self.comment.text())
        self._note(_("request: {body}").format(body=body))
        r = self.console.call("POST", "/commands", body)
        r.finished.connect(self._answer)
        self.send_btn.setEnabled(False)
        self.status.setText(_("sent, waiting for the gate…"))
        return r

    def operate(self) -> Reply:
        r = self.console.call("POST", f"/commands/{self.ticket['id']}/operate", {})
        r.finished.connect(self._answer)
        self.operate_btn.setEnabled(False)
        self.status.setText(_("operating: writing and waiting for the read-back…"))
        self._note(_("operate"))
        return r

    def cancel(self) -> Reply:
        r = self.console.call("POST", f"/commands/{self.ticket['id']}/cancel", {})
        r.finished.connect(self._answer)
        self._note(_("cancel"))
        return r

    def _answer(self, r: Reply) -> None:
        if not r.ok:
            if not self.ticket or r.code in ("command_rejected",):
                self.ticket = {**self.ticket, "state": "finished", "outcome": "rejected", "reason": r.why()}
            else:
                self._note(_("refused: {why}").format(why=r.why()))
        elif isinstance(r.data, dict):
            self.ticket = r.data
        self.show_ticket()

    def poll(self) -> None:
        if not self.ticket.get("id"):
            return
        r = self.console.call("GET", f"/commands/{self.ticket['id']}")
        r.finished.connect(self._polled)

    def _polled(self, r: Reply) -> None:
        if r.ok and isinstance(r.data, dict) and r.data.get("state") != self.ticket.get("state"):
            self.ticket = {**self.ticket, **r.data}
            self.show_ticket()

    def show_ticket(self) -> None:
        t = cm.describe(self.ticket)
        self.outcome = t
        deadline = self.ticket.get("deadline")
        extra = ""
        if t.next_action == "operate" and isinstance(deadline, (int, float)):
            extra = " " + _("(before {time}, {left})").format(
                time=timestamp(int(deadline * 1e9), date=False), left=duration(max(0, deadline - time.time())))
        self.status.setText(t.headline + extra)
        self._note(_("ticket {ticket}: {state} {outcome} {reason}").format(
            ticket=self.ticket.get("id", "?"), state=word(t.state), outcome=word(t.outcome or ""),
            reason=localise(str(self.ticket.get("reason") or ""))))
        if t.final:
            self.timer.stop()
            self.finishedOutcome.emit(dict(self.ticket))
        elif not self.timer.isActive():
            self.timer.start()
        self._set_buttons()


def _verb(verb: str) -> str:
    """A verb of commands.yaml in words, in the console's language."""
    return _(cm.VERB_TITLES[verb]) if verb in cm.VERB_TITLES else verb.replace("_", " ")


class CommandPanel(QWidget):
    """The verbs of one equipment's type as buttons (Level 3)."""

    dialogOpened = pyqtSignal(object)  # CommandDialog (tests drive it)

    def __init__(self, console: ConsoleModel, eq_id: str, template: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.console = console
        self.eq_id = eq_id
        self.template = template
        self.lay = QHBoxLayout(self)
        self.buttons: dict[str, QPushButton] = {}
        self.modal = True
        # bound methods only: PyQt drops a bound method's connection with its QObject; a lambda would keep this
        # panel alive after its display closed and call it on deleted buttons ("QPushButton has been deleted")
        console.vocabularyChanged.connect(self.build)
        console.sessionChanged.connect(self.build)
        console.healthChanged.connect(self._health)
        self.build()

    def _health(self, _health: dict[str, Any]) -> None:
        self.refresh()

    def build(self) -> None:
        while self.lay.count():
            it = self.lay.takeAt(0)
            w = it.widget() if it is not None else None
            if w is not None:
                w.deleteLater()
        self.buttons = {}
        self.forms = {f.verb: f for f in cm.verbs_for(self.console.vocabulary, self.template)}
        self.lay.addWidget(QLabel("<b>" + _("Commands") + "</b>"))
        if not self.forms:
            kind = style.KIND_SYMBOLS.get(self.template, style.KIND_SYMBOLS["other"])[2]
            why = (_("no commands for this kind of equipment ({kind})").format(kind=_(kind))
                   if not self.console.vocabulary_error
                   else _("commands unavailable: {why}").format(why=self.console.vocabulary_error))
            self.lay.addWidget(QLabel(why))
        for verb, form in self.forms.items():
            b = QPushButton(form.title + ("  ▲ " + _("safety") if form.safety == "increasing" else "") + "…")
            b.clicked.connect(lambda _=False, v=verb: self.open(v))
            self.buttons[verb] = b
            self.lay.addWidget(b)
        self.lay.addStretch(1)
        self.refresh()

    def refresh(self) -> None:
        gate = self.console.subsystem("failsafe")[0] if self.console.health else "ok"
        for verb, b in self.buttons.items():
            why = cm.why_disabled(self.forms[verb], self.console.session, gate)
            b.setEnabled(not why)
            b.setToolTip(why or "\n".join(cm.steps(self.forms[verb])))

    def open(self, verb: str) -> CommandDialog:
        d = CommandDialog(self.console, self.forms[verb], [self.eq_id], self)
        self.dialogOpened.emit(d)
        if self.modal:
            d.exec()
        else:
            d.show()
        return d


class ApprovalInbox(QWidget):
    """Requests that need a second person (supervisors): ``GET /commands?pending=true``."""

    def __init__(self, console: ConsoleModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.console = console
        self.table = QTableWidget(0, 7)
        self.table.setHorizontalHeaderLabels([_("ticket"), _("requested"), _("by"), _("verb"), _("targets"),
                                              _("params"), _("safety")])
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        hide_row_numbers(self.table)
        self.approve_btn = QPushButton(_("Approve"))
        self.refuse_btn = QPushButton(_("Refuse (cancel)"))
        self.reload_btn = QPushButton(_("Refresh"))
        self.result = QLabel()
        self.approve_btn.clicked.connect(lambda: self.act("approve"))
        self.refuse_btn.clicked.connect(lambda: self.act("cancel"))
        self.reload_btn.clicked.connect(self.load)
        top = QHBoxLayout()
        top.addWidget(QLabel("<b>" + _("Approval inbox") + "</b> — " + _("commands waiting for a second person")), 1)
        top.addWidget(self.reload_btn)
        btns = QHBoxLayout()
        btns.addWidget(self.approve_btn)
        btns.addWidget(self.refuse_btn)
        btns.addStretch(1)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.table, 1)
        lay.addLayout(btns)
        lay.addWidget(self.result)
        self.items: list[dict[str, Any]] = []
        self.timer = QTimer(self)
        self.timer.setInterval(3000)
        self.timer.timeout.connect(self.load)
        self.table.itemSelectionChanged.connect(self.update_buttons)
        console.sessionChanged.connect(self.update_buttons)
        self.update_buttons()

    def showEvent(self, ev: Any) -> None:
        super().showEvent(ev)
        self.load()
        self.timer.start()

    def hideEvent(self, ev: Any) -> None:
        super().hideEvent(ev)
        self.timer.stop()

    def load(self) -> Reply:
        r = self.console.call("GET", "/commands", pending="true", limit=500)
        r.finished.connect(self._loaded)
        return r

    def _loaded(self, r: Reply) -> None:
        if not r.ok:
            self.result.setText(_("cannot read the command history: {why}").format(why=r.why()))
            return
        window = float(self.console.vocabulary.get("approval_window_s") or 120.0)
        self.items = cm.approvals_from(list((r.data or {}).get("commands", [])), time.time(), window)
        self.table.setRowCount(len(self.items))
        for row, e in enumerate(self.items):
            ts = e.get("ts")
            targets = e.get("target") or []
            vals = [e["ticket"], timestamp(int(ts * 1e9), date=False) if isinstance(ts, float) else "",
                    str(e.get("user", "")), _verb(str(e.get("verb") or e.get("crisis") or "")),
                    ", ".join(self.console.registry_named(str(t)) for t in targets) if isinstance(targets, list)
                    else self.console.registry_named(str(targets)),
                    str(e.get("params") or ""), word(str(e.get("safety", "")))]
            for c, v in enumerate(vals):
                self.table.setItem(row, c, QTableWidgetItem(v))
        self.update_buttons()

    def selected(self) -> dict[str, Any] | None:
        rows = {i.row() for i in self.table.selectedItems()}
        return self.items[min(rows)] if rows else None

    def update_buttons(self) -> None:
        s = self.console.session
        sel = self.selected()
        why = s.why_not("command.approve", _("approve commands"))
        if not why and sel is None:
            why = _("select a request first")
        if not why and sel is not None and sel.get("user") == s.user:
            why = _("you requested it: a second person must approve")
        self.approve_btn.setEnabled(not why)
        self.approve_btn.setToolTip(why)
        why2 = s.why_not("command.approve", _("refuse requests")) or (
            _("select a request first") if sel is None else "")
        self.refuse_btn.setEnabled(not why2)
        self.refuse_btn.setToolTip(why2)

    def act(self, step: str) -> Reply | None:
        sel = self.selected()
        if sel is None:
            return None
        r = self.console.call("POST", f"/commands/{sel['ticket']}/{step}", {})

        def done(rep: Reply) -> None:
            state = (rep.data or {}).get("state") if isinstance(rep.data, dict) else None
            what = _("approve") if step == "approve" else _("refuse")
            self.result.setText(f"{what} {sel['ticket']}: " + (
                _("done — state {state}").format(state=word(str(state))) if rep.ok
                else _("REFUSED — {why}").format(why=rep.why())))
            self.load()

        r.then(self, done)
        return r


class CrisisPanel(QWidget):
    """Crisis plans: their steps, a dry run (nothing is sent), activation (supervisors)."""

    def __init__(self, console: ConsoleModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.console = console
        self.plans: list[dict[str, Any]] = []
        self.list = QListWidget()
        self.list.currentRowChanged.connect(self.show_plan)
        self.detail = QLabel()
        self.detail.setWordWrap(True)
        self.detail.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.result = QTableWidget(0, 5)
        self.result.setHorizontalHeaderLabels([_("step"), _("target"), _("verb"), _("outcome"), _("reason / writes")])
        self.result.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        hide_row_numbers(self.result)
        self.state = QLabel()
        self.dry_btn = QPushButton(_("Dry run (nothing is sent)"))
        self.go_btn = QPushButton(_("Activate…"))
        self.dry_btn.clicked.connect(lambda: self.run(True))
        self.go_btn.clicked.connect(lambda: self.run(False))
        self.confirm = True
        left = QVBoxLayout()
        left.addWidget(QLabel("<b>" + _("Crisis plans") + "</b>"))
        left.addWidget(self.list)
        right = QVBoxLayout()
        right.addWidget(self.detail)
        b = QHBoxLayout()
        b.addWidget(self.dry_btn)
        b.addWidget(self.go_btn)
        b.addStretch(1)
        right.addLayout(b)
        right.addWidget(self.state)
        right.addWidget(self.result, 1)
        lay = QHBoxLayout(self)
        lay.addLayout(left, 1)
        lay.addLayout(right, 3)
        console.sessionChanged.connect(self.update_buttons)
        self.update_buttons()

    def showEvent(self, ev: Any) -> None:
        super().showEvent(ev)
        self.load()

    def load(self) -> Reply:
        r = self.console.call("GET", "/crisis/plans")
        r.finished.connect(self._loaded)
        return r

    def _loaded(self, r: Reply) -> None:
        if not r.ok:
            self.detail.setText(_("crisis plans unavailable: {why}").format(why=r.why()))
            self.plans = []
        else:
            self.plans = list((r.data or {}).get("plans", []))
        self.list.clear()
        self.list.addItems([p["name"] for p in self.plans])
        if self.plans:
            self.list.setCurrentRow(0)
        self.update_buttons()

    def current(self) -> dict[str, Any] | None:
        i = self.list.currentRow()
        return self.plans[i] if 0 <= i < len(self.plans) else None

    def show_plan(self, _row: int) -> None:
        p = self.current()
        if p is None:
            return
        steps = "<br>".join(f"{k + 1}. " + html.escape(_("{verb} on {target} {params}").format(
            verb=_verb(str(s["verb"])), target=self.console.registry_named(str(s["target"])),
            params=s.get("params") or "")) for k, s in enumerate(p.get("steps", [])))
        self.detail.setText(f"<b>{html.escape(p['name'])}</b><br>{html.escape(str(p.get('description', '')))}<br>"
                            + html.escape(_("lease: {lease}").format(lease=cm.fmt_duration(p.get("lease_s"))))
                            + f"<br>{steps}")
        self.update_buttons()

    def update_buttons(self) -> None:
        why = self.console.session.why_not("crisis", _("run crisis plans"))
        if not why and self.current() is None:
            why = _("no plan selected")
        for b in (self.dry_btn, self.go_btn):
            b.setEnabled(not why)
            b.setToolTip(why)

    def run(self, dry: bool) -> Reply | None:
        p = self.current()
        if p is None:
            return None
        if not dry and self.confirm:
            ok = QMessageBox.question(self, _("Activate crisis plan"),
                                      _("Activate '{plan}' now? Every step goes through the fail-safe gate.").format(
                                          plan=p["name"]))
            if ok != QMessageBox.StandardButton.Yes:
                return None
        r = self.console.call("POST", f"/crisis/plans/{p['name']}/{'dry-run' if dry else 'activate'}", {})
        r.finished.connect(self._ran)
        return r

    def _ran(self, r: Reply) -> None:
        if not r.ok:
            self.state.setText(_("REFUSED — {why}").format(why=r.why()))
            return
        run = r.data or {}
        self.state.setText(_("run {run}: {state}").format(run=run.get("id", ""),
                                                          state=word(str(run.get("state", ""))).upper())
                           + (" " + _("(dry run: nothing was sent)") if run.get("dry_run") else "")
                           + (f" — {localise(str(run['reason']))}" if run.get("reason") else ""))
        steps = run.get("steps", [])
        self.result.setRowCount(len(steps))
        for k, s in enumerate(steps):
            vals = [str(s.get("index", k) + 1 if isinstance(s.get("index"), int) else k + 1),
                    self.console.registry_named(str(s.get("target"))), _verb(str(s.get("verb"))),
                    word(str(s.get("outcome"))).upper(), localise(str(s.get("reason") or s.get("writes") or ""))]
            for c, v in enumerate(vals):
                self.result.setItem(k, c, QTableWidgetItem(v))
        self.result.resizeColumnsToContents()
