"""Crisis plans: a named sequence of commands (emergency corridor...) run step by step through the gate.

    commands.yaml crisis_plans ──► CrisisRunner
       dry_run(name, user)   every step through the gate's checks 1-5 against the live state (the tag
                             database fed by the field or the simulator): would it pass, what would it
                             write, does it need a second person? Nothing is written.
       activate(name, user)  an authorised supervisor (crisis_roles) starts a run:
                               ├─ steps in plan order; safety-increasing steps (junction flash) run at
                               │  once, they never wait for an approval
                               ├─ steps needing a second person (bollard movement, mass commands) are
                               │  deferred: the run asks ONE group approval for them (gate approval id)
                               └─ approve(run_id, approver) → the deferred steps run, in plan order
       every step is an ordinary gate command (user = the supervisor, crisis = run id, approval = the
       group approval), so each is journalled, confirmed by read-back and leased (plan lease).

The run keeps a log of every step (time, outcome, reason, ticket); the audit log gets ``crisis_run``
and ``crisis_step`` entries.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from failsafe.audit import AuditLog
from failsafe.gate import CommandGate
from failsafe.types import Clock, CommandRequest, Outcome, Principal, TicketState, system_clock
from failsafe.vocabulary import CrisisPlanSpec, CrisisStep, Vocabulary
from scada.errors import CommandRejected, Refusal, StorageError

log = logging.getLogger(__name__)


@dataclass(slots=True)
class StepLog:
    index: int
    target: str
    verb: str
    params: dict[str, Any]
    outcome: str = "pending"  # pending | deferred | done | rejected | failed | not_confirmed | would_run | would_refuse
    reason: str = ""
    ticket: str = ""
    needs_approval: bool = False
    writes: dict[str, Any] = field(default_factory=dict)
    started: float | None = None
    finished: float | None = None

    def view(self) -> dict[str, Any]:
        return {"index": self.index, "target": self.target, "verb": self.verb, "params": self.params,
                "outcome": self.outcome, "reason": self.reason, "ticket": self.ticket,
                "needs_approval": self.needs_approval, "writes": self.writes, "started": self.started,
                "finished": self.finished}


@dataclass(slots=True)
class CrisisRun:
    id: str
    plan: str
    user: Principal
    dry_run: bool
    started: float
    state: str = "running"  # dry_run | running | awaiting_approval | done | partial | refused | expired
    approval: str | None = None
    approver: str | None = None
    finished: float | None = None
    reason: str = ""
    steps: list[StepLog] = field(default_factory=list)

    def view(self) -> dict[str, Any]:
        return {"id": self.id, "plan": self.plan, "user": self.user.name, "workstation": self.user.workstation,
                "dry_run": self.dry_run, "state": self.state, "approval": self.approval, "approver": self.approver,
                "started": self.started, "finished": self.finished, "reason": self.reason,
                "steps": [s.view() for s in self.steps]}


class CrisisRunner:
    def __init__(self, gate: CommandGate, vocabulary: Vocabulary, audit: AuditLog, *,
                 clock: Clock = system_clock) -> None:
        self.gate = gate
        self.vocab = vocabulary
        self.audit = audit
        self.clock = clock
        self.runs: dict[str, CrisisRun] = {}

    def plans(self) -> list[dict[str, Any]]:
        return [{"name": p.name, "description": p.description, "lease_s": p.lease_s, "roles": sorted(p.roles),
                 "steps": [{"target": s.target, "verb": s.verb, "params": dict(s.params)} for s in p.steps]}
                for p in self.vocab.crisis_plans.values()]

    def _plan(self, name: str, user: Principal) -> CrisisPlanSpec:
        plan = self.vocab.crisis_plans.get(name)
        if plan is None:
            raise CommandRejected(f"crisis: no crisis plan {name!r}; plans: {', '.join(self.vocab.crisis_plans)}",
                                  Refusal.NOT_FOUND)
        if not user.authenticated or not user.name:
            raise CommandRejected(f"crisis: user {user.name or '(anonymous)'!r} is not authenticated")
        if not (user.roles & plan.roles):
            raise CommandRejected(f"crisis: user {user.name!r} (roles {', '.join(sorted(user.roles)) or 'none'}) "
                                  f"may not activate crisis plans; needs one of {', '.join(sorted(plan.roles))}")
        return plan

    def _request(self, plan: CrisisPlanSpec, step: CrisisStep, run: CrisisRun) -> CommandRequest:
        return CommandRequest(step.verb, (step.target,), run.user, dict(step.params), lease_s=plan.lease_s,
                              note=f"crisis plan {plan.name}", approval=run.approval, crisis=run.id)

    def _journal(self, kind: str, run: CrisisRun, **fields: Any) -> None:
        try:
            self.audit.append(kind, ticket=run.id, user=run.user.name, workstation=run.user.workstation,
                              crisis=run.plan, approver=run.approver, **fields)
        except StorageError as exc:
            log.error("crisis %s: cannot journal %s: %s", run.id, kind, exc)

    # ------------------------------------------------------------------ dry run
    def dry_run(self, name: str, user: Principal) -> CrisisRun:
        """Check every step against the live state without writing anything."""
        plan = self._plan(name, user)
        run = CrisisRun(uuid.uuid4().hex[:12], plan.name, user, True, self.clock(), state="dry_run")
        for i, step in enumerate(plan.steps):
            log_ = StepLog(i, step.target, step.verb, dict(step.params), started=self.clock())
            info = self.gate.classify(self._request(plan, step, run))
            if info["ok"]:
                log_.outcome = "would_run"
                log_.needs_approval = bool(info["needs_approval"])
                log_.writes = dict(info["writes"].get(step.target, {}))
                log_.reason = "needs the second person's approval" if log_.needs_approval else ""
            else:
                log_.outcome, log_.reason = "would_refuse", str(info["reason"])
            log_.finished = self.clock()
            run.steps.append(log_)
        run.finished = self.clock()
        self.runs[run.id] = run
        self._journal("crisis_dry_run", run, steps=[s.view() for s in run.steps])
        return run

    # ------------------------------------------------------------------ activation
    async def activate(self, name: str, user: Principal) -> CrisisRun:
        """Start a run: steps that need no approval run now; the others wait for one group approval."""
        plan = self._plan(name, user)
        run = CrisisRun(uuid.uuid4().hex[:12], plan.name, user, False, self.clock())
        run.steps = [StepLog(i, s.target, s.verb, dict(s.params)) for i, s in enumerate(plan.steps)]
        self.runs[run.id] = run
        self._journal("crisis_run", run, state="started")
        for log_, step in zip(run.steps, plan.steps, strict=True):
            await self._step(plan, run, step, log_, allow_defer=True)
        deferred = [s for s in run.steps if s.outcome == "deferred"]
        if deferred:
            group = self.gate.request_group_approval(user, f"crisis plan {plan.name} run {run.id}: "
                                                           f"{len(deferred)} step(s) need a second person")
            run.approval = group.id
            run.state = "awaiting_approval"
            self._journal("crisis_run", run, state=run.state, deferred=[s.index for s in deferred])
            return run
        return self._finish(run)

    async def approve(self, run_id: str, approver: Principal) -> CrisisRun:
        """The second person approves the deferred steps; they run at once, in plan order."""
        run = self.find(run_id)
        if run is None:
            raise CommandRejected(f"approval: no crisis run {run_id!r}", Refusal.NOT_FOUND)
        if run.state != "awaiting_approval" or run.approval is None:
            raise CommandRejected(f"approval: crisis run {run.id} is {run.state}, not awaiting approval")
        group = self.gate.group(run.approval)
        if group is None or group.state == "expired":
            run.state, run.reason = "expired", "no approval within the window"
            raise CommandRejected(f"approval: crisis run {run.id}: the approval window has passed")
        self.gate.approve(run.approval, approver)  # raises CommandRejected (same user, no approver role ...)
        run.approver = approver.name
        run.state = "running"
        plan = self.vocab.crisis_plans[run.plan]
        for log_, step in zip(run.steps, plan.steps, strict=True):
            if log_.outcome == "deferred":
                await self._step(plan, run, step, log_, allow_defer=False)
        return self._finish(run)

    def find(self, ident: str) -> CrisisRun | None:
        """The run with this id, or whose group approval has this id (what the approvers' console shows)."""
        return self.runs.get(ident) or next((r for r in self.runs.values() if r.approval == ident), None)

    def is_run(self, ident: str) -> bool:
        return self.find(ident) is not None

    async def _step(self, plan: CrisisPlanSpec, run: CrisisRun, step: CrisisStep, log_: StepLog,
                    allow_defer: bool) -> None:
        req = self._request(plan, step, run)
        if allow_defer and run.approval is None:
            info = self.gate.classify(req)
            if info["ok"] and info["needs_approval"]:
                log_.outcome, log_.needs_approval = "deferred", True
                log_.reason = "waiting for the second person's approval"
                self._journal("crisis_step", run, step=log_.view())
                return
        log_.started = self.clock()
        result = await self.gate.execute(req)
        log_.finished = self.clock()
        log_.ticket = result.ticket
        if result.state is TicketState.AWAITING_APPROVAL:  # should not happen: classified above
            self.gate.cancel(result.ticket, run.user)
            log_.outcome, log_.reason = "rejected", "approval: needed a second person"
        else:
            log_.outcome = (result.outcome or Outcome.REJECTED).value
            log_.reason = result.reason
        log.info("crisis %s step %d %s %s: %s %s", run.id, log_.index, step.verb, step.target, log_.outcome,
                 log_.reason)
        self._journal("crisis_step", run, step=log_.view())

    def _finish(self, run: CrisisRun) -> CrisisRun:
        run.finished = self.clock()
        run.state = "done" if all(s.outcome == "done" for s in run.steps) else "partial"
        self._journal("crisis_run", run, state=run.state, steps=[s.view() for s in run.steps])
        return run
