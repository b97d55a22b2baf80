"""The failover pair as a server component: the etcd election (server.ha.election), its P1s, its journal
rows, /health, and the write fence handed to the fail-safe layer.

    settings ``ha: {role, name, etcd: [urls], lease_ttl_s, margin, key, peer_url, secret_file, sync_timeout}``
                                                                                      (server.settings.Ha)
        │  none: a single server — this component is not assembled, every write goes (nothing changes)
        ▼
    HaComponent.start ── Election.start in a thread of its own (its own event loop: a main loop stalled
        │                 by a start-up or a burst must not miss a keepalive and lose the lease); the
        │                 first round is awaited (/health says the role from the start); its events come
        │                 back to the main loop (call_soon_threadsafe). A ``standby`` waits one TTL before
        │                 trying the key, so at a joint start the primary takes it
        ├── may_write ──────────► FailsafeComponent → DriverWriter: checked immediately before every send
        │                          (operator commands, crisis plans, the monitor's flash requests and the
        │                          leases' refresh/heartbeat writes all go through it)
        ├── refuse_writes ──────► server.routes.deps.need: a standby's API answers 503 not_leaseholder to
        │                          anything but reading, naming the active server
        ├── events ─────────────► system alarms ``ha/no_coordination`` (P1 while etcd is unreachable),
        │                          ``ha/forced_active`` (P1 while forced), ``ha/not_in_sync`` (P2: an
        │                          action answered without the standby's copy); journal rows (config_change
        │                          event, source ``ha``) for every role change, switchover and forcing
        └── health ─────────────► /health subsystems.ha: ok (active, or standby with etcd), degraded
                                   (no coordination, forced); stats = the pair's state

    replication (with ``ha.secret_file``: server.ha.replication) ──────────────────────────────────────────
        ACTIVE   Feed (server.ha.feed): serves the standby's WebSocket (tag rows, journal rows, the state
                 snapshot of server.ha.state, the command audit log's entries, work-order changes) from the
                 server's parts (HaSink); ``sync()`` makes an operator action wait for the standby's copy (bounded
                 by ``ha.sync_timeout``; then P2 ``ha/not_in_sync``)
        STANDBY  Follower (server.ha.follower): connects to ``peer_url`` and writes into this server through
                 HaSink (server.components.ha_sink); the poll component holds its first poll (the field is not
                 polled twice), the alarm engine is detached from the tag database and from the journal (its
                 states come from the copied rows), nothing is journalled here (the journal is a copy), nor
                 audited (the audit log is a copy); the accounts are the active's
        STANDBY → ACTIVE: the follower stops, the audit log takes entries of its own again (after the copied
                 ones: one chain), the old active's leases, awaited approvals and sessions are taken over
                 (server.ha.state.Replica.take_over; select-before-operate windows cancelled), the engine is
                 attached to the journal and the tag database and re-derives from the values it holds (an
                 acknowledged alarm stays acknowledged: no second annunciation), the poll starts, then the role
                 change is journalled after the copied rows

An active that becomes a replicating standby (resumed after a SIGSTOP, switchover, an etcd partition) stops
polling (its devices leave both pollers until its next takeover) and rejoins by itself: rows of its journal the
new active never received are set aside (server.ha.follower: the "diverged" answer; the active journals it
with the P2 ``ha/set_aside``), then the active's rows are copied after the common point. A reload on the active
refuses the standby until it runs the same files (P2 on both); the standby then reloads live onto them (its own
POST /config/reload, or by itself once its files on disk are the active's: ``prepare`` refuses any other files,
and the active's safety-change approval stands there), its alarm engine built detached, and reconnects at once.
/health ha carries its detail as structured ``messages`` too (English msgids and their parameters, T_* below):
the console shows them in its own language (hmi.failover).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from failsafe.watch import UncommandedWatch
from scada.config import CityConfig
from scada.errors import NotLeaseholder
from scada.i18n import N_, _
from scada.tagdb import TagDatabase
from server.components.alarms import AlarmComponent
from server.components.base import SubsystemStatus
from server.components.failsafe import commands_file
from server.components.ha_sink import HaSink
from server.components.loopthread import start_loop_thread, stop_loop_thread
from server.ha.election import Election, HaOptions, Role
from server.ha.feed import Feed
from server.ha.follower import Follower, FollowerState
from server.ha.state import Replica
from server.ha.wire import files_fingerprint, layout_fingerprint, read_secret

if TYPE_CHECKING:
    from server.app import ScadaServer
    from server.components.poll import PollComponent
    from server.reload import Candidate
    from server.settings import Ha

log = logging.getLogger(__name__)
T = TypeVar("T")

# /health ha (its English detail, and its structured messages: the console translates these msgids)
T_FORCED = N_("{server}: FORCED ACTIVE by {user} (no lease)")
T_NO_ETCD = N_("{server}: {role}, etcd unreachable: nobody writes")
T_ROLE = N_("{server}: {role}")
T_ROLE_OF = N_("{server}: {role}, active: {active}")
T_STALE = N_("replication stale ({why})")
T_REPLICATING = N_("replicating")
T_NOT_POLLING = N_("rejoined as standby, not polling")
T_OWN_SET_ASIDE = N_("{rows} journal rows of its own set aside in {file}")
# the system alarms' texts (in the server's language when raised)
T_SET_ASIDE = N_("the standby's own journal rows after row {after} set aside: {rows} rows, {defs} definitions, in "
                 "{file} on the standby")
T_REFUSED = N_("the active refused the replication: {why}")
T_NO_COPY = N_("{what} answered without the standby's copy ({why})")
T_FORCED_BY = N_("{server}, by {user}")


def options_of(ha: Ha) -> HaOptions:
    return HaOptions(name=ha.name, etcd=tuple(ha.etcd), key=ha.key, lease_ttl_s=ha.lease_ttl_s, margin_s=ha.margin,
                     no_coordination_after_s=float(ha.lease_ttl_s))


class HaComponent:
    """The failover pair's election as a component (see the module docstring)."""

    name = "ha"

    def __init__(self, server: ScadaServer, settings: Ha, poll: PollComponent | None = None) -> None:
        self.server = server
        self.settings = settings
        self.poll = poll
        self.election = Election(options_of(settings))
        self.election.listeners.append(self._from_election_thread)
        self.secret: bytes | None = None  # the pair's secret: replication on (read at start)
        self.feed: Feed | None = None  # the active's side of the stream
        self.follower: Follower | None = None  # the standby's side, while standby
        self.attached = True  # the alarm engine evaluates and journals here (False on a replicating standby)
        self.replica = Replica(server)  # the active's state, while standby (server.ha.state)
        #: the server's parts as the stream reads (active) and writes (standby) them
        self.sink = HaSink(server, poll, self.replica, fingerprint=self.fingerprint, on_state=self._stream_changed,
                           on_set_aside=self._rejoined)
        self.taken_over: dict[str, int] = {}  # what the last takeover went on with
        self._roles = asyncio.Lock()  # role transitions run one at a time, in order
        self._tasks: set[asyncio.Task[None]] = set()
        self._fingerprint: tuple[int, str] | None = None
        self._files = ""  # the running configuration files' fingerprint
        self._follow_tried: tuple[str, str] | None = None  # (active's files, these files): a reload tried for them
        self._not_in_sync = ""
        self.rejoined: dict[str, Any] | None = None  # what this standby set aside of its journal at its rejoin
        self._closing = False  # aclose() began: a last role change starts nothing
        self._main: asyncio.AbstractEventLoop | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the election's own loop and thread
        self._thread: threading.Thread | None = None

    async def _there(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the election's loop and await its result here."""
        if self._loop is None:
            raise RuntimeError("ha: the election is not running")
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    def _from_election_thread(self, event: str, d: dict[str, Any]) -> None:
        if self._main is not None:
            self._main.call_soon_threadsafe(self._on_event, event, d)

    # ------------------------------------------------------------------ the fence and the API
    def may_write(self) -> bool:
        return self.election.may_write()

    def refuse_writes(self, what: str) -> None:
        """NotLeaseholder (503) unless this server is the one operators act on (active or forced)."""
        if self.election.role in (Role.ACTIVE, Role.FORCED):
            return
        leader = self.election.leader
        where = f"; ask the active server {leader!r}" + (f" ({self.settings.peer_url})" if self.settings.peer_url
                                                         else "") if leader else "; no server is active"
        raise NotLeaseholder(what, f"this server ({self.settings.name}) is {self.election.role.value}: "
                                   f"read-only{where}")

    def state(self) -> dict[str, Any]:
        out = {**self.election.state(), "configured_role": self.settings.role, "peer_url": self.settings.peer_url}
        if self.secret is not None:
            out["replication"] = self.replication_state()
        return out

    def replication_state(self) -> dict[str, Any]:
        if self.follower is not None:
            f = self.follower.state
            return {"side": "standby", "from": self.follower.url, "connected": f.connected,
                    "fresh": self.follower.fresh,
                    "journal_applied": f.applied_id, "audit_applied": f.audit_applied,
                    "workorders_applied": f.wo_applied, "samples": f.samples, "rows": f.rows,
                    "history_backfilled": f.backfilled,
                    "refused": f.refused or None, "error": f.error or None}
        return {"side": "active", **(self.feed.stats() if self.feed is not None else {}),
                "not_in_sync": self._not_in_sync or None, "taken_over": self.taken_over or None}

    def feeds(self) -> bool:
        """This server feeds the standby (it is the one operators act on)."""
        return self.election.role in (Role.ACTIVE, Role.FORCED)

    # ------------------------------------------------------------------ replication (server.ha.feed, .follower)
    def fingerprint(self) -> str:
        engine = self.sink.engine()
        db = self.server.tagdb
        if self._fingerprint is None or self._fingerprint[0] != id(db):
            catalog = engine.catalog.fingerprint() if engine is not None else ""
            self._fingerprint = (id(db), layout_fingerprint(db, catalog))
        return f"{self._fingerprint[1]}-{self._files}"

    async def _read_files(self, config: CityConfig) -> None:
        """The running configuration's files (server.ha.wire.files_fingerprint): at start and at every
        applied reload, so that a standby on other files, or one the active reloaded away from, is refused."""
        self._files = await asyncio.to_thread(files_fingerprint, self._paths(config))

    def _stream_changed(self, state: FollowerState) -> None:
        """The standby's stream changed (connected, stale, refused; HaSink.on_state): health, and the P2 when
        refused; the active runs other files: follow them if this server's files now match (_follow_files)."""
        self._set_not_in_sync(T_REFUSED if state.refused else "", why=state.refused)
        self._update_health()
        active = state.active_fingerprint.rpartition("-")[2]
        if state.refused and active and active != self._files and not self._closing:
            task = asyncio.create_task(self._follow_files(active), name="ha-follow-files")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _paths(self, config: CityConfig, commands: Path | None = None) -> list[Path]:
        return [*map(Path, config.files), commands or commands_file(self.server.settings)]

    async def _follow_files(self, active: str) -> None:
        """The active reloaded (or runs other files): when this standby's files on disk are now the active's (the
        engineers copied them, or both rooms read one share), reload them live, once per such state; otherwise
        an engineer reloads it (POST /config/reload on the standby) once they are."""
        disk = await asyncio.to_thread(files_fingerprint, self._paths(self.server.config))
        if disk != active or self._follow_tried == (active, disk) or self.server.reloading:
            return
        self._follow_tried = (active, disk)
        log.warning("%s: the active server runs other files; this standby's now match them: reloading",
                    self.settings.name)
        result = await self.server.reload("ha", "failover pair: the active's files")
        if not result.get("applied"):
            log.error("%s: following the active's files: reload not applied: %s", self.settings.name,
                      "; ".join(map(str, result.get("problems") or []))[:500])

    def _rejoined(self, info: dict[str, Any]) -> None:
        """This standby diverged and set its own rows aside (server.ha.follower.Follower): /health says so."""
        self.rejoined = info
        self._update_health()
    def _standby_set_aside(self, info: dict[str, Any]) -> None:
        """The active's side: a rejoining standby set its own rows aside. Journalled (a row the standby then
        copies) and the P2 ``ha/set_aside`` names what and where."""
        params = {"after": int(info.get("after") or 0), "rows": int(info.get("rows") or 0),
                  "defs": int(info.get("defs") or 0), "file": info.get("file") or "(nothing)"}
        what = T_SET_ASIDE.format(**params)
        log.warning("%s: %s", self.settings.name, what)
        self._journal(what)
        self._alarm("set_aside", True, _(T_SET_ASIDE).format(**params)[:300])
        self._alarm("set_aside", False)  # a pulse: it stays returned-unacknowledged until an operator acknowledges

    def _set_not_in_sync(self, template: str = "", **params: Any) -> None:
        """Raise (or clear: no template) the P2 ``ha/not_in_sync``: its text in the server's language (a marked
        template), the log's in English; a ``{why}`` param from the other side of the stream is its English."""
        why = template.format(**params)
        if why == self._not_in_sync:
            return
        if why:
            log.error("%s: standby not in sync: %s", self.settings.name, why)
        elif self._not_in_sync:
            log.info("%s: the standby is in sync again", self.settings.name)
        self._not_in_sync = why
        self._alarm("not_in_sync", bool(why), _(template).format(**params)[:300] if template else "")

    async def sync(self, what: str) -> None:
        """An operator action was answered by this (active) server: wait until the standby holds it, at most
        ``ha.sync_timeout``; then answer anyway, with the P2 ``ha/not_in_sync``."""
        feed = self.feed
        if feed is None or not self.feeds():
            return
        if await feed.sync(float(self.settings.sync_timeout)):
            return
        why = _("no standby connected") if not feed.connected else \
            _("no copy within {seconds} s").format(seconds=f"{float(self.settings.sync_timeout):.1f}")
        self._set_not_in_sync(T_NO_COPY, what=what, why=why)

    async def _sync_watch(self) -> None:
        """Clear the P2 once the standby holds everything again (or there is nothing to hold: standby here)."""
        while True:
            await asyncio.sleep(0.5)
            try:
                feed, journal = self.feed, self.sink.journal()
                if self.follower is not None or feed is None or journal is None or not self.feeds():
                    continue
                if feed.refused:  # a standby was refused (another configuration, a diverged journal)
                    self._set_not_in_sync("{why}", why=feed.refused)  # the feed's own English (its log's)
                elif self._not_in_sync and feed.connected and \
                        feed.acked_id >= await asyncio.to_thread(journal.last_id):
                    self._set_not_in_sync()
            except Exception:  # the watch must go on (logged)
                log.exception("%s: replication watch failed", self.settings.name)

    async def _became_standby(self) -> None:
        if self.feed is not None:
            self.feed.drop()  # a standby feeds nobody
        if self.secret is None or not self.settings.peer_url or self._closing:
            return  # no replication: the standby polls the field itself, read-only (part 1)
        alarms = self.server.components.get("alarms")
        if isinstance(alarms, AlarmComponent):
            alarms.detached = True  # a reload here builds its engine detached too
        unsub = getattr(alarms, "unsub", None)
        if unsub is not None and alarms is not None:
            unsub()  # the engine no longer evaluates here: its states come from the copied journal rows
            alarms.unsub = None  # type: ignore[attr-defined]
        engine = self.sink.engine()
        if engine is not None:
            engine.journal = None  # the journal is a copy of the active's: nothing is written here
        journal = self.sink.journal()
        if journal is not None:
            journal.copy_only = True  # any other writer (a reload's row) is refused, not given an active's id
        self.attached = False
        if self.follower is None:
            self.follower = Follower(self.settings.peer_url, self.secret, self.sink)
            self.follower.start()
        await self.sink.stop_polling(self.settings.name)
        self._update_health()

    async def _became_active(self) -> None:
        follower, self.follower = self.follower, None
        if follower is not None:
            await follower.aclose()
        if follower is not None:  # a replicating standby: go on with what the old active held
            audit, orders = self.sink.audit(), self.sink.workorders()
            if audit is not None:
                audit.copy_only = False  # entries of its own again, after the copied ones: one chain
            if orders is not None:
                orders.copy_only = False
            wait = self.election.fence_from - self.election.clock()  # the first field write the fence allows
            not_before = time.time() + (wait if 0.0 < wait < 3600.0 else 0.0)
            self.taken_over = await asyncio.to_thread(self.replica.take_over, not_before)
            watch = getattr(self.server.components.get("failsafe"), "watch", None)
            if isinstance(watch, UncommandedWatch):
                # the field's overrides are ours again before the engine re-derives: as a standby the watch saw
                # them with no lease of this server's ("uncommanded"), which must not be annunciated now
                watch.check()
        if not self.attached:
            alarms, engine, journal = self.server.components.get("alarms"), self.sink.engine(), self.sink.journal()
            if isinstance(alarms, AlarmComponent):
                alarms.detached = False
            if journal is not None:
                journal.copy_only = False
            if alarms is not None and engine is not None and journal is not None:
                # re-derive from what the tag database holds: an alarm the copied rows say acknowledged, still
                # active, makes no transition (no second annunciation); one that ended returns to normal
                engine.journal = journal
                alarms.unsub = engine.attach()  # type: ignore[attr-defined]
                known = np.flatnonzero(self.server.tagdb.receive_ns > 0).astype(np.int64)
                if known.size:
                    engine.process(known, time.time_ns())
            self.attached = True
        await self.sink.start_polling()  # the poll component polls the field (or again: an old active's devices)
        self._update_health()

    async def _role_changed(self, d: dict[str, Any]) -> None:
        async with self._roles:
            try:
                if d["role"] in (Role.ACTIVE.value, Role.FORCED.value):
                    await self._became_active()
                elif d["role"] == Role.STANDBY.value:
                    await self._became_standby()
            except Exception:  # the role stands (the fence follows the election): say it, do not stop here
                log.exception("%s: taking the role %s failed", self.settings.name, d["role"])
            self._journal(f"{d['before']} → {d['role']} ({d['why']})")

    # ------------------------------------------------------------------ events → alarms, journal, health
    def _alarm(self, code: str, active: bool, detail: str = "") -> None:
        sink = self.server.system_alarms
        if sink is not None:
            sink.raise_("ha", code, active=active, detail=detail)

    def _journal(self, detail: str, user: str = "") -> None:
        journal = self.server.journal
        if not self.attached:  # a replicating standby's journal is the active's copy: its own rows would collide
            log.warning("%s: %s%s", self.settings.name, detail, f" (by {user})" if user else "")
            return
        if journal is None:
            return
        try:
            journal.config_change(user, "ha", True, f"{self.settings.name}: {detail}")
        except Exception:  # the pair's state is logged and in /health; a journal failure must not stop it
            log.exception("%s: cannot journal %r", self.settings.name, detail)

    def _on_event(self, event: str, d: dict[str, Any]) -> None:
        if event == "role":
            task = asyncio.create_task(self._role_changed(d), name="ha-role")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            if d["role"] == Role.FORCED.value:
                self._alarm("forced_active", True, _(T_FORCED_BY).format(server=self.settings.name,
                                                                         user=self.election.forced_by))
        elif event == "forced_end":
            self._journal(f"forcing ended ({d['why']})")
            self._alarm("forced_active", False)
        elif event == "coordination":
            self._alarm("no_coordination", not d["ok"])
            self._journal("etcd reachable again" if d["ok"] else f"etcd unreachable: nobody writes ({d['why'][:300]})")
        elif event == "switchover":
            self._journal("switchover: lease resigned")
        self._update_health()

    def _update_health(self) -> None:
        """/health ha: its detail in English (monitoring, other clients) and the same as structured ``messages``
        (each the English template, a msgid of the catalogue, and its parameters: server.components.base), which
        the console shows in its own language (hmi.failover.detail_text)."""
        e, st = self.election, self.health()
        server = self.settings.name
        parts: list[tuple[str, dict[str, Any]]] = []
        status = "ok"
        f = self.follower
        if e.role is Role.FORCED:
            status = "degraded"
            parts.append((T_FORCED, {"server": server, "role": e.role.value, "user": e.forced_by}))
        elif e.no_coordination:
            status = "degraded"
            parts.append((T_NO_ETCD, {"server": server, "role": e.role.value}))
        else:
            if e.role is not Role.ACTIVE and e.leader:
                parts.append((T_ROLE_OF, {"server": server, "role": e.role.value, "active": e.leader}))
            else:
                parts.append((T_ROLE, {"server": server, "role": e.role.value}))
            if f is not None and not f.fresh:
                status = "degraded"
                parts.append((T_STALE, {"why": (f.state.refused or f.state.error or "no frame")[:200]}))
            elif f is not None:
                parts.append((T_REPLICATING, {}))
                if self.sink.paused is not None:
                    parts.append((T_NOT_POLLING, {}))
                if self.rejoined is not None and self.rejoined.get("rows"):
                    parts.append((T_OWN_SET_ASIDE, {"rows": int(self.rejoined["rows"]),
                                                    "file": str(self.rejoined.get("file"))}))
        st.set(status, "; ".join(t.format(**p) for t, p in parts))
        st.messages = [{"key": t, "params": p} for t, p in parts]

    # ------------------------------------------------------------------ operator actions (server.ha.routes)
    async def switchover(self, user: str) -> bool:
        done = await self._there(self.election.switchover())
        if done:
            self._journal("switchover asked", user)
        return done

    async def force_active(self, user: str) -> None:
        self._journal("FORCED ACTIVE (break-glass: the other server confirmed down)", user)

        async def force() -> None:
            self.election.force_active(user)

        await self._there(force())

    # ------------------------------------------------------------------ lifecycle
    async def start(self, config: CityConfig, tagdb: TagDatabase) -> None:
        st = self.health()
        st.stats = self.state
        await self._read_files(config)
        if self.server.system_alarms is not None:
            self.server.system_alarms.initialise("ha")
        if self.settings.role == "standby":  # a joint start: the primary takes the key first
            self.election.hold_off_until = self.election.clock() + self.settings.lease_ttl_s
        if self.settings.secret_file is not None:
            self.secret = await asyncio.to_thread(read_secret, self.settings.secret_file)
            sink = self.sink
            self.feed = Feed(sink.tagdb, sink.journal, self.fingerprint, sink.city_tags, audit=sink.audit,
                             state=sink.state_snapshot, workorders=sink.workorders, photos=sink.photos,
                             historian=sink.historian,
                             on_set_aside=self._standby_set_aside)
            if self.poll is not None:
                self.poll.hold = self.sink.hold  # polls once this server is active (not while a standby)
            self._tasks.add(asyncio.create_task(self._sync_watch(), name="ha-sync-watch"))
        self.server.follows_active = lambda: self.follower is not None
        self._main = asyncio.get_running_loop()
        self._loop, self._thread = start_loop_thread("ha-election")

        async def first() -> None:
            await self.election.round()
            self.election.start()

        await self._there(first())
        self._update_health()

    async def prepare(self, candidate: Candidate, tagdb: TagDatabase) -> None:
        """A replicating standby reloads onto the active's files only (the active applied them, its second person
        approved any safety change there: server.app skips that approval here); any other files refuse the
        reload. Reloading the files it runs changes nothing and is allowed."""
        follower = self.follower
        if follower is None:
            return
        files = await asyncio.to_thread(files_fingerprint, self._paths(candidate.config, candidate.commands))
        active = follower.state.active_fingerprint.rpartition("-")[2]
        if files not in (self._files, active):
            raise ValueError(f"this server is the failover pair's standby: it reloads onto the active server's "
                             f"files only (the active runs {active or 'the files this standby runs'}, these files "
                             f"are {files}); reload the active first, then give this standby the same files")

    def discard(self) -> None:
        return None

    async def apply(self, old: CityConfig, new: CityConfig, tagdb: TagDatabase) -> dict[str, Any]:
        # the pair's settings are server settings, not the city's; but the stream's fingerprint changes: a standby
        # fed the old configuration is told and refused (P2 on both) until it runs the same files; a standby that
        # reloaded (onto the active's files: prepare) says so to the active at once (docs/ha.md)
        await self._read_files(new)
        if self.follower is not None:
            self.follower.retry_now()
        return {}

    def health(self) -> SubsystemStatus:
        return self.server.status("ha")

    async def aclose(self) -> None:
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.follower is not None:
            await self.follower.aclose()
            self.follower = None
        if self._loop is None:
            return
        try:
            await self._there(self.election.aclose())
        finally:
            await stop_loop_thread(self._loop, self._thread)
            self._loop = self._thread = None
