"""Alarm engine + journal (scada.alarms, scada.journal): the AlarmService the API and the consoles use.

    start: journal (SQLite WAL) → engine (states restored from the journal: a restart after kill -9
           keeps acknowledged alarms acknowledged) → system-alarm sink (fail-safe, historian conditions
           as tags) → subscribe to the tag database → evaluate what it already holds → 1 s tick
    engine transitions ─► one JSON event per alarm ─► WebSocket hub + API listeners
    reset of a monitor-latched alarm ─► reset_at_source(junctions, user) (the fail-safe layer's latch,
           injected by the assembler) ─► then the engine's own reset

Lists are filtered on the engine's columns (AlarmEngine.not_normal) before any JSON is built.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from scada.alarms.engine import ActionResult, AlarmEngine, AlarmView, Transitions
from scada.alarms.states import Event
from scada.alarms.system import SystemAlarmSink, held_at_source, parse_rule, remedies_of
from scada.config import CityConfig
from scada.errors import Refusal, Refused
from scada.i18n import N_, get_language
from scada.journal import Journal
from scada.tagdb import TagDatabase
from server.components.base import SubsystemStatus
from server.components.journal import JournalService

if TYPE_CHECKING:
    from server.app import ScadaServer
    from server.reload import Candidate

log = logging.getLogger(__name__)

Json = dict[str, Any]
#: reset the source's own latch of these equipment (the fail-safe monitor's junctions) for this user
ResetAtSource = Callable[[Iterable[str], str], None]
ACTIONS = ("ack", "shelve", "unshelve", "suppress", "unsuppress", "out_of_service", "return_to_service", "reset")


def alarm_view_dict(v: AlarmView) -> Json:
    """An AlarmView as the API and the WebSocket send it."""
    pr = int(v.priority)
    flags = list(v.flags)
    if v.state.active and "latched" not in flags and held_at_source(v.rule):
        # held by the field-safety monitor itself: only a reset clears it (the consoles offer Reset on "latched")
        flags.append("latched")
    out: Json = {"id": v.alarm, "rule": v.rule, "equipment": v.equipment, "commune": v.commune, "area": v.area,
                 "service": v.service, "tag": v.tag, "priority": pr if pr < 5 else "diagnostic",
                 "state": v.state.label, "active": v.state.active, "acked": v.state.acked, "flags": flags,
                 "message": v.message, "value": v.value, "since_ms": v.since_ns // 1_000_000,
                 "changed_ms": v.changed_ns // 1_000_000, "shelved_until_ms": v.shelved_until_ns // 1_000_000,
                 "work_order": v.work_order}
    remedies = remedies_of(v.rule)
    if remedies:  # the commands that end the condition (commands.yaml verbs), offered by the consoles
        out["remedies"] = remedies
    return out


class AlarmService:
    """AlarmService (server.services) over the running engine."""

    def __init__(self, comp: AlarmComponent, engine: AlarmEngine) -> None:
        self.comp = comp
        self.engine = engine

    def active(self, diagnostic: bool = False, limit: int = 20_000, *, area: str | None = None,
               priorities: Sequence[int] | None = None, service: str | None = None, equipment: str | None = None,
               states: Sequence[str] | None = None, lang: str | None = None) -> tuple[int, list[Json]]:
        total, views = self.engine.not_normal(diagnostic=diagnostic, area=area, priorities=priorities,
                                              service=service, equipment=equipment, states=states, limit=limit,
                                              lang=lang or get_language())
        return total, [alarm_view_dict(v) for v in views]

    def action(self, action: str, alarm_ids: list[str], user: str, params: Json) -> list[Json]:
        e = self.engine
        now = time.time_ns()
        comment = params.get("comment") or None
        what = f"{action.replace('_', ' ')} {len(alarm_ids)} alarm(s)" if len(alarm_ids) != 1 else \
            f"{action.replace('_', ' ')} alarm {alarm_ids[0]!r}"
        result: ActionResult
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
            self._reset_at_source(alarm_ids, user)
            result = e.reset(alarm_ids, user, now, comment)
        else:
            raise Refused(what, f"unknown action; actions: {', '.join(ACTIONS)}", Refusal.INVALID)
        if not result.done:
            reasons = "; ".join(f"{r.alarm}: {r.reason}" if r.alarm else r.reason for r in result.refused[:20])
            unknown = bool(result.refused) and all(r.code is Refusal.NOT_FOUND for r in result.refused)
            raise Refused(what, reasons or N_("nothing to do"),
                          Refusal.NOT_FOUND if unknown else Refusal.ALARM_ACTION_REFUSED)
        return [{"alarm": a, "outcome": "done"} for a in result.done] + \
               [{"alarm": r.alarm, "outcome": "refused", "reason": r.reason} for r in result.refused]

    def _reset_at_source(self, alarm_ids: list[str], user: str) -> None:
        """A reset of a field-safety monitor alarm resets the monitor's latch first (its tag then returns to
        0, the engine's latched alarm is held, and the engine reset that follows returns it to normal)."""
        reset = self.comp.reset_at_source
        if reset is None:  # no fail-safe layer (its tags then stay 0): the engine's reset alone is enough
            return
        e = self.engine
        idx, _ = e.catalog.indices_of(alarm_ids)
        junctions: set[str] = set()
        for i in idx:
            info = e.catalog.info(i)
            if not held_at_source(info.rule):
                continue
            if e.authorize is not None and e.authorize(user, Event.RESET, info) is not None:
                continue  # the engine refuses it below, with the reason
            junctions.add(info.equipment)
        if junctions:
            reset(junctions, user)

    def summary(self, area: str | None) -> Json:
        s = self.engine.summary(area)
        return {"unacked": s.unacked, "acked": s.acked, "rtn_unacked": s.rtn_unacked, "shelved": s.shelved,
                "suppressed": s.suppressed, "out_of_service": s.out_of_service,
                "by_priority": {str(k): v for k, v in s.by_priority.items()}, "flood_areas": list(s.flood_areas),
                "failsafe": self.comp.failsafe_active()}

    def console(self, area: str | None, service: str | None, group_by: str, grouped: bool | None,
                limit: int, lang: str | None = None) -> Json:
        try:
            v = self.engine.console(area=area, service=service, group_by=group_by, grouped=grouped, limit=limit,
                                    lang=lang or get_language())
        except ValueError as exc:
            raise Refused("alarm console", str(exc), Refusal.INVALID) from None
        groups = [{"by": g.by, "key": g.key, "count": g.count, "unacked": g.unacked, "top_priority": g.top_priority,
                   "newest_ms": g.newest_ns // 1_000_000, "alarms": list(g.alarms)} for g in v.groups]
        critical = [alarm_view_dict(a) for a in v.critical]
        return {"flood": v.flood, "flood_areas": list(v.flood_areas), "critical": critical,
                "items": [alarm_view_dict(a) for a in v.items], "groups": groups, "total": v.total}

    def subscribe(self, callback: Callable[[Json], None]) -> Callable[[], None]:
        listeners = self.comp.listeners
        listeners.append(callback)
        return lambda: listeners.remove(callback) if callback in listeners else None

    def stats(self) -> Json:
        return self.comp.stats()


class AlarmComponent:
    """Journal (SQLite WAL) + alarm engine; alarm states restored from the journal at start."""

    name = "alarms"

    def __init__(self, server: ScadaServer, reset_at_source: ResetAtSource | None = None) -> None:
        self.server = server
        self.reset_at_source = reset_at_source
        self.journal: Journal | None = None
        self.engine: AlarmEngine | None = None
        self.unsub: Callable[[], None] | None = None
        self.unlisten: Callable[[], None] | None = None
        #: a replicating failover standby (server.components.ha): the engine evaluates nothing and writes nothing,
        #: its states come from the copied journal rows; a reload there builds the new engine detached too
        self.detached = False
        self.task: asyncio.Task[None] | None = None
        self.listeners: list[Callable[[Json], None]] = []
        self._failsafe_mask: np.ndarray[Any, np.dtype[np.bool_]] | None = None  # per alarm: a fail-safe alarm
        self._prepared: tuple[CityConfig, TagDatabase, AlarmEngine, SystemAlarmSink] | None = None  # by prepare()
        self.restored = 0
        self.transitions = 0

    async def start(self, config: CityConfig, tagdb: TagDatabase) -> None:
        path = self.server.data_dir / "journal.sqlite"
        journal = self.journal = await asyncio.to_thread(Journal, path)
        self.server.status("journal").set("ok", str(path))
        self.server.status("journal").stats = lambda: {"rows": journal.count()}
        self.server.journal = JournalService(journal)
        # compiled and registered in a worker thread (seconds at city scale): the API, listening already, answers
        # logins meanwhile (nothing writes the tag database before the poll component starts)
        engine = await asyncio.to_thread(self._attach, config, tagdb)
        self.task = asyncio.create_task(self._tick(), name="alarm-tick")
        self.server.alarms = AlarmService(self, engine)
        st = self.health()
        st.set("ok", f"{engine.n} alarms from {len(config.alarm_rules)} rules; {self.restored} states restored "
                     f"from the journal")
        st.stats = self.stats

    def _attach(self, config: CityConfig, tagdb: TagDatabase) -> AlarmEngine:
        if self.journal is None:  # opened by start(); apply() only reaches a started component
            raise RuntimeError("alarms: the journal is not open")
        prepared, self._prepared = self._prepared, None
        if prepared is not None and prepared[0] is config and prepared[1] is tagdb:
            engine, sink = prepared[2], prepared[3]  # built by prepare() while the old engine ran
        else:
            engine, sink = AlarmEngine(config, tagdb, self.journal, restore=False, now_ns=time.time_ns()), \
                SystemAlarmSink(config, tagdb)
        self.engine = engine
        self.server.system_alarms = sink
        groups = [k for k, r in enumerate(engine.catalog.rules)
                  if (sa := parse_rule(r.spec.name)) is not None and sa.source == "failsafe"]
        self._failsafe_mask = np.isin(engine.catalog.group, groups)
        self.restored = engine.restore(self.journal.current_states())  # kill -9: acknowledged stays so
        if self.detached:
            engine.journal = None
            self.unlisten = engine.subscribe(self.on_transitions)
            return engine
        self.unsub = engine.attach()
        self.unlisten = engine.subscribe(self.on_transitions)
        # evaluate what is already in the tag database (values carried over by a reload, or polled already)
        known = np.flatnonzero(tagdb.receive_ns > 0).astype(np.int64)
        if known.size:
            engine.process(known, time.time_ns())
        return engine

    def on_transitions(self, tr: Transitions) -> None:
        """Engine listener (called under the engine's lock): one event per alarm row to the consoles."""
        self.transitions += len(tr)
        if not len(tr) or self.engine is None:
            return
        # newest row of each alarm only: reverse, keep the first occurrence of each alarm
        rev = tr.alarm[::-1]
        _, first = np.unique(rev, return_index=True)
        rows = np.sort(len(tr) - 1 - first)[::-1]  # positions in tr, newest first
        rows = rows[tr.alarm[rows] >= 0]
        if not rows.size:
            return
        labels = {e: Event(e).label for e in np.unique(tr.event[rows]).tolist()}
        events = tr.event[rows].tolist()
        ts = tr.ts_ns[rows].tolist()
        # one bulk lookup, not one per alarm; in the server's language (one push serves every console)
        for k, v in enumerate(self.engine.views(tr.alarm[rows], get_language())):
            view = alarm_view_dict(v)
            view["event"] = labels[events[k]]
            view["event_ms"] = ts[k] // 1_000_000
            if tr.user:
                view["user"] = tr.user
            self._emit(view)

    def _emit(self, view: Json) -> None:
        self.server.hub.on_alarm(view)
        for cb in list(self.listeners):
            try:
                cb(view)
            except Exception:  # a listener's bug must not stop the others or the engine (logged)
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
                if self.engine is not None:
                    self.engine.tick(time.time_ns())
            except Exception:  # one failed tick must not end the timers (delays, shelving) for good (logged)
                log.exception("alarm engine tick failed")

    def stats(self) -> Json:
        if self.engine is None:
            return {}
        s = self.engine.summary()
        return {"alarms": self.engine.n, "unacked": s.unacked, "acked": s.acked, "rtn_unacked": s.rtn_unacked,
                "shelved": s.shelved, "suppressed": s.suppressed, "out_of_service": s.out_of_service,
                "by_priority": s.by_priority, "flood_areas": s.flood_areas, "transitions": self.transitions,
                "restored": self.restored, "failsafe_alarms": self.failsafe_active()}

    def health(self) -> SubsystemStatus:
        return self.server.status("alarms")

    def _detach(self) -> None:
        if self.unsub is not None:
            self.unsub()
        if self.unlisten is not None:
            self.unlisten()
        self.unsub = self.unlisten = None

    async def prepare(self, candidate: Candidate, tagdb: TagDatabase) -> None:
        """Compile the new rules into an engine aside (not attached): rules the engine cannot build refuse the
        reload before anything switches."""
        if self.journal is None:
            raise RuntimeError("alarms: the journal is not open")
        config = candidate.config
        self._prepared = (config, tagdb, AlarmEngine(config, tagdb, self.journal, restore=False,
                                                     now_ns=time.time_ns()), SystemAlarmSink(config, tagdb))

    def discard(self) -> None:
        self._prepared = None

    async def apply(self, old: CityConfig, new: CityConfig, tagdb: TagDatabase) -> Json:
        """New rules or tags: the prepared engine (or a new one), its states restored from the journal."""
        self._detach()
        engine = self._attach(new, tagdb)
        self.server.alarms = AlarmService(self, engine)
        self.health().set("ok", f"{engine.n} alarms from {len(new.alarm_rules)} rules; {self.restored} states "
                                f"restored from the journal")
        return {"alarms": engine.n, "restored": self.restored}

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
