"""The fail-safe layer assembled: what the server constructs, starts, calls and closes.

    Failsafe.build(city, tagdb, writer, state_dir, alarms=sink)
      ├─ vocabulary   commands.yaml (checked against the city; ConfigError lists every problem)
      ├─ audit        <state_dir>/audit.log (+ .head), hash-chained; key from SCADA_AUDIT_KEY if set
      ├─ leases       <state_dir>/leases.json, refresh / expiry / heartbeat loop
      ├─ gate         the only path to a field write
      ├─ monitor      field-safety monitor subscribed to the tag database
      └─ crisis       crisis plans through the gate
    await fs.start()   background tasks: leases.run, monitor.run, gate sweep (select/approval timeouts)
    await fs.aclose()  stops them; leases stay persisted (the field falls back by itself meanwhile)

It also implements the server's ``CommandService`` / ``CrisisService`` protocols
(scada/server/services.py) with JSON in and out, so the API needs no knowledge of the internals::

    submit(user, role, workstation, {"target"|"targets", "verb", "params", "lease_s", "until", "comment"})
    operate / approve / cancel(command_id, user, role, workstation)   status(id)   history(eq, limit)
    vocabulary()   stats()   plans()   run(name, user, role, workstation, dry_run)

A refusal of approve/cancel raises :class:`scada.errors.CommandRejected` (``reason``); the server
turns it into its 4xx ``Refused``. Commands refused by the gate are returned as records with state
``finished``, outcome ``rejected`` and the reason (they are not exceptions: the operator sees why).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from failsafe.audit import AuditLog, key_from_env
from failsafe.crisis import CrisisRunner
from failsafe.gate import CommandGate, Sleep
from failsafe.leases import LeaseManager
from failsafe.monitor import FieldSafetyMonitor
from failsafe.types import (
    AlarmSink,
    Clock,
    CommandRequest,
    Principal,
    StateReader,
    Ticket,
    TicketState,
    Writer,
    no_alarms,
    system_clock,
)
from failsafe.vocabulary import Vocabulary, load_vocabulary
from scada.config.model import CityConfig
from scada.config.units import slug
from scada.errors import CommandRejected
from scada.quality import Value
from scada.tagdb import TagDatabase

log = logging.getLogger(__name__)

Json = dict[str, Any]
GROUP_PREFIX = "group:"  # group:<commune slug>/<template>  e.g. group:dijon/lighting_cabinet


class Failsafe:
    def __init__(self, city: CityConfig, vocabulary: Vocabulary, gate: CommandGate, leases: LeaseManager,
                 monitor: FieldSafetyMonitor | None, crisis: CrisisRunner, audit: AuditLog) -> None:
        self.city = city
        self.vocab = vocabulary
        self.gate = gate
        self.leases = leases
        self.monitor = monitor
        self.crisis = crisis
        self.audit = audit
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()

    @classmethod
    def build(cls, city: CityConfig, tagdb: TagDatabase | StateReader, writer: Writer, state_dir: Path | str, *,
              commands: Path | str = "commands.yaml", vocabulary: Vocabulary | None = None,
              alarms: AlarmSink = no_alarms, clock: Clock = system_clock, sleep: Sleep = asyncio.sleep,
              audit_key: bytes | None = None, authenticate: Callable[[Principal], bool] | None = None,
              fsync: bool = True, monitor: bool = True, monitor_clock: Clock | None = None) -> Failsafe:
        """Assemble the layer. ``monitor_clock`` must be the time base of the samples' receive times
        (the drivers stamp wall-clock time; default: ``clock``)."""
        vocab = vocabulary or load_vocabulary(commands, city)
        state = Path(state_dir)
        state.mkdir(parents=True, exist_ok=True)
        audit = AuditLog(state / "audit.log", audit_key if audit_key is not None else key_from_env(),
                         fsync=fsync, clock=clock)
        leases = LeaseManager(city, vocab, writer, audit, store=state / "leases.json", clock=clock)
        gate = CommandGate(city, vocab, writer, audit, leases, reader=tagdb, alarms=alarms, clock=clock, sleep=sleep,
                           authenticate=authenticate)
        mon = None
        if monitor and isinstance(tagdb, TagDatabase):
            mon = FieldSafetyMonitor(city, vocab, tagdb, gate, alarms=alarms, audit=audit,
                                     clock=monitor_clock or clock)
        crisis = CrisisRunner(gate, vocab, audit, clock=clock)
        return cls(city, vocab, gate, leases, mon, crisis, audit)

    # ------------------------------------------------------------------ lifecycle
    async def start(self, lease_interval_s: float = 0.5, monitor_interval_s: float = 0.2) -> None:
        self._stop.clear()
        self._safe_audit("audit_opened", note="fail-safe layer started")
        self._tasks.append(asyncio.create_task(self.leases.run(lease_interval_s), name="failsafe-leases"))
        if self.monitor is not None:
            self.monitor.start()
            self._tasks.append(asyncio.create_task(self.monitor.run(monitor_interval_s), name="failsafe-monitor"))
        self._tasks.append(asyncio.create_task(self._sweeper(), name="failsafe-sweeper"))
        log.info("fail-safe layer started: %d commandable types, %d active leases, audit %s",
                 len(self.vocab.types), len(self.leases.leases()), self.audit.path)

    async def _sweeper(self) -> None:
        while not self._stop.is_set():
            self.gate.sweep()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), 1.0)

    async def aclose(self) -> None:
        self._stop.set()
        await self.leases.aclose()
        if self.monitor is not None:
            self.monitor.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    def _safe_audit(self, kind: str, **fields: Any) -> None:
        try:
            self.audit.append(kind, **fields)
        except Exception as exc:
            log.error("audit log: cannot append %s: %s", kind, exc)

    # ------------------------------------------------------------------ API adapter: commands
    @staticmethod
    def principal(user: str, role: str, workstation: str, session: str = "") -> Principal:
        return Principal(user, frozenset({role}) if role else frozenset(), workstation, True, session)

    def expand_targets(self, request: Json) -> tuple[str, ...]:
        """``targets`` list, or ``target``: an equipment id or ``group:<commune slug>/<template>``."""
        if request.get("targets"):
            return tuple(str(t) for t in request["targets"])
        target = str(request.get("target", ""))
        if target.startswith(GROUP_PREFIX):
            commune, _, template = target[len(GROUP_PREFIX):].partition("/")
            found = tuple(sorted(e.id for e in self.city.equipment.values()
                                 if slug(e.commune) == commune and e.template == template))
            return found or (target,)  # an empty group is refused by the gate as an unknown target
        return (target,) if target else ()

    def vocabulary(self) -> Json:
        types: Json = {}
        for name, p in self.vocab.types.items():
            types[name] = {
                "critical": p.critical, "select_timeout_s": p.select_timeout_s,
                "confirm_timeout_s": p.confirm_timeout_s,
                "lease_default_s": p.lease_default_s, "lease_max_s": p.lease_max_s,
                "blast_radius": {"per_command": p.blast.per_command, "per_minute": p.blast.per_minute,
                                 "max_with_approval": p.blast.max_with_approval},
                "verbs": {v.name: {"params": {k: {"type": s.type, "min": s.min, "max": s.max,
                                                  "max_length": s.max_length} for k, s in v.params.items()},
                                   "safety": v.safety, "roles": sorted(v.roles), "lease": v.lease,
                                   "increasing_when": v.increasing_when.describe() if v.increasing_when else None}
                          for v in p.verbs.values()},
            }
        return {"types": types, "approval_window_s": self.vocab.approval_window_s,
                "approver_roles": sorted(self.vocab.approver_roles),
                "rate_limits": {"per_user_per_minute": self.vocab.rate_per_user,
                                "global_per_minute": self.vocab.rate_global},
                "groups": f"{GROUP_PREFIX}<commune slug>/<template>"}

    async def submit(self, user: str, role: str, workstation: str, request: Json) -> Json:
        """Select (critical types: stays SELECTED until operate) or run a command at once (others)."""
        who = self.principal(user, role, workstation)
        params: dict[str, Value] = dict(request.get("params") or {})
        until = request.get("until")
        if until is None and "until" in params:
            until = params.pop("until")
        req = CommandRequest(str(request.get("verb", "")), self.expand_targets(request), who, params,
                             lease_s=request.get("lease_s"), until=float(until) if until is not None else None,
                             note=str(request.get("comment", "")))
        ticket = self.gate.select(req)
        if ticket.state is TicketState.READY:  # not select-before-operate: run it now
            await self.gate.operate(ticket.id, who)
        return ticket.view()

    async def operate(self, command_id: str, user: str, role: str, workstation: str) -> Json:
        await self.gate.operate(command_id, self.principal(user, role, workstation))
        ticket = self.gate.status(command_id)
        if ticket is None:
            raise CommandRejected(f"operate: unknown command {command_id!r}")
        return ticket.view()

    async def approve(self, command_id: str, user: str, role: str, workstation: str) -> Json:
        who = self.principal(user, role, workstation)
        if self.crisis.is_run(command_id):
            run = await self.crisis.approve(command_id, who)
            return {**run.view(), "id": run.id}
        ticket = self.gate.approve(command_id, who)
        if ticket.state is TicketState.READY:  # approved non-critical command: run it now
            await self.gate.operate(ticket.id, ticket.request.user)
        return ticket.view()

    async def cancel(self, command_id: str, user: str, role: str, workstation: str) -> Json:
        return self.gate.cancel(command_id, self.principal(user, role, workstation)).view()

    def status(self, command_id: str) -> Json | None:
        ticket = self.gate.status(command_id)
        if ticket is not None:
            return ticket.view()
        run = self.crisis.runs.get(command_id)
        return None if run is None else run.view()

    def history(self, equipment: str | None, limit: int) -> list[Json]:
        tickets: list[Ticket] = sorted(self.gate._tickets.values(), key=lambda t: t.created, reverse=True)
        out = [t.view() for t in tickets if equipment is None or equipment in t.request.targets]
        return out[:limit]

    def stats(self) -> Json:
        tickets = list(self.gate._tickets.values())
        outcomes = Counter(t.outcome.value for t in tickets if t.outcome is not None)
        states = Counter(t.state.value for t in tickets)
        junctions = Counter(v.state for v in self.monitor.views().values()) if self.monitor else {}
        return {"tickets": dict(states), "outcomes": dict(outcomes), "active_leases": len(self.leases.leases()),
                "audit_entries": self.audit.last_seq, "junction_states": dict(junctions),
                "reservations": self.gate.reservations()}

    def leases_view(self) -> list[Json]:
        return [lease.view() for lease in self.leases.leases()]

    # ------------------------------------------------------------------ API adapter: crisis
    def plans(self) -> list[Json]:
        return self.crisis.plans()

    async def run(self, name: str, user: str, role: str, workstation: str, dry_run: bool) -> Json:
        who = self.principal(user, role, workstation)
        run = self.crisis.dry_run(name, who) if dry_run else await self.crisis.activate(name, who)
        return run.view()
