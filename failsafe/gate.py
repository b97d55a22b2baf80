"""The command gate: the only path from an operator's request to a field write.

Every command passes these steps in this order; the first failure refuses it with a reason that
names the step (``"interlocks: BL01: vehicle presence detected on the bollard loop (presence equals True)"``)::

    select(request) ─┬─ 1 user        authenticated, and one of the verb's roles
                     ├─ 2 target      exists, one commandable type, known verb, valid parameters
                     ├─ 3 inputs      every tag an interlock reads has good quality
                     ├─ 4 interlocks  declarative (no bollard raise with presence, road-class minimum at night)
                     ├─ 5 blast       ≤ per_command targets and ≤ per_minute per type, else "mass" (needs
                     │                approval), never above max_with_approval
                     ├─ 6 rate        per user and global per minute        (skipped: safety-increasing)
                     ├─ 7 approval    safety-reducing or mass → AWAITING_APPROVAL until a different user
                     │                with an approver role approves within the window (120 s)
                     │                                                       (skipped: safety-increasing)
                     └─ 8 select      critical types: targets reserved for this user, operate within 15 s
    operate(ticket) ─┬─ re-check 1-4 (the world may have changed since select)
                     ├─ 9 write       journal first, then the verb's writes through the Writer port (a write
                     │                the writer's policy refuses before any packet: rejected)
                     ├─ lease         the command becomes a lease (failsafe.leases), capped per type
                     └─ 10 confirm    read back until the verb's confirm conditions hold or the type's
                                      timeout → done / failed / not_confirmed (alarm)

Ticket states::

    select ──► AWAITING_APPROVAL ──approve──► SELECTED (critical) / READY ──operate──► EXECUTING ──► FINISHED
       │              │ window passes                 │ deadline passes                  (done, failed,
       │              ▼                               ▼                                   not_confirmed)
       └─► FINISHED (rejected)   EXPIRED ◄────────────┘            cancel ──► CANCELLED

Safety-increasing commands (junction flash, lighting 100 %) skip steps 6 and 7, are never blocked by
another user's reservation (they pre-empt it) and still pass 1-5, are journalled and confirmed. If
the audit log cannot be written or is damaged (a chain break: ``AuditLog.damage``), every command
except safety-increasing ones is refused. "Cannot be written" is a failed append of the gate; it ends with
the next append that works — any of the gate's, or the ``audit_writable_again`` entry that
:meth:`CommandGate.recheck_audit` appends when the server's store probe finds the log writable again.
What the log keeps of a refusal is bounded by the log itself (failsafe.audit: fields cut, refusals beyond
a per-user rate summarised); the refusal is unchanged.

Time comes from an injected clock (epoch seconds) and waiting from an injected ``sleep``, so tests
drive the whole pipeline with a fake clock.

Threads: one gate is used from two threads, each with its own event loop::

    main thread, main loop                          "field-safety" thread, safety loop
    operator commands (API), crisis plans,          FieldSafetyMonitor: flash requests (execute),
    the sweeper (sweep at each deadline, woken      safety lock-outs (set_commandable)
    by on_deadline), reload (adopt), status /
    pending / reservations, the store watch
    (recheck_audit)
                 └──────────────► one CommandGate ◄──────────────┘

One ``threading.RLock`` (``_lock``) guards the gate's state: tickets, the finished list, group approvals,
reservations, the blast-radius and rate windows, lock-outs and the audit-writable flag. Every synchronous
method takes it for its whole body; ``operate`` takes it for each synchronous stretch (the checks and the
EXECUTING transition, the write-ahead journal, the outcome) and NEVER across an ``await``: the writes and
read-backs run unlocked (a junction's write awaits the safety loop; holding a thread lock there would stall
the other loop, or deadlock). What runs unlocked touches only its own ticket (EXECUTING: no other path
changes it) and the lease manager and audit log, which lock themselves. Lock order: gate → lease manager →
audit log (neither calls back into the gate); the alarm sink is called under the lock and must not block
(the server's hops to the main loop with ``call_soon_threadsafe``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from failsafe.audit import AuditLog
from failsafe.leases import LeaseManager
from failsafe.types import (
    AlarmSink,
    Clock,
    CommandRequest,
    CommandResult,
    FailsafeAlarm,
    Outcome,
    Principal,
    StateReader,
    TargetResult,
    Ticket,
    TicketState,
    Writer,
    no_alarms,
    system_clock,
)
from failsafe.vocabulary import LEASE_S_MAX, TypePolicy, VerbSpec, Vocabulary
from scada.config.model import CityConfig, EquipmentDef, TagDef
from scada.errors import CommandRejected, DriverError, Refusal, StorageError, WriteNotAllowed, WriteNotConfirmed
from scada.quality import Quality, Value

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
STEPS = ("user", "target", "inputs", "interlocks", "blast_radius", "rate_limit", "approval", "select")
WINDOW_S = 60.0  # blast-radius and rate-limit windows
KEEP_FINISHED = 2000


class _Refusal(Exception):
    def __init__(self, step: str, why: str) -> None:
        self.step = step
        self.why = why
        super().__init__(f"{step}: {why}")


@dataclass(slots=True)
class GroupApproval:
    """An approval covering several commands of one requester (a crisis plan run)."""

    id: str
    requester: Principal
    subject: str
    created: float
    approver: Principal | None = None
    approved_at: float | None = None
    state: str = "awaiting_approval"  # approved | expired | cancelled

    def view(self) -> dict[str, Any]:
        return {"id": self.id, "requester": self.requester.name, "subject": self.subject, "created": self.created,
                "approver": self.approver.name if self.approver else None, "approved_at": self.approved_at,
                "state": self.state}


class CommandGate:
    """See the module docstring. One instance per server; safe to call from the main loop and the safety loop."""

    def __init__(self, city: CityConfig, vocabulary: Vocabulary, writer: Writer, audit: AuditLog,
                 leases: LeaseManager, *, reader: StateReader | None = None, alarms: AlarmSink = no_alarms,
                 clock: Clock = system_clock, sleep: Sleep = asyncio.sleep,
                 authenticate: Callable[[Principal], bool] | None = None, confirm_poll_s: float = 0.25) -> None:
        self.city = city
        self.vocab = vocabulary
        self.writer = writer
        self.audit = audit
        self.leases = leases
        self.reader = reader
        self.alarms = alarms
        self.clock = clock
        self.sleep = sleep
        self.authenticate = authenticate
        self.confirm_poll_s = confirm_poll_s
        self._tags: dict[str, TagDef] = city.tag_by_name()
        self._tickets: dict[str, Ticket] = {}
        self._finished: deque[str] = deque()
        self._groups: dict[str, GroupApproval] = {}
        self._reserved: dict[str, str] = {}  # equipment → ticket id holding the select
        self._type_window: dict[str, deque[tuple[float, str]]] = {}  # type → (t, target) commanded
        self._user_window: dict[str, deque[float]] = {}
        self._global_window: deque[float] = deque()
        self._not_commandable: dict[str, str] = {}  # equipment → why (maintenance lock-out, out of service)
        self._increasing_allowed: set[str] = set()  # locked-out equipment that still takes safety-increasing verbs
        self._audit_ok = True
        # called (under the lock, from either thread; must not block) when a ticket gets a deadline: the
        # sweeper's wake-up (failsafe.service), so that an expiry is stamped at its deadline, not at a tick
        self.on_deadline: Callable[[float], None] | None = None
        self._lock = threading.RLock()  # the state above, shared by the main and the safety loop (module docstring)

    # ================================================================== public API
    def select(self, request: CommandRequest) -> Ticket:
        """Steps 1-8. Returns the ticket: SELECTED/READY (operate next), AWAITING_APPROVAL, or FINISHED rejected."""
        with self._lock:
            now = self.clock()
            self.sweep(now)
            ticket = Ticket(uuid.uuid4().hex[:12], request, "", "neutral", False, TicketState.FINISHED, now)
            try:
                policy, verb, eqs = self._checks_1_to_4(request, now)
                ticket.type = policy.name
                ticket.safety = self._classify(verb, request, eqs)
                increasing = ticket.safety == "increasing"
                ticket.mass = self._blast_radius(policy, request, now, increasing)
                if not increasing:  # safety-increasing commands are neither limited nor counted against others
                    self._rate_limit(request.user, now)
                    self._record_windows(policy, request, now)
                self._require_audit(increasing)
                needs_approval = not increasing and (ticket.safety == "reducing" or ticket.mass)
                self._tickets[ticket.id] = ticket
                if needs_approval and request.approval is not None:
                    self._check_group_approval(request, now)
                    group = self._groups[request.approval]
                    ticket.approver, ticket.approved_at = group.approver, group.approved_at
                    needs_approval = False
                if needs_approval:
                    ticket.state = TicketState.AWAITING_APPROVAL
                    ticket.deadline = now + self.vocab.approval_window_s
                    self._deadline_set(ticket.deadline)
                    self._journal("select", ticket, increasing, note="awaiting second-person approval")
                    return ticket
                self._journal("select", ticket, increasing)
                self._make_operable(ticket, policy, now)
            except _Refusal as refusal:
                self._refuse(ticket, refusal)
            return ticket

    def approve(self, ticket_id: str, approver: Principal) -> Ticket:
        """Second-person approval of a ticket (or of a group approval id). Raises CommandRejected with the reason."""
        with self._lock:
            now = self.clock()
            self.sweep(now)
            if ticket_id in self._groups:
                self._approve_group(self._groups[ticket_id], approver, now)
                return self._group_as_ticket(self._groups[ticket_id])
            ticket = self._tickets.get(ticket_id)
            if ticket is None:
                self._journal_refusal_only("approval", approver, f"unknown ticket {ticket_id!r}", ticket_id)
                raise CommandRejected(f"approval: unknown ticket {ticket_id!r}", Refusal.NOT_FOUND)
            if ticket.state is not TicketState.AWAITING_APPROVAL:
                why = f"ticket {ticket_id} is {ticket.state.value}, not awaiting approval"
                self._journal_refusal_only("approval", approver, why, ticket_id)
                raise CommandRejected(f"approval: {why}")
            why = self._approver_problem(ticket.request.user, approver)
            if why:
                self._journal("refusal", ticket, False, step="approval", reason=why, approver=approver.name,
                              approver_workstation=approver.workstation)
                raise CommandRejected(f"approval: {why}")
            policy = self.vocab.types[ticket.type]
            ticket.approver, ticket.approved_at = approver, now
            try:
                self._journal("approval", ticket, False)
            except _Refusal as refusal:  # an approval that cannot be journalled does not count
                ticket.approver = ticket.approved_at = None
                raise CommandRejected(str(refusal)) from None
            try:
                self._make_operable(ticket, policy, now)
            except _Refusal as refusal:
                self._refuse(ticket, refusal)
            return ticket

    async def operate(self, ticket_id: str, user: Principal) -> CommandResult:
        """Re-check, write, lease, confirm. Only the user who selected may operate, before the deadline."""
        with self._lock:  # check and take the ticket (→ EXECUTING) in one step: a sweep cannot expire it between
            begun = self._begin_operate(ticket_id, user)
        if isinstance(begun, CommandResult):
            return begun
        ticket, policy, verb, eqs, now = begun
        try:
            await self._execute(ticket, policy, verb, eqs, now)  # takes the lock only between its awaits
        except Exception as exc:  # never leave a ticket EXECUTING: an unexpected error is a failure (logged)
            log.exception("command %s failed unexpectedly", ticket.id)
            with self._lock:
                ticket.state, ticket.outcome, ticket.reason = TicketState.FINISHED, Outcome.FAILED, f"write: {exc}"
                self._journal("outcome", ticket, True)
        with self._lock:
            self._retire(ticket)
            return self._result(ticket)

    def _begin_operate(self, ticket_id: str, user: Principal
                       ) -> CommandResult | tuple[Ticket, TypePolicy, VerbSpec, list[EquipmentDef], float]:
        """The synchronous half of :meth:`operate` (the lock is held): the ticket EXECUTING with what to execute,
        or the result that ends it here."""
        now = self.clock()
        self.sweep(now)
        ticket = self._tickets.get(ticket_id)
        if ticket is None:
            self._journal_refusal_only("operate", user, f"unknown ticket {ticket_id!r}", ticket_id)
            return CommandResult(ticket_id, Outcome.REJECTED,
                                 f"select: unknown ticket {ticket_id!r} (no matching select)",
                                 code=Refusal.NOT_FOUND)
        if ticket.state is TicketState.EXPIRED:
            return CommandResult(ticket.id, Outcome.REJECTED, ticket.reason, state=ticket.state,
                                 code=Refusal.COMMAND_REJECTED)
        if ticket.state not in (TicketState.SELECTED, TicketState.READY):
            why = f"ticket is {ticket.state.value}" + (f" ({ticket.reason})" if ticket.reason else "")
            # a replay on a finished ticket writes nothing and must not read as a new success: ALREADY_DONE,
            # with the original outcome in the result
            code = Refusal.ALREADY_DONE if ticket.state is TicketState.FINISHED else Refusal.COMMAND_REJECTED
            return CommandResult(ticket.id, ticket.outcome or Outcome.REJECTED, f"select: {why}", ticket.results,
                                 ticket.lease_end, ticket.state, code)
        if user.name != ticket.request.user.name or (ticket.request.user.session and
                                                     user.session != ticket.request.user.session):
            why = f"ticket {ticket.id} was selected by {ticket.request.user.name}, not {user.name}"
            self._journal_refusal_only("operate", user, why, ticket.id)
            return CommandResult(ticket.id, Outcome.REJECTED, f"select: {why}", state=ticket.state,
                                 code=Refusal.COMMAND_REJECTED)
        increasing = ticket.safety == "increasing"
        ticket.state = TicketState.EXECUTING
        try:
            # re-check with the operating session (still authenticated, role still held) and the world as it is
            policy, verb, eqs = self._checks_1_to_4(dataclasses.replace(ticket.request, user=user), now)
            self._require_audit(increasing)
        except _Refusal as refusal:
            self._release_reservation(ticket)
            self._refuse(ticket, refusal)
            return self._result(ticket)
        self._release_reservation(ticket)
        return ticket, policy, verb, eqs, now

    async def execute(self, request: CommandRequest) -> CommandResult:
        """select + operate in one call (system paths: monitor flash, crisis steps; non-critical API commands).

        When approval is needed the ticket stays AWAITING_APPROVAL and the result has ``outcome=None``.
        """
        ticket = self.select(request)
        if ticket.state in (TicketState.SELECTED, TicketState.READY):
            return await self.operate(ticket.id, request.user)
        with self._lock:
            return self._result(ticket)

    def cancel(self, ticket_id: str, user: Principal) -> Ticket:
        """Cancel a pending ticket (its requester, or an approver). Raises CommandRejected otherwise."""
        with self._lock:
            now = self.clock()
            self.sweep(now)
            if ticket_id in self._groups:
                group = self._groups[ticket_id]
                if user.name != group.requester.name and not (user.roles & self.vocab.approver_roles):
                    raise CommandRejected(f"cancel: {user.name} may not cancel {group.requester.name}'s approval "
                                          f"request")
                group.state = "cancelled"
                self._safe_append("cancel", ticket=group.id, user=user.name, workstation=user.workstation,
                                  subject=group.subject)
                return self._group_as_ticket(group)
            ticket = self._tickets.get(ticket_id)
            if ticket is None:
                raise CommandRejected(f"cancel: unknown ticket {ticket_id!r}", Refusal.NOT_FOUND)
            if not ticket.state.pending:
                raise CommandRejected(f"cancel: ticket {ticket_id} is {ticket.state.value}")
            if user.name != ticket.request.user.name and not (user.roles & self.vocab.approver_roles):
                why = f"{user.name} may not cancel {ticket.request.user.name}'s command"
                self._journal_refusal_only("cancel", user, why, ticket.id)
                raise CommandRejected(f"cancel: {why}")
            ticket.state = TicketState.CANCELLED
            ticket.reason = f"cancelled by {user.name}"
            self._release_reservation(ticket)
            self._journal("cancel", ticket, False, cancelled_by=user.name)
            self._retire(ticket)
            return ticket

    def status(self, ticket_id: str) -> Ticket | None:
        with self._lock:
            self.sweep(self.clock())
            return self._tickets.get(ticket_id)

    def pending(self) -> list[Ticket]:
        """Tickets awaiting approval or operate (for the approvers' and operators' consoles)."""
        with self._lock:
            self.sweep(self.clock())
            return [t for t in self._tickets.values() if t.state.pending]

    def reservations(self) -> dict[str, str]:
        """equipment → user currently holding a select on it."""
        with self._lock:
            self.sweep(self.clock())
            return {eq: self._tickets[tid].request.user.name for eq, tid in self._reserved.items()}

    def approver_problem(self, requester: Principal, approver: Principal) -> str:
        """Why ``approver`` may not be the second person for ``requester`` ('' when they may): authenticated,
        a different user, one of the vocabulary's approver roles. Also the rule for configuration changes."""
        return self._approver_problem(requester, approver)

    def adopt(self, old: CommandGate, why: str = "configuration reload") -> list[Ticket]:
        """Carry the open state of the gate this one replaces (a reload): pending tickets (approvals awaited,
        select windows), reservations, group approvals, blast-radius and rate windows, lock-outs. A pending
        ticket whose targets, verb or parameters this gate's configuration no longer has is cancelled, with
        the reason in the audit log. Returns the cancelled tickets.

        Ticket objects are shared, not copied: a command the old gate is still executing finishes on the
        same record this gate lists. Both gates' locks are held while the state is copied (the old gate may still
        be in use on the safety loop)."""
        with self._lock, old._lock:
            old.sweep(self.clock())
            self._tickets.update(old._tickets)
            self._finished.extend(old._finished)
            self._groups.update(old._groups)
            self._reserved.update(old._reserved)
            for name, tdq in old._type_window.items():
                self._type_window[name] = deque(tdq)
            for user, udq in old._user_window.items():
                self._user_window[user] = deque(udq)
            self._global_window = deque(old._global_window)
            self._not_commandable.update({e: w for e, w in old._not_commandable.items() if e in self.city.equipment})
            self._increasing_allowed.update(e for e in old._increasing_allowed if e in self._not_commandable)
            self._audit_ok = old._audit_ok
            cancelled: list[Ticket] = []
            for ticket in list(self._tickets.values()):
                problem = self._no_longer_valid(ticket) if ticket.state.pending else ""
                if not problem:
                    continue
                ticket.state = TicketState.CANCELLED
                ticket.reason = f"cancelled by {why}: {problem}"
                self._release_reservation(ticket)
                self._journal("cancel", ticket, True, cancelled_by=why)  # never refuses (increasing=True)
                self._retire(ticket)
                cancelled.append(ticket)
            return cancelled

    def take_over(self, tickets: list[Ticket], why: str) -> list[Ticket]:
        """The failover pair's new active goes on with the old active's open tickets (as replicated): an approval
        awaited survives (approvable here until its own deadline); a select-before-operate window (SELECTED,
        READY) is cancelled, the reason in the audit log: its operator selects again. Returns the cancelled ones."""
        with self._lock:
            cancelled: list[Ticket] = []
            for ticket in tickets:
                if ticket.id in self._tickets or not ticket.state.pending:
                    continue
                if ticket.state is TicketState.AWAITING_APPROVAL:
                    self._tickets[ticket.id] = ticket
                    if ticket.deadline is not None:
                        self._deadline_set(ticket.deadline)
                    continue
                ticket.state, ticket.reason = TicketState.CANCELLED, f"cancelled by {why}: select again"
                self._journal("cancel", ticket, True, cancelled_by=why)  # never refuses (increasing=True)
                self._tickets[ticket.id] = ticket
                self._retire(ticket)
                cancelled.append(ticket)
            return cancelled

    def _no_longer_valid(self, ticket: Ticket) -> str:
        """Why a pending ticket cannot go on under this gate's configuration ('' if it can)."""
        req = ticket.request
        gone = [t for t in req.targets if t not in self.city.equipment]
        if gone:
            return f"equipment {', '.join(gone[:5])} no longer exists"
        policy = self.vocab.types.get(ticket.type)
        if policy is None or {self.city.equipment[t].template for t in req.targets} != {ticket.type}:
            return f"type {ticket.type!r} is no longer commandable"
        verb = policy.verbs.get(req.verb)
        if verb is None:
            return f"verb {ticket.type}.{req.verb} no longer exists"
        for name in req.params:
            if name not in verb.params:
                return f"verb {ticket.type}.{req.verb} no longer has parameter {name!r}"
        for spec in verb.params.values():
            _, bad = spec.check(req.params.get(spec.name))
            if bad:
                return f"verb {ticket.type}.{req.verb}: {bad}"
        return ""

    def pending_groups(self) -> list[GroupApproval]:
        """Group approvals (crisis plan runs) still awaiting their second person (the failover pair's state)."""
        with self._lock:
            self.sweep(self.clock())
            return [g for g in self._groups.values() if g.state == "awaiting_approval"]

    def take_over_groups(self, groups: list[GroupApproval]) -> None:
        """The failover pair's new active goes on with the old active's awaited group approvals: approvable here
        until their own deadline (created + the approval window)."""
        with self._lock:
            for group in groups:
                if group.id not in self._groups:
                    self._groups[group.id] = group
                    self._deadline_set(group.created + self.vocab.approval_window_s)

    def request_group_approval(self, requester: Principal, subject: str) -> GroupApproval:
        """Open an approval that, once granted, covers the requester's commands carrying its id (crisis plans)."""
        with self._lock:
            now = self.clock()
            group = GroupApproval(uuid.uuid4().hex[:12], requester, subject, now)
            self._groups[group.id] = group
            self._deadline_set(now + self.vocab.approval_window_s)
            self._safe_append("approval_request", ticket=group.id, user=requester.name,
                              workstation=requester.workstation, subject=subject)
            return group

    def group(self, group_id: str) -> GroupApproval | None:
        with self._lock:
            self.sweep(self.clock())
            return self._groups.get(group_id)

    def set_commandable(self, equipment: str, commandable: bool, why: str = "", by: str = "", *,
                        allow_increasing: bool = False) -> None:
        """Lock an equipment out of commands or release it; journalled.

        A maintenance lock-out (someone works on the equipment) refuses every verb. A safety lock-out
        (``allow_increasing``: e.g. a layout the controller refuses) still lets safety-increasing verbs
        through — a junction that cannot be trusted must still go to flash."""
        with self._lock:
            self._increasing_allowed.discard(equipment)
            if commandable:
                self._not_commandable.pop(equipment, None)
            else:
                self._not_commandable[equipment] = why or "locked out"
                if allow_increasing:
                    self._increasing_allowed.add(equipment)
            self._safe_append("commandable", target=equipment, user=by or None, commandable=commandable,
                              reason=why or None, safety_increasing_allowed=allow_increasing or None)

    def classify(self, request: CommandRequest) -> dict[str, Any]:
        """Dry-run steps 1-5 without reserving or counting: what would happen (crisis dry runs, HMI hints)."""
        with self._lock:
            now = self.clock()
            try:
                policy, verb, eqs = self._checks_1_to_4(request, now)
                safety = self._classify(verb, request, eqs)
                mass = self._blast_radius(policy, request, now, safety == "increasing")
            except _Refusal as refusal:
                return {"ok": False, "step": refusal.step, "reason": str(refusal)}
            needs = safety != "increasing" and (safety == "reducing" or mass)
            return {"ok": True, "type": policy.name, "safety": safety, "mass": mass, "needs_approval": needs,
                    "critical": policy.critical,
                    "writes": {eq.id: self._resolved_writes(policy, verb, eq, request,
                                                            self._lease_s(policy, request, now)) for eq in eqs}}

    def sweep(self, now: float | None = None) -> None:
        """Expire approval and select windows (journalled as approval_timeout / select_timeout)."""
        with self._lock:
            now = self.clock() if now is None else now
            for ticket in list(self._tickets.values()):
                if ticket.state.pending and ticket.deadline is not None and now > ticket.deadline:
                    waiting = ticket.state is TicketState.AWAITING_APPROVAL
                    ticket.state = TicketState.EXPIRED
                    ticket.outcome = Outcome.REJECTED
                    if waiting:
                        ticket.reason = (f"approval: no second-person approval within "
                                         f"{self.vocab.approval_window_s:g} s")
                    else:
                        ticket.reason = (f"select: expired, no operate within the select window "
                                         f"(deadline {ticket.deadline:.3f})")
                    self._release_reservation(ticket)
                    self._journal("approval_timeout" if waiting else "select_timeout", ticket, False)
                    self._retire(ticket)
            for group in self._groups.values():
                if group.state == "awaiting_approval" and now > group.created + self.vocab.approval_window_s:
                    group.state = "expired"
                    self._safe_append("approval_timeout", ticket=group.id, user=group.requester.name,
                                      subject=group.subject)
                elif group.state == "approved" and group.approved_at is not None and \
                        now > group.approved_at + self.vocab.approval_window_s:
                    group.state = "expired"

    def next_deadline(self) -> float | None:
        """The earliest time (clock) at which :meth:`sweep` has something to expire, None if nothing is pending."""
        with self._lock:
            due = [t.deadline for t in self._tickets.values() if t.state.pending and t.deadline is not None]
            for group in self._groups.values():
                if group.state == "awaiting_approval":
                    due.append(group.created + self.vocab.approval_window_s)
                elif group.state == "approved" and group.approved_at is not None:
                    due.append(group.approved_at + self.vocab.approval_window_s)
            return min(due, default=None)

    def _deadline_set(self, deadline: float) -> None:
        wake = self.on_deadline
        if wake is None:
            return
        try:
            wake(deadline)
        except Exception:  # a sweeper that cannot be woken still ticks every second (logged)
            log.exception("the sweeper's wake-up failed")

    # ================================================================== steps 1-4
    def _checks_1_to_4(self, req: CommandRequest,
                       now: float) -> tuple[TypePolicy, VerbSpec, list[EquipmentDef]]:
        # 1. user: authenticated, role permitted for this verb
        user = req.user
        if not user.name or not user.authenticated or (self.authenticate is not None and not self.authenticate(user)):
            raise _Refusal("user", f"user {user.name or '(anonymous)'!r} is not authenticated")
        policy, verb = self._resolve_type_verb(req)
        if verb is not None and not (user.roles & verb.roles):
            raise _Refusal("user", f"user {user.name!r} (roles {', '.join(sorted(user.roles)) or 'none'}) may not "
                                   f"{policy.name if policy else ''}.{req.verb}; needs one of "
                                   f"{', '.join(sorted(verb.roles))}")
        if verb is None:
            all_roles = frozenset().union(*(v.roles for p in self.vocab.types.values() for v in p.verbs.values()))
            if not (user.roles & all_roles):
                raise _Refusal("user", f"user {user.name!r} (roles {', '.join(sorted(user.roles)) or 'none'}) may "
                                       f"not send commands")
        # 2. target exists and is commandable, verb and parameters valid
        eqs = self._check_targets(req, policy, verb)
        assert policy is not None and verb is not None  # noqa: S101 - _check_targets refused both cases
        # 3. inputs needed by interlocks have good quality; 4. interlocks
        self._check_interlocks(req, policy, verb, eqs, now)
        return policy, verb, eqs

    def _resolve_type_verb(self, req: CommandRequest) -> tuple[TypePolicy | None, VerbSpec | None]:
        templates = {self.city.equipment[t].template for t in req.targets if t in self.city.equipment}
        if len(templates) != 1:
            return None, None
        policy = self.vocab.types.get(next(iter(templates)))
        if policy is None:
            return None, None
        return policy, policy.verbs.get(req.verb)

    def _check_targets(self, req: CommandRequest, policy: TypePolicy | None,
                       verb: VerbSpec | None) -> list[EquipmentDef]:
        if not req.targets:
            raise _Refusal("target", "no target given")
        if len(set(req.targets)) != len(req.targets):
            raise _Refusal("target", "the same target is listed twice")
        unknown = [t for t in req.targets if t not in self.city.equipment]
        if unknown:
            raise _Refusal("target", f"unknown equipment {unknown[0]!r}")
        eqs = [self.city.equipment[t] for t in req.targets]
        templates = sorted({e.template for e in eqs})
        if len(templates) != 1:
            raise _Refusal("target", f"one command addresses one equipment type, got {', '.join(templates)}")
        if policy is None:
            raise _Refusal("target", f"equipment of type {templates[0]!r} is not commandable (no verbs in "
                                     f"{self.vocab.source})")
        if verb is None:
            raise _Refusal("target", f"type {policy.name!r} has no verb {req.verb!r}; verbs: "
                                     f"{', '.join(policy.verbs)}")
        for eq in eqs:
            # a maintenance lock-out stops every command; a safety lock-out (a layout the field refuses)
            # stops all but the safety-increasing ones: the monitor's own flash request must get through
            if eq.id in self._not_commandable and not (verb.safety == "increasing"
                                                       and eq.id in self._increasing_allowed):
                raise _Refusal("target", f"{eq.id} is not commandable: {self._not_commandable[eq.id]}")
            for _, w in verb.all_writes:
                if eq.tag_name(w.tag) not in self._tags:
                    raise _Refusal("target", f"{eq.id} has no tag {w.tag!r}")
        for name in req.params:
            if name not in verb.params:
                raise _Refusal("target", f"verb {req.verb!r} has no parameter {name!r}; parameters: "
                                         f"{', '.join(verb.params) or 'none'}")
        for name, spec in verb.params.items():
            _, why = spec.check(req.params.get(name))
            if why:
                raise _Refusal("target", why)
        if req.lease_s is not None and not (req.lease_s > 0):
            raise _Refusal("target", f"lease must be positive, got {req.lease_s!r}")
        if req.until is not None and req.until <= self.clock():
            raise _Refusal("target", "'until' is in the past")
        return eqs

    def _read(self, eq: EquipmentDef, tag: str) -> tuple[Value, Quality]:
        if self.reader is None:
            return None, Quality.BAD_CONFIG
        try:
            s = self.reader.read(eq.tag_name(tag))
        except KeyError:
            return None, Quality.BAD_CONFIG
        return s.value, s.quality

    def _check_interlocks(self, req: CommandRequest, policy: TypePolicy, verb: VerbSpec,
                          eqs: list[EquipmentDef], now: float) -> None:
        interlocks = policy.interlocks_for(verb.name)
        if not interlocks:
            return
        params = {name: spec.check(req.params.get(name))[0] for name, spec in verb.params.items()}
        for eq in eqs:  # 3. inputs
            for il in interlocks:
                for tag in il.input_tags:
                    _, q = self._read(eq, tag)
                    if not q.is_good:
                        raise _Refusal("inputs", f"{eq.id}: interlock '{il.name}' needs {tag!r} with good quality, "
                                                 f"got {q.label}")
        for eq in eqs:  # 4. interlocks
            ctx = self._context(policy, eq, params)
            for il in interlocks:
                applies = all(c.holds(self._read(eq, c.subject)[0], ctx) for c in il.when)
                if not applies:
                    continue
                if il.refuse_if is not None and il.refuse_if.holds(self._read(eq, il.refuse_if.subject)[0], ctx):
                    raise _Refusal("interlocks", f"{eq.id}: {il.reason} ({il.refuse_if.describe(ctx)})")
                if il.require_param is not None and il.require_at_least is not None:
                    minimum = il.require_at_least.for_equipment(eq)
                    value = params.get(il.require_param)
                    if minimum is None:
                        raise _Refusal("interlocks", f"{eq.id}: {il.reason}: no minimum known for this equipment")
                    if not isinstance(value, (int, float)) or value < minimum:
                        ident = il.require_at_least.identity
                        key = eq.identity.get(ident or "", eq.params.get(ident or ""))
                        why = f" for {ident} {key}" if ident else ""
                        raise _Refusal("interlocks", f"{eq.id}: {il.reason}: {il.require_param} {value!r} < minimum "
                                                     f"{minimum:g}{why}")

    # ================================================================== steps 5-8
    def _classify(self, verb: VerbSpec, req: CommandRequest, eqs: list[EquipmentDef]) -> str:
        safety = verb.safety_of(req.params)
        if safety != "increasing":
            # releasing a safety-increasing state (flash, lighting 100 %) reduces safety
            for eq in eqs:
                lease = self.leases.active(eq.id)
                if lease is not None and lease.safety == "increasing":
                    return "reducing"
        return safety

    def _window(self, dq: deque[Any], now: float, key: Callable[[Any], float]) -> None:
        while dq and key(dq[0]) <= now - WINDOW_S:
            dq.popleft()

    def _blast_radius(self, policy: TypePolicy, req: CommandRequest, now: float, increasing: bool) -> bool:
        """True when the command is 'mass' (needs approval); refuses above the hard cap."""
        br = policy.blast
        n = len(req.targets)
        if n > br.max_with_approval:
            raise _Refusal("blast_radius", f"{n} {policy.name} targets in one command, the hard limit is "
                                           f"{br.max_with_approval}")
        if increasing:
            return False  # never rate limited; the hard per-command cap above still applies
        dq = self._type_window.setdefault(policy.name, deque())
        self._window(dq, now, lambda e: e[0])
        recent = {t for _, t in dq} | set(req.targets)
        if len(recent) > br.max_with_approval:
            raise _Refusal("blast_radius", f"{len(recent)} {policy.name} targets commanded within a minute, the hard "
                                           f"limit is {br.max_with_approval}")
        return n > br.per_command or len(recent) > br.per_minute

    def _rate_limit(self, user: Principal, now: float) -> None:
        udq = self._user_window.setdefault(user.name, deque())
        self._window(udq, now, lambda t: t)
        self._window(self._global_window, now, lambda t: t)
        if len(udq) >= self.vocab.rate_per_user:
            raise _Refusal("rate_limit", f"user {user.name!r} sent {len(udq)} commands in the last minute "
                                         f"(limit {self.vocab.rate_per_user})")
        if len(self._global_window) >= self.vocab.rate_global:
            raise _Refusal("rate_limit", f"{len(self._global_window)} commands in the last minute system-wide "
                                         f"(limit {self.vocab.rate_global})")

    def _record_windows(self, policy: TypePolicy, req: CommandRequest, now: float) -> None:
        dq = self._type_window.setdefault(policy.name, deque())
        for t in req.targets:
            dq.append((now, t))
        self._user_window.setdefault(req.user.name, deque()).append(now)
        self._global_window.append(now)

    def _approver_problem(self, requester: Principal, approver: Principal) -> str:
        if not approver.name or not approver.authenticated or \
                (self.authenticate is not None and not self.authenticate(approver)):
            return f"approver {approver.name or '(anonymous)'!r} is not authenticated"
        if approver.name == requester.name:
            return f"the second person must be a different user than the requester ({requester.name!r})"
        if not (approver.roles & self.vocab.approver_roles):
            return (f"user {approver.name!r} (roles {', '.join(sorted(approver.roles)) or 'none'}) may not approve; "
                    f"needs one of {', '.join(sorted(self.vocab.approver_roles))}")
        return ""

    def _approve_group(self, group: GroupApproval, approver: Principal, now: float) -> None:
        if group.state != "awaiting_approval":
            raise CommandRejected(f"approval: {group.id} is {group.state}, not awaiting approval")
        why = self._approver_problem(group.requester, approver)
        if why:
            self._safe_append("refusal", ticket=group.id, step="approval", user=group.requester.name,
                              approver=approver.name, approver_workstation=approver.workstation, reason=why,
                              subject=group.subject)
            raise CommandRejected(f"approval: {why}")
        group.approver, group.approved_at, group.state = approver, now, "approved"
        self._deadline_set(now + self.vocab.approval_window_s)
        self._safe_append("approval", ticket=group.id, user=group.requester.name, approver=approver.name,
                          approver_workstation=approver.workstation, subject=group.subject)

    def _check_group_approval(self, req: CommandRequest, now: float) -> None:
        group = self._groups.get(req.approval or "")
        if group is None:
            raise _Refusal("approval", f"unknown approval {req.approval!r}")
        if group.state != "approved" or group.approver is None or group.approved_at is None:
            raise _Refusal("approval", f"approval {group.id} is {group.state}")
        if group.requester.name != req.user.name:
            raise _Refusal("approval", f"approval {group.id} was granted to {group.requester.name}, "
                                       f"not {req.user.name}")
        if now > group.approved_at + self.vocab.approval_window_s:
            raise _Refusal("approval", f"approval {group.id} is older than {self.vocab.approval_window_s:g} s")

    def _group_as_ticket(self, group: GroupApproval) -> Ticket:
        state = {"awaiting_approval": TicketState.AWAITING_APPROVAL, "approved": TicketState.READY,
                 "expired": TicketState.EXPIRED}.get(group.state, TicketState.CANCELLED)
        req = CommandRequest("approve_group", (), group.requester, note=group.subject)
        return Ticket(group.id, req, "group", "reducing", True, state, group.created, approver=group.approver,
                      approved_at=group.approved_at)

    def _make_operable(self, ticket: Ticket, policy: TypePolicy, now: float) -> None:
        """Step 8: critical types reserve their targets for the requester (select-before-operate)."""
        if not policy.critical:
            ticket.state = TicketState.READY
            ticket.deadline = now + self.vocab.approval_window_s
            self._deadline_set(ticket.deadline)
            return
        user = ticket.request.user
        for target in ticket.request.targets:
            holder_id = self._reserved.get(target)
            holder = self._tickets.get(holder_id) if holder_id else None
            if holder is None or not holder.state.pending or holder.id == ticket.id:
                continue
            if holder.request.user.name == user.name or ticket.safety == "increasing":
                # a new select by the same user replaces the old one; a safety-increasing command pre-empts
                holder.state = TicketState.CANCELLED
                holder.reason = (f"superseded by {ticket.id}" if holder.request.user.name == user.name
                                 else f"pre-empted by safety-increasing command {ticket.id} of {user.name}")
                self._release_reservation(holder)
                self._journal("cancel", holder, True, cancelled_by=user.name)
                self._retire(holder)
                continue
            raise _Refusal("select", f"{target} is reserved by {holder.request.user.name} until "
                                     f"{holder.deadline:.3f} (ticket {holder.id})")
        for target in ticket.request.targets:
            self._reserved[target] = ticket.id
        ticket.state = TicketState.SELECTED
        ticket.deadline = now + policy.select_timeout_s
        self._deadline_set(ticket.deadline)

    def _release_reservation(self, ticket: Ticket) -> None:
        for target in ticket.request.targets:
            if self._reserved.get(target) == ticket.id:
                del self._reserved[target]

    # ================================================================== steps 9-10
    def _lease_s(self, policy: TypePolicy, req: CommandRequest, now: float) -> float:
        wanted = req.lease_s
        if req.until is not None:
            wanted = req.until - now
        if wanted is None:
            wanted = policy.lease_default_s
        return float(min(wanted, policy.lease_max_s, LEASE_S_MAX))

    def _context(self, policy: TypePolicy, eq: EquipmentDef, params: Mapping[str, Value],
                 lease_s: float | None = None) -> dict[str, Value]:
        ctx: dict[str, Value] = {}
        for src in (eq.params, eq.identity):
            for k, v in src.items():
                if isinstance(v, (str, int, float, bool)) or v is None:
                    ctx[k] = v
        ctx.update(policy.constants)
        ctx.update(params)
        if lease_s is not None:
            ctx["lease_s"] = int(min(LEASE_S_MAX, max(0, round(lease_s))))
        return ctx

    def _resolved_writes(self, policy: TypePolicy, verb: VerbSpec, eq: EquipmentDef, req: CommandRequest,
                         lease_s: float) -> dict[str, Value]:
        params = {name: spec.check(req.params.get(name))[0] for name, spec in verb.params.items()}
        ctx = self._context(policy, eq, params, lease_s)
        return {w.tag: w.resolve(ctx) for w in verb.writes}

    async def _execute(self, ticket: Ticket, policy: TypePolicy, verb: VerbSpec, eqs: list[EquipmentDef],
                       now: float) -> None:
        with self._lock:  # the plans and the write-ahead entry; released before the first write
            req = ticket.request
            increasing = ticket.safety == "increasing"
            params = {name: spec.check(req.params.get(name))[0] for name, spec in verb.params.items()}
            lease_s = self._lease_s(policy, req, now)
            lease_end = now + lease_s if verb.lease == "hold" else None
            ticket.lease_end = lease_end
            plans: list[tuple[EquipmentDef, dict[str, Value], list[tuple[TagDef, Value, float | None]],
                              dict[str, Value]]] = []
            for eq in eqs:
                ctx = self._context(policy, eq, params, lease_s)
                writes = [(self._tags[eq.tag_name(w.tag)], w.resolve(ctx), w.tolerance) for w in verb.writes]
                previous = {w.tag: self._read(eq, w.tag)[0] for w in verb.writes}
                plans.append((eq, ctx, writes, previous))
            # write-ahead: the journal knows about the command before any device does
            try:
                self._journal("operate", ticket, increasing, lease_end=lease_end,
                              requested={eq.id: {t.tag: v for t, v, _ in w} for eq, _, w, _ in plans},
                              previous={eq.id: prev for eq, _, _, prev in plans})
            except _Refusal as refusal:
                self._refuse(ticket, refusal)
                return

        async def one(eq: EquipmentDef, ctx: dict[str, Value], writes: list[tuple[TagDef, Value, float | None]],
                      previous: dict[str, Value]) -> TargetResult:
            requested = {t.tag: v for t, v, _ in writes}
            written = 0
            previous_lease = self.leases.prepare(eq.id, ticket.id)  # no older refresh/release may land after us
            for tag, value, tolerance in writes:
                try:
                    await self.writer.write(tag, value, tolerance=tolerance)
                    written += 1
                except WriteNotAllowed as exc:
                    # the writer's own policy (not writable, SNMP SET outside the allow-list) refused it before
                    # any packet: a rejection, not a device failure; whatever was written before still holds
                    if written:  # part of the verb reached the device: a failed command, leased to its end
                        self._hold_lease(ticket, policy, verb, eq, ctx, lease_end)
                        return TargetResult(eq.id, Outcome.FAILED, f"write {tag.tag}={value!r}: {exc}", previous,
                                            requested)
                    self.leases.restore(previous_lease)
                    return TargetResult(eq.id, Outcome.REJECTED, f"write {tag.tag}={value!r}: {exc}", previous,
                                        requested)
                except DriverError as exc:
                    # a device that took the write but shows something else (its own interlock, an invalid
                    # plan replaced by the local one) is "not confirmed"; no answer / refusal is "failed"
                    refused_by_logic = isinstance(exc, WriteNotConfirmed)
                    if written or refused_by_logic:
                        self._hold_lease(ticket, policy, verb, eq, ctx, lease_end)
                    else:
                        self.leases.restore(previous_lease)  # nothing reached the device: the old lease holds
                    outcome = Outcome.NOT_CONFIRMED if refused_by_logic else Outcome.FAILED
                    return TargetResult(eq.id, outcome, f"write {tag.tag}={value!r}: {exc}", previous, requested)
            self._hold_lease(ticket, policy, verb, eq, ctx, lease_end)
            why = await self._confirm(eq, verb, ctx, policy.confirm_timeout_s)
            if why:
                return TargetResult(eq.id, Outcome.NOT_CONFIRMED, why, previous, requested)
            return TargetResult(eq.id, Outcome.DONE, "", previous, requested)

        results = await asyncio.gather(*(one(*p) for p in plans))
        with self._lock:
            ticket.results = tuple(results)
            outcomes = {r.outcome for r in results}
            if Outcome.FAILED in outcomes:
                ticket.outcome = Outcome.FAILED
            elif Outcome.REJECTED in outcomes:
                ticket.outcome = Outcome.REJECTED
            elif Outcome.NOT_CONFIRMED in outcomes:
                ticket.outcome = Outcome.NOT_CONFIRMED
            else:
                ticket.outcome = Outcome.DONE
            bad = [r for r in results if r.outcome is not Outcome.DONE]
            ticket.reason = "; ".join(f"{r.target}: {r.reason}" for r in bad)
            ticket.state = TicketState.FINISHED
            try:
                self._journal("outcome", ticket, True)
            except _Refusal:
                pass
            for r in bad:
                if r.outcome is Outcome.REJECTED:  # refused by policy before any packet: journalled, nothing to alarm
                    continue
                what = "not confirmed" if r.outcome is Outcome.NOT_CONFIRMED else "failed"
                self._alarm(FailsafeAlarm(f"failsafe/{r.target}/command_{r.outcome.value}", r.target, 3,
                                          f"{r.target}: command {req.verb} by {req.user.name} {what}: {r.reason}",
                                          ts=self.clock()))

    def _hold_lease(self, ticket: Ticket, policy: TypePolicy, verb: VerbSpec, eq: EquipmentDef,
                    ctx: dict[str, Value], lease_end: float | None) -> None:
        """Once anything reached the device, the command is a lease (so it is also released at its end)."""
        req = ticket.request
        if verb.lease == "hold" and lease_end is not None:
            self.leases.start(ticket_id=ticket.id, equipment=eq.id, type_name=policy.name, verb=verb, ctx=ctx,
                              end=lease_end, safety=ticket.safety, user=req.user.name,
                              approver=ticket.approver.name if ticket.approver else None)
        else:
            self.leases.end(eq.id, reason=f"{verb.name} by {req.user.name}", ticket_id=ticket.id)

    async def _confirm(self, eq: EquipmentDef, verb: VerbSpec, ctx: Mapping[str, Value], timeout_s: float) -> str:
        """'' when every confirm condition holds by read-back within the timeout, else what was last seen."""
        if not verb.confirm:
            return ""
        deadline = self.clock() + timeout_s
        last = ""
        while True:
            seen: list[str] = []
            ok = True
            for cond in verb.confirm:
                tag = self._tags[eq.tag_name(cond.subject)]
                try:
                    sample = await self.writer.read(tag)
                except DriverError as exc:
                    ok = False
                    seen.append(f"{cond.subject}: read failed ({exc})")
                    continue
                if not sample.quality.is_good or not cond.holds(sample.value, ctx):
                    ok = False
                    seen.append(f"{cond.subject}={sample.value!r} ({sample.quality.label})")
            if ok:
                return ""
            last = ", ".join(seen)
            if self.clock() >= deadline:
                want = " and ".join(c.describe(ctx) for c in verb.confirm)
                return f"confirm: expected {want} within {timeout_s:g} s, read back {last}"
            await self.sleep(self.confirm_poll_s)

    # ================================================================== journal & helpers
    def _require_audit(self, increasing: bool) -> None:
        """Refuse a command that is not safety-increasing while the audit log cannot be written or is damaged
        (AuditLog.damage: found at open, or by the full check the layer runs at start)."""
        if increasing:
            return
        if self.audit.damage is not None:
            raise _Refusal("audit", f"the audit log is damaged ({self.audit.damage}); only safety-increasing "
                                    f"commands are accepted")
        if not self._audit_ok:
            raise _Refusal("audit", "the audit log cannot be written; only safety-increasing commands are accepted")

    def _entry(self, ticket: Ticket) -> dict[str, Any]:
        req = ticket.request
        return {"ticket": ticket.id, "user": req.user.name, "workstation": req.user.workstation,
                "approver": ticket.approver.name if ticket.approver else None,
                "approver_workstation": ticket.approver.workstation if ticket.approver else None,
                "target": list(req.targets), "type": ticket.type or None, "verb": req.verb,
                "params": dict(req.params) or None, "safety": ticket.safety, "mass": ticket.mass or None,
                "state": ticket.state.value, "note": req.note or None, "crisis": req.crisis,
                "lease_end": ticket.lease_end,
                "outcome": ticket.outcome.value if ticket.outcome else None, "reason": ticket.reason or None,
                "results": [{"target": r.target, "outcome": r.outcome.value, "reason": r.reason or None}
                            for r in ticket.results] or None}

    def _journal(self, kind: str, ticket: Ticket, increasing: bool, **extra: Any) -> None:
        """Append to the audit log; on failure refuse (raise _Refusal) unless the command is safety-increasing."""
        fields = self._entry(ticket)
        fields.update({k: v for k, v in extra.items() if v is not None})
        try:
            self._append(kind, **fields)
        except StorageError as exc:
            if not increasing and kind in ("select", "operate", "approval"):
                raise _Refusal("audit", f"the audit log cannot be written ({exc})") from exc

    def _safe_append(self, kind: str, **fields: Any) -> None:
        with contextlib.suppress(StorageError):  # noted by _append: the gate refuses, the alarm is raised
            self._append(kind, **fields)

    def _append(self, kind: str, **fields: Any) -> None:
        """Every append of the gate: a failure marks the audit log unwritable (commands refused except
        safety-increasing ones, alarm raised once) and re-raises; a success after one marks it writable again
        (alarm cleared). The flag is set before the alarm goes out: the sink may look at it at once."""
        try:
            self.audit.append(kind, **fields)
        except StorageError as exc:
            was_ok, self._audit_ok = self._audit_ok, False
            if was_ok:
                log.error("audit log %s cannot be written: %s", self.audit.path, exc)
                self._alarm(FailsafeAlarm("failsafe/audit/unwritable", "", 2,
                                          f"command audit log cannot be written ({exc}); only safety-increasing "
                                          f"commands are accepted", ts=self.clock()))
            raise
        if not self._audit_ok:
            self._audit_ok = True
            log.warning("audit log %s writable again", self.audit.path)
            self._alarm(FailsafeAlarm("failsafe/audit/unwritable", "", 2, "audit log writable again",
                                      active=False, ts=self.clock()))

    @property
    def audit_writable(self) -> bool:
        """False from a failed append of this gate until one works again (commands refused meanwhile, except
        safety-increasing ones)."""
        with self._lock:
            return self._audit_ok

    def recheck_audit(self) -> bool:
        """The audit log looks writable again (the store probe): while this gate still holds it unwritable, try
        one real append (``audit_writable_again``, itself worth keeping: when commands were accepted again), which
        re-arms the gate and clears its alarm. Nothing else would: the gate appends for few things while it
        refuses. Returns whether the gate now takes commands."""
        with self._lock:
            if self._audit_ok:
                return True
            with contextlib.suppress(StorageError):
                self._append("audit_writable_again", note="audit log writable again: commands accepted")
            return self._audit_ok

    def _journal_refusal_only(self, step: str, user: Principal, why: str, ticket_id: str) -> None:
        self._safe_append("refusal", ticket=ticket_id, step=step, user=user.name, workstation=user.workstation,
                          reason=why)

    def _refuse(self, ticket: Ticket, refusal: _Refusal) -> None:
        ticket.state = TicketState.FINISHED
        ticket.outcome = Outcome.REJECTED
        ticket.reason = str(refusal)
        self._tickets[ticket.id] = ticket
        self._release_reservation(ticket)
        try:
            self._journal("refusal", ticket, True, step=refusal.step)
        except _Refusal:
            pass
        log.info("command %s %s on %s by %s refused: %s", ticket.id, ticket.request.verb,
                 ",".join(ticket.request.targets), ticket.request.user.name, refusal)
        self._retire(ticket)

    def _retire(self, ticket: Ticket) -> None:
        self._finished.append(ticket.id)
        while len(self._finished) > KEEP_FINISHED:
            old = self._finished.popleft()
            t = self._tickets.get(old)
            if t is not None and not t.state.pending and t.state is not TicketState.EXECUTING:
                del self._tickets[old]

    def _result(self, ticket: Ticket) -> CommandResult:
        code = Refusal.COMMAND_REJECTED if ticket.outcome is Outcome.REJECTED else None
        return CommandResult(ticket.id, ticket.outcome, ticket.reason, ticket.results, ticket.lease_end, ticket.state,
                             code)

    def _alarm(self, alarm: FailsafeAlarm) -> None:
        try:
            self.alarms(alarm)
        except Exception:  # the alarm path must never break a command (logged)
            log.exception("alarm sink failed for %s", alarm.key)


__all__ = ["STEPS", "CommandGate", "GroupApproval"]
