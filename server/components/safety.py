"""The field-safety loop: the junctions are polled in the monitor's own thread and event loop.

Viewers hammering the API, a historian write or a console burst stall the main event loop; the field-safety
monitor must not notice. So the junctions are read by a second Poller, in a thread of its own::

    main thread, main loop                          "field-safety" thread, safety loop
    ──────────────────────                          ──────────────────────────────────
    API, WebSocket, alarm engine, historian, hub     Poller over the junction devices only, with its own
    main Poller: every device except the junctions   DriverFactory (own sockets, own SNMP engine)
                                                       │ one read per junction per period
                                                       ▼
                                                     SafetyTagDatabase (the junction devices' tags only;
                                                       server.components.safety_db)
                                                       1. FieldSafetyMonitor decides on the sample FIRST:
                                                          its subscriber + on_change for unchanged samples
                                                          (conflict → P1; flash request → gate → the junction's
                                                          driver, on this loop: LoopDriver)
                                                       2. hand-on, the same readings, no second poll:
    main TagDatabase.apply_readings ◄── queued, one flush per HAND_ON_S ─┘
      on the loop that applies the main Poller's batches (the main loop, or the poll loop with poll_thread):
      the main tag database keeps ONE writer loop; its subscribers see the junctions as before. The
      junctions' batches (226/s at full city: 113 junctions read every 0.5 s) are gathered for HAND_ON_S
      and applied as one batch (one wake-up of that loop, one hand-out to the alarm engine, historian and
      hub, instead of one per junction read). The monitor does not wait for it: it decided in step 1; what
      waits is what the consoles show, at most HAND_ON_S later. A tag read twice within one window (a
      retry) is applied in order, in two batches, so no change event is lost.

    SafetyWatch, every 0.2 s in the MAIN loop (so that a stalled safety loop is caught too):
      a junction's last good sample the running monitor DECIDED on older than the blind limit (received is not
        enough: a sample the monitor failed on is not a check; a monitor attached by a reload decides on the
        samples that came in meanwhile first), the same limit as ``checking()``; grace at start and for a
        junction added by a reload: that limit from when its polling began; with no monitor running, the last
        good sample received. A stalled safety loop stops the decisions, so it is caught by the same limit; a
        heartbeat older than 1 s only names that cause in the alarm's reason
        → P1 failsafe/monitor_blind at that junction ("field-safety monitor blind at J0xx")
      blind limit: two periods of its status sample (failsafe.monitor.status_period_s: 0.5 s with the shipped
        template, so stale after 1 s), at least 1.5 s: the P1 comes at most 1 s after the sample turned stale
        (1.5 s + the watch's 0.2 s), and an answer late by half a second on a loaded machine is not a false P1
      no monitor running on the safety loop (fail-safe layer not started, no commands.yaml, failed reload;
        a valid reload's switch of the monitor is not a stop while the reload runs, at most 10 s)
        → P1 failsafe/monitor_not_running (not while the fail-safe component is down: system.server.
          failsafe_down already says the monitor stopped, one annunciation per condition)

Thread-safety: the safety database is written only by the safety loop; the main one only by its own writer
loop (the hand-on is queued there, never applied from the safety thread, so the safety thread never waits
for the main database's lock while subscribers run). Monitor alarms hop to the main loop the same way
(server.components.failsafe). The statistics read from the main thread are plain counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import numpy.typing as npt

from drivers.registry import DriverFactory
from failsafe.monitor import FieldSafetyMonitor
from scada.config import CityConfig
from scada.poll import DeviceStats, Poller
from scada.tagdb import Readings, TagDatabase
from server.components.loopthread import start_loop_thread, stop_loop_thread
from server.components.safety_db import LoopDriver, SafetyTagDatabase

if TYPE_CHECKING:
    from server.app import ScadaServer

log = logging.getLogger(__name__)
T = TypeVar("T")

HEARTBEAT_S = 0.1  # the safety loop stamps its heartbeat this often
STALLED_S = 1.0  # a heartbeat older than this: the safety loop is stalled (the reason given for a blind junction)
BLIND_PERIODS = 2.0  # a junction whose last good sample is older than this many periods: stale ...
BLIND_MIN_S = 1.5  # ... and blind once it is older than this too (module docstring: the blind limit)
SWITCH_MAX_S = 10.0  # a reload's switch of the monitor is not a stop for at most this long (while it runs)
WATCH_EVERY_S = 0.2
HAND_ON_S = 0.05  # the junctions' samples are handed on to the main tag database in batches this often


def blind_limit_s(period_s: float) -> float:
    """How old a junction's last decided sample may be before the monitor is blind there (module docstring)."""
    return max(BLIND_PERIODS * period_s, BLIND_MIN_S)


class SafetyPoll:
    """The safety thread and loop, the junctions' Poller, the hand-on and the watch (module docstring)."""

    def __init__(self, server: ScadaServer) -> None:
        self.server = server
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.poller: Poller | None = None
        self.factory: DriverFactory | None = None
        self.db: SafetyTagDatabase | None = None
        self.main_db: TagDatabase | None = None
        self.apply_loop: Callable[[], asyncio.AbstractEventLoop] | None = None
        self.heartbeat_ns = 0
        self.since_ns: dict[str, int] = {}  # junction → when its polling began (the start-up grace)
        self.monitor: FieldSafetyMonitor | None = None
        self._monitor_task: asyncio.Future[None] | None = None
        self._beat: asyncio.Future[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._maps: tuple[int, int, npt.NDArray[np.int64]] | None = None  # (safety db id, main db id, mapping)
        self.blind: dict[str, str] = {}  # junction → why, as raised
        self.not_running = False
        #: a reload moved the junctions to a new database: until the new monitor is attached, while the reload
        #: runs and at most SWITCH_MAX_S, "not running" is a switch, not a stop (the new monitor decides first on
        #: what came in meanwhile; the blind check goes on)
        self.switch_until_ns = 0
        self._raised_on: int | None = None  # id of the main tag database the alarms were raised in
        #: batches waiting for the next hand-on flush (appended by the safety thread, taken by the writer loop)
        self._pending: list[tuple[SafetyTagDatabase, npt.NDArray[np.int64], Readings]] = []
        self._pending_lock = threading.Lock()
        self._flush_queued = False

    # ------------------------------------------------------------------ the thread and its loop
    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self.loop is None:
            self.loop, self.thread = start_loop_thread("field-safety")
        return self.loop

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the safety loop and await its result here."""
        loop = self._ensure_loop()
        if asyncio.get_running_loop() is loop:
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))

    async def _heartbeat(self) -> None:
        while True:
            self.heartbeat_ns = time.time_ns()
            await asyncio.sleep(HEARTBEAT_S)

    # ------------------------------------------------------------------ lifecycle (called by PollComponent)
    async def build(self, config: CityConfig, main_db: TagDatabase, devices: Sequence[str],
                    apply_loop: Callable[[], asyncio.AbstractEventLoop]) -> None:
        """Build the junctions' Poller on the safety loop (not polling yet: :meth:`start`)."""
        self.main_db, self.apply_loop = main_db, apply_loop

        async def build() -> None:  # drivers and their shared resources belong to the safety loop
            self.factory = DriverFactory(config)
            self.db = SafetyTagDatabase(config, devices, self._hand_on)
            # freeze_gc off: the garbage collector is process-wide, and the main Poller already freezes it at start
            # and collects after reloads; a second full collection here, in this thread, would stall the safety
            # loop (and every thread: it holds the GIL) for nothing (measured: half of a reload's time)
            self.poller = Poller(config, self.factory, self.db, devices=list(devices), freeze_gc=False)
            if self._beat is None:
                self._beat = asyncio.ensure_future(self._heartbeat())

        await self.call(build())
        if self._watch is None or self._watch.done():
            self._watch = asyncio.create_task(self._watch_loop(), name="field-safety-watch")

    async def start(self) -> None:
        """The junctions' warm-up read, then their fixed-rate polling (before the main Poller's warm-up)."""
        poller, db = self.poller, self.db
        if poller is None or db is None:
            return
        self.since_ns = {j: 2**62 for j in db.junctions}  # no verdict during the bounded warm-up read
        await self.call(poller.start())
        now = time.time_ns()  # then every junction has the blind limit to be seen (a dead one was tried already)
        self.since_ns = {j: now for j in db.junctions}

    async def apply(self, new: CityConfig, main_db: TagDatabase, devices: Sequence[str]) -> dict[str, Any]:
        """Move the junctions' Poller to ``new``: unchanged junctions keep their connection (Poller.update)."""
        self.main_db = main_db
        if self.poller is None:
            return {}
        poller = self.poller

        async def update() -> dict[str, list[str]]:
            if self.factory is not None:
                self.factory.config = new  # the shared driver resources (SNMP engine, sockets) are kept
            db = SafetyTagDatabase(new, devices, self._hand_on)
            old = self.db
            if old is not None:  # the junctions carry on: their last good samples and the attached monitor
                db.last_good_ns = {j: t for j, t in old.last_good_ns.items() if j in db.status_idx}
                db.checked_ns = {j: t for j, t in old.checked_ns.items() if j in db.status_idx}
            result = await poller.update(new, db, devices=list(devices))
            self.db = db
            return result.as_dict()

        # the new database replaces the old one on the safety loop while this loop awaits: the switch window
        # opens first (the fail-safe component attaches the new monitor next, in the reload's order)
        self.switch_until_ns = time.time_ns() + int(SWITCH_MAX_S * 1e9)
        result = await self.call(update())
        now = time.time_ns()
        db = self.db
        if db is not None:
            self.since_ns = {j: self.since_ns.get(j, now) for j in db.junctions}
            # a junction added by the reload has its start-up grace; a restarted one (its read definition changed:
            # a new driver, read at once) has none: the blind limit counts from its last decided sample, so a
            # junction the monitor was already blind at stays alarmed across the restart
            started = set(result.get("started", []))
            for jid in db.junctions:
                eq = new.equipment.get(jid)
                if eq is not None and eq.device in started:
                    self.since_ns[jid] = now
        return {"junction_devices": len(devices), **{k: v[:50] for k, v in result.items() if k != "kept"}}

    async def stop(self) -> None:
        """Stop polling the junctions and close their drivers (the loop keeps running for a restart)."""
        poller, factory = self.poller, self.factory
        self.poller = self.factory = None
        if poller is not None:
            try:
                await asyncio.wait_for(self.call(poller.aclose()), timeout=8)
            except TimeoutError:
                log.error("safety: the junctions' poller did not stop within 8 s")
        if factory is not None:
            with contextlib.suppress(Exception):  # a shared resource's failing close must not block the stop
                await asyncio.wait_for(self.call(factory.aclose()), timeout=5)

    async def aclose(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        await self.detach()
        await self.stop()
        loop, thread = self.loop, self.thread
        self.loop = self.thread = None
        if loop is not None and self._beat is not None:
            loop.call_soon_threadsafe(self._beat.cancel)
            self._beat = None
        await stop_loop_thread(loop, thread)

    # ------------------------------------------------------------------ the monitor (FailsafeComponent)
    async def attach(self, monitor: FieldSafetyMonitor, interval_s: float = 0.2) -> None:
        """Run ``monitor`` (built on :attr:`db`) on the safety loop: its subscription, its 0.2 s checks and its
        flash requests (gate → LoopDriver: the junction's write goes out from this loop)."""
        await self.detach()
        db = self.db

        async def run() -> None:
            monitor.start()  # subscribes to the safety database, from this loop
            if db is not None and monitor.db is db:
                db.monitor = monitor
                db.decide_present()  # what came in while no monitor was attached (before it counts as running)
            self._monitor_task = asyncio.ensure_future(monitor.run(interval_s))

        await self.call(run())
        self.monitor = monitor
        self.switch_until_ns = 0

    async def detach(self) -> None:
        monitor, task = self.monitor, self._monitor_task
        self.monitor, self._monitor_task = None, None
        if monitor is None:
            return
        db = self.db

        async def stop() -> None:
            if db is not None and db.monitor is monitor:
                db.monitor = None
            monitor.stop()
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

        if self.loop is not None:
            await self.call(stop())

    def monitor_running(self) -> bool:
        db = self.db
        return (self.monitor is not None and self._monitor_task is not None and not self._monitor_task.done()
                and db is not None and db.monitor is self.monitor)

    # ------------------------------------------------------------------ queries
    @property
    def stats(self) -> dict[str, DeviceStats]:
        return dict(self.poller.stats) if self.poller is not None else {}

    def driver(self, device: str) -> LoopDriver | None:
        """The junction device's driver, to be called from any loop (None: not a junction device)."""
        poller, loop = self.poller, self.loop
        if poller is None or loop is None:
            return None
        d = poller.drivers.get(device)
        return LoopDriver(d, loop) if d is not None else None

    def checking(self, now_ns: int | None = None) -> dict[str, bool]:
        """Junction → True if the running monitor decided on a good sample of it received within the blind limit
        (what :meth:`evaluate` holds against the same limit: not checking = blind, or not running)."""
        db = self.db
        if db is None:
            return {}
        now = time.time_ns() if now_ns is None else now_ns
        running = self.monitor_running()
        return {j: running and now - db.checked_ns.get(j, 0) <= blind_limit_s(db.period_s[j]) * 1e9
                for j in db.junctions}

    # ------------------------------------------------------------------ hand-on to the main tag database
    def _hand_on(self, db: SafetyTagDatabase, indices: npt.NDArray[np.int64], readings: Readings) -> None:
        """From the safety thread: queue the batch; the first one of a window schedules the flush on the main
        database's writer loop (one cross-thread wake-up per window, not per junction read)."""
        get = self.apply_loop
        if get is None:
            return
        with self._pending_lock:
            self._pending.append((db, indices, readings))
            if self._flush_queued:
                return
            self._flush_queued = True
        try:
            get().call_soon_threadsafe(self._flush_later)
        except RuntimeError:  # the loop is closed: the server is stopping
            with self._pending_lock:
                self._pending.clear()
                self._flush_queued = False

    def _flush_later(self) -> None:
        asyncio.get_running_loop().call_later(HAND_ON_S, self.flush_hand_on)

    def flush_if_here(self) -> None:
        """Apply the queued junction batches now if this is their writer loop (the stale sweeper calls it before
        a sweep; on another loop they stay queued for their own flush)."""
        get = self.apply_loop
        if get is not None and get() is asyncio.get_running_loop():
            self.flush_hand_on()

    def flush_hand_on(self) -> None:
        """On the writer loop: apply what the safety thread queued, as few batches as order allows."""
        with self._pending_lock:
            pending, self._pending = self._pending, []
            self._flush_queued = False
        main = self.main_db
        if main is None:
            return
        group: list[tuple[npt.NDArray[np.int64], Readings]] = []
        seen: set[int] = set()
        for db, indices, readings in pending:
            if db is not self.db:
                continue  # a batch of a database a reload replaced: its tags may have moved
            idx, part = self._to_main(db, main, indices, readings)
            if not idx.size:
                continue
            keys = idx.tolist()
            if not seen.isdisjoint(keys):  # the same tag twice in a window: keep both changes, in order
                self._apply_main(main, group)
                group, seen = [], set()
            group.append((idx, part))
            seen.update(keys)
        self._apply_main(main, group)

    def _mapping(self, db: SafetyTagDatabase, main: TagDatabase) -> npt.NDArray[np.int64]:
        cached = self._maps
        if cached is not None and cached[0] == id(db) and cached[1] == id(main):
            return cached[2]
        m = np.array([main.index.get(n, -1) for n in db.names], dtype=np.int64)
        self._maps = (id(db), id(main), m)
        return m

    def _to_main(self, db: SafetyTagDatabase, main: TagDatabase, indices: npt.NDArray[np.int64],
                 readings: Readings) -> tuple[npt.NDArray[np.int64], Readings]:
        """A safety-database batch in main-database indices (tags the main database lacks left out)."""
        idx = self._mapping(db, main)[indices]
        keep = idx >= 0
        if keep.all():
            return idx, readings
        pos = np.flatnonzero(keep)
        return idx[pos], readings.take(pos)

    @staticmethod
    def _apply_main(main: TagDatabase, group: list[tuple[npt.NDArray[np.int64], Readings]]) -> None:
        if not group:
            return
        if len(group) == 1:
            idx, readings = group[0]
        else:
            idx, readings = np.concatenate([i for i, _ in group]), Readings.concat([r for _, r in group])
        try:
            main.apply_readings(idx, readings)
        except Exception:  # one bad batch must not stop the hand-on of the next ones (logged)
            log.exception("safety: handing the junctions' readings on failed")

    # ------------------------------------------------------------------ the watch (main loop)
    def evaluate(self, now_ns: int | None = None) -> None:
        """Raise/clear the blind and not-running P1s (module docstring); called every 0.2 s by the watch."""
        sink, db = self.server.system_alarms, self.db
        if sink is None:
            return
        now = time.time_ns() if now_ns is None else now_ns
        stalled = now - self.heartbeat_ns > STALLED_S * 1e9 if self.heartbeat_ns else False
        running = self.monitor_running()
        # a running monitor is blind where it has not DECIDED on a good sample (received but not decided on: it
        # failed on it); without one, monitor_not_running says so once and blind only follows the samples
        seen = (db.checked_ns if running else db.last_good_ns) if db is not None else {}
        blind: dict[str, str] = {}
        if db is not None:
            for j in db.junctions:
                # one limit for every cause: a stall shorter than the junction's blind limit (a loaded machine, a
                # warm-up) leaves the monitor deciding in time, and a longer one stops its decisions, so the
                # heartbeat only names the cause; the start-up grace covers a stall during the warm-up too
                ref = max(seen.get(j, 0), min(self.since_ns.get(j, now), now))
                if now - ref > blind_limit_s(db.period_s[j]) * 1e9:
                    blind[j] = (f"field-safety loop stalled for {(now - self.heartbeat_ns) / 1e9:.1f} s" if stalled
                                else f"no good status sample {'decided on ' if running else ''}"
                                     f"for {(now - ref) / 1e9:.1f} s")
        fs = self.server.subsystems.get("failsafe")
        covered = fs is not None and fs.status == "down" and "health" in self.server.components
        # the fail-safe layer comes up after the poller, and a reload switches it after the junctions' database
        # (the other components apply in between: on a loaded machine that takes seconds, so the window lasts
        # while the reload runs, bounded; a failed switch ends "down" or "unavailable" and says so)
        switching = now < self.switch_until_ns and self.server.reloading
        starting = fs is None or fs.status == "starting" or switching
        not_running = bool(db is not None and db.junctions) and not running and not covered and not starting
        fresh = self._raised_on != id(sink.db)  # a reload: a new tag database, assert the present state again
        self._raised_on = id(sink.db)
        changes: list[tuple[str, str, bool, str]] = []
        for j in sorted(set(blind) | set(self.blind)):
            now_blind = j in blind
            if fresh or now_blind != (j in self.blind):
                if now_blind != (j in self.blind):
                    log.log(logging.ERROR if now_blind else logging.INFO, "%s: field-safety monitor %s", j,
                            f"blind ({blind[j]}), P1 raised" if now_blind else "sees it again")
                changes.append(("monitor_blind", j, now_blind, ""))
        if changes:  # one batch: a stall blinds every junction at once (one engine pass, one journal commit)
            sink.raise_many("failsafe", changes)
        self.blind = blind
        if fresh or not_running != self.not_running:
            if not_running != self.not_running:
                log.log(logging.ERROR if not_running else logging.INFO, "field-safety monitor %s",
                        f"not running (monitor {'attached' if self.monitor is not None else 'none'}, fail-safe "
                        f"layer {fs.status if fs is not None else 'absent'}), P1 raised" if not_running
                        else "running again")
            sink.raise_("failsafe", "monitor_not_running", "", not_running)
        self.not_running = not_running

    async def _watch_loop(self) -> None:
        while True:
            try:
                self.evaluate()
            except Exception:  # the watch is what says the monitor is blind: it must survive a bad cycle (logged)
                log.exception("safety: field-safety watch failed")
            await asyncio.sleep(WATCH_EVERY_S)
