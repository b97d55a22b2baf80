"""The historian (historian.service.Historian): recorder → store-and-forward buffer → backend.

    settings.historian.backend   embedded  data_dir/historian/history.sqlite (SQLite, WAL)
                                 influxdb  InfluxDB 1.x or 2.x (secrets from the environment)
                                 none      not started (status unavailable)

Buffer conditions (backend down, 80 %, full, quarantine) become the ``historian`` status and system
alarms; retention and roll-ups run hourly in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from historian.backend import Backend
from historian.buffer import BufferAlarm
from historian.influx import InfluxV1Backend, InfluxV2Backend
from historian.service import STORE_NAME, Historian
from historian.sqlite_backend import SqliteBackend
from scada.config import CityConfig
from scada.tagdb import TagDatabase
from server.components.base import SubsystemStatus

if TYPE_CHECKING:
    from server.app import ScadaServer

log = logging.getLogger(__name__)


class HistorianComponent:
    name = "historian"

    def __init__(self, server: ScadaServer) -> None:
        self.server = server
        self.hist: Historian | None = None
        self.alarms: dict[str, BufferAlarm] = {}
        self.task: asyncio.Task[None] | None = None

    def _backend(self) -> Backend:
        settings = self.server.settings.historian
        cfg = settings.influxdb
        if settings.backend == "influxdb" and cfg is not None:
            if cfg.version == 1:
                return InfluxV1Backend(cfg.url, cfg.bucket, retention_policy=cfg.retention_policy,
                                       username=cfg.username,
                                       password=os.environ.get(cfg.password_env) if cfg.username else None)
            return InfluxV2Backend(cfg.url, cfg.org, cfg.bucket, os.environ.get(cfg.token_env, ""))
        return SqliteBackend(self.server.data_dir / "historian" / STORE_NAME)

    async def start(self, config: CityConfig, tagdb: TagDatabase) -> None:
        st = self.health()
        if self.server.settings.historian.backend == "none":
            st.set("unavailable", "historian disabled in the settings (historian.backend: none)")
            return
        backend = await asyncio.to_thread(self._backend)
        # built in a worker thread (seconds at city scale): the API, listening already, answers logins meanwhile
        self.hist = await asyncio.to_thread(Historian.build, config, tagdb, self.server.data_dir / "historian",
                                            backend=backend, on_alarm=self._on_alarm)
        if self.server.system_alarms is not None:  # "no condition" is known (the buffer may raise at once)
            self.server.system_alarms.initialise("historian")
        await asyncio.to_thread(self.hist.start)
        self.server.historian = self.hist
        if not any(a.active for a in self.alarms.values()):  # else "degraded" (backend down...) stands
            st.set("ok", f"{backend.name} backend")
        st.stats = self.stats
        self.task = asyncio.create_task(self._maintain(), name="historian-maintenance")

    def _on_alarm(self, alarm: BufferAlarm) -> None:
        """Buffer conditions → health status and system alarms (called from the buffer's threads)."""
        self.alarms[alarm.code] = alarm
        sink = self.server.system_alarms
        if sink is not None:
            sink.raise_("historian", alarm.code, "", bool(alarm.active))
        active = [a for a in self.alarms.values() if a.active]
        if active:
            self.health().set("degraded", "; ".join(a.message for a in active))
        elif self.hist is not None:
            self.health().set("ok", f"{self.hist.backend.name} backend")

    async def _maintain(self) -> None:
        while True:  # retention and downsampling, hourly
            await asyncio.sleep(3600)
            try:
                if self.hist is not None:
                    await asyncio.to_thread(self.hist.maintain, time.time_ns())
            except Exception:  # the store raises more than StorageError; retry next hour rather than never (logged)
                log.exception("historian maintenance failed")

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = self.hist.stats() if self.hist is not None else {"backend": ""}
        out["alarms"] = [{"code": a.code, "priority": a.priority, "message": a.message}
                         for a in self.alarms.values() if a.active]
        return out

    def health(self) -> SubsystemStatus:
        return self.server.status("historian")

    async def apply(self, old: CityConfig, new: CityConfig, tagdb: TagDatabase) -> dict[str, Any]:
        if self.hist is None:
            return {}
        return {"recorded_tags": await asyncio.to_thread(self.hist.rebind, tagdb)}

    async def aclose(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        hist, self.hist = self.hist, None
        self.server.historian = None
        if hist is not None:
            await hist.aclose(drain_s=10.0)  # archive held snapshots, final flush, replay for up to 10 s
