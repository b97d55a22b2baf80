"""The stale sweeper: good values not refreshed for ``stale_after`` scan periods become ``uncertain``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from scada.config import CityConfig
from scada.config.partitions import edge_devices
from scada.tagdb import I64, TagDatabase
from server.components.base import SubsystemStatus

if TYPE_CHECKING:
    from server.app import ScadaServer

log = logging.getLogger(__name__)


class StaleComponent:
    """Good values not refreshed for ``stale_after`` scan periods of their device become ``uncertain``.

    Devices read through subscriptions (OPC UA) only report changes, so their tags are exempt.
    """

    name = "stale"

    def __init__(self, server: ScadaServer, every_s: float = 1.0,
                 before_sweep: Callable[[], None] | None = None) -> None:
        self.server = server
        self.every_s = every_s
        #: called before each sweep on this loop: the junctions' samples handed on in batches
        #: (server.components.safety) are applied first, so a stall never marks stale what was received
        self.before_sweep = before_sweep
        self.task: asyncio.Task[None] | None = None
        self.limits: I64 | None = None
        self.marked = 0

    def _limits(self, config: CityConfig, tagdb: TagDatabase) -> I64:
        # edge devices report by exception too (Sparkplug DDATA): their deaths mark them bad_comm instead
        edge = edge_devices(config)
        periods = {n: d.period_s for n, d in config.devices.items() if d.protocol != "opcua" and n not in edge}
        return tagdb.stale_limits_ns(periods)

    async def start(self, config: CityConfig, tagdb: TagDatabase) -> None:
        self.limits = self._limits(config, tagdb)
        self.task = asyncio.create_task(self._run(), name="stale-sweeper")
        self.server.status("stale").set("ok")
        self.server.status("stale").stats = lambda: {"marked_uncertain": self.marked}

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            try:
                if self.limits is None:
                    continue
                if self.before_sweep is not None:  # samples already received, still queued: applied first
                    self.before_sweep()
                ev = self.server.tagdb.mark_stale(time.time_ns(), self.limits)
                self.marked += len(ev)
            except Exception:  # one failed sweep must not stop stale marking for good (logged)
                log.exception("stale sweeper failed")

    def health(self) -> SubsystemStatus:
        return self.server.status("stale")

    async def apply(self, old: CityConfig, new: CityConfig, tagdb: TagDatabase) -> dict[str, Any]:
        self.limits = self._limits(new, tagdb)
        return {}

    async def aclose(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None
