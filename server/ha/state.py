"""What the failover pair's standby keeps besides tag values and journal rows: the operator-facing state of the
active's stores, sent as one "state" snapshot when it changes, and taken over at a takeover through each
store's own façade.

    ACTIVE  snapshot(server)                          STANDBY  Replica.apply(state)          at takeover
    ──────────────────────────                        ───────────────────────────          ──────────────────────
    leases    LeaseManager.snapshot()   (failsafe)     kept                                  LeaseManager.take_over
    tickets   CommandGate.pending()     (failsafe)     kept                                  CommandGate.take_over
    users     UserStore.rows()          (scada.users)  UserStore.replace_all (at once:       —
                                                       a user created there logs in here)
    sessions  TokenManager.snapshot()   (server.auth)  kept                                  TokenManager.take_over
    logins    LoginThrottle.snapshot()  (scada.throttle) LoginThrottle.replace_all (at once:  —
                                                       failures and lock-outs count here too)
    crisis    crisis runs awaiting      (failsafe)     kept                                 CommandGate.take_over_groups
              their group approval                                                          + CrisisRunner.runs

    take_over: the leases replace the new active's own (none doubled, none lost), refreshed on their own
    schedule from the first write the fence allows, ended at their own end; an approval awaited survives
    (approvable here), a select-before-operate window is cancelled with its audit row (select again); every
    session stays open (the console is not asked for its password again); a crisis plan run awaiting its group
    approval is approvable here, its deferred steps then run on this server.

The command audit log and the work-order store are not snapshots: they are copied entry by entry on the
stream itself (server.ha.follower: AuditLog.append_copied, WorkOrderStore.commit of the active's changes, with
the photo files those changes name).
Session keys are the tokens' SHA-256 (server.auth): no usable token crosses the stream; the users' argon2
hashes do, on the pair's authenticated stream (TLS when the API has it).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from failsafe.crisis import CrisisRun, StepLog
from failsafe.gate import GroupApproval
from failsafe.types import CommandRequest, Principal, Ticket, TicketState

if TYPE_CHECKING:
    from server.app import ScadaServer

log = logging.getLogger(__name__)

Json = dict[str, Any]


# ---------------------------------------------------------------------- tickets as JSON
def _principal(p: Principal) -> Json:
    return {"name": p.name, "roles": sorted(p.roles), "workstation": p.workstation,
            "authenticated": p.authenticated, "session": p.session}


def _principal_of(d: Json) -> Principal:
    return Principal(str(d["name"]), frozenset(d["roles"]), str(d["workstation"]), bool(d["authenticated"]),
                     str(d["session"]))


def ticket_json(t: Ticket) -> Json:
    r = t.request
    return {"id": t.id, "type": t.type, "safety": t.safety, "mass": t.mass, "state": t.state.value,
            "created": t.created, "deadline": t.deadline, "approved_at": t.approved_at,
            "approver": _principal(t.approver) if t.approver is not None else None,
            "request": {"verb": r.verb, "targets": list(r.targets), "user": _principal(r.user),
                        "params": dict(r.params), "lease_s": r.lease_s, "until": r.until, "note": r.note,
                        "approval": r.approval, "crisis": r.crisis}}


def ticket_of(d: Json) -> Ticket:
    r = d["request"]
    request = CommandRequest(str(r["verb"]), tuple(r["targets"]), _principal_of(r["user"]), dict(r["params"]),
                             r["lease_s"], r["until"], str(r["note"]), r["approval"], r["crisis"])
    return Ticket(str(d["id"]), request, str(d["type"]), str(d["safety"]), bool(d["mass"]),
                  TicketState(d["state"]), float(d["created"]), d["deadline"],
                  _principal_of(d["approver"]) if d["approver"] is not None else None, d["approved_at"])


# ---------------------------------------------------------------------- crisis runs awaiting a group approval
_STEP_FIELDS = ("index", "target", "verb", "params", "outcome", "reason", "ticket", "needs_approval", "writes",
                "started", "finished")


def crisis_json(run: CrisisRun, group: GroupApproval) -> Json:
    return {"run": {"id": run.id, "plan": run.plan, "user": _principal(run.user), "dry_run": run.dry_run,
                    "started": run.started, "state": run.state, "approval": run.approval,
                    "steps": [{k: getattr(s, k) for k in _STEP_FIELDS} for s in run.steps]},
            "group": {"id": group.id, "requester": _principal(group.requester), "subject": group.subject,
                      "created": group.created}}


def crisis_of(d: Json) -> tuple[CrisisRun, GroupApproval]:
    r, g = d["run"], d["group"]
    run = CrisisRun(str(r["id"]), str(r["plan"]), _principal_of(r["user"]), bool(r["dry_run"]), float(r["started"]),
                    str(r["state"]), r["approval"], steps=[StepLog(**{k: s[k] for k in _STEP_FIELDS})
                                                           for s in r["steps"]])
    return run, GroupApproval(str(g["id"]), _principal_of(g["requester"]), str(g["subject"]), float(g["created"]))


# ---------------------------------------------------------------------- the active's side
def snapshot(server: ScadaServer) -> Json:
    """The state the standby keeps (module docstring). Taken after reading the audit log's tip: every audit row
    up to that tip describes a change this snapshot already holds (the stores change first, then audit)."""
    fs = server.failsafe()
    crisis: list[Json] | None = None
    if fs is not None:
        groups = {g.id: g for g in fs.gate.pending_groups()}
        crisis = [crisis_json(run, groups[run.approval]) for run in list(fs.crisis.runs.values())
                  if run.state == "awaiting_approval" and run.approval in groups]
    return {"leases": fs.leases.snapshot() if fs is not None else None,
            "tickets": [ticket_json(t) for t in fs.gate.pending()] if fs is not None else None,
            "crisis": crisis,
            "users": server.users.rows(),
            "sessions": server.tokens.snapshot(),
            "logins": server.limiter.throttle.snapshot()}


# ---------------------------------------------------------------------- the standby's side
class Replica:
    """The standby's copy of the active's state (module docstring): users and the login throttle applied at once,
    the rest at takeover."""

    def __init__(self, server: ScadaServer) -> None:
        self.server = server
        self.state: Json | None = None
        self.state_taken: Json = {}  # what the last takeover went on with (for /ha and the tests)
        self._users: Any = None
        self._logins: Json | None = None  # the active's login throttle as last applied here

    def apply(self, state: Json) -> None:
        """A snapshot from the active (in a worker thread: the users' store writes)."""
        users = state.get("users")
        if users is not None and users != self._users:
            self.server.users.replace_all(users)
            self._users = users
        logins = state.get("logins")
        if logins is not None and logins != self._logins:  # at once: a failure there counts here (a takeover
            # hands an attacker no fresh attempts); what this server counted itself stays
            self.server.limiter.throttle.replace_all(logins, self._logins)
            self._logins = logins
        self.state = state

    def take_over(self, not_before: float) -> dict[str, int]:
        """This server became active: go on with the old active's leases, approvals and sessions.
        ``not_before``: epoch seconds of the first field write the fence allows. Returns what was taken."""
        state, self.state = self.state, None
        if state is None:
            return {}
        self.state_taken = state
        out: dict[str, int] = {}
        fs = self.server.failsafe()
        if fs is not None and state.get("leases") is not None:
            fs.leases.take_over(state["leases"], not_before)
            out["leases"] = sum(1 for d in state["leases"] if d.get("state") == "active")
        if fs is not None and state.get("tickets") is not None:
            tickets = [ticket_of(d) for d in state["tickets"]]
            cancelled = fs.gate.take_over(tickets, "failover takeover")
            out["approvals"] = len(tickets) - len(cancelled)
            out["select_windows_cancelled"] = len(cancelled)
        if fs is not None and state.get("crisis"):
            runs = [crisis_of(d) for d in state["crisis"]]
            fs.gate.take_over_groups([g for _, g in runs])
            for run, _ in runs:
                fs.crisis.runs.setdefault(run.id, run)
            out["crisis_approvals"] = len(runs)
        if state.get("sessions") is not None:
            self.server.tokens.take_over(state["sessions"])
            out["sessions"] = len(state["sessions"])
        log.info("takeover: went on with the old active's %s", out)
        return out
