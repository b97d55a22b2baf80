"""The poll scheduler (scada.poll.Poller) with drivers from the registry (drivers.registry).

Two pollers, one poll per device: the junctions' devices are read by the field-safety thread
(server.components.safety: its own Poller, the monitor decides first, then the same readings go on to
the main tag database); every other device by the main Poller here. The junctions start first.

A protocol whose driver is not in this build degrades only that protocol: its devices are not
polled, the others are (status ``degraded`` says which and why).

Every 0.5 s the device statuses become comm-loss system alarms (server.components.commwatch: one per
lost equipment or shared device, after a start-up grace of two scan periods).

Start-up, as /health shows it (the API answers from the start; the first reads go on behind it)::

    poll "starting (0/N devices read)"    junctions' warm-up read (field-safety thread), then every other
      │                                   device's, fastest scan class first; a device not read yet is
      │                                   ``starting`` and its tags uncertain "not read yet" (scada.poll)
    poll "starting (n/N devices read)"    updated every 0.5 s with the comm-loss watch
      ▼
    poll "ok" / "degraded"                once no device is ``starting`` any more (each read, or lost after
                                          its grace of two scan periods)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from drivers.registry import DriverFactory, driver_class
from scada.config import CityConfig
from scada.config.partitions import edge_devices, junction_devices
from scada.poll import STARTING, DeviceStats, PollDriver, Poller
from scada.tagdb import TagDatabase
from server.components.base import SubsystemStatus
from server.components.commwatch import CommWatch
from server.components.loopthread import start_loop_thread, stop_loop_thread
from server.components.safety import SafetyPoll

if TYPE_CHECKING:
    from server.app import ScadaServer

log = logging.getLogger(__name__)
T = TypeVar("T")


class PollComponent:
    """The poll scheduler (scada.poll.Poller) with drivers from the registry (drivers.registry).

    By default in the server's event loop. With ``poll_thread: true`` in its own thread and event loop::

        main thread, main loop ── API, WebSocket, alarm tick, leases, health
        poll thread, poll loop ── Poller tasks, drivers (sockets, serial ports), tag database apply
                                  (subscribers run there: alarm engine, historian, hub, uncommanded watch — all locked)

    (the junctions and the field-safety monitor have a thread of their own either way:
    server.components.safety)

    The thread keeps the API, the WebSocket handshakes and the 100 ms console batches answering when
    protocol parsing saturates a loop; at full scale on 2 cores it measured slower for polling itself
    (GIL hand-offs: more overruns, higher alarm latency; BENCHMARKS.md), hence off by default. Writes from
    the fail-safe gate go through :meth:`call`, which runs them on whichever loop owns the drivers.
    """

    name = "poll"

    def __init__(self, server: ScadaServer) -> None:
        self.server = server
        self.poller: Poller | None = None
        self.factory: DriverFactory | None = None
        self.starting: asyncio.Task[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.comm: CommWatch | None = None
        self.comm_task: asyncio.Task[None] | None = None
        self.comm_every_s = 0.5
        self._settled: tuple[str, str] | None = None  # the status once no device is starting (set by the warm-up)
        #: the failover pair's standby holds its first poll until it becomes active (server.components.ha: the
        #: active's replication stream feeds it meanwhile; it does not poll the field twice); None: at once
        self.hold: asyncio.Event | None = None
        # the junctions: polled in the field-safety monitor's own thread and loop, never by self.poller
        self.safety = SafetyPoll(server)

    @staticmethod
    def _missing_protocols(config: CityConfig) -> dict[str, str]:
        """Protocols of ``config`` with no driver in this build → why (their devices are not polled)."""
        missing: dict[str, str] = {}
        for protocol in sorted({d.protocol for d in config.devices.values()}):
            try:
                driver_class(protocol)  # the registry loads the protocol's driver module by its documented name
            except Exception as exc:  # noqa: BLE001 - importing a protocol library may raise anything: poll the others
                missing[protocol] = repr(exc)
        return missing

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self.loop is None:
            self.loop, self.thread = start_loop_thread("poll-loop")
        return self.loop

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the poll loop (where the drivers live) and await its result here."""
        if not self.server.settings.poll_thread:
            return await coro
        loop = self._ensure_loop()
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))

    async def start(self, config: CityConfig, tagdb: TagDatabase) -> None:
        missing = self._missing_protocols(config)
        junctions = [n for n in junction_devices(config) if config.devices[n].protocol not in missing]
        edge = edge_devices(config)  # polled by their edge, consumed over MQTT (server.components.edge)
        devices = [n for n, d in config.devices.items()
                   if d.protocol not in missing and n not in junctions and n not in edge]
        await self.safety.build(config, tagdb, junctions, self._apply_loop())

        async def build() -> None:  # drivers and their shared resources are created on the poll loop
            self.factory = DriverFactory(config)
            self.poller = Poller(config, self.factory, tagdb, devices=devices)

        await self.call(build())
        if self.poller is None:  # build() sets it or raises
            raise RuntimeError("poll: the poller was not built")
        st = self.server.status("poll")
        st.stats = self.stats
        self._settled = None
        st.set("starting", self.starting_text())
        self._watch_comm(config, tagdb)
        # the warm-up cycle reads every device once (timeouts on dead ones): the API does not wait for it
        self.starting = asyncio.create_task(self._start(self.poller, missing, len(config.devices), len(devices)),
                                            name="poll-start")

    async def _start(self, poller: Poller, missing: dict[str, str], configured: int, polled: int) -> None:
        if self.hold is not None and not self.hold.is_set():
            self.server.status("poll").set("ok", "standby: not polling, fed by the active server's replication")
            await self.hold.wait()
            self.server.status("poll").set("starting", self.starting_text())
        await self.safety.start()  # the junctions are read first, in their own loop
        await self.call(poller.start())
        self._settle(missing, configured, polled)

    def _settle(self, missing: dict[str, str], configured: int, polled: int) -> None:
        """What the poll status becomes once no device is starting (:meth:`progress` switches to it)."""
        if missing:
            self._settled = ("degraded", f"{polled} devices polled; {configured - polled} not polled, no driver "
                                         "for " + ", ".join(f"{p} ({why})" for p, why in missing.items()))
        else:
            self._settled = ("ok", f"{polled} devices")
        self.progress()

    def read_count(self) -> tuple[int, int]:
        """(devices that have answered at least once, devices polled), junctions included."""
        devices = self._all_stats()
        return sum(1 for s in devices.values() if s.first_read_ns), len(devices)

    def starting_text(self) -> str:
        """The poll status detail while starting: "n/N devices read" (/health: "starting (n/N devices read)")."""
        read, total = self.read_count()
        return f"{read}/{total} devices read"

    def progress(self) -> None:
        """The poll status: "starting (n/N devices read)" while a device is starting, then the settled status."""
        st = self.server.status("poll")
        if self._settled is not None and not any(s.status == STARTING for s in self._all_stats().values()):
            st.set(*self._settled)
        elif st.status == "starting":
            st.detail = self.starting_text()  # progress, not a state change: not logged (set() logs changes)

    def _all_stats(self) -> dict[str, DeviceStats]:
        return {**(self.poller.stats if self.poller is not None else {}), **self.safety.stats}

    def stats(self) -> dict[str, Any]:
        if self.poller is None:
            return {}
        devices = self._all_stats()
        by_status: dict[str, int] = {}
        for s in devices.values():
            by_status[s.status_label] = by_status.get(s.status_label, 0) + 1
        lost = sorted(n for n, s in devices.items() if s.status_label in ("lost", "refused"))
        return {
            "devices": len(devices), "by_status": by_status, "lost": lost[:50],
            "requests": sum(s.requests for s in devices.values()),
            "errors": sum(s.errors for s in devices.values()),
            "overruns": sum(s.overruns for s in devices.values()),
            "per_device": {n: {"status": s.status_label, "requests": s.requests, "errors": s.errors,
                               "overruns": s.overruns, "latency_ms": round(s.latency_s * 1000, 1),
                               "period_ms": round(s.last_period_s * 1000, 1),
                               "last_success_ms": s.last_success_ns // 1_000_000, "last_error": s.last_error}
                           for n, s in list(devices.items())[:2000]},
        }

    def health(self) -> SubsystemStatus:
        return self.server.status("poll")

    def _watch_comm(self, config: CityConfig, tagdb: TagDatabase) -> None:
        """Start (or rebind) the comm-loss watch on this configuration and tag database."""
        if self.comm is not None:
            self.comm.bind(config, tagdb)
        else:
            self.comm = CommWatch(config, tagdb)
        if self.server.system_alarms is not None:
            self.server.system_alarms.initialise("poll")  # "no comm loss" is known; the grace does the rest
        if self.comm_task is None or self.comm_task.done():
            self.comm_task = asyncio.create_task(self._comm_loop(), name="poll-comm-watch")

    async def _comm_loop(self) -> None:
        while True:
            try:
                sink, poller, comm = self.server.system_alarms, self.poller, self.comm
                if sink is not None and poller is not None and comm is not None:
                    comm.evaluate(self._all_stats(), sink)
                self.progress()
            except Exception:  # the watch must survive a bad cycle: it is what says the field is blind (logged)
                log.exception("poll: comm-loss watch failed")
            await asyncio.sleep(self.comm_every_s)

    def lost_devices(self) -> list[str]:
        """Devices lost or refusing us (after their start-up grace), sorted."""
        return list(self.comm.lost) if self.comm is not None else []

    def driver(self, device: str) -> PollDriver | None:
        """The running driver of ``device`` (None if not polled): the fail-safe writer writes through it."""
        return self.poller.drivers.get(device) if self.poller is not None else None

    async def apply(self, old: CityConfig, new: CityConfig, tagdb: TagDatabase) -> dict[str, Any]:
        """A new configuration and tag database: only added, removed and changed devices are started/stopped.

        Unchanged devices keep their task, driver and connection and write into the new tag database from
        their next cycle (Poller.update). Before the first warm-up has finished, everything restarts.
        """
        if self.poller is None or self.starting is None or not self.starting.done():
            await self._stop_poller()
            await self.start(new, tagdb)
            return {"devices": len(new.devices), "restarted_all": True}
        missing = self._missing_protocols(new)
        junctions = [n for n in junction_devices(new) if new.devices[n].protocol not in missing]
        edge = edge_devices(new)
        devices = [n for n, d in new.devices.items()
                   if d.protocol not in missing and n not in junctions and n not in edge]
        safety = await self.safety.apply(new, tagdb, junctions)
        self.safety.apply_loop = self._apply_loop()
        if self.factory is not None:
            self.factory.config = new  # the shared driver resources (SNMP engine, sockets) are kept
        result = await self.call(self.poller.update(new, tagdb, devices=devices))
        self._watch_comm(new, tagdb)
        self._settle(missing, len(new.devices), len(devices))
        changes = result.as_dict()
        return {"devices": len(new.devices), "kept": len(changes.pop("kept")),
                **{k: v[:100] for k, v in changes.items()}, "safety": safety}

    def _apply_loop(self) -> Callable[[], asyncio.AbstractEventLoop]:
        """What returns the loop that applies the main Poller's batches: the junctions' readings are handed on
        there, so that the main tag database keeps one writer loop."""
        main = asyncio.get_running_loop()
        return lambda: self.loop if self.server.settings.poll_thread and self.loop is not None else main

    async def _stop_poller(self) -> None:
        if self.starting is not None and not self.starting.done():
            self.starting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.starting
        await self.safety.stop()
        poller, factory = self.poller, self.factory
        self.poller = self.factory = None
        try:
            if poller is not None:
                # bounded: a device task that ignores its cancellation must not hold the server's stop
                await asyncio.wait_for(self.call(poller.aclose()), timeout=8)
        except TimeoutError:
            log.error("poll: the scheduler did not stop within 8 s (a device task ignores its cancellation, or a "
                      "driver's close hangs)")
        if factory is not None:
            with contextlib.suppress(Exception):  # a shared resource's failing close must not block the stop
                await asyncio.wait_for(self.call(factory.aclose()), timeout=5)

    async def aclose(self) -> None:
        if self.comm_task is not None:
            self.comm_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.comm_task
            self.comm_task = None
        await self._stop_poller()
        await self.safety.aclose()
        loop, thread = self.loop, self.thread
        self.loop = self.thread = None
        await stop_loop_thread(loop, thread)
