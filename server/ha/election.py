"""Who is ACTIVE: a lease in etcd and one key bound to it, and the write fence that follows from it.

    ┌──────────┐ txn: create the key if absent (bound to our lease) ┌────────────────────────────┐
    │ STANDBY  │ ─────────────────────────────────────────────────► │ ACTIVE                     │
    │ watches  │                                                    │ keepalive every TTL/4;     │
    │ the key  │ ◄───────────────────────────────────────────────── │ first field write only     │
    └──────────┘  keepalive says the lease is gone, the key names   │ after TTL + margin (fence) │
         ▲        another holder, the local deadline passed, or     └────────────────────────────┘
         │        switchover (the lease revoked: the key goes with it)
         │ coordination back, the other holds the key
    ┌──────────────┐
    │ FORCED ACTIVE│  break-glass (etcd unreachable, a supervisor confirmed the other is down): writes
    └──────────────┘  without a lease, P1 ``ha/forced_active`` while it lasts

The fence (:meth:`Election.may_write`) is a monotonic-clock check, called by the fail-safe layer's
DriverWriter immediately before every send::

    may_write()  =  forced  or  (ACTIVE  and  fence_from <= now < deadline)
    deadline     =  (time the last successful grant/keepalive was SENT) + TTL etcd granted − margin
    fence_from   =  time the key was won + TTL + margin

The deadline counts from when the refresh was sent, not answered, so it is never later than etcd's
own expiry (modulo clock-rate drift, far below the margin). It stops writes by itself, without the
keepalive loop running: a process paused (SIGSTOP, a GC stall, a swapped-out VM) finds it passed
when it resumes, before any write. The new active's wait of TTL + margin covers a previous holder
whose check passed just before its deadline and whose send was delayed: see docs/ha.md for the bound.

Time is injected (``clock``) so the state machine is tested with the real etcd but without sleeping
through whole TTLs where it is not the point.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from server.ha.etcd import EtcdClient, EtcdUnavailable

log = logging.getLogger(__name__)


class Role(StrEnum):
    STARTING = "starting"
    ACTIVE = "active"
    STANDBY = "standby"
    FORCED = "forced_active"


@dataclass(frozen=True)
class HaOptions:
    name: str                      # this server's name in the pair (what the key holds)
    etcd: tuple[str, ...]          # member client URLs
    key: str = "/scada/active"     # the election key
    lease_ttl_s: int = 3
    margin_s: float = 0.5          # subtracted from every deadline, added to the new active's fence
    no_coordination_after_s: float = 3.0  # etcd unreachable this long: the P1 ``ha/no_coordination``


Listener = Callable[[str, dict[str, Any]], None]  # (event, details): role changes, coordination lost / back


class Election:
    """The lease + key election of one server and its write fence (see the module docstring)."""

    def __init__(self, options: HaOptions, *, clock: Callable[[], float] = time.monotonic,
                 client: EtcdClient | None = None) -> None:
        self.opt = options
        self.clock = clock
        self.client = client or EtcdClient(options.etcd, timeout_s=max(0.3, options.lease_ttl_s / 4))
        self.role = Role.STARTING
        self.leader = ""                 # who holds the key as last seen ("" unknown / nobody)
        self.lease = 0                   # our current lease id (0: none)
        self.deadline = 0.0              # monotonic: our lease is valid (for writing) until then
        self.last_refresh = 0.0          # monotonic: when the last successful grant/keepalive was sent
        self.fence_from = float("inf")   # monotonic: the first write allowed as the new active
        self.coordinated = False         # the last round reached etcd
        self.unreachable_since: float | None = None
        self.no_coordination = False     # unreachable for no_coordination_after_s (the P1 is up)
        self.hold_off_until = 0.0        # after a switchover: leave the key to the other for a while
        self.forced_by = ""
        self.listeners: list[Listener] = []
        self.refused_writes = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ the fence
    def may_write(self) -> bool:
        """True only while this server may send to the field (called immediately before every send)."""
        if self.role is Role.FORCED:
            return True
        now = self.clock()
        ok = self.role is Role.ACTIVE and self.fence_from <= now < self.deadline
        if not ok:
            self.refused_writes += 1
        return ok

    def why_not(self) -> str:
        """Why :meth:`may_write` is false, for the refusal's text."""
        now = self.clock()
        if self.role is not Role.ACTIVE:
            who = f"the active server is {self.leader!r}" if self.leader else "no server holds the lease"
            return f"{self.opt.name} is {self.role.value}, not the leaseholder: {who}"
        if now < self.fence_from:
            return (f"{self.opt.name} has just become active: its first field write waits "
                    f"{self.fence_from - now:.1f} s more (TTL + margin after the takeover)")
        return f"{self.opt.name}: its lease in etcd may have expired (no keepalive for {now - self.deadline:.1f} s)"

    def state(self) -> dict[str, Any]:
        now = self.clock()
        return {"name": self.opt.name, "role": self.role.value, "leader": self.leader,
                "may_write": self.may_write_now(now), "lease_left_s": round(max(0.0, self.deadline - now), 2),
                "fence_left_s": round(max(0.0, self.fence_from - now), 2) if self.role is Role.ACTIVE else None,
                "coordinated": self.coordinated, "forced_by": self.forced_by or None,
                "lease_ttl_s": self.opt.lease_ttl_s, "etcd": list(self.opt.etcd),
                "refused_writes": self.refused_writes}

    def may_write_now(self, now: float) -> bool:
        return self.role is Role.FORCED or (self.role is Role.ACTIVE and self.fence_from <= now < self.deadline)

    # ------------------------------------------------------------------ transitions
    def _emit(self, event: str, **details: Any) -> None:
        for cb in list(self.listeners):
            try:
                cb(event, details)
            except Exception:  # a listener's bug (journal, alarm) must never stop the election (logged)
                log.exception("%s: ha listener failed on %s", self.opt.name, event)

    def _set_role(self, role: Role, why: str) -> None:
        if role is self.role:
            return
        before, self.role = self.role, role
        log.warning("%s: %s → %s (%s)", self.opt.name, before.value, role.value, why)
        self._emit("role", before=before.value, role=role.value, why=why, leader=self.leader)

    def _see_leader(self, leader: str) -> None:
        if leader != self.leader:
            self.leader = leader
            self._emit("leader", leader=leader)

    def _step_down(self, why: str) -> None:
        self.deadline = 0.0  # writes stop now, whatever the keepalive loop does next
        self.fence_from = float("inf")
        self._set_role(Role.STANDBY, why)

    def _coordination(self, ok: bool, why: str = "") -> None:
        now = self.clock()
        if ok:
            self.coordinated, self.unreachable_since = True, None
            if self.no_coordination:
                self.no_coordination = False
                self._emit("coordination", ok=True, why="etcd reachable again")
            return
        self.coordinated = False
        if self.unreachable_since is None:
            self.unreachable_since = now
            log.warning("%s: etcd unreachable: %s", self.opt.name, why)
        if not self.no_coordination and now - self.unreachable_since >= self.opt.no_coordination_after_s:
            self.no_coordination = True  # one event per outage, not one per round
            self._emit("coordination", ok=False, why=why)

    def _period(self) -> float:
        return self.opt.lease_ttl_s / 4

    # ------------------------------------------------------------------ one round
    async def round(self) -> None:
        """One election round: refresh (or get) our lease, then hold or try the key. Never raises."""
        try:
            await self._round()
            self._coordination(True)
        except EtcdUnavailable as exc:
            self._coordination(False, str(exc))
            if self.role is Role.ACTIVE and self.clock() >= self.deadline:
                self._step_down("lease lost: etcd unreachable past the lease deadline")
            if self.role in (Role.STARTING,):
                self._set_role(Role.STANDBY, "etcd unreachable at start")

    async def _round(self) -> None:
        opt = self.opt
        sent = self.clock()
        if self.lease:
            ttl = await self.client.keepalive(self.lease)
            if ttl <= 0:
                self.lease = 0
                if self.role is Role.ACTIVE:
                    self._step_down(f"lease expired in etcd ({sent - self.last_refresh:.1f} s after the last refresh)")
        if not self.lease:
            sent = self.clock()
            self.lease = await self.client.grant(opt.lease_ttl_s)
            ttl = opt.lease_ttl_s
        lease_deadline = sent + ttl - opt.margin_s
        self.last_refresh = sent
        if self.role is Role.ACTIVE:
            held = await self.client.get(opt.key)
            if held is None or held[1] != self.lease:  # switchover from elsewhere, or deleted by an operator
                self._see_leader(held[0] if held else "")
                self._step_down(f"the key is no longer ours (held by {self.leader or 'nobody'})")
                return
            self.deadline = lease_deadline
            return
        if self.clock() < self.hold_off_until:
            held = await self.client.get(opt.key)
            self._see_leader(held[0] if held else "")
            if self.role is Role.STARTING:
                self._set_role(Role.STANDBY, "leaving the key to the other server for now")
            return
        won, holder, _ = await self.client.create_if_absent(opt.key, opt.name, self.lease)
        self._see_leader(holder)
        if won:
            self.deadline = lease_deadline
            if self.role is Role.FORCED:
                self.fence_from = self.clock()  # we were the only writer: no one to wait for
                self.forced_by = ""
                self._emit("forced_end", why="lease acquired")
            else:
                self.fence_from = self.clock() + opt.lease_ttl_s + opt.margin_s
            self._set_role(Role.ACTIVE, "lease acquired")
            return
        if self.role is Role.FORCED:
            self.forced_by = ""
            self._emit("forced_end", why=f"etcd is back and {holder!r} holds the lease")
        self._set_role(Role.STANDBY, f"{holder!r} holds the lease")

    # ------------------------------------------------------------------ operator actions
    async def switchover(self, hold_off_s: float | None = None) -> bool:
        """The active resigns: revoke its lease (the key goes with it) and leave the key to the other for
        ``hold_off_s`` (default 3 × TTL). False if this server is not active."""
        if self.role is not Role.ACTIVE:
            return False
        self._step_down("switchover")
        self.hold_off_until = self.clock() + (hold_off_s if hold_off_s is not None else 3 * self.opt.lease_ttl_s)
        lease, self.lease = self.lease, 0
        with contextlib.suppress(EtcdUnavailable):  # unreachable: it expires by itself within TTL
            await self.client.revoke(lease)
        self._emit("switchover", leader="")
        return True

    def force_active(self, user: str) -> None:
        """Break-glass: write without a lease (the supervisor confirmed the other server is down)."""
        self.forced_by = user
        self.fence_from = self.clock()
        self._set_role(Role.FORCED, f"forced by {user}")

    # ------------------------------------------------------------------ running
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"ha-election-{self.opt.name}")
        self._watch = asyncio.create_task(self._watch_key(), name=f"ha-watch-{self.opt.name}")

    async def _run(self) -> None:
        while True:
            await self.round()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._period())

    async def _watch_key(self) -> None:
        """While standby: a change of the key (the active's lease expired or revoked) starts a round at once,
        instead of at the next period."""
        while True:
            if self.role is Role.ACTIVE:
                await asyncio.sleep(self._period())
                continue
            try:
                if await self.client.wait_change(self.opt.key, timeout_s=5.0):
                    self._wake.set()
            except EtcdUnavailable:
                await asyncio.sleep(self._period())

    async def aclose(self, resign: bool = True) -> None:
        for task in (self._task, self._watch):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self.deadline = 0.0
        if resign and self.lease:  # a clean stop hands over at once instead of after TTL
            with contextlib.suppress(EtcdUnavailable):
                await self.client.revoke(self.lease)
            self.lease = 0
        self._set_role(Role.STANDBY, "stopped")
        await self.client.aclose()
