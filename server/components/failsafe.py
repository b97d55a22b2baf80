"""The fail-safe layer (failsafe.service.Failsafe) on commands.yaml: gate, leases, monitor, crisis plans.

    API ─► Failsafe (CommandService, CrisisService) ─► CommandGate ─► DriverWriter ─► poll loop ─► driver
                                                                      │ per-device lock, allow-list,
                                                                      └ runs on the drivers' loop (call=)
    FailsafeAlarm (monitor, gate) ─► system-alarm tags (scada.alarms.system) ─► alarm engine

No commands.yaml: every command is refused (status ``unavailable``). A reload rebuilds the layer on the
new configuration and vocabulary, on the same audit log; leases persist across it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drivers.base import Driver
from failsafe.audit import AuditLog
from failsafe.service import Failsafe
from failsafe.types import FailsafeAlarm
from failsafe.vocabulary import check_vocabulary, load_vocabulary
from failsafe.writer import DriverLike, DriverWriter
from scada.alarms.system import codes_of
from scada.config import CityConfig
from scada.errors import ConfigProblem
from scada.tagdb import TagDatabase
from server.components.base import SubsystemStatus
from server.settings import ServerSettings

if TYPE_CHECKING:
    from server.app import ScadaServer
    from server.components.poll import PollComponent

log = logging.getLogger(__name__)


def commands_file(settings: ServerSettings) -> Path:
    """The command vocabulary: ``commands`` in the settings, else commands.yaml next to the tags file."""
    return settings.commands if settings.commands is not None else settings.tags.parent / "commands.yaml"


def check_commands(settings: ServerSettings, config: CityConfig) -> list[ConfigProblem]:
    """Problems of commands.yaml against this city (none when there is no commands.yaml: commands refused)."""
    path = commands_file(settings)
    if not path.is_file():
        return []
    _, problems = check_vocabulary(path, config)
    return list(problems)


class FailsafeComponent:
    name = "failsafe"

    def __init__(self, server: ScadaServer, poll: PollComponent | None) -> None:
        self.server = server
        self.poll = poll  # the drivers to write through (None: every write fails, nothing to write with)
        self.fs: Failsafe | None = None
        self.writer: DriverWriter | None = None
        self.audit: AuditLog | None = None
        self.alarms: dict[str, FailsafeAlarm] = {}

    # ------------------------------------------------------------------ ports
    def _driver(self, device: str) -> DriverLike | None:
        driver = self.poll.driver(device) if self.poll is not None else None
        return driver if isinstance(driver, Driver) else None

    def reset_at_source(self, junctions: Iterable[str], user: str) -> None:
        """The alarm component's reset port: reset the monitor's latch of these junctions first."""
        if self.fs is not None:
            self.fs.reset_at_source(junctions, user)

    def on_alarm(self, alarm: FailsafeAlarm) -> None:
        """Fail-safe alarms (conflicting green, monitor did not act, not confirmed) → their system-alarm tags,
        which the alarm engine turns into ISA-18.2 alarms (scada.alarms.system). The detail (which phases,
        which command) is in the log and the command audit log."""
        self.alarms[alarm.key] = alarm
        log.log(logging.ERROR if alarm.active and alarm.priority <= 2 else logging.WARNING, "%s: %s (P%s, %s)",
                alarm.equipment or "fail-safe", alarm.message, alarm.priority, "active" if alarm.active else "cleared")
        sink = self.server.system_alarms
        mapped = codes_of([alarm.key])
        if sink is None:
            return
        if not mapped:
            log.error("fail-safe alarm %s has no system alarm: it is only logged", alarm.key)
            return
        equipment, code = mapped[0]
        sink.raise_("failsafe", code, equipment, bool(alarm.active))

    # ------------------------------------------------------------------ lifecycle
    async def start(self, config: CityConfig, tagdb: TagDatabase) -> None:
        st = self.health()
        path = commands_file(self.server.settings)
        if not path.is_file():
            st.set("unavailable", f"no command vocabulary ({path} not found): every command is refused")
            return
        await self._build(config, tagdb, path)
        assert self.fs is not None
        st.set("ok", f"{len(self.fs.vocab.types)} commandable types, {len(self.fs.vocab.crisis_plans)} crisis plans")
        st.stats = self.stats

    async def _build(self, config: CityConfig, tagdb: TagDatabase, path: Path) -> None:
        call = self.poll.call if self.poll is not None else None
        self.writer = DriverWriter(config, self._driver, call=call)
        self.fs = Failsafe.build(config, tagdb, self.writer, self.server.data_dir / "failsafe",
                                 vocabulary=load_vocabulary(path, config), alarms=self.on_alarm,
                                 authenticate=lambda p: bool(p.authenticated), audit=self.audit)
        self.audit = self.fs.audit
        await self.fs.start()
        self.server.commands = self.fs
        self.server.crisis = self.fs
        if self.server.system_alarms is not None:  # "no condition" is now known (after a restart: the
            self.server.system_alarms.initialise("failsafe")  # latched alarms stay held until an operator reset)

    def stats(self) -> dict[str, Any]:
        if self.fs is None:
            return {}
        return {**self.fs.stats(), "writes": self.writer.writes if self.writer is not None else 0,
                "alarms": [{"key": a.key, "priority": a.priority, "message": a.message}
                           for a in self.alarms.values() if a.active][:100]}

    def health(self) -> SubsystemStatus:
        return self.server.status("failsafe")

    async def apply(self, old: CityConfig, new: CityConfig, tagdb: TagDatabase) -> dict[str, Any]:
        if self.fs is None:
            return {}
        await self._stop()
        await self._build(new, tagdb, commands_file(self.server.settings))
        assert self.fs is not None
        return {"types": len(self.fs.vocab.types)}

    async def _stop(self) -> None:
        fs, self.fs = self.fs, None
        self.server.commands = None
        self.server.crisis = None
        if fs is not None:
            # leases persist with their end time; after a restart an expired one is only released, never
            # re-asserted, and the field side returns to local control by itself when the heartbeat stops
            await fs.aclose()

    async def aclose(self) -> None:
        await self._stop()
