"""The server's own health as tags (trendable, alarmable like any tag), published every second.

    system/server/<subsystem>/status   enum (ok, degraded, down, unavailable, starting, stopped)
    system/historian/buffer_fill       % of the store-and-forward buffer
    system/historian/buffer_pending    points waiting in it
    system/api/clients, resyncs        WebSocket consoles, slow-consumer resynchronisations
    system/alarms/unacked              visible unacknowledged alarms
    system/server/rss_mb               resident memory

The overall status /health reports (:func:`overall_status`), worst first::

    failed     the fail-safe layer or the journal cannot work: the fail-safe, poll (its eyes), alarms or
               journal component is down, or the fail-safe stores (audit log, leases.json) cannot be written
    starting   the first reads are under way: "starting (n/N devices read)" until no device is starting
               any more (server.components.poll), or a subsystem has not come up yet
    degraded   a device is lost (count and names), or another subsystem is down or degraded
               (``unavailable`` — left out by the settings, e.g. ``historian.backend: none`` — is not a fault)
    ok         none of the above

Fail loud: every 0.5 s the fail-safe and poll components' statuses become P1 system alarms
(``system.server.failsafe_down``, ``system.server.poll_down``) — a component that failed to start or
stopped is annunciated within a second, not only shown here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from scada.config import CityConfig
from scada.config.model import TagDef
from scada.quality import Sample
from scada.tagdb import TagDatabase
from server.components.base import SubsystemStatus

if TYPE_CHECKING:
    from server.app import ScadaServer
    from server.components.historian import HistorianComponent

log = logging.getLogger(__name__)

SUBSYSTEMS = ("tagdb", "journal", "alarms", "historian", "poll", "failsafe", "stale", "api")
#: subsystems without which the fail-safe layer or the journal cannot work: down → /health "failed"
FAILS_WHEN_DOWN = ("failsafe", "poll", "alarms", "journal")
#: subsystem → the P1 system alarm (source "server") raised while it is down
DOWN_ALARMS = {"failsafe": "failsafe_down", "poll": "poll_down"}
STATUS_CODES = {"ok": 0, "degraded": 1, "down": 2, "unavailable": 3, "starting": 4, "stopped": 5}
#: server health tags: name → (dtype, units, description)
HEALTH_TAGS: dict[str, tuple[str, str, str]] = {
    **{f"system/server/{s}/status": ("enum", "", f"{s} subsystem status") for s in SUBSYSTEMS},
    "system/historian/buffer_fill": ("float", "%", "store-and-forward buffer fill level"),
    "system/historian/buffer_pending": ("int", "", "points waiting in the store-and-forward buffer"),
    "system/api/clients": ("int", "", "WebSocket consoles connected"),
    "system/api/resyncs": ("int", "", "slow-consumer resynchronisations since start"),
    "system/alarms/unacked": ("int", "", "visible unacknowledged alarms"),
    "system/server/rss_mb": ("float", "MB", "server resident memory"),
}


def health_tag_defs() -> list[TagDef]:
    enum = {v: k for k, v in STATUS_CODES.items()}
    return [TagDef(name=name, equipment="", tag=name.rsplit("/", 1)[1], template_tag=name, device="server",
                   address=f"server:{name}", dtype=dtype, units=units, description=desc,
                   enum=dict(enum) if dtype == "enum" else None)
            for name, (dtype, units, desc) in HEALTH_TAGS.items()]


def overall_status(server: ScadaServer) -> dict[str, Any]:
    """The server's status as /health reports it (module docstring), with the reasons and the lost devices."""
    failed: list[str] = []
    degraded: list[str] = []
    starting: list[str] = []
    for name, st in server.subsystems.items():
        said = f"{name} {st.status}" + (f": {st.detail}" if st.detail else "")
        if st.status == "down" and name in FAILS_WHEN_DOWN:
            failed.append(said)
        elif st.status == "starting":
            if name == "poll" and st.detail:  # the start-up's progress, "starting (n/N devices read)": said first
                starting.insert(0, f"starting ({st.detail})")
            else:
                starting.append(f"{name} starting")
        elif st.status in ("down", "degraded"):
            degraded.append(said)  # "unavailable" is what the settings chose (historian: none): not a fault
    failed.extend(getattr(server.components.get("failsafe"), "store_problems", None) or [])
    lost_of = getattr(server.components.get("poll"), "lost_devices", None)
    lost: list[str] = lost_of() if callable(lost_of) else []
    if lost:
        degraded.append(f"{len(lost)} device(s) lost: {', '.join(lost[:20])}" + (" ..." if len(lost) > 20 else ""))
    status = "failed" if failed else "starting" if starting else "degraded" if degraded else "ok"
    return {"status": status, "reasons": failed + starting + degraded,
            "devices_lost": {"count": len(lost), "names": lost[:200]}}


def process_stats() -> dict[str, Any]:
    """RSS (MB), CPU seconds and thread count of this process, from /proc (no psutil needed)."""
    out: dict[str, Any] = {"pid": os.getpid()}
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        out["rss_mb"] = round(pages * os.sysconf("SC_PAGE_SIZE") / 1e6, 1)
    except OSError:
        pass
    t = os.times()
    out["cpu_s"] = round(t.user + t.system, 2)
    return out


class HealthComponent:
    """Publishes the health figures as tags every second."""

    name = "health"

    def __init__(self, server: ScadaServer, historian: HistorianComponent | None = None,
                 every_s: float = 1.0) -> None:
        self.server = server
        self.historian = historian  # for its buffer's level
        self.every_s = every_s
        self.task: asyncio.Task[None] | None = None
        self.status = SubsystemStatus("health")  # not a subsystem of its own on /health
        self._down: dict[str, bool] = {}  # component → its down alarm as last raised

    async def start(self, config: CityConfig, tagdb: TagDatabase) -> None:
        if self.server.system_alarms is not None:
            self.server.system_alarms.initialise("server")
        self.fail_loud()  # a component that failed to start before this one: annunciated now
        self.task = asyncio.create_task(self._run(), name="health-tags")
        self.status.set("ok")

    def fail_loud(self) -> None:
        """Raise (or clear) the P1 alarm of every component the fail-safe layer needs that is down."""
        sink = self.server.system_alarms
        if sink is None:
            return
        for name, code in DOWN_ALARMS.items():
            st = self.server.subsystems.get(name)
            down = st is not None and st.status == "down"
            if self._down.get(name, False) != down:
                self._down[name] = down
                log.log(logging.ERROR if down else logging.INFO, "%s: %s", name,
                        f"down, P1 alarm raised ({st.detail if st else ''})" if down else "up again, alarm cleared")
                sink.raise_("server", code, "", down)

    def publish(self) -> None:
        srv = self.server
        values: dict[str, float | int] = {f"system/server/{s}/status": STATUS_CODES.get(st.status, 2)
                                         for s, st in srv.subsystems.items() if s in SUBSYSTEMS}
        hist = self.historian.hist if self.historian is not None else None
        if hist is not None and hist.buffer is not None:
            values["system/historian/buffer_fill"] = float(hist.buffer.fill_percent)
            values["system/historian/buffer_pending"] = int(hist.buffer.pending_points)
        values["system/api/clients"] = len(srv.hub.clients)
        values["system/api/resyncs"] = int(srv.hub.stats["resyncs"])
        if srv.alarms is not None:
            values["system/alarms/unacked"] = int(srv.alarms.summary(None)["unacked"])
        rss = process_stats().get("rss_mb")
        if rss is not None:
            values["system/server/rss_mb"] = float(rss)
        db = srv.tagdb
        db.apply_samples([(name, Sample.good(v)) for name, v in values.items() if name in db.index])

    async def _run(self) -> None:
        last = 0.0
        while True:
            try:
                self.fail_loud()  # every 0.5 s: a component going down is annunciated within a second
            except Exception:  # the watch must outlive one failed pass (logged)
                log.exception("fail-loud check failed")
            now = time.monotonic()
            if now - last >= self.every_s:
                last = now
                try:
                    self.publish()
                except Exception:  # one failed publication must not stop the health tags for good (logged)
                    log.exception("health tags failed")
            await asyncio.sleep(min(0.5, self.every_s))

    async def apply(self, old: CityConfig, new: CityConfig, tagdb: TagDatabase) -> dict[str, Any]:
        return {}

    def health(self) -> SubsystemStatus:
        return self.status

    async def aclose(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None
