"""The console speaks the server's language from its first dialog, and follows it when a reload changes it.

    server (real, in a background loop; its own copy of the demo city, no simulator: these tests read the
    server's answers, not the field)
      lang setting None → the site's tags.yaml lang (fr) · lang setting en
        │ GET /health config.lang (no token) ──► hmi.language.before_login ──► the login dialog's language
        │ POST /config/reload (tags.yaml lang: fr → en → fr) ──► WebSocket snapshot "reload" ──► GET /config
        ▼                                                       ──► languageChanged ──► WindowHost.rebuild
    ConsoleModel + Bridge + WindowHost (offscreen)

The language is one per process (:func:`scada.i18n.set_language`) and the server here lives in the test's
process: each check first puts the process in the *other* language, so the console has to learn the server's
(a console that did not ask would keep the wrong one and fail). ``scada --lang`` is checked through the command
line itself: ``scada hmi`` without a password shows the login dialog, read here and cancelled.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest
from PyQt6 import sip
from PyQt6.QtCore import QCoreApplication, QEvent, QTimer
from PyQt6.QtWidgets import QApplication, QDialog
from pytestqt.qtbot import QtBot

from hmi.bridge import Bridge, wait_reply
from hmi.console import ConsoleModel
from hmi.language import before_login, follow_site
from hmi.mainwindow import NAV, LoginDialog, MainWindow
from hmi.models.mapmodel import MapDelta
from hmi.window_host import WindowHost
from scada.i18n import get_language, gettext_in, set_language
from tests.hmi.i18n_check import visible_english
from tests.hmi.stack import PASSWORDS, LiveStack

LOGIN_TITLE = "Log in — city supervisory console"


@pytest.fixture(scope="module")
def site_fr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    """A server speaking its site's language (no lang setting; the demo's tags.yaml says fr)."""
    s = LiveStack(tmp_path_factory.mktemp("lang-site"), historian="none", simulator=False,
                  settings={"lang": None}).start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def server_en(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    """A server whose own setting says English (over the site's French)."""
    s = LiveStack(tmp_path_factory.mktemp("lang-en"), historian="none", simulator=False,
                  settings={"lang": "en"}).start()
    try:
        yield s
    finally:
        s.stop()


def _console(url: str) -> ConsoleModel:
    bridge = Bridge(url, "hmi-lang")
    bridge.start()
    return ConsoleModel(bridge)


def _login_dialog_title(qtbot: QtBot, console: ConsoleModel) -> str:
    d = LoginDialog(console, "op")
    qtbot.addWidget(d)
    return d.windowTitle()


def test_the_login_dialog_speaks_the_servers_language(qtbot: QtBot, site_fr: LiveStack, server_en: LiveStack) -> None:
    """GET /health (no token) names the language; the dialog is built in it, whatever the process had."""
    for stack, other, expected in ((site_fr, "en", "fr"), (server_en, "fr", "en")):
        r = httpx.get(stack.url + "/api/v1/health", timeout=10)
        assert r.status_code == 200 and r.json()["config"]["lang"] == expected
        set_language(other)  # the console process starts in the other language: it must learn the server's
        console = _console(stack.url)
        try:
            assert before_login(console) == expected == get_language()
            assert _login_dialog_title(qtbot, console) == gettext_in(expected, LOGIN_TITLE)
        finally:
            console.close()
    # a server that does not answer: the console keeps its language (and says so in its log), quickly
    set_language("fr")
    console = _console("http://127.0.0.1:1")
    try:
        t0 = time.monotonic()
        assert before_login(console, timeout_s=3) == "fr"
        assert time.monotonic() - t0 < 5
    finally:
        console.close()


def _dialog_title_from_cli(qtbot: QtBot, argv: list[str], monkeypatch: pytest.MonkeyPatch) -> str:
    """``scada ... hmi`` with no password: the login dialog comes up; read its title and cancel it (exit 1)."""
    import signal

    from cli.main import main as scada

    monkeypatch.delenv("SCADA_PASSWORD", raising=False)
    monkeypatch.delenv("SCADA_LANG", raising=False)
    seen: list[str] = []

    def look() -> None:
        d = QApplication.activeModalWidget()
        if isinstance(d, QDialog):
            seen.append(d.windowTitle())
            d.reject()
        else:
            QTimer.singleShot(50, look)

    QTimer.singleShot(50, look)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        assert scada(argv) == 1  # cancelled
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
    assert len(seen) == 1
    return seen[0]


def test_scada_hmi_login_dialog_language_and_lang_override(qtbot: QtBot, server_en: LiveStack,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the command line: the dialog in the server's English; ``--lang fr`` keeps it French."""
    set_language("fr")
    assert _dialog_title_from_cli(qtbot, ["hmi", "--server", server_en.url, "--user", "op"],
                                  monkeypatch) == LOGIN_TITLE
    set_language("en")
    assert _dialog_title_from_cli(qtbot, ["--lang", "fr", "hmi", "--server", server_en.url, "--user", "op"],
                                  monkeypatch) == gettext_in("fr", LOGIN_TITLE)
    assert get_language() == "fr"


def _set_site_lang(stack: LiveStack, lang: str) -> None:
    text = stack.tags_file.read_text(encoding="utf-8")
    new = re.sub(r"^lang: \w+", f"lang: {lang}", text, count=1, flags=re.MULTILINE)
    assert new != text
    stack.tags_file.write_text(new, encoding="utf-8")


def _reload(stack: LiveStack) -> None:
    with httpx.Client(base_url=stack.url + "/api/v1", timeout=60) as c:
        r = c.post("/auth/login", json={"user": "eng", "password": PASSWORDS["eng"]})
        assert r.status_code == 200, r.text
        r = c.post("/config/reload", headers={"Authorization": f"Bearer {r.json()['token']}"})
        assert r.status_code == 200 and r.json()["applied"], r.text


def _texts(w: MainWindow) -> dict[str, str]:
    """Visible texts of the window that are in the catalogue, by what they are."""
    return {"title": w.windowTitle(), "logout": w.logout_btn.text(),
            "nav": " | ".join(b.text() for b in w.nav_buttons.values())}


def _expected(lang: str) -> dict[str, str]:
    return {"title": gettext_in(lang, "City supervisory console"), "logout": gettext_in(lang, "Log out"),
            "nav": " | ".join(gettext_in(lang, text) for _key, text in NAV)}


def test_a_reload_that_changes_the_language_rebuilds_the_window(qtbot: QtBot, site_fr: LiveStack) -> None:
    """fr → en → fr by reloads of the site's tags.yaml: the window is built again in the new language, showing the
    same equipment display, with the same session (no new login), and the old window leaves nothing connected."""
    set_language("en")  # the test process's: the console must take the server's (French) from GET /config
    console = _console(site_fr.url)
    host: WindowHost | None = None
    try:
        assert wait_reply(console.login("op", PASSWORDS["op"]), 30).ok
        assert follow_site(console) == "fr"
        host = WindowHost(console)
        w = host.window  # (not given to qtbot: the host deletes it)
        w.show()
        qtbot.waitExposed(w)
        qtbot.waitUntil(lambda: len(console.registry) > 0, timeout=20_000)
        w.open_equipment("J001")
        w.trends.set_tags(["J001/mode"])
        w.show_page("equipment")
        assert _texts(w) == _expected("fr")
        token = console.bridge.token if console.bridge else ""

        _set_site_lang(site_fr, "en")
        _reload(site_fr)
        qtbot.waitUntil(lambda: host.rebuilds == 1, timeout=20_000)
        new = host.window
        assert get_language() == "en" and console.config_info["lang"] == "en"
        assert _texts(new) == _expected("en")
        assert new.isVisible() and new.current == "equipment" and new.equipment is not None
        assert new.equipment.eq.id == "J001" and list(new.trends.curves) == ["J001/mode"]
        # the new display subscribes to what it shows (the old one let go first: hmi.window_host)
        assert "J001" in console._interests["equipment"][1]
        assert console.session.user == "op" and console.bridge is not None and console.bridge.token == token
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete.value)
        assert sip.isdeleted(w)
        # the old window's widgets left no connection behind (bound methods only, dropped with them): every signal
        # reaches only live widgets (pytest-qt fails the test on an exception in a slot: a deleted widget's)
        console.alarmsChanged.emit()
        console.staleChanged.emit(True)
        console.staleChanged.emit(False)
        console.mapChanged.emit(MapDelta())
        console.healthChanged.emit(console.health)
        console.connectionChanged.emit(console.state, console.state_detail)
        console.message.emit("J001")
        qtbot.wait(100)

        _set_site_lang(site_fr, "fr")
        _reload(site_fr)
        qtbot.waitUntil(lambda: host.rebuilds == 2, timeout=20_000)
        again = host.window
        assert get_language() == "fr" and _texts(again) == _expected("fr")
        assert again.current == "equipment" and again.equipment is not None and again.equipment.eq.id == "J001"
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete.value)
        assert sip.isdeleted(new)
        qtbot.wait(300)  # the equipment display's first values and the relayouts
        assert visible_english(again, allow=(console.registry.named("J001"),)) == []
    finally:
        if host is not None:
            host.window.close()
        console.close()


def test_no_rebuild_under_an_open_dialog_nor_when_the_operator_chose(qtbot: QtBot, site_fr: LiveStack) -> None:
    """A language change waits for an open dialog to close (a command being confirmed is never pulled away); a
    console that was told its language (``--lang``: not following) keeps it."""
    set_language("fr")
    console = _console(site_fr.url)
    try:
        assert wait_reply(console.login("op", PASSWORDS["op"]), 30).ok
        qtbot.waitUntil(lambda: bool(console.config_info), timeout=20_000)
        host = WindowHost(console)
        console.config_info = {**console.config_info, "lang": "en"}
        assert not console.follow_server_language()  # not following: nothing changes
        assert get_language() == "fr" and host.rebuilds == 0
        console.follow_language = True
        dialog = QDialog(host.window)
        dialog.open()  # window-modal, as the command and login dialogs
        qtbot.waitUntil(lambda: QApplication.activeModalWidget() is dialog, timeout=5000)
        assert console.follow_server_language() and get_language() == "en"
        qtbot.wait(200)
        assert host.rebuilds == 0  # put off while the dialog is open
        dialog.reject()
        qtbot.waitUntil(lambda: host.rebuilds == 1, timeout=5000)
        assert _texts(host.window) == _expected("en")
        host.window.close()
    finally:
        console.close()
