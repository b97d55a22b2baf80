"""The console against a real server + simulator (one stack for the module, started in a background thread).

What the issue asks, end to end through the HTTP/WebSocket API only:
  * a lamp failure injected in the simulator appears in the banner, the alarm list and on the map;
  * acknowledging from the console reaches the journal (and the journal view exports it as CSV);
  * a command dialog drives a real command (lighting override; junction flash with select-before-operate);
  * communication loss turns the junction display to "state unknown", and back;
  * a server restart: the console shows stale data, reconnects and logs in again by itself;
  * an active priority-1 alarm shows its colour; screenshots of each level are saved.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PyQt6.QtCore import Qt
from pytestqt.qtbot import QtBot

from hmi import style
from hmi.bridge import Bridge, wait_reply
from hmi.commands_view import ApprovalInbox, CrisisPanel
from hmi.console import ConsoleModel
from hmi.mainwindow import MainWindow
from hmi.screenshots import alarm_pixels, grab, save_levels, settle
from tests.hmi.stack import PASSWORDS, LiveStack

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    s = LiveStack(tmp_path_factory.mktemp("hmi-live")).start()
    try:
        yield s
    finally:
        s.stop()


class UI:
    def __init__(self, qtbot: QtBot, stack: LiveStack, user: str) -> None:
        self.qtbot = qtbot
        self.stack = stack
        self.bridge = Bridge(stack.url, "hmi-test")
        self.bridge.start()
        self.console = ConsoleModel(self.bridge)
        self.window = MainWindow(self.console)
        qtbot.addWidget(self.window)
        self.window.show()
        r = wait_reply(self.console.login(user, PASSWORDS[user]), 30)
        assert r.ok, r.why()
        qtbot.waitUntil(lambda: self.console.state == "online" and len(self.console.tags.values) > 400,
                        timeout=30_000)

    def wait(self, cond: Any, timeout_s: float = 20.0) -> None:
        self.qtbot.waitUntil(lambda: bool(cond()), timeout=int(timeout_s * 1000))

    def alarms_of(self, eq: str, priority: int | None = None) -> list[Any]:
        return [a for a in self.console.alarms.alarms.values()
                if a.equipment == eq and (priority is None or a.priority == priority)]


@pytest.fixture
def ui(qtbot: QtBot, stack: LiveStack) -> Iterator[UI]:
    u = UI(qtbot, stack, "op")
    try:
        yield u
    finally:
        u.console.close()
        u.window.close()


def test_lamp_failure_reaches_banner_list_and_map(ui: UI) -> None:
    c, w = ui.console, ui.window
    p3_before = c.alarms.banner().unacked[3]
    ui.stack.inject("C0002", "lamp_failure", count=8)
    ui.wait(lambda: ui.alarms_of("C0002", 3))  # cabinet_many_failures (limit 5)
    a = ui.alarms_of("C0002", 3)[0]
    assert a.state == "unack" and "8 luminaires failed" in a.message
    # banner
    ui.wait(lambda: c.alarms.banner().unacked[3] == p3_before + 1)
    assert f"{p3_before + 1} unack" in w.banner.cells[3].text.text()
    # the diagnostic lamp alarms are journalled, counted, never annunciated
    ui.wait(lambda: len([x for x in ui.alarms_of("C0002") if x.diagnostic]) == 8)
    assert "Diagnostic" in w.banner.hidden.text()
    # the alarm list
    w.show_page("alarms")
    ui.wait(lambda: any(w.alarm_list.model.alarm(r) is not None and w.alarm_list.model.alarm(r).id == a.id
                        for r in range(w.alarm_list.model.rowCount())))
    # the map: the cabinet takes the P3 colour, its 8 failed luminaires turn white (abnormal)
    i = c.map.index["C0002"]
    assert c.map.eq_code[i] == style.ALARM_P3
    lum = c.map.luminaires_of("C0002")
    ui.wait(lambda: int((c.map.lum_code[lum] == style.ABNORMAL).sum()) == 8)
    # from the alarm to its equipment in 2 clicks: select the row, "Open equipment"
    al = w.alarm_list
    row = next(r for r in range(al.model.rowCount()) if al.model.alarm(r) and al.model.alarm(r).id == a.id)
    ui.qtbot.mouseClick(al.table.viewport(), Qt.MouseButton.LeftButton,
                        pos=al.table.visualRect(al.model.index(row, 4)).center())
    ui.qtbot.mouseClick(al.buttons["open"], Qt.MouseButton.LeftButton)
    assert w.current == "equipment" and w.equipment is not None and w.equipment.eq.id == "C0002"
    ui.wait(lambda: "8 luminaires failed" in " ".join(
        lbl.text() for lbl in w.equipment.alarms.findChildren(type(w.banner.hidden))))


def test_acknowledge_reaches_the_journal(ui: UI, tmp_path: Path) -> None:
    c, w = ui.console, ui.window
    ui.stack.inject("C0005", "lamp_failure", count=7)
    ui.wait(lambda: ui.alarms_of("C0005", 3))
    a = ui.alarms_of("C0005", 3)[0]
    w.show_page("alarms")
    al = w.alarm_list
    ui.wait(lambda: any(al.model.alarm(r) is not None and al.model.alarm(r).id == a.id
                        for r in range(al.model.rowCount())))
    al.select_ids([a.id])
    assert al.buttons["ack"].isEnabled(), al.buttons["ack"].toolTip()
    al.dialog_answers = {"ack": {"comment": "crew sent (HMI test)"},
                         "shelve": {"reason": "nuisance while the crew works", "duration": "15 min"}}
    with ui.qtbot.waitSignal(al.actionDone, timeout=10_000) as sig:
        ui.qtbot.mouseClick(al.buttons["ack"], Qt.MouseButton.LeftButton)
    assert sig.args[1].ok, sig.args[1].why()
    ui.wait(lambda: c.alarms.get(a.id) is not None and c.alarms.get(a.id).state == "acked")
    # the journal (same filters as the API), then CSV
    w.show_page("journal")
    w.journal.fields["equipment"].setText("C0005")
    ui.wait(lambda: _journal_has_ack(w, a.id), 15)
    out = tmp_path / "journal.csv"
    assert w.journal.export_csv(out) >= 2
    text = out.read_text()
    assert "crew sent (HMI test)" in text and ",op," in text
    # shelving needs a reason; the answer is shown as is (done, or why not)
    w.show_page("alarms")
    al.select_ids([a.id])
    assert al.buttons["shelve"].isEnabled(), al.buttons["shelve"].toolTip()
    with ui.qtbot.waitSignal(al.actionDone, timeout=10_000):
        al.do("shelve")
    assert "shelve: done" in al.result.text() or "NOT POSSIBLE" in al.result.text(), al.result.text()


def _journal_has_ack(w: MainWindow, alarm_id: str) -> bool:
    r = wait_reply(w.journal.load(), 10)
    return r.ok and any(e.get("event") in ("acknowledge", "ack") and e.get("user") == "op"
                        and e.get("comment") == "crew sent (HMI test)" for e in w.journal.entries)


def test_command_dialog_drives_a_real_command(ui: UI) -> None:
    w = ui.window
    d = w.open_equipment("C0003")
    ui.wait(lambda: "set_level" in d.commands.buttons)
    d.commands.modal = False
    with ui.qtbot.waitSignal(d.commands.dialogOpened, timeout=2000) as sig:
        ui.qtbot.mouseClick(d.commands.buttons["set_level"], Qt.MouseButton.LeftButton)
    dlg = sig.args[0]
    ui.qtbot.addWidget(dlg)
    dlg.inputs["level"].setValue(100)
    dlg.lease.setValue(10)
    assert "level = 100" in dlg.summary.text() and "10 min" in dlg.summary.text()
    ui.qtbot.mouseClick(dlg.send_btn, Qt.MouseButton.LeftButton)
    ui.wait(lambda: dlg.outcome is not None and dlg.outcome.final, 40)
    assert dlg.outcome.outcome == "done", dlg.status.text()
    model = ui.stack.sim.models["C0003"]
    assert ui.stack.call(lambda: (model.mode, model.override_level)) == (1, 100)
    # the live tags show it (the focus channel follows the open display)
    name = ui.console.registry.tag("C0003", "mode")
    ui.wait(lambda: ui.console.tags.value(name) == 1, 15)
    dlg.close()
    # trend of the cabinet's power: historical (decimated query to the embedded historian) + live
    tag = ui.console.registry.tag("C0003", "power")
    ui.console.openTrend.emit([tag])
    tv = ui.window.trends
    assert ui.window.current == "trends"
    ui.wait(lambda: len(tv.series(tag)) >= 1 and not tv.note.text(), 15)
    tv.set_cursor(float(tv.series(tag).t[-1]) + 0.5)
    assert "C0003/power: " in tv.readout.text() and "—" not in tv.readout.text().split("C0003/power: ")[1]


def test_junction_select_before_operate(ui: UI) -> None:
    d = ui.window.open_equipment("J010")
    ui.wait(lambda: "flash" in d.commands.buttons)
    d.commands.modal = False
    dlg = d.commands.open("flash")
    ui.qtbot.addWidget(dlg)
    assert "Select-before-operate" in dlg.steps.text()
    dlg.send()
    ui.wait(lambda: dlg.operate_btn.isEnabled(), 15)
    assert "Selected" in dlg.status.text()
    ui.qtbot.mouseClick(dlg.operate_btn, Qt.MouseButton.LeftButton)
    ui.wait(lambda: dlg.outcome is not None and dlg.outcome.final, 45)
    assert dlg.outcome.outcome == "done", dlg.status.text()
    ui.wait(lambda: d.synoptic.current().flashing, 15)
    # releasing a flash is safety-reducing: a second person (supervisor) must approve it
    dlg2 = d.commands.open("return_to_local")
    ui.qtbot.addWidget(dlg2)
    dlg2.send()
    ui.wait(lambda: dlg2.ticket.get("state") == "awaiting_approval", 15)
    assert "supervisor" in dlg2.status.text() and not dlg2.operate_btn.isEnabled()
    # the operator's own inbox cannot approve
    ui.window.show_page("approvals")
    ui.wait(lambda: any(i["ticket"] == dlg2.ticket["id"] for i in ui.window.approvals.items), 10)
    ui.window.approvals.table.selectRow(0)
    assert not ui.window.approvals.approve_btn.isEnabled()
    assert "operator" in ui.window.approvals.approve_btn.toolTip()
    # a supervisor's console approves it
    sup = Bridge(ui.stack.url, "hmi-test-supervisor")
    sup.start()
    try:
        sc = ConsoleModel(sup)
        assert wait_reply(sc.login("sup", PASSWORDS["sup"]), 30).ok
        ui.wait(lambda: sc.session.can("command.approve"), 10)
        inbox = ApprovalInbox(sc)
        ui.qtbot.addWidget(inbox)
        wait_reply(inbox.load(), 10)
        row = next(k for k, i in enumerate(inbox.items) if i["ticket"] == dlg2.ticket["id"])
        inbox.table.selectRow(row)
        assert inbox.approve_btn.isEnabled(), inbox.approve_btn.toolTip()
        ui.qtbot.mouseClick(inbox.approve_btn, Qt.MouseButton.LeftButton)
        ui.wait(lambda: dlg2.operate_btn.isEnabled(), 15)
        dlg2.operate()
        ui.wait(lambda: dlg2.outcome is not None and dlg2.outcome.final, 45)
        assert dlg2.outcome.outcome == "done", dlg2.status.text()
        # the supervisor's crisis panel: a dry run sends nothing and says what would run or be refused
        crisis = CrisisPanel(sc)
        ui.qtbot.addWidget(crisis)
        wait_reply(crisis.load(), 10)
        assert crisis.dry_btn.isEnabled(), crisis.dry_btn.toolTip()
        wait_reply(crisis.run(True), 15)
        ui.wait(lambda: "DRY RUN" in crisis.state.text() and crisis.result.rowCount() == 4, 10)
        outcomes = {crisis.result.item(k, 3).text() for k in range(4)}
        assert outcomes <= {"WOULD RUN", "WOULD REFUSE"}
        # and the operator may not run crisis plans: disabled, with the reason
        op_crisis = ui.window.crisis
        assert not op_crisis.dry_btn.isEnabled() and "operator" in op_crisis.dry_btn.toolTip()
    finally:
        sc.close()


def test_comm_loss_turns_the_junction_unknown(ui: UI) -> None:
    c, w = ui.console, ui.window
    d = w.open_equipment("J007")
    syn = d.synoptic
    ui.wait(lambda: syn.current().known, 15)
    assert {a.state for a in syn.current().aspects} <= {"R", "A", "G", "-", "A~"}
    ui.stack.comm_fault("J007", "drop")
    try:
        ui.wait(lambda: not syn.current().known, 20)
        v = syn.current()
        assert "communication lost" in v.why_unknown and {a.state for a in v.aspects} == {"?"}
        img = grab(syn)
        assert alarm_pixels(img) == {col: 0 for col in style.ALARM_PALETTE}
        # Level 1 shows it too: unknown (hatched), the comm-loss alarm's colour once its on-delay passed,
        # or P1 once the field-safety monitor has been blind on it for 2 s (issue 14: never silently off)
        assert c.map.eq_code[c.map.index["J007"]] in (style.UNKNOWN, style.ALARM_P2, style.ALARM_P1)
    finally:
        ui.stack.comm_fault("J007", None)
    ui.wait(lambda: syn.current().known, 30)


def test_active_p1_colour_and_screenshots(ui: UI) -> None:
    _c, w = ui.console, ui.window
    ui.stack.inject("B003", "fire_alarm", zone=2)
    try:
        ui.wait(lambda: ui.alarms_of("B003", 1))
        w.show_page("overview")
        w.overview.fit()
        settle(0.5)
        assert alarm_pixels(grab(w.overview))[style.P1] > 30
        assert "B003" in w.banner.newest.text()
        paths = save_levels(w, ui.stack.tmp / "shots")  # the README's set: docs/screenshots/capture.py
        assert {p.stem for p in paths} >= {"L1-overview", "L2-traffic-corridor", "L2-lighting-district",
                                          "L3-junction", "L3-lighting-cabinet", "L4-diagnostics"}
        assert all(p.stat().st_size > 10_000 for p in paths)
        assert w.diagnostics.drivers.rowCount() > 10 and w.diagnostics.tags.rowCount() > 5  # L4: driver stats, raw tags
        # one click on the newest P1 → its building display
        ui.qtbot.mouseClick(w.banner.newest, Qt.MouseButton.LeftButton)
        assert w.equipment is not None and w.equipment.eq.id == "B003"
    finally:
        ui.stack.clear("B003", "fire_alarm")


def test_reconnects_after_server_restart(ui: UI) -> None:
    c, w = ui.console, ui.window
    states: list[str] = []
    c.connectionChanged.connect(lambda s, _d: states.append(s))
    t0 = time.monotonic()
    ui.stack.stop_server()
    ui.wait(lambda: c.state == "reconnecting", 10)
    assert c.stale and w.overview.overlay.isVisible() and "STALE" in w.banner.link.text()
    ui.stack.start_server()
    ui.wait(lambda: c.state == "online", 40)
    assert not c.stale and not w.overview.overlay.isVisible()
    assert ui.bridge.stats["relogins"] >= 1 and ui.bridge.stats["reconnects"] >= 1
    assert "reconnecting" in states and states[-1] == "online"
    assert time.monotonic() - t0 < 90


def _scada_hmi(stack: LiveStack, tmp: Path, user: str, password: str, *extra: str) -> Any:
    import subprocess
    import sys

    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "SCADA_PASSWORD": password}
    return subprocess.run([sys.executable, "-m", "cli", "hmi", "--server", stack.url, "--user", user,
                           "--screenshots", str(tmp / "shots"), *extra], env=env, capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def test_cli_refuses_a_wrong_password(stack: LiveStack, tmp_path: Path) -> None:
    proc = _scada_hmi(stack, tmp_path, "op", "not-the-password")
    assert proc.returncode == 1
    assert "login as 'op' refused" in proc.stderr and "unknown user, wrong password" in proc.stderr


@pytest.mark.slow
def test_cli_screenshots(stack: LiveStack, tmp_path: Path) -> None:
    proc = _scada_hmi(stack, tmp_path, "op", PASSWORDS["op"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {p.stem for p in (tmp_path / "shots").glob("*.png")} >= {"L1-overview", "L3-junction", "L4-diagnostics"}


def test_login_dialog(qtbot: QtBot, stack: LiveStack) -> None:
    from hmi.mainwindow import LoginDialog

    bridge = Bridge(stack.url, "hmi-test-login")
    bridge.start()
    console = ConsoleModel(bridge)
    try:
        d = LoginDialog(console, "view")
        qtbot.addWidget(d)
        d.password.setText("wrong password")
        wait_reply(d.submit(), 15)  # type: ignore[arg-type]
        qtbot.waitUntil(lambda: "refused" in d.error.text(), timeout=5000)
        assert "wrong password" in d.error.text() and not d.result()
        d.password.setText(PASSWORDS["view"])
        wait_reply(d.submit(), 15)  # type: ignore[arg-type]
        qtbot.waitUntil(lambda: d.result() == 1, timeout=5000)
        qtbot.waitUntil(lambda: console.session.role == "viewer", timeout=10_000)
        assert not console.session.can("alarm.ack")
    finally:
        console.close()
