"""The console knows both servers of a failover pair and talks to whichever is ACTIVE.

    every 0.5 s, in its own thread: GET /api/v1/health of each server (no account needed)
        subsystems.ha.messages ── [{"key": "{server}: {role}, active: {active}",     (server.components.ha)
                                    "params": {"server": "failover room", "role": "standby",
                                               "active": "main room"}},
                                   {"key": "replicating", "params": {}}]
                                  the first names this server and its role; each key is an English msgid of
                                  the catalogue: detail_text() shows them in the console's language
        subsystems.ha.detail   ── the same in English ("failover room: standby, active: main room; replicating"):
                                  read only from a server that sends no messages
        no answer              ── lost
              │
              ▼  pair_status(): who is active, and the text the status bar shows
    GUI thread: changed(text)  "ACTIVE: main room / STANDBY: failover room"  (or "main room: lost")
                the active is another server than the bridge's ──► Bridge.retarget(url): every channel
                reconnects there at once, logging in again with the remembered credentials

A standby answers reads but refuses every action (503 naming the active server): the console follows the
active so that operators act where they can. While nobody is active (etcd lost, both starting) the bridge
stays where it is. This module reads only ``/health``; everything else goes through the bridge.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import httpx
from PyQt6.QtCore import QObject, pyqtSignal
from PyQt6.QtWidgets import QLabel, QWidget

from hmi.bridge import PREFIX, Bridge
from scada.i18n import N_, _

log = logging.getLogger(__name__)

PERIOD_S = 0.5
#: the roles /health names, as the status bar shows them (translated when shown)
ROLES = {"active": N_("ACTIVE"), "standby": N_("STANDBY"), "forced active": N_("FORCED ACTIVE"),
         "starting": N_("STARTING")}


def _role(value: str) -> str:
    """A role as /health names it ("forced_active" in the messages, "FORCED ACTIVE" in the English detail)."""
    role = value.replace("_", " ").strip()
    return "forced active" if role.upper().startswith("FORCED ACTIVE") else role.lower()


def detail_text(ha: dict[str, Any]) -> str:
    """The pair's /health ha subsystem in the console's language: its structured messages translated part by
    part (a role in the status bar's words); its English detail when the server sent none."""
    messages = ha.get("messages")
    if not isinstance(messages, list):
        return str(ha.get("detail") or "")
    parts = []
    for m in messages:
        params = dict(m.get("params") or {})
        if "role" in params:
            role = _role(str(params["role"]))
            params["role"] = _(ROLES.get(role, role.upper()))
        try:
            parts.append(_(str(m.get("key") or "")).format(**params))
        except (KeyError, IndexError, ValueError):  # a newer server's message: its English as it came
            parts.append(str(m.get("key") or ""))
    return "; ".join(parts)


@dataclass(frozen=True, slots=True)
class Member:
    """One server of the pair as its /health describes it."""

    url: str
    name: str  # "" when lost (or not a pair member)
    role: str  # active | standby | forced active | starting | lost

    @property
    def active(self) -> bool:
        return self.role in ("active", "forced active")


def member_of(url: str, health: dict[str, Any] | None) -> Member:
    """Read one server's /health answer (None: no answer)."""
    if not isinstance(health, dict):
        return Member(url, "", "lost")
    ha = (health.get("subsystems") or {}).get("ha") or {}
    messages = ha.get("messages")
    if isinstance(messages, list) and messages:  # the first names this server, and its role
        params = messages[0].get("params") or {}
        if params.get("server"):
            return Member(url, str(params["server"]), _role(str(params.get("role") or "starting")))
    detail = str(ha.get("detail") or "")  # a server without messages: its English
    name, sep, rest = detail.partition(": ")
    if not sep:
        return Member(url, "", "starting")
    return Member(url, name, _role(rest.split(",")[0].split(";")[0]))


def pair_status(members: list[Member]) -> tuple[Member | None, str]:
    """The active member (None if no one is), and the status bar's text."""
    active = next((m for m in members if m.active), None)
    parts = [_("{server}: lost").format(server=m.name or m.url) if m.role == "lost" else
             f"{_(ROLES.get(m.role, m.role.upper()))}: {m.name or m.url}" for m in members]
    if active is not None:  # the active first
        parts.insert(0, parts.pop(members.index(active)))
    return active, " / ".join(parts)


class Failover(QObject):
    """Watches the pair and points ``bridge`` at its active server (see the module docstring)."""

    changed = pyqtSignal(str)  # the pair's status text
    _seen = pyqtSignal(object)  # list[Member], from the watch thread to the GUI thread

    def __init__(self, bridge: Bridge, urls: list[str], parent: QObject | None = None,
                 period_s: float = PERIOD_S) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.urls = [u.rstrip("/") for u in urls]
        self.period_s = period_s
        self.text = ""
        self.active: Member | None = None
        self.switches = 0
        self.names: dict[str, str] = {}  # url → the server's name in the pair, as last seen
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen.connect(self._on_seen)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="hmi-failover", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def label(self, parent: QWidget | None = None) -> QLabel:
        """A status-bar label that always shows the pair's state."""
        lab = QLabel(self.text, parent)
        lab.setObjectName("pairStatus")
        self.changed.connect(lab.setText)
        return lab

    def _watch(self) -> None:
        with httpx.Client(timeout=max(0.3, self.period_s * 2)) as client:
            while not self._stop.is_set():
                members = []
                for url in self.urls:
                    try:
                        health = client.get(url + PREFIX + "/health").json()
                    except (httpx.HTTPError, ValueError):
                        health = None
                    members.append(member_of(url, health))
                self._seen.emit(members)
                self._stop.wait(self.period_s)

    def _on_seen(self, members: list[Member]) -> None:
        for m in members:
            if m.name:
                self.names[m.url] = m.name
        # a lost server is named as it was last seen ("main room: lost")
        members = [m if m.name else Member(m.url, self.names.get(m.url, ""), m.role) for m in members]
        active, text = pair_status(members)
        if text != self.text:
            self.text = text
            log.info("failover pair: %s", text)
            self.changed.emit(text)
        self.active = active
        if active is not None and active.url != self.bridge.url:
            log.warning("failover pair: %s (%s) is active: the console follows it", active.name, active.url)
            self.switches += 1
            self.bridge.retarget(active.url)
