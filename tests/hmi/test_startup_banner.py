"""The console's start-up banner follows the server's /health: shown while the poll subsystem is starting
("starting: n/N devices read"), hidden once it is not (offscreen Qt, the real widget, a console model
fed the /health answers the server gives: server.components.poll, server.components.health)."""

from __future__ import annotations

from PyQt6.QtWidgets import QVBoxLayout, QWidget
from pytestqt.qtbot import QtBot

from hmi.console import ConsoleModel
from hmi.models.layouts import load_layouts
from hmi.startup_banner import StartupBanner, startup_text


def health(poll_status: str, detail: str) -> dict[str, object]:
    return {"status": poll_status, "subsystems": {"poll": {"status": poll_status, "detail": detail}}}


def test_the_banner_shows_the_devices_read_while_starting_then_hides(qtbot: QtBot) -> None:
    console = ConsoleModel(None, load_layouts()[0])
    window = QWidget()  # the banner sits in the main window's layout: shown with it, unless it hides itself
    banner = StartupBanner(console)
    QVBoxLayout(window).addWidget(banner)
    qtbot.addWidget(window)
    window.show()
    assert not banner.isVisible()  # no /health yet: nothing to say
    for h in (health("starting", "0/1512 devices read"), health("starting", "812/1512 devices read")):
        console.health = h
        console.healthChanged.emit(h)
        assert banner.isVisible()
        assert banner.text().startswith(f"starting: {h['subsystems']['poll']['detail']}")  # type: ignore[index]
    done = health("ok", "1512 devices")
    console.health = done
    console.healthChanged.emit(done)
    assert not banner.isVisible() and banner.text() == ""


def test_only_a_starting_poll_makes_a_banner() -> None:
    assert startup_text({}) == ""
    assert startup_text(health("degraded", "1510 devices polled")) == ""
    assert startup_text(health("starting", "")).startswith("starting: first reads under way")
