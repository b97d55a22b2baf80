"""Composition root proper: find each subsystem of this build by module name and adapt it.

Subsystems live in other packages (``scada.poll`` + ``drivers``, ``scada.alarms`` + ``scada.journal``,
``historian``, ``failsafe``); the core must not import protocol libraries, ``drivers`` or ``sim``
statically, so every subsystem outside ``scada`` is reached with :func:`importlib.import_module` here
and wrapped in an adapter implementing :mod:`server.services`. A subsystem whose module is
missing is reported ``unavailable`` on /health; one that fails to start is ``down`` with the reason;
the others run.

    start order: journal → alarms → historian → poll (drivers) → failsafe → stale sweeper (stop: reverse)
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import logging
import threading
import time
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from scada.alarms.system import SystemAlarmSink, codes_of, held_at_source, parse_rule, system_tags
from scada.config import CityConfig
from scada.tagdb import TagDatabase

if TYPE_CHECKING:
    from server.app import ScadaServer

log = logging.getLogger(__name__)


def find(module: str) -> ModuleType | None:
    """The module if it is part of this build, else None (an error inside it propagates)."""
    try:
        if importlib.util.find_spec(module) is None:
            return None
    except ModuleNotFoundError:
        return None
    return importlib.import_module(module)


SUBSYSTEMS = ("tagdb", "journal", "alarms", "historian", "poll", "failsafe", "stale", "api")
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


def health_tag_defs() -> list[Any]:
    from scada.config.model import TagDef

    enum = {v: k for k, v in STATUS_CODES.items()}
    return [TagDef(name=name, equipment="", tag=name.rsplit("/", 1)[1], template_tag=name, device="server",
                   address=f"server:{name}", dtype=dtype, units=units, description=desc,
                   enum=dict(enum) if dtype == "enum" else None)
            for name, (dtype, units, desc) in HEALTH_TAGS.items()]


def extra_tags(config: CityConfig) -> list[Any]:
    """Tags the server adds to the city's: per-device poll statistics (``system/devices/<dev>/<stat>``), the
    server's own health (``system/server/<subsystem>/status``, buffer level, consoles...) and the conditions
    behind the system alarms (``<junction>/failsafe/conflicting_green``, ``system/historian/buffer_high``...)."""
    poll = find("scada.poll")
    stats = list(poll.device_stat_tags(config)) if poll is not None else []
    return [*stats, *health_tag_defs(), *system_tags(config)]


class HealthComponent:
    """Publishes the health figures as tags every second (trendable, alarmable like any tag)."""

    def __init__(self, server: ScadaServer, every_s: float = 1.0) -> None:
        self.server = server
        self.every_s = every_s
        self.task: asyncio.Task[None] | None = None

    async def start(self, config: CityConfig, tagdb: TagDatabase) -> None:
        self.task = asyncio.create_task(self._run(), name="health-tags")

    def publish(self) -> None:
        from scada.quality import Sample
        from server.app import process_stats

        srv = self.server
        values: dict[str, float | int] = {f"system/server/{s}/status": STATUS_CODES.get(st.status, 2)
                                         for s, st in srv.subsystems.items() if s in SUBSYSTEMS}
        hist = srv.components.get("historian")
        buffer = getattr(hist, "buffer", None)
        if buffer is not None:
            values["system/historian/buffer_fill"] = float(buffer.fill_percent)
            values["system/historian/buffer_pending"] = int(buffer.pending_points)
        values["system/api/clients"] = len(srv.hub.clients)
        values["system/api/resyncs"] = int(srv.hub.stats["resyncs"])
        alarms = srv.components.get("alarms")
        if alarms is not None and getattr(alarms, "engine", None) is not None:
            values["system/alarms/unacked"] = int(alarms.engine.summary().unacked)
        rss = process_stats().get("rss_mb")
        if rss is not None:
            values["system/server/rss_mb"] = float(rss)
        db = srv.tagdb
        srv.tagdb.apply_samples([(name, Sample.good(v)) for name, v in values.items() if name in db.index])

    async def _run(self) -> None:
        while True:
            try:
                self.publish()
            except Exception:
                log.exception("health tags failed")
            await asyncio.sleep(self.every_s)

    async def rebind(self, old: CityConfig, new: CityConfig, tagdb: TagDatabase) -> dict[str, Any]:
        return {}

    async def aclose(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


def build_tagdb(config: CityConfig) -> TagDatabase:
    return TagDatabase([*config.tags, *extra_tags(config)])


# ---------------------------------------------------------------------- poll scheduler + drivers
class PollComponent:
    """The poll scheduler (scada.poll.Poller) with drivers from the registry (drivers.registry).

    By default in the server's event loop. With ``poll_thread: true`` in its own thread and event loop::

        main thread, main loop ── API, WebSocket, alarm tick, leases, monitor, health
        poll thread, poll loop ── Poller tasks, drivers (sockets, serial ports), tag database apply
                                  (subscribers run there: alarm engine, historian, hub, monitor — all locked)

    The thread keeps the API, the WebSocket handshakes and the 100 ms console batches answering when
    protocol parsing saturates a loop; at full scale on 2 cores it measured slower for polling itself
    (GIL hand-offs: more overruns, higher alarm latency; BENCHMARKS.md), hence off by default. Writes from
    the fail-safe gate go through :meth:`call`, which runs them on whichever loop owns the drivers.
    """

    def __init__(self, server: ScadaServer) -> None:
        self.server = server
        self.poller: Any = None
        self.factory: Any = None
        self.starting: asyncio.Task[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None

    @staticmethod
    def _missing_protocols(config: CityConfig) -> dict[str, str]:
        """Protocols of ``config`` with no driver in this build → why (their devices are not polled)."""
        registry = importlib.import_module("drivers.registry")  # by name: the core never imports drivers
        missing: dict[str, str] = {}
        for protocol in sorted({d.protocol for d in config.devices.values()}):
            try:
                registry.driver_class(protocol)
            except Exception as exc:  # a driver not in this build: poll the other protocols
                missing[protocol] = repr(exc)
        return missing

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self.loop is not None:
            return self.loop
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self.loop = loop
            ready.set()
            try:
                loop.run_forever()
            finally:
                with contextlib.suppress(Exception):
                    loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self.thread = threading.Thread(target=run, name="poll-loop", daemon=True)
        self.thread.start()
        ready.wait(10)
        assert self.loop is not None
        return self.loop

    async def call(self, coro: Any) -> Any:
        """Run ``coro`` on the poll loop (where the drivers live) and await its result here."""
        if not self.server.settings.poll_thread:
            return await coro
        loop = self._ensure_loop()
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))

    async def start(self, config: CityConfig, tagdb: TagDatabase) -> None:
        poll = importlib.import_module("scada.poll")
        registry = importlib.import_module("drivers.registry")  # by name: the core never imports drivers
        missing = self._missing_protocols(config)
        devices = [n for n, d in config.devices.items() if d.protocol not in missing]

        async def build() -> None:  # drivers and their shared resources are created on the poll loop
            self.factory = registry.DriverFactory(config)
            self.poller = poll.Poller(config, self.factory, tagdb, devices=devices)

        await self.call(build())
        self.server.poller = self.poller
        st = self.server.status("poll")
        st.stats = self.stats
        st.set("starting", f"warm-up read of {len(devices)} devices")
        # the warm-up cycle reads every device once (timeouts on dead ones): the API does not wait for it
        self.starting = asyncio.create_task(self._start(self.poller, missing, len(config.devices), len(devices)),
                                            name="poll-start")

    async def _start(self, poller: Any, missing: dict[str, str], configured: int, polled: int) -> None:
        await self.call(poller.start())
        st = self.server.status("poll")
        if missing:
            st.set("degraded", f"{polled} devices polled; {configured - polled} not polled, no driver for "
                               + ", ".join(f"{p} ({why})" for p, why in missing.items()))
        else:
            st.set("ok", f"{polled} devices")

    def stats(self) -> dict[str, Any]:
        if self.poller is None:
            return {}
        devices = dict(self.poller.stats)
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

    async def rebind(self, old: CityConfig, new: CityConfig, tagdb: TagDatabase) -> dict[str, Any]:
        """A new configuration and tag database: only added, removed and changed devices are started/stopped.

        Unchanged devices keep their task, driver and connection and write into the new tag database from
        their next cycle (Poller.update). Before the first warm-up has finished, everything restarts.
        """
        if self.poller is None or self.starting is None or not self.starting.done():
            await self._stop_poller()
            await self.start(new, tagdb)
            return {"devices": len(new.devices), "restarted_all": True}
        missing = self._missing_protocols(new)
        devices = [n for n, d in new.devices.items() if d.protocol not in missing]
        if self.factory is not None:
            self.factory.config = new  # the shared driver resources (SNMP engine, sockets) are kept
        result = await self.call(self.poller.update(new, tagdb, devices=devices))
        st = self.server.status("poll")
        if missing:
            st.set("degraded", f"{len(devices)} devices polled; {len(new.devices) - len(devices)} not polled, no "
                               f"driver for " + ", ".join(f"{p} ({why})" for p, why in missing.items()))
        else:
            st.set("ok", f"{len(devices)} devices")
        changes = result.as_dict()
        return {"devices": len(new.devices), "kept": len(changes.pop("kept")),
                **{k: v[:100] for k, v in changes.items()}}

    async def _stop_poller(self) -> None:
        if self.starting is not None and not self.starting.done():
            self.starting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.starting
        poller, factory = self.poller, self.factory
        self.poller = self.factory = self.server.poller = None
        try:
            if poller is not None:
                # bounded: a device task that ignores its cancellation must not hold the server's stop
                await asyncio.wait_for(self.call(poller.aclose()), timeout=8)
        except TimeoutError:
            log.error("poll: the scheduler did not stop within 8 s (a device task ignores its cancellation, or a "
                      "driver's close hangs)")
        if factory is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.call(factory.aclose()), timeout=5)

    async def aclose(self) -> None:
        await self._stop_poller()
        loop, thread = self.loop, self.thread
        self.loop = self.thread = None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            await asyncio.to_thread(thread.join, 10)


class StaleComponent:
    """Good values not refreshed for ``stale_after`` scan periods of their device become ``uncertain``.

    Devices read through subscriptions (OPC UA) only report changes, so their tags are exempt.
    """

    def __init__(self, server: ScadaServer, every_s: float = 1.0) -> None:
        self.server = server
        self.every_s = every_s
        self.task: asyncio.Task[None] | None = None
        self.limits: Any = None
        self.marked = 0

    def _limits(self, config: CityConfig, tagdb: TagDatabase) -> Any:
        periods = {n: d.period_s for n, d in config.devices.items() if d.protocol != "opcua"}
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
                ev = self.server.tagdb.mark_stale(time.time_ns(), self.limits)
                self.marked += len(ev)
            except Exception:
                log.exception("stale sweeper failed")

    async def rebind(self, old: CityConfig, new: CityConfig, tagdb: TagDatabase) -> dict[str, Any]:
        self.limits = self._limits(new, tagdb)
        return {}

    async def aclose(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None


# ---------------------------------------------------------------------- alarm engine + journal
def alarm_view_dict(v: Any) -> dict[str, Any]:
    """An AlarmView as the API and the WebSocket send it."""
    pr = int(v.priority)
    flags = list(v.flags)
    if v.state.active and "latched" not in flags and held_at_source(v.rule):
        # held by the field-safety monitor itself: only a reset clears it (the consoles offer Reset on "latched")
        flags.append("latched")
    return {"id": v.alarm, "rule": v.rule, "equipment": v.equipment, "commune": v.commune, "area": v.area,
            "service": v.service, "tag": v.tag, "priority": pr if pr < 5 else "diagnostic",
            "state": v.state.label, "active": v.state.active, "acked": v.state.acked, "flags": flags,
            "message": v.message, "value": v.value, "since_ms": v.since_ns // 1_000_000,
            "changed_ms": v.changed_ns // 1_000_000, "shelved_until_ms": v.shelved_until_ns // 1_000_000,
            "work_order": v.work_order}


def journal_row_dict(r: Any) -> dict[str, Any]:
    value = r.value
    if isinstance(value, float) and value != value:
        value = None
    pr = r.priority
    return {"id": r.id, "ts_ms": r.ts_ms, "time_utc": r.time_utc, "event": r.event.label,
            "outcome": "refused" if r.refused else "done", "alarm": r.alarm, "rule": r.rule,
            "equipment": r.equipment, "commune": r.commune, "area": r.area, "service": r.service, "tag": r.tag,
            "priority": None if pr is None else (pr if pr < 5 else "diagnostic"), "state": r.state.label,
            "prev_state": r.prev_state.label, "flags": r.flag_labels, "value": value, "value_text": r.value_text,
            "quality": r.quality.label if r.quality is not None else None, "user": r.user, "comment": r.comment,
            "detail": r.detail, "until_ms": r.until_ms, "message": r.message}


class AlarmAdapter:
    """AlarmService over scada.alarms.AlarmEngine (+ the fail-safe layer's alarms, read-only)."""

    ACTIONS = ("ack", "shelve", "unshelve", "suppress", "unsuppress", "out_of_service", "return_to_service", "reset")

    def __init__(self, comp: AlarmComponent) -> None:
        self.comp = comp

    def active(self, diagnostic: bool = False, limit: int = 20_000) -> list[dict[str, Any]]:
        """Every alarm not in normal state: annunciated ones first (priority 1 on top, then newest), then the
        shelved / suppressed / out-of-service ones (flagged), then — only if asked — diagnostic events, which
        are never annunciated (a storm can make tens of thousands of them)."""
        e = self.comp.engine  # evaluated on this event loop: no concurrent change between the two reads
        _, views = e.alarm_list(include_hidden=False, limit=limit)
        hidden = (e.shelving != 0) | e.sup_design | e.sup_operator | e.out_of_service
        mask = (e.state != 0) & hidden & (e.catalog.priority < 5)
        if diagnostic:
            mask |= (e.state != 0) & (e.catalog.priority >= 5)
        extra = np.flatnonzero(mask)[: max(0, limit - len(views))]
        views += [e.view(int(i)) for i in extra]
        return [alarm_view_dict(v) for v in views]

    def action(self, action: str, alarm_ids: list[str], user: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        from server.services import Refused

        e = self.comp.engine
        now = time.time_ns()
        comment = params.get("comment") or None
        what = f"{action.replace('_', ' ')} {len(alarm_ids)} alarm(s)" if len(alarm_ids) != 1 else \
            f"{action.replace('_', ' ')} alarm {alarm_ids[0]!r}"
        if action == "ack" and params.get("area"):
            result = e.acknowledge_area(str(params["area"]), user, now, comment, params.get("service"))
        elif action == "ack":
            result = e.acknowledge(alarm_ids, user, now, comment)
        elif action == "shelve":
            duration = None if params.get("one_shot") else params.get("duration_s")
            result = e.shelve(alarm_ids, user, now, reason=str(params.get("reason", "")), duration_s=duration,
                              comment=comment)
        elif action == "unshelve":
            result = e.unshelve(alarm_ids, user, now, comment)
        elif action == "suppress":
            result = e.suppress(alarm_ids, user, now, reason=str(params.get("reason", "")), comment=comment)
        elif action == "unsuppress":
            result = e.unsuppress(alarm_ids, user, now, comment)
        elif action == "out_of_service":
            result = e.remove_from_service(alarm_ids, user, now, work_order=str(params.get("work_order", "")),
                                           comment=params.get("reason") or comment)
        elif action == "return_to_service":
            result = e.return_to_service(alarm_ids, user, now, comment)
        elif action == "reset":
            self._reset_monitor(alarm_ids, user)
            result = e.reset(alarm_ids, user, now, comment)
        else:
            raise Refused(what, f"unknown action; actions: {', '.join(self.ACTIONS)}", 400, "invalid_request")
        if not result.done:
            reasons = "; ".join(f"{r.alarm}: {r.reason}" if r.alarm else r.reason for r in result.refused[:20])
            unknown = all("unknown" in r.reason for r in result.refused)
            raise Refused(what, reasons or "nothing to do", 404 if unknown else 409,
                          "not_found" if unknown else "alarm_action_refused")
        return [{"alarm": a, "outcome": "done"} for a in result.done] + \
               [{"alarm": r.alarm, "outcome": "refused", "reason": r.reason} for r in result.refused]

    def _reset_monitor(self, alarm_ids: list[str], user: str) -> None:
        """A reset of a field-safety monitor alarm resets the monitor's latch first (its tag then returns to
        0, the engine's latched alarm is held, and the engine reset below returns it to normal)."""
        from scada.alarms.states import Event

        e = self.comp.engine
        idx, _ = e.catalog.indices_of(alarm_ids)
        junctions: set[str] = set()
        for i in idx:
            info = e.catalog.info(i)
            if not held_at_source(info.rule):
                continue
            if e.authorize is not None and e.authorize(user, Event.RESET, info) is not None:
                continue  # the engine refuses it below, with the reason
            junctions.add(info.equipment)
        fs = self.comp.server.components.get("failsafe")
        monitor = getattr(fs, "monitor", None)
        for j in sorted(junctions):
            if monitor is None:  # not running (its tags are then 0): the engine reset alone is enough
                continue
            try:
                monitor.reset(j, user)
            except KeyError:
                log.warning("%s: not watched by the field-safety monitor", j)

    def summary(self, area: str | None) -> dict[str, Any]:
        s = self.comp.engine.summary(area)
        return {"unacked": s.unacked, "acked": s.acked, "rtn_unacked": s.rtn_unacked, "shelved": s.shelved,
                "suppressed": s.suppressed, "out_of_service": s.out_of_service,
                "by_priority": {str(k): v for k, v in s.by_priority.items()}, "flood_areas": list(s.flood_areas),
                "failsafe": self.comp.failsafe_active()}

    def console(self, area: str | None, service: str | None, group_by: str, grouped: bool | None,
                limit: int) -> dict[str, Any]:
        from server.services import Refused

        try:
            v = self.comp.engine.console(area=area, service=service, group_by=group_by, grouped=grouped, limit=limit)
        except ValueError as exc:
            raise Refused("alarm console", str(exc), 422, "invalid_request") from None
        groups = [{"by": g.by, "key": g.key, "count": g.count, "unacked": g.unacked, "top_priority": g.top_priority,
                   "newest_ms": g.newest_ns // 1_000_000, "alarms": list(g.alarms)} for g in v.groups]
        critical = [alarm_view_dict(a) for a in v.critical]
        return {"flood": v.flood, "flood_areas": list(v.flood_areas), "critical": critical,
                "items": [alarm_view_dict(a) for a in v.items], "groups": groups, "total": v.total}

    def subscribe(self, callback: Any) -> Any:
        self.comp.listeners.append(callback)
        return lambda: self.comp.listeners.remove(callback) if callback in self.comp.listeners else None

    def stats(self) -> dict[str, Any]:
        return self.comp.stats()


class JournalAdapter:
    def __init__(self, comp: AlarmComponent) -> None:
        self.comp = comp

    def query(self, filters: dict[str, Any], limit: int, offset: int) -> list[dict[str, Any]]:
        from server.services import Refused

        jmod = importlib.import_module("scada.journal")
        states = importlib.import_module("scada.alarms.states")
        q: dict[str, Any] = {"limit": limit, "offset": offset}
        if "since_ns" in filters:
            q["start_ms"] = filters["since_ns"] // 1_000_000
        if "until_ns" in filters:
            q["end_ms"] = filters["until_ns"] // 1_000_000
        for key in ("equipment", "commune", "service", "area"):
            if key in filters:
                q[key] = tuple(str(filters[key]).split(","))
        try:
            if "priority" in filters:
                q["priority"] = tuple(5 if p.strip() == "diagnostic" else int(p) for p in
                                      str(filters["priority"]).split(","))
            if "state" in filters:
                q["state"] = tuple(states.AlarmState.parse(p) for p in str(filters["state"]).split(","))
        except (ValueError, KeyError) as exc:
            raise Refused("query the journal", f"bad priority or state filter: {exc}", 422,
                          "invalid_request") from None
        if "text" in filters:
            q["text"] = str(filters["text"])
        if "user" in filters:
            q["user"] = str(filters["user"])
        page = self.comp.journal.query(jmod.JournalQuery(**q))
        return [journal_row_dict(r) for r in page.rows]

    def config_change(self, user: str, source: str, applied: bool, detail: str) -> None:
        jmod = importlib.import_module("scada.journal")
        states = importlib.import_module("scada.alarms.states")
        self.comp.journal.append([jmod.JournalEntry(time.time_ns(), states.Event.CONFIG_CHANGE, user=user,
                                                    comment=source, detail=detail[:2000],
                                                    outcome=jmod.DONE if applied else jmod.REFUSED)])

    def stats(self) -> dict[str, Any]:
        return {"rows": self.comp.journal.count()}


class AlarmComponent:
    """Journal (SQLite WAL) + alarm engine; alarm states restored from the journal at start."""

    def __init__(self, server: ScadaServer) -> None:
        self.server = server
        self.journal: Any = None
        self.engine: Any = None
        self.unsub: Any = None
        self.unlisten: Any = None
        self.task: asyncio.Task[None] | None = None
        self.listeners: list[Any] = []
        self.sink: Any = None  # scada.alarms.system.SystemAlarmSink: fail-safe and historian conditions → tags
        self._failsafe_mask: Any = None  # per engine alarm: a fail-safe system alarm
        self.restored = 0
        self.transitions = 0

    async def start(self, config: CityConfig, tagdb: TagDatabase) -> None:
        jmod = importlib.import_module("scada.journal")
        self.journal = await asyncio.to_thread(jmod.Journal, self.server.data_dir / "journal.sqlite")
        self.server.status("journal").set("ok", str(self.server.data_dir / "journal.sqlite"))
        self.server.status("journal").stats = lambda: {"rows": self.journal.count()}
        self.server.journal = JournalAdapter(self)
        self._attach(config, tagdb)
        self.task = asyncio.create_task(self._tick(), name="alarm-tick")
        self.server.alarms = AlarmAdapter(self)
        st = self.server.status("alarms")
        st.set("ok", f"{self.engine.n} alarms from {len(config.alarm_rules)} rules; {self.restored} states restored "
                     f"from the journal")
        st.stats = self.stats

    def _attach(self, config: CityConfig, tagdb: TagDatabase) -> None:
        emod = importlib.import_module("scada.alarms.engine")
        self.engine = emod.AlarmEngine(config, tagdb, self.journal, restore=False, now_ns=time.time_ns())
        self.sink = self.server.system_alarms = SystemAlarmSink(config, tagdb)
        groups = [k for k, r in enumerate(self.engine.catalog.rules)
                  if (sa := parse_rule(r.spec.name)) is not None and sa.source == "failsafe"]
        self._failsafe_mask = np.isin(self.engine.catalog.group, groups)
        self.restored = self.engine.restore(self.journal.current_states())  # kill -9: acknowledged stays so
        self.unsub = self.engine.attach()
        self.unlisten = self.engine.subscribe(self.on_transitions)
        # evaluate what is already in the tag database (values carried over by a reload, or polled already)
        known = np.flatnonzero(tagdb.receive_ns > 0).astype(np.int64)
        if known.size:
            self.engine.process(known, time.time_ns())

    def on_transitions(self, tr: Any) -> None:
        """Engine listener (called under the engine's lock): one event per alarm row to the consoles."""
        self.transitions += len(tr)
        if not len(tr):
            return
        states = importlib.import_module("scada.alarms.states")
        # newest row of each alarm only: reverse, keep the first occurrence of each alarm
        rev = tr.alarm[::-1]
        _, first = np.unique(rev, return_index=True)
        rows = np.sort(len(tr) - 1 - first)[::-1]  # positions in tr, newest first
        rows = rows[tr.alarm[rows] >= 0]
        if not rows.size:
            return
        labels = {e: states.Event(e).label for e in np.unique(tr.event[rows]).tolist()}
        events = tr.event[rows].tolist()
        ts = tr.ts_ns[rows].tolist()
        for k, v in enumerate(self.engine.views(tr.alarm[rows])):  # one bulk lookup, not one per alarm
            view = alarm_view_dict(v)
            view["event"] = labels[events[k]]
            view["event_ms"] = ts[k] // 1_000_000
            if tr.user:
                view["user"] = tr.user
            self._emit(view)

    def _emit(self, view: dict[str, Any]) -> None:
        self.server.hub.on_alarm(view)
        for cb in list(self.listeners):
            try:
                cb(view)
            except Exception:
                log.exception("alarm listener failed")

    def failsafe_active(self) -> int:
        """Fail-safe system alarms not in normal state (conflicting green, command not confirmed...)."""
        e = self.engine
        if e is None or self._failsafe_mask is None:
            return 0
        return int(((e.state != 0) & self._failsafe_mask).sum())

    async def _tick(self) -> None:
        while True:  # on/off delays, shelving expiry, flood end
            await asyncio.sleep(1.0)
            try:
                self.engine.tick(time.time_ns())
            except Exception:
                log.exception("alarm engine tick failed")

    def stats(self) -> dict[str, Any]:
        s = self.engine.summary()
        return {"alarms": self.engine.n, "unacked": s.unacked, "acked": s.acked, "rtn_unacked": s.rtn_unacked,
                "shelved": s.shelved, "suppressed": s.suppressed, "out_of_service": s.out_of_service,
                "by_priority": s.by_priority, "flood_areas": s.flood_areas, "transitions": self.transitions,
                "restored": self.restored, "failsafe_alarms": self.failsafe_active()}

    def _detach(self) -> None:
        if self.unsub is not None:
            self.unsub()
        if self.unlisten is not None:
            self.unlisten()
        self.unsub = self.unlisten = None

    async def rebind(self, old: CityConfig, new: CityConfig, tagdb: TagDatabase) -> dict[str, Any]:
        """New rules or tags: a new engine, its states restored from the journal (nothing is lost)."""
        self._detach()
        self._attach(new, tagdb)
        return {"alarms": self.engine.n, "restored": self.restored}

    async def aclose(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self._detach()
        self.server.alarms = None
        self.server.journal = None
        self.server.system_alarms = None
        if self.journal is not None:
            await asyncio.to_thread(self.journal.close)
            self.server.status("journal").set("stopped", "closed")


# ---------------------------------------------------------------------- historian
def _f(x: float) -> float | None:
    return None if x != x else float(x)  # NaN → null


def _provenance(result: Any) -> dict[str, Any]:
    """Where a trend's values come from: raw points, the hourly roll-ups (raw data expired) or both."""
    raw_from = getattr(result, "raw_from_ns", None)
    resolution = int(getattr(result, "resolution_ns", 0) or 0)
    return {"source": str(getattr(result, "source", "raw")),
            "resolution_s": resolution / 1e9 if resolution else None,
            "raw_from_ms": raw_from // 1_000_000 if raw_from is not None else None}


def _series_points(series: Any, limit: int | None = None) -> list[dict[str, Any]]:
    n = len(series) if limit is None else min(len(series), limit)
    ts = series.ts[:n].tolist()
    vals = series.value[:n].tolist()
    quals = series.quality[:n].tolist()
    text = series.text
    labels = ("good", "uncertain", "bad_comm", "bad_device", "bad_config")
    out = []
    for k in range(n):
        v: Any = text[k] if text is not None and text[k] is not None else _f(vals[k])
        q = quals[k]
        out.append({"t_ms": ts[k] // 1_000_000, "value": v, "quality": labels[q] if q < len(labels) else str(q)})
    return out


def _storage_refusal(what: str, exc: Exception) -> Exception:
    from server.services import Refused

    unsupported = type(exc).__name__ == "Unsupported"
    return Refused(what, f"{'not supported by the historian backend' if unsupported else 'historian unavailable'}: "
                         f"{exc}", 409 if unsupported else 503, "unsupported" if unsupported else "unavailable")


class HistorianAdapter:
    """HistorianService over a historian backend (queries run in worker threads).

    Storage errors (backend down, a query the backend does not support) become 503 / 409 refusals."""

    def __init__(self, comp: HistorianComponent) -> None:
        self.comp = comp

    def raw(self, tag: str, start_ns: int, end_ns: int, limit: int) -> list[dict[str, Any]]:
        from scada.errors import StorageError

        try:
            return _series_points(self.comp.backend.raw(tag, start_ns, end_ns), limit)
        except StorageError as exc:
            raise _storage_refusal(f"raw history of {tag!r}", exc) from None

    def aggregate(self, tag: str, start_ns: int, end_ns: int, interval_s: float,
                  functions: list[str]) -> dict[str, Any]:
        from scada.errors import StorageError

        try:
            agg = self.comp.backend.aggregate(tag, start_ns, end_ns, int(interval_s * 1e9))
        except StorageError as exc:
            raise _storage_refusal(f"aggregated history of {tag!r}", exc) from None
        cols = {"min": agg.min, "max": agg.max, "avg": agg.avg, "last": agg.last, "twa": agg.twa,
                "count": agg.count}
        starts = agg.start.tolist()
        lists = {f: cols[f].tolist() for f in functions if f in cols}
        out = []
        for k, t in enumerate(starts):
            row: dict[str, Any] = {"t_ms": t // 1_000_000}
            for f, values in lists.items():
                row[f] = int(values[k]) if f == "count" else _f(values[k])
            out.append(row)
        return {"points": out, **_provenance(agg)}

    def decimated(self, tag: str, start_ns: int, end_ns: int, pixels: int) -> dict[str, Any]:
        from scada.errors import StorageError

        try:
            series = self.comp.backend.decimate(tag, start_ns, end_ns, pixels)
        except StorageError as exc:
            raise _storage_refusal(f"decimated history of {tag!r}", exc) from None
        return {"points": _series_points(series), **_provenance(series)}

    def stats(self) -> dict[str, Any]:
        return self.comp.stats()


class HistorianComponent:
    """Recorder (tag changes → compression) → store-and-forward buffer → backend (embedded SQLite or InfluxDB)."""

    def __init__(self, server: ScadaServer) -> None:
        self.server = server
        self.backend: Any = None
        self.buffer: Any = None
        self.recorder: Any = None
        self.alarms: dict[str, Any] = {}
        self.task: asyncio.Task[None] | None = None

    def _backend(self) -> Any:
        settings = self.server.settings.historian
        root = self.server.data_dir / "historian"
        if settings.backend == "influxdb" and settings.influxdb is not None:
            import os

            influx = importlib.import_module("historian.influx")
            cfg = settings.influxdb
            token = os.environ.get(cfg.token_env, "")
            if cfg.version == 1:
                return influx.InfluxV1Backend(cfg.url, cfg.bucket, retention_policy=cfg.retention_policy,
                                              username=cfg.username,
                                              password=os.environ.get(cfg.password_env) if cfg.username else None)
            return influx.InfluxV2Backend(cfg.url, cfg.org, cfg.bucket, token)
        return importlib.import_module("historian.sqlite_backend").SqliteBackend(root / "history.sqlite")

    async def start(self, config: CityConfig, tagdb: TagDatabase) -> None:
        st = self.server.status("historian")
        if self.server.settings.historian.backend == "none":
            st.set("unavailable", "historian disabled in the settings (historian.backend: none)")
            return
        buffer_mod = importlib.import_module("historian.buffer")
        recorder_mod = importlib.import_module("historian.recorder")
        self.backend = await asyncio.to_thread(self._backend)
        self.buffer = buffer_mod.StoreAndForward(self.backend, self.server.data_dir / "historian" / "buffer",
                                                 on_alarm=self._on_alarm)
        self.buffer.start()
        if self.server.system_alarms is not None:
            self.server.system_alarms.initialise("historian")
        self._attach(tagdb, recorder_mod)
        self.server.historian = HistorianAdapter(self)
        st.set("ok", f"{self.backend.name} backend")
        st.stats = self.stats
        self.task = asyncio.create_task(self._maintain(), name="historian-maintenance")

    def _attach(self, tagdb: TagDatabase, recorder_mod: Any) -> None:
        self.recorder = recorder_mod.Recorder(tagdb, self.buffer)
        self.backend.register_tags(self.recorder.tag_infos())
        self.recorder.start()

    def _on_alarm(self, alarm: Any) -> None:
        """Buffer conditions (backend down, 80 %, full, quarantine) → health status and system alarms."""
        self.alarms[alarm.code] = alarm
        sink = self.server.system_alarms
        if sink is not None:
            sink.raise_("historian", alarm.code, "", bool(alarm.active))
        st = self.server.status("historian")
        active = [a for a in self.alarms.values() if a.active]
        if active:
            st.set("degraded", "; ".join(a.message for a in active))
        elif self.backend is not None:
            st.set("ok", f"{self.backend.name} backend")

    async def _maintain(self) -> None:
        while True:  # retention and downsampling, hourly
            await asyncio.sleep(3600)
            try:
                await asyncio.to_thread(self.backend.maintain, time.time_ns())
            except Exception:
                log.exception("historian maintenance failed")

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"backend": getattr(self.backend, "name", "")}
        if self.buffer is not None:
            out["buffer_fill_percent"] = round(self.buffer.fill_percent, 3)
            out["buffer_pending_points"] = self.buffer.pending_points
            out["backend_up"] = self.buffer.backend_up
            out["buffer"] = dict(self.buffer.stats)
        if self.recorder is not None:
            out["recorder"] = dict(self.recorder.stats)
        out["alarms"] = [{"code": a.code, "priority": a.priority, "message": a.message}
                         for a in self.alarms.values() if a.active]
        return out

    async def rebind(self, old: CityConfig, new: CityConfig, tagdb: TagDatabase) -> dict[str, Any]:
        if self.recorder is None:
            return {}
        await asyncio.to_thread(self.recorder.close)
        self._attach(tagdb, importlib.import_module("historian.recorder"))
        return {"recorded_tags": int(self.recorder.recorded.sum())}

    async def aclose(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self.recorder is not None:
            await asyncio.to_thread(self.recorder.close)  # archive held snapshots, final flush
        if self.buffer is not None:
            await asyncio.to_thread(self.buffer.drain, 10.0)
            await asyncio.to_thread(self.buffer.close)
        if self.backend is not None:
            await asyncio.to_thread(self.backend.close)
        self.server.historian = None


# ---------------------------------------------------------------------- fail-safe gate, leases, monitor, crisis
class DriverWriter:
    """The gate's Writer port over the poll scheduler's drivers (one connection per device, shared).

    The drivers live on the poll loop (another thread): each write/read is run there and awaited here."""

    def __init__(self, server: ScadaServer) -> None:
        self.server = server

    async def _call(self, coro: Any) -> Any:
        comp = self.server.components.get("poll")
        if comp is None or not hasattr(comp, "call"):
            coro.close()
            from scada.errors import CommError

            raise CommError("the poll scheduler is not running: no driver to write through")
        return await comp.call(coro)

    def _driver(self, tag: Any) -> Any:
        from scada.errors import CommError

        poller = self.server.poller
        driver = poller.drivers.get(tag.device) if poller is not None else None
        if driver is None:
            raise CommError(f"{tag.device}: no driver running for this device (poll scheduler not running "
                            f"or no driver for its protocol)")
        return driver

    async def write(self, tag: Any, value: Any, *, tolerance: float | None = None) -> None:
        await self._call(self._driver(tag).write(tag, value, tolerance=tolerance))

    async def read(self, tag: Any) -> Any:
        samples = await self._call(self._driver(tag).read([tag]))
        return samples[0]


def _principal(types: Any, user: str, role: str, workstation: str) -> Any:
    return types.Principal(user, frozenset({role}), workstation=workstation, authenticated=True)


class CommandAdapter:
    """CommandService over failsafe.gate.CommandGate (the only path to a field write)."""

    def __init__(self, comp: FailsafeComponent) -> None:
        self.comp = comp

    def _p(self, user: str, role: str, workstation: str) -> Any:
        return _principal(self.comp.types, user, role, workstation)

    def vocabulary(self) -> dict[str, Any]:
        v = self.comp.vocab
        types: dict[str, Any] = {}
        for name, pol in v.types.items():
            types[name] = {
                "critical": pol.critical, "select_timeout_s": pol.select_timeout_s,
                "lease_default_s": pol.lease_default_s, "lease_max_s": pol.lease_max_s,
                "roles": sorted(pol.roles),
                "blast_radius": {"per_command": pol.blast.per_command, "per_minute": pol.blast.per_minute,
                                 "max_with_approval": pol.blast.max_with_approval},
                "verbs": {vn: {"safety": vs.safety, "roles": sorted(vs.roles or pol.roles), "lease": vs.lease,
                               "params": {pn: {k: getattr(ps, k) for k in ("type", "min", "max", "choices")
                                               if getattr(ps, k, None) is not None}
                                          for pn, ps in vs.params.items()}}
                          for vn, vs in pol.verbs.items()},
            }
        return {"types": types, "approval_window_s": v.approval_window_s, "approver_roles": sorted(v.approver_roles),
                "crisis_plans": sorted(v.crisis_plans)}

    def _refuse_if(self, what: str, ticket: Any) -> None:
        if ticket.state.value == "finished" and ticket.outcome is not None and ticket.outcome.value == "rejected":
            from server.services import Refused

            raise Refused(what, ticket.reason or "rejected by the command gate", 409, "command_rejected")

    async def submit(self, user: str, role: str, workstation: str, request: dict[str, Any]) -> dict[str, Any]:
        t = self.comp.types
        targets = tuple(request.get("targets") or [request["target"]])
        what = f"{request['verb']} on {', '.join(targets[:5])}{'...' if len(targets) > 5 else ''}"
        req = t.CommandRequest(request["verb"], targets, self._p(user, role, workstation),
                               dict(request.get("params") or {}), lease_s=request.get("lease_s"),
                               note=str(request.get("comment") or ""))
        ticket = self.comp.gate.select(req)
        self._refuse_if(what, ticket)
        if ticket.state.value == "ready":  # non-critical type, no approval needed: run it now
            result = await self.comp.gate.operate(ticket.id, req.user)
            return self._view(ticket.id, result)
        return dict(ticket.view())

    def _view(self, ticket_id: str, result: Any) -> dict[str, Any]:
        ticket = self.comp.gate.status(ticket_id)
        out: dict[str, Any] = dict(ticket.view()) if ticket is not None else {"id": ticket_id}
        out.setdefault("id", ticket_id)
        out["state"] = getattr(result.state, "value", str(result.state))
        out["outcome"] = result.outcome.value if result.outcome is not None else None
        out["reason"] = result.reason
        out["lease_end"] = result.lease_end
        return out

    async def operate(self, command_id: str, user: str, role: str, workstation: str) -> dict[str, Any]:
        from server.services import Refused

        result = await self.comp.gate.operate(command_id, self._p(user, role, workstation))
        if result.outcome is not None and result.outcome.value == "rejected":
            code = "not_found" if "unknown ticket" in result.reason else "command_rejected"
            raise Refused(f"operate command {command_id}", result.reason, 404 if code == "not_found" else 409, code)
        return self._view(command_id, result)

    async def approve(self, command_id: str, user: str, role: str, workstation: str) -> dict[str, Any]:
        from scada.errors import CommandRejected
        from server.services import Refused

        p = self._p(user, role, workstation)
        try:
            if self.comp.crisis is not None and self.comp.crisis.is_run(command_id):
                run = await self.comp.crisis.approve(command_id, p)
                return {"id": run.id, "state": run.state, **run.view()}
            ticket = self.comp.gate.approve(command_id, p)
        except CommandRejected as exc:
            code = "not_found" if "unknown ticket" in exc.reason else "command_rejected"
            raise Refused(f"approve command {command_id}", exc.reason, 404 if code == "not_found" else 409,
                          code) from None
        view = dict(ticket.view())
        if ticket.state.value == "ready" and not ticket.request.user.name == user:
            pass  # the requester operates (non-critical types may also be operated by the requester now)
        return view

    async def cancel(self, command_id: str, user: str, role: str, workstation: str) -> dict[str, Any]:
        from scada.errors import CommandRejected
        from server.services import Refused

        try:
            ticket = self.comp.gate.cancel(command_id, self._p(user, role, workstation))
        except CommandRejected as exc:
            code = "not_found" if "unknown ticket" in exc.reason else "command_rejected"
            raise Refused(f"cancel command {command_id}", exc.reason, 404 if code == "not_found" else 409,
                          code) from None
        return dict(ticket.view())

    def status(self, command_id: str) -> dict[str, Any] | None:
        ticket = self.comp.gate.status(command_id)
        if ticket is None:
            return None
        out = dict(ticket.view())
        lease = None
        for target in ticket.request.targets:
            lease = self.comp.leases.active(target)
            if lease is not None:
                out.setdefault("leases", []).append(lease.view())
        return out

    def pending(self) -> list[dict[str, Any]]:
        return [dict(t.view()) for t in self.comp.gate.pending()]

    def history(self, equipment: str | None, limit: int) -> list[dict[str, Any]]:
        """Latest audit-log entries (commands, approvals, refusals, lease expiries), newest first."""
        from collections import deque

        keep: deque[dict[str, Any]] = deque(maxlen=limit)
        for entry in self.comp.audit.entries():
            if equipment is not None:
                target = entry.get("target") or entry.get("targets") or entry.get("equipment") or []
                targets = target if isinstance(target, list) else [target]
                if equipment not in targets:
                    continue
            keep.append(entry)
        return list(reversed(keep))

    def stats(self) -> dict[str, Any]:
        return self.comp.stats()


class CrisisAdapter:
    def __init__(self, comp: FailsafeComponent) -> None:
        self.comp = comp

    def plans(self) -> list[dict[str, Any]]:
        return list(self.comp.crisis.plans())

    async def run(self, name: str, user: str, role: str, workstation: str, dry_run: bool) -> dict[str, Any]:
        from scada.errors import CommandRejected
        from server.services import Refused

        p = _principal(self.comp.types, user, role, workstation)
        try:
            run = self.comp.crisis.dry_run(name, p) if dry_run else await self.comp.crisis.activate(name, p)
        except CommandRejected as exc:
            code = "not_found" if "no crisis plan" in exc.reason else "command_rejected"
            raise Refused(f"{'dry run' if dry_run else 'activate'} crisis plan {name!r}", exc.reason,
                          404 if code == "not_found" else 409, code) from None
        return dict(run.view())


def commands_file(server: ScadaServer) -> Any:
    path = server.settings.commands
    return path if path is not None else server.settings.tags.parent / "commands.yaml"


def check_commands(server: ScadaServer, config: CityConfig) -> list[Any]:
    """Problems of commands.yaml against this city (none if the fail-safe layer is not in this build)."""
    path = commands_file(server)
    if find("failsafe.vocabulary") is None or not path.is_file():
        return []
    vocab_mod = importlib.import_module("failsafe.vocabulary")
    _, problems = vocab_mod.check_vocabulary(path, config)
    return list(problems)


class FailsafeComponent:
    """Gate + leases (+ heartbeat) + field-safety monitor + crisis runner, on commands.yaml."""

    def __init__(self, server: ScadaServer) -> None:
        self.server = server
        self.tasks: list[asyncio.Task[None]] = []
        self.gate: Any = None
        self.leases: Any = None
        self.monitor: Any = None
        self.crisis: Any = None
        self.audit: Any = None
        self.vocab: Any = None
        self.types: Any = None
        self.alarms: dict[str, Any] = {}

    async def start(self, config: CityConfig, tagdb: TagDatabase) -> None:
        st = self.server.status("failsafe")
        path = commands_file(self.server)
        if not path.is_file():
            st.set("unavailable", f"no command vocabulary ({path} not found): every command is refused")
            return
        self.types = importlib.import_module("failsafe.types")
        vocab_mod = importlib.import_module("failsafe.vocabulary")
        audit_mod = importlib.import_module("failsafe.audit")
        self.vocab = vocab_mod.load_vocabulary(path, config)
        root = self.server.data_dir / "failsafe"
        self.audit = audit_mod.AuditLog(root / "audit.log", audit_mod.key_from_env())
        self._build(config, tagdb)
        st.set("ok", f"{len(self.vocab.types)} commandable types, {len(self.vocab.crisis_plans)} crisis plans")
        st.stats = self.stats

    def _build(self, config: CityConfig, tagdb: TagDatabase) -> None:
        gate_mod = importlib.import_module("failsafe.gate")
        leases_mod = importlib.import_module("failsafe.leases")
        monitor_mod = importlib.import_module("failsafe.monitor")
        writer = DriverWriter(self.server)
        root = self.server.data_dir / "failsafe"
        self.leases = leases_mod.LeaseManager(config, self.vocab, writer, self.audit, store=root / "leases.json")
        self.gate = gate_mod.CommandGate(config, self.vocab, writer, self.audit, self.leases, reader=tagdb,
                                         alarms=self.on_alarm, authenticate=lambda p: bool(p.authenticated))
        self.monitor = monitor_mod.FieldSafetyMonitor(config, self.vocab, tagdb, self.gate, alarms=self.on_alarm,
                                                      audit=self.audit).start()
        crisis_mod = find("failsafe.crisis")
        self.crisis = crisis_mod.CrisisRunner(self.gate, self.vocab, self.audit) if crisis_mod else None
        self.tasks = [asyncio.create_task(self.leases.run(), name="failsafe-leases"),
                      asyncio.create_task(self.monitor.run(), name="failsafe-monitor"),
                      asyncio.create_task(self._sweep(self.gate), name="failsafe-sweeper")]
        self.server.commands = CommandAdapter(self)
        self.server.crisis = CrisisAdapter(self) if self.crisis is not None else None
        if self.server.system_alarms is not None:  # "no condition" is now known (after a restart: the
            self.server.system_alarms.initialise("failsafe")  # latched alarms stay held until an operator reset)

    @staticmethod
    async def _sweep(gate: Any, every_s: float = 1.0) -> None:
        """Expire unanswered approvals and select windows on time. Every gate call also sweeps first, but with
        nobody using the gate the audit log's approval_timeout / select_timeout would be stamped late."""
        while True:
            await asyncio.sleep(every_s)
            try:
                gate.sweep()
            except Exception:
                log.exception("fail-safe sweeper failed")

    def on_alarm(self, alarm: Any) -> None:
        """Fail-safe alarms (conflicting green, monitor did not act, not confirmed) → their system-alarm tags,
        which the alarm engine turns into ISA-18.2 alarms (scada.alarms.system). The detail (which phases,
        which command) is in the log and the command audit log."""
        self.alarms[alarm.key] = alarm
        log.log(logging.ERROR if alarm.active and alarm.priority <= 2 else logging.WARNING, "%s: %s (P%s, %s)",
                alarm.equipment or "fail-safe", alarm.message, alarm.priority, "active" if alarm.active else "cleared")
        sink = self.server.system_alarms
        mapped = codes_of([alarm.key])
        if sink is None or not mapped:
            if sink is not None:
                log.error("fail-safe alarm %s has no system alarm: it is only logged", alarm.key)
            return
        equipment, code = mapped[0]
        sink.raise_("failsafe", code, equipment, bool(alarm.active))

    def stats(self) -> dict[str, Any]:
        if self.gate is None:
            return {}
        views = self.monitor.views() if self.monitor is not None else {}
        by_state: dict[str, int] = {}
        for v in views.values():
            by_state[v.state] = by_state.get(v.state, 0) + 1
        return {"pending_tickets": len(self.gate.pending()), "active_leases": len(self.leases.leases()),
                "junctions": by_state,
                "alarms": [{"key": a.key, "priority": a.priority, "message": a.message}
                           for a in self.alarms.values() if a.active][:100]}

    async def _stop(self) -> None:
        if self.monitor is not None:
            self.monitor.stop()
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self.tasks = []
        if self.leases is not None:
            # leases persist with their end time; after a restart an expired one is only released, never
            # re-asserted, and the field side returns to local control by itself when the heartbeat stops
            await self.leases.aclose()

    async def rebind(self, old: CityConfig, new: CityConfig, tagdb: TagDatabase) -> dict[str, Any]:
        if self.gate is None:
            return {}
        await self._stop()
        vocab_mod = importlib.import_module("failsafe.vocabulary")
        self.vocab = vocab_mod.load_vocabulary(commands_file(self.server), new)
        self._build(new, tagdb)
        return {"types": len(self.vocab.types)}

    async def aclose(self) -> None:
        await self._stop()
        self.server.commands = None
        self.server.crisis = None


# ---------------------------------------------------------------------- start everything
async def _start(server: ScadaServer, name: str, module: str, make: Any) -> None:
    st = server.status(name)
    try:
        if find(module) is None:
            st.set("unavailable", f"{module} is not in this build")
            return
        comp = make(server)
        await comp.start(server.config, server.tagdb)
        server.components[name] = comp
    except Exception as exc:  # a broken subsystem must not stop the others
        log.exception("%s: cannot start", name)
        st.set("down", f"cannot start: {exc!r}")


async def start_all(server: ScadaServer) -> None:
    await _start(server, "alarms", "scada.alarms.engine", AlarmComponent)
    if server.journal is None and server.status("journal").status == "starting":
        server.status("journal").set(server.subsystems["alarms"].status, server.subsystems["alarms"].detail)
    await _start(server, "historian", "historian.recorder", HistorianComponent)
    await _start(server, "poll", "drivers.registry", PollComponent)
    await _start(server, "failsafe", "failsafe.gate", FailsafeComponent)  # stops before the drivers it writes through
    await _start(server, "stale", "scada.tagdb", StaleComponent)
    comp = HealthComponent(server)
    await comp.start(server.config, server.tagdb)
    server.components["health"] = comp


__all__ = ["build_tagdb", "find", "start_all"]
