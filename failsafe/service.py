"""The fail-safe layer assembled: what the server constructs, starts, calls and closes.

    Failsafe.build(city, tagdb, writer, state_dir, alarms=sink)
      ├─ vocabulary   commands.yaml (checked against the city; ConfigError lists every problem)
      ├─ audit        <state_dir>/audit/ (segments, failsafe.audit), always keyed: SCADA_AUDIT_KEY, else
      │               <key_dir>/audit.key, created at the first start (or the log given: a reload keeps the
      │               same log object). A torn tail is cut aside at open (P2 "audit log tail repaired");
      │               other damage, found at open or by the full check start() runs in a worker thread,
      │               leaves the gate refusing every command except safety-increasing ones (P1); the
      │               field-safety monitor runs in every case
      ├─ leases       <state_dir>/leases.json, refresh / expiry / heartbeat loop
      ├─ gate         the only path to a field write
      ├─ monitor      field-safety monitor subscribed to ``tagdb`` (``monitor=False``: none built here; the
      │               server builds its own on the junctions' database in its field-safety thread)
      └─ crisis       crisis plans through the gate
    await fs.start()   background tasks: leases.run, monitor.run (if built here), gate sweep (select/approval
                       timeouts, at each deadline), and the audit log's full check in a worker thread
    await fs.aclose()  stops them; leases stay persisted (the field falls back by itself meanwhile)

It is the server's ``CommandService`` and ``CrisisService`` (server/services.py), JSON in and out, so
the API needs no knowledge of the internals::

    submit(user, role, workstation, {"target"|"targets", "verb", "params", "lease_s", "until", "comment"})
        target: an equipment id or group:<commune slug>/<template> (every such equipment of the commune)
        a command the gate refuses at select raises Refused(COMMAND_REJECTED); a non-critical command
        that needs no approval runs at once: its record carries outcome / reason / lease_end
    approve(id, ...)      second person; an approved non-critical command then runs at once for its
                          requester (approve-then-run); a critical one waits for its requester's operate
    operate / cancel(id, user, role, workstation)    status(id) (+ the targets' leases)    pending()
    history(eq, limit, before)   the audit log (commands, approvals, refusals, lease expiries), newest first,
                          read through its index (entries with seq < before: the next page)
    vocabulary()   stats()   plans()   run(name, user, role, workstation, dry_run)

Every refusal is a :class:`scada.errors.Refused` carrying a :class:`scada.errors.Refusal` code
(``NOT_FOUND`` for an unknown ticket, run or plan; ``COMMAND_REJECTED`` otherwise), never a message to
be matched. A command that ran and failed is not a refusal: its record says ``failed`` and why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from failsafe.audit import LEGACY_LOG, LOG_DIR_NAME, AuditLog, provision_key
from failsafe.crisis import CrisisRunner
from failsafe.gate import CommandGate, Sleep
from failsafe.leases import LeaseManager
from failsafe.monitor import FieldSafetyMonitor
from failsafe.types import (
    AlarmSink,
    Clock,
    CommandRequest,
    CommandResult,
    FailsafeAlarm,
    Outcome,
    Principal,
    StateReader,
    TicketState,
    Writer,
    no_alarms,
    system_clock,
)
from failsafe.vocabulary import Vocabulary, load_vocabulary
from scada.config.model import CityConfig
from scada.config.units import slug
from scada.errors import CommandRejected, Refusal, Refused
from scada.quality import Value
from scada.tagdb import TagDatabase

log = logging.getLogger(__name__)

Json = dict[str, Any]
GROUP_PREFIX = "group:"  # group:<commune slug>/<template>  e.g. group:dijon/lighting_cabinet
SWEEP_MAX_S = 1.0  # the sweeper's longest sleep (no deadline sooner)
SWEEP_MIN_S = 0.02  # and its shortest


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
        self._audit_check: asyncio.Task[None] | None = None  # the full audit-log check start() runs

    @classmethod
    def build(cls, city: CityConfig, tagdb: TagDatabase | StateReader, writer: Writer, state_dir: Path | str, *,
              commands: Path | str = "commands.yaml", vocabulary: Vocabulary | None = None,
              alarms: AlarmSink = no_alarms, clock: Clock = system_clock, sleep: Sleep = asyncio.sleep,
              audit_key: bytes | None = None, authenticate: Callable[[Principal], bool] | None = None,
              fsync: bool = True, monitor: bool = True, monitor_clock: Clock | None = None,
              audit: AuditLog | None = None, key_dir: Path | str | None = None) -> Failsafe:
        """Assemble the layer. ``monitor_clock`` must be the time base of the samples' receive times
        (the drivers stamp wall-clock time; default: ``clock``). ``audit``: an open audit log to go on
        with (a reload rebuilds the layer on the new configuration, never a second writer of the log).
        ``key_dir``: where the audit key is kept (default ``<state_dir>/keys``; the server gives the instance's
        key folder); AuditKeyError when the log exists and its key is missing or another one."""
        vocab = vocabulary or load_vocabulary(commands, city)
        state = Path(state_dir)
        state.mkdir(parents=True, exist_ok=True)
        if audit is None:
            log_dir = state / LOG_DIR_NAME
            key = audit_key if audit_key is not None else provision_key(
                Path(key_dir) if key_dir is not None else state / "keys", log_dir).key
            audit = AuditLog(log_dir, key, legacy=state / LEGACY_LOG,
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
    async def audit_checked(self) -> None:
        """Wait until the full check of the audit log that :meth:`start` runs has finished (at once if none
        runs): what replaces the log (a failover standby's copy) must not do it under the check."""
        check = self._audit_check
        if check is not None:
            await asyncio.wait({check})

    async def start(self, lease_interval_s: float = 0.5, monitor_interval_s: float = 0.2) -> None:
        self._stop.clear()
        self._safe_audit("audit_opened", note="fail-safe layer started", key_fingerprint=self.audit.fingerprint)
        self._audit_findings()
        self._audit_check = asyncio.create_task(self._verify_audit(), name="failsafe-audit-verify")
        self._tasks.append(asyncio.create_task(self.leases.run(lease_interval_s), name="failsafe-leases"))
        if self.monitor is not None:
            self.monitor.start()
            self._tasks.append(asyncio.create_task(self.monitor.run(monitor_interval_s), name="failsafe-monitor"))
        self._tasks.append(asyncio.create_task(self._sweeper(), name="failsafe-sweeper"))
        log.info("fail-safe layer started: %d commandable types, %d active leases, audit %s",
                 len(self.vocab.types), len(self.leases.leases()), self.audit.path)

    async def _sweeper(self) -> None:
        """Expire unanswered approvals and select windows on time. Every gate call also sweeps first, but with
        nobody using the gate the audit log's approval_timeout / select_timeout would be stamped late. So the
        sweeper sleeps until the gate's next deadline (a new one wakes it: CommandGate.on_deadline, from either
        thread), at most ``SWEEP_MAX_S`` (refusal summaries whose minute has passed are flushed then)."""
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()

        def woken(_deadline: float) -> None:  # under the gate's lock, maybe in the field-safety thread
            with contextlib.suppress(RuntimeError):  # the loop is closed: the layer is stopping
                loop.call_soon_threadsafe(wake.set)

        self.gate.on_deadline = woken
        try:
            while not self._stop.is_set():
                wake.clear()
                try:
                    self.gate.sweep()
                    self.audit.flush()  # refusal summaries whose minute has passed
                    due = self.gate.next_deadline()
                except Exception:  # a failing sweep must not end the sweeping (logged)
                    log.exception("fail-safe sweeper failed")
                    due = None
                # just past the deadline: a window expires once the clock is beyond it (CommandGate.sweep); never
                # a busy loop (an injected clock may stand still at a deadline)
                sleep = SWEEP_MAX_S if due is None else min(SWEEP_MAX_S, max(SWEEP_MIN_S,
                                                                             due - self.gate.clock() + 0.005))
                stop, woke = asyncio.ensure_future(self._stop.wait()), asyncio.ensure_future(wake.wait())
                try:
                    await asyncio.wait((stop, woke), timeout=sleep, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stop.cancel()
                    woke.cancel()
        finally:
            if self.gate.on_deadline is woken:
                self.gate.on_deadline = None

    async def aclose(self) -> None:
        """Stop the monitor and the background tasks, then the leases (persisted with their end time: after a
        restart an expired one is only released, never re-asserted)."""
        self._stop.set()
        if self._audit_check is not None:  # its worker thread finishes on its own; nothing waits for it
            self._audit_check.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._audit_check
        if self.monitor is not None:
            self.monitor.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self.leases.aclose()

    def adopt(self, old: Failsafe) -> list[Json]:
        """Go on from the layer this one replaces (a reload): its pending tickets, select reservations,
        group approvals, rate and blast-radius windows and lock-outs (CommandGate.adopt), and its crisis runs.
        Returns the tickets cancelled because they name equipment, verbs or parameters that no longer exist."""
        cancelled = self.gate.adopt(old.gate)
        for run_id, run in old.crisis.runs.items():
            self.crisis.runs.setdefault(run_id, run)
        return [t.view() for t in cancelled]

    def reset_at_source(self, junctions: Iterable[str], user: str) -> None:
        """Reset the field-safety monitor's latch of these junctions (an operator's reset from the alarm list:
        the latch first, so that the alarm engine's own reset then returns the alarm to normal)."""
        if self.monitor is None:  # not watching (its tags then stay 0): the engine's reset alone is enough
            return
        for j in sorted(set(junctions)):
            try:
                self.monitor.reset(j, user)
            except KeyError:
                log.warning("%s: not watched by the field-safety monitor", j)

    def _audit_findings(self) -> None:
        """What opening the audit log found: each torn tail cut aside is audited and a P2 (once: a reload keeps
        the log object); damage is a P1 and the gate refuses every command except safety-increasing ones."""
        repairs, self.audit.repaired = self.audit.repaired, []
        for what in repairs:
            self._safe_audit("audit_repaired", reason=what)
            self.gate._alarm(FailsafeAlarm("failsafe/audit/repaired", "", 2, f"audit log tail repaired: {what}",
                                           active=True, ts=self.gate.clock()))
        if self.audit.damage is not None:
            self._audit_damaged(self.audit.damage)

    def _audit_damaged(self, why: str) -> None:
        log.error("audit log damaged: %s; commands refused except safety-increasing", why)
        self._safe_audit("audit_damaged", reason=why)
        self.gate._alarm(FailsafeAlarm("failsafe/audit/damaged", "", 1, f"audit log damaged: commands refused "
                                       f"except safety-increasing ({why})", active=True, ts=self.gate.clock()))

    async def _verify_audit(self) -> None:
        """The whole chain, in a worker thread (opening checked only the last segment): damage found in an
        older segment degrades the gate now."""
        if self.audit.damage is not None:
            return
        try:
            report = await asyncio.to_thread(self.audit.verify)
            why = "" if report.ok else report.problems[0]
        except Exception as exc:  # noqa: BLE001 - an unreadable log is damage too, reported the same way
            why = f"cannot verify: {exc}"
        if why and self.audit.damage is None:
            self.audit.damage = why
            self._audit_damaged(why)

    def _safe_audit(self, kind: str, **fields: Any) -> None:
        try:
            self.audit.append(kind, **fields)
        except Exception as exc:  # noqa: BLE001 - the audit log's failure must not stop the start-up it records
            log.error("audit log: cannot append %s: %s", kind, exc)

    # ------------------------------------------------------------------ CommandService
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
        """Commandable types and their verbs as the consoles build their command forms from them."""
        types: Json = {}
        for name, p in self.vocab.types.items():
            types[name] = {
                "critical": p.critical, "select_timeout_s": p.select_timeout_s,
                "lease_default_s": p.lease_default_s, "lease_max_s": p.lease_max_s,
                "roles": sorted(p.roles),
                "blast_radius": {"per_command": p.blast.per_command, "per_minute": p.blast.per_minute,
                                 "max_with_approval": p.blast.max_with_approval},
                "verbs": {vn: {"safety": v.safety, "roles": sorted(v.roles or p.roles), "lease": v.lease,
                               "params": {pn: {k: getattr(ps, k) for k in ("type", "min", "max", "choices")
                                               if getattr(ps, k, None) is not None}
                                          for pn, ps in v.params.items()}}
                          for vn, v in p.verbs.items()},
            }
        return {"types": types, "approval_window_s": self.vocab.approval_window_s,
                "approver_roles": sorted(self.vocab.approver_roles), "crisis_plans": sorted(self.vocab.crisis_plans)}

    async def submit(self, user: str, role: str, workstation: str, request: Json) -> Json:
        """Select (critical types: stays SELECTED until operate; reducing or mass: awaits approval) or run a
        command at once (the others). Refused(COMMAND_REJECTED) when the gate refuses it at select."""
        who = self.principal(user, role, workstation)
        params: dict[str, Value] = dict(request.get("params") or {})
        until = request.get("until")
        targets = self.expand_targets(request)
        req = CommandRequest(str(request.get("verb", "")), targets, who, params,
                             lease_s=request.get("lease_s"), until=float(until) if until is not None else None,
                             note=str(request.get("comment") or ""))
        ticket = self.gate.select(req)
        if ticket.state is TicketState.FINISHED and ticket.outcome is Outcome.REJECTED:
            shown = ", ".join(targets[:5]) + ("..." if len(targets) > 5 else "")
            raise Refused(f"{req.verb} on {shown}", ticket.reason or "rejected by the command gate",
                          Refusal.COMMAND_REJECTED)
        if ticket.state is TicketState.READY:  # non-critical type, no approval needed: run it now
            return self._record(ticket.id, await self.gate.operate(ticket.id, who))
        return ticket.view()

    def _record(self, ticket_id: str, result: CommandResult) -> Json:
        """The ticket's record after running, with the run's explicit outcome."""
        ticket = self.gate.status(ticket_id)
        out: Json = ticket.view() if ticket is not None else {"id": ticket_id}
        out.setdefault("id", ticket_id)
        out["state"] = result.state.value
        out["outcome"] = result.outcome.value if result.outcome is not None else None
        out["reason"] = result.reason
        out["lease_end"] = result.lease_end
        return out

    async def operate(self, command_id: str, user: str, role: str, workstation: str) -> Json:
        """Run a selected ticket. A replay on a finished one is Refused(ALREADY_DONE) carrying the original
        outcome and record (nothing is written twice, and the answer does not pretend it ran now)."""
        result = await self.gate.operate(command_id, self.principal(user, role, workstation))
        if result.code is Refusal.ALREADY_DONE:
            ticket = self.gate.status(command_id)
            original = result.outcome.value if result.outcome is not None else None
            raise Refused(f"operate command {command_id}", f"command {command_id} already ran: {original}",
                          Refusal.ALREADY_DONE, detail={"outcome": original,
                                                        "command": ticket.view() if ticket is not None else None})
        if result.outcome is Outcome.REJECTED:
            raise Refused(f"operate command {command_id}", result.reason, result.code or Refusal.COMMAND_REJECTED)
        return self._record(command_id, result)

    async def approve(self, command_id: str, user: str, role: str, workstation: str) -> Json:
        """Second-person approval of a ticket or of a crisis run; an approved non-critical command runs now."""
        who = self.principal(user, role, workstation)
        try:
            if self.crisis.is_run(command_id):
                run = await self.crisis.approve(command_id, who)
                return {"id": run.id, "state": run.state, **run.view()}
            ticket = self.gate.approve(command_id, who)
        except CommandRejected as exc:
            raise Refused(f"approve command {command_id}", exc.reason, exc.code) from None
        if ticket.state is TicketState.READY:  # non-critical: run it for its requester (approve-then-run)
            return self._record(ticket.id, await self.gate.operate(ticket.id, ticket.request.user))
        return ticket.view()  # critical (SELECTED): the requester operates within the select window

    async def cancel(self, command_id: str, user: str, role: str, workstation: str) -> Json:
        try:
            return self.gate.cancel(command_id, self.principal(user, role, workstation)).view()
        except CommandRejected as exc:
            raise Refused(f"cancel command {command_id}", exc.reason, exc.code) from None

    def status(self, command_id: str) -> Json | None:
        """A ticket's record with the active leases of its targets, or a crisis run's (by its id or its group
        approval's) with each step's outcome; None if unknown."""
        ticket = self.gate.status(command_id)
        if ticket is None:
            run = self.crisis.find(command_id)
            return None if run is None else run.view()
        out: Json = ticket.view()
        for target in ticket.request.targets:
            lease = self.leases.active(target)
            if lease is not None:
                out.setdefault("leases", []).append(lease.view())
        return out

    def pending(self) -> list[Json]:
        return [t.view() for t in self.gate.pending()]

    def history(self, equipment: str | None, limit: int, before: int | None = None) -> list[Json]:
        """Latest audit-log entries (commands, approvals, refusals, lease expiries), newest first: what was
        done, also before a restart (the in-memory tickets are not the record). ``before``: only entries with
        a smaller ``seq`` (the next page). Reads through the log's index, never the whole history: call it
        from a worker thread (asyncio.to_thread)."""
        return self.audit.latest(equipment, limit, before)

    def stats(self) -> Json:
        tickets = list(self.gate._tickets.values())
        junctions = Counter(v.state for v in self.monitor.views().values()) if self.monitor else Counter()
        return {"pending_tickets": len(self.gate.pending()), "active_leases": len(self.leases.leases()),
                "junctions": dict(junctions),
                "tickets": dict(Counter(t.state.value for t in tickets)),
                "outcomes": dict(Counter(t.outcome.value for t in tickets if t.outcome is not None)),
                "audit_entries": self.audit.last_seq, "reservations": self.gate.reservations()}

    def leases_view(self) -> list[Json]:
        return [lease.view() for lease in self.leases.leases()]

    # ------------------------------------------------------------------ CrisisService
    def plans(self) -> list[Json]:
        return self.crisis.plans()

    async def run(self, name: str, user: str, role: str, workstation: str, dry_run: bool) -> Json:
        who = self.principal(user, role, workstation)
        try:
            run = self.crisis.dry_run(name, who) if dry_run else await self.crisis.activate(name, who)
        except CommandRejected as exc:
            raise Refused(f"{'dry run' if dry_run else 'activate'} crisis plan {name!r}", exc.reason,
                          exc.code) from None
        return run.view()
