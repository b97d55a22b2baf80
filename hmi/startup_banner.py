"""The start-up banner: "starting: n/N devices read" while the server reads the city for the first time.

    ┌ starting: 812/1512 devices read — values not read yet are shown uncertain (~) ┐   poll "starting"
    └────────────────────────────────────────────────────────────────────────────────┘   hidden otherwise

A server that has just started answers before every device has been read (server.components.poll): its
poll subsystem is ``starting`` with the detail ``n/N devices read`` until no device is starting any more.
Instead of a wall of unknowns, the console says so in one line above the displays. The banner is a view
over the console model's last /health (``ConsoleModel.healthChanged``), nothing else.
"""

from __future__ import annotations

from typing import Any

from PyQt6.QtWidgets import QLabel

from hmi.console import ConsoleModel
from scada.i18n import _


def startup_text(health: dict[str, Any]) -> str:
    """The banner's text for a /health answer; "" when the server is not starting (banner hidden)."""
    poll = (health.get("subsystems") or {}).get("poll")
    if not isinstance(poll, dict) or poll.get("status") != "starting":
        return ""
    detail = str(poll.get("detail") or _("first reads under way"))
    return _("starting: {detail} — values not read yet are shown uncertain (~)").format(detail=detail)


class StartupBanner(QLabel):
    """One line, shown while the server's poll subsystem is starting (module docstring)."""

    def __init__(self, console: ConsoleModel) -> None:
        super().__init__()
        self.console = console
        self.setAccessibleName(_("start-up progress"))
        self.setStyleSheet("background: #fff4ce; color: #3b2f00; padding: 3px 6px;")
        console.healthChanged.connect(self.show_health)
        self.show_health(console.health)

    def show_health(self, health: dict[str, Any]) -> None:
        text = startup_text(health)
        self.setText(text)
        self.setVisible(bool(text))
