"""The failover pair as a server component: the etcd election (server.ha.election), its P1s, its journal
rows, /health, and the write fence handed to the fail-safe layer.

    settings ``ha: {role, name, etcd: [urls], lease_ttl_s, margin, key, peer_url}``   (server.settings.Ha)
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
        │                          ``ha/forced_active`` (P1 while forced); journal rows (config_change
        │                          event, source ``ha``) for every role change, switchover and forcing
        └── health ─────────────► /health subsystems.ha: ok (active, or standby with etcd), degraded
                                   (no coordination, forced); stats = the pair's state

What is NOT here yet (issue 19, part 2): the standby polls the field itself (read-only) instead of
receiving a replication stream; tag values, alarm states, the journal, leases and sessions are not
replicated. :class:`Replication` is the interface that part plugs in.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from scada.config import CityConfig
from scada.errors import NotLeaseholder
from scada.tagdb import TagDatabase
from server.components.base import SubsystemStatus
from server.components.loopthread import start_loop_thread, stop_loop_thread
from server.ha.election import Election, HaOptions, Role

if TYPE_CHECKING:
    from server.app import ScadaServer
    from server.settings import Ha

log = logging.getLogger(__name__)
T = TypeVar("T")


class Replication(Protocol):
    """What part 2 plugs in: the active streams its state to the standby, and an operator action is answered
    only once the standby has it. Called by this component on role changes."""

    async def became_active(self) -> None: ...

    async def became_standby(self, active: str) -> None: ...


def options_of(ha: Ha) -> HaOptions:
    return HaOptions(name=ha.name, etcd=tuple(ha.etcd), key=ha.key, lease_ttl_s=ha.lease_ttl_s, margin_s=ha.margin,
                     no_coordination_after_s=float(ha.lease_ttl_s))


class HaComponent:
    """The failover pair's election as a component (see the module docstring)."""

    name = "ha"

    def __init__(self, server: ScadaServer, settings: Ha) -> None:
        self.server = server
        self.settings = settings
        self.election = Election(options_of(settings))
        self.election.listeners.append(self._from_election_thread)
        self.replication: Replication | None = None  # part 2
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
        return {**self.election.state(), "configured_role": self.settings.role, "peer_url": self.settings.peer_url}

    # ------------------------------------------------------------------ events → alarms, journal, health
    def _alarm(self, code: str, active: bool, detail: str = "") -> None:
        sink = self.server.system_alarms
        if sink is not None:
            sink.raise_("ha", code, active=active, detail=detail)

    def _journal(self, detail: str, user: str = "") -> None:
        journal = self.server.journal
        if journal is None:
            return
        try:
            journal.config_change(user, "ha", True, f"{self.settings.name}: {detail}")
        except Exception:  # the pair's state is logged and in /health; a journal failure must not stop it
            log.exception("%s: cannot journal %r", self.settings.name, detail)

    def _on_event(self, event: str, d: dict[str, Any]) -> None:
        if event == "role":
            self._journal(f"{d['before']} → {d['role']} ({d['why']})")
            if d["role"] == Role.FORCED.value:
                self._alarm("forced_active", True, f"{self.settings.name}, by {self.election.forced_by}")
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
        e, st = self.election, self.health()
        if e.role is Role.FORCED:
            st.set("degraded", f"{self.settings.name}: FORCED ACTIVE by {e.forced_by} (no lease)")
        elif e.no_coordination:
            st.set("degraded", f"{self.settings.name}: {e.role.value}, etcd unreachable: nobody writes")
        else:
            other = f", active: {e.leader}" if e.role is not Role.ACTIVE and e.leader else ""
            st.set("ok", f"{self.settings.name}: {e.role.value}{other}")

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
        if self.server.system_alarms is not None:
            self.server.system_alarms.initialise("ha")
        if self.settings.role == "standby":  # a joint start: the primary takes the key first
            self.election.hold_off_until = self.election.clock() + self.settings.lease_ttl_s
        self._main = asyncio.get_running_loop()
        self._loop, self._thread = start_loop_thread("ha-election")

        async def first() -> None:
            await self.election.round()
            self.election.start()

        await self._there(first())
        self._update_health()

    async def apply(self, old: CityConfig, new: CityConfig, tagdb: TagDatabase) -> dict[str, Any]:
        return {}  # the pair's settings are server settings, not the city's: a reload changes nothing here

    def health(self) -> SubsystemStatus:
        return self.server.status("ha")

    async def aclose(self) -> None:
        if self._loop is None:
            return
        try:
            await self._there(self.election.aclose())
        finally:
            await stop_loop_thread(self._loop, self._thread)
            self._loop = self._thread = None
