"""The console's "Change password" dialog against a real server (no simulator: the devices point nowhere),
offscreen Qt: a weak password is refused with the server's reason, a good one is changed, the console's
session goes on and its remembered credentials follow; an account that must change its password gets
the dialog from the login dialog."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from pytestqt.qtbot import QtBot

from hmi.bridge import Bridge, wait_reply
from hmi.console import ConsoleModel
from tests.server.conftest import PASSWORDS, running_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, Any] = {}

    async def run() -> None:
        async with running_server(tmp_path_factory.mktemp("pw") / "data") as (srv, url):
            holder.update(server=srv, url=url, stop=asyncio.Event())
            ready.set()
            await holder["stop"].wait()

    thread = threading.Thread(target=lambda: loop.run_until_complete(run()), daemon=True)
    thread.start()
    assert ready.wait(90), "server did not start"
    yield holder
    loop.call_soon_threadsafe(holder["stop"].set)
    thread.join(60)


def test_change_password_dialog(qtbot: QtBot, server: dict[str, Any]) -> None:
    from hmi.mainwindow import PasswordDialog

    bridge = Bridge(server["url"], "hmi-test-password")
    bridge.start()
    console = ConsoleModel(bridge)
    try:
        assert wait_reply(console.login("op2", PASSWORDS["op2"]), 15).ok
        d = PasswordDialog(console)
        qtbot.addWidget(d)
        d.current.setText(PASSWORDS["op2"])
        d.new.setText("Password1!")
        d.again.setText("Password2!")
        assert d.submit() is None and "differ" in d.error.text()
        d.again.setText("Password1!")
        wait_reply(d.submit(), 15)  # type: ignore[arg-type]
        qtbot.waitUntil(lambda: "refused" in d.error.text(), timeout=5000)
        assert "too short" in d.error.text() and not d.result()
        new = "Night-Shift-Lanterns-2031"
        d.new.setText(new)
        d.again.setText(new)
        wait_reply(d.submit(), 15)  # type: ignore[arg-type]
        qtbot.waitUntil(lambda: d.result() == 1, timeout=5000)
        assert wait_reply(bridge.get("/auth/me"), 15).ok  # the console's session goes on
        assert bridge._credentials == ("op2", new)  # a server restart's re-login uses the new one
        assert server["server"].users.verify("op2", new) is not None
    finally:
        console.close()


def test_login_asks_for_a_change_when_required(qtbot: QtBot, server: dict[str, Any]) -> None:
    from PyQt6.QtCore import QTimer

    from hmi.mainwindow import LoginDialog, PasswordDialog

    srv = server["server"]
    srv.users.add("oldtimer", "viewer", "Legacy-Viewer-Pass-1")
    with srv.users.transaction() as db:  # as the schema migration leaves an account from the old policy
        db.execute("UPDATE users SET must_change=1 WHERE name='oldtimer'")
    bridge = Bridge(server["url"], "hmi-test-must-change")
    bridge.start()
    console = ConsoleModel(bridge)
    seen: list[PasswordDialog] = []

    def answer_the_change() -> None:
        from PyQt6.QtWidgets import QApplication

        for w in QApplication.topLevelWidgets():
            if isinstance(w, PasswordDialog) and w.isVisible() and not seen:
                seen.append(w)
                w.new.setText("Fresh-Viewer-Passphrase")
                w.again.setText("Fresh-Viewer-Passphrase")
                w.submit()

    timer = QTimer()
    timer.timeout.connect(answer_the_change)
    timer.start(100)
    try:
        d = LoginDialog(console, "oldtimer")
        qtbot.addWidget(d)
        d.password.setText("Legacy-Viewer-Pass-1")
        wait_reply(d.submit(), 15)  # type: ignore[arg-type]
        qtbot.waitUntil(lambda: d.result() == 1, timeout=15_000)
        assert seen  # the change went through with the current password the login dialog handed over
        qtbot.waitUntil(lambda: console.session.role == "viewer", timeout=10_000)  # the console started
        assert srv.users.get("oldtimer").must_change is False
    finally:
        timer.stop()
        console.close()
