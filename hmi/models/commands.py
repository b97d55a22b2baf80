"""Command dialogs through the fail-safe gate, as pure logic (vocabulary → form → steps → outcome).

    GET /commands/vocabulary ──verbs_for(template)──► VerbForm (params, lease, safety, roles)
                                   │ why_disabled(session)   → tooltip of a disabled button
                                   │ summary()               → "what will be sent"
                                   │ steps()                 → select / approval / operate / read-back
                                   ▼
    POST /commands {target, verb, params, lease_s, comment} ─► ticket view {id, state, outcome, reason...}
                                   │ describe(ticket)        → what the operator sees, and the next step
                                   ▼
    state: awaiting_approval ─(supervisor approves)─► selected|ready ─(operate)─► executing ─► finished
           outcome: done | rejected (why) | failed (why) | not_confirmed (read-back did not match)

The gate decides everything; this module only words it. A supervisor's approval inbox lists
``GET /commands?pending=true`` (:func:`approvals_from`; from the audit history on older servers).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from hmi.models.journal import word
from hmi.models.live import Session
from scada.format import duration, number, timestamp
from scada.i18n import N_, _, localise


@dataclass(frozen=True, slots=True)
class ParamSpec:
    name: str
    type: str  # int | float | str | bool
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] | None = None


@dataclass(frozen=True, slots=True)
class VerbForm:
    template: str
    verb: str
    safety: str  # increasing | neutral | reducing
    roles: frozenset[str]
    lease: str | None  # "end" = this verb ends the lease
    params: tuple[ParamSpec, ...]
    critical: bool  # select-before-operate
    select_timeout_s: float | None
    lease_default_s: float | None
    lease_max_s: float | None
    approval_window_s: float = 120.0
    approver_roles: frozenset[str] = field(default_factory=frozenset)

    @property
    def title(self) -> str:
        """The verb in words, in the console's language (``select_plan`` → fr "choisir le plan")."""
        return _(VERB_TITLES[self.verb]) if self.verb in VERB_TITLES else self.verb.replace("_", " ")

    @property
    def has_lease(self) -> bool:
        return self.lease != "end" and self.lease_default_s is not None

    @property
    def needs_approval(self) -> bool:
        return self.safety == "reducing"


def verbs_for(vocab: dict[str, Any], template: str) -> list[VerbForm]:
    t = (vocab.get("types") or {}).get(template)
    if not t:
        return []
    out = []
    for name, v in (t.get("verbs") or {}).items():
        params = tuple(ParamSpec(pn, str(ps.get("type", "str")), ps.get("min"), ps.get("max"),
                                 tuple(ps["choices"]) if ps.get("choices") else None)
                       for pn, ps in (v.get("params") or {}).items())
        out.append(VerbForm(template, name, str(v.get("safety") or "neutral"), frozenset(v.get("roles") or []),
                            v.get("lease"), params, bool(t.get("critical")), t.get("select_timeout_s"),
                            t.get("lease_default_s"), t.get("lease_max_s"),
                            float(vocab.get("approval_window_s") or 120.0),
                            frozenset(vocab.get("approver_roles") or [])))
    return out


#: the verbs of commands.yaml in words (English msgids); a verb not listed reads as its name
VERB_TITLES = {"select_plan": N_("select plan"), "flash": N_("flash"), "adopt": N_("adopt"),
               "return_to_local": N_("return to local"), "set_level": N_("set level"),
               "return_to_schedule": N_("return to schedule"), "lower": N_("lower"), "raise": N_("raise"),
               "show_message": N_("show message"), "arm_intrusion": N_("arm intrusion"),
               "disarm_intrusion": N_("disarm intrusion"), "mission": N_("mission")}
#: their parameters
PARAM_TITLES = {"plan": N_("plan"), "pattern": N_("pattern"), "level": N_("level"), "command": N_("command"),
                "text": N_("text"), "request": N_("request"), "mission": N_("mission")}


def param_title(name: str) -> str:
    return _(PARAM_TITLES[name]) if name in PARAM_TITLES else name.replace("_", " ")


def why_disabled(form: VerbForm, session: Session, gate_status: str = "ok") -> str:
    """Empty when the user may try this command, else why not (the gate still checks everything)."""
    if gate_status not in ("ok", "degraded"):
        return _("commands unavailable: fail-safe gate {status}").format(status=word(gate_status))
    if not session.logged_in:
        return _("log in to send commands")
    if not session.can("command.operate"):
        return session.why_not("command.operate", _("send commands"))
    if form.roles and session.role not in form.roles:
        return _("your role '{role}' may not {verb} (needs {roles})").format(
            role=word(session.role), verb=form.title, roles=", ".join(sorted(word(r) for r in form.roles)))
    return ""


def check_params(form: VerbForm, values: dict[str, Any]) -> list[str]:
    problems = []
    for p in form.params:
        v = values.get(p.name)
        if v is None or v == "":
            problems.append(_("{param}: required").format(param=param_title(p.name)))
            continue
        if p.type in ("int", "float") and isinstance(v, (int, float)):
            if p.min is not None and v < p.min:
                problems.append(_("{param}: at least {min}, got {value}").format(
                    param=param_title(p.name), min=number(p.min), value=number(v)))
            if p.max is not None and v > p.max:
                problems.append(_("{param}: at most {max}, got {value}").format(
                    param=param_title(p.name), max=number(p.max), value=number(v)))
        if p.choices and v not in p.choices:
            problems.append(_("{param}: one of {choices}, got {value}").format(
                param=param_title(p.name), choices=", ".join(map(str, p.choices)), value=repr(v)))
    return problems


def fmt_duration(s: float | None) -> str:
    """A lease or a window for people (:func:`scada.format.duration`: "15 min", "12 h 00"); "—" when none."""
    return "—" if s is None else duration(float(s))


def summary(form: VerbForm, targets: list[str], values: dict[str, Any], lease_s: float | None) -> list[str]:
    """What will be sent, in words (shown before anything is sent); ``targets`` as the console names them
    (``"J001 — Carrefour …"``)."""
    lines = [_("Command: {verb} on {targets}").format(verb=form.title, targets=", ".join(targets))]
    if values:
        lines.append(_("Parameters: {values}").format(values=", ".join(
            f"{param_title(k)} = {number(v) if isinstance(v, (int, float)) else v}" for k, v in values.items())))
    if form.lease == "end":
        lines.append(_("Lease: ends the current lease; the equipment returns to local control"))
    elif form.has_lease:
        lines.append(_("Lease: {lease} (max {max}); when it expires or the centre is lost the equipment returns to "
                       "local operation").format(lease=fmt_duration(lease_s or form.lease_default_s),
                                                 max=fmt_duration(form.lease_max_s)))
    lines.append({"increasing": _("Safety: increasing (never blocked by approval)"),
                  "reducing": _("Safety: reducing — a supervisor must approve"),
                  }.get(form.safety, _("Safety: neutral")))
    return lines


def steps(form: VerbForm) -> list[str]:
    out = ["1. " + _("Request sent to the fail-safe gate (roles, interlocks, rate limits checked)")]
    n = 2
    if form.needs_approval:
        out.append(f"{n}. " + _("Second person: a supervisor approves within {window}").format(
            window=fmt_duration(form.approval_window_s)))
        n += 1
    if form.critical:
        out.append(f"{n}. " + _("Select-before-operate: the equipment is reserved; press Operate within "
                                "{window}").format(window=fmt_duration(form.select_timeout_s)))
        n += 1
    out.append(f"{n}. " + _("Write to the field, then read-back confirmation"))
    out.append(f"{n + 1}. " + _("Outcome: done / rejected (why) / failed / not confirmed"))
    return out


def request_body(form: VerbForm, targets: list[str], values: dict[str, Any], lease_s: float | None,
                 comment: str = "") -> dict[str, Any]:
    body: dict[str, Any] = {"target": targets[0], "verb": form.verb, "params": dict(values), "comment": comment}
    if len(targets) > 1:
        body["targets"] = list(targets)
    if form.has_lease and lease_s:
        body["lease_s"] = float(lease_s)
    return body


@dataclass(frozen=True, slots=True)
class TicketText:
    state: str
    headline: str  # what the operator reads
    final: bool
    next_action: str | None  # "operate" | "wait_approval" | "wait" | None
    outcome: str | None


OUTCOME_TEXT = {"done": N_("DONE — confirmed by read-back"), "rejected": N_("REJECTED"), "failed": N_("FAILED"),
                "not_confirmed": N_("NOT CONFIRMED — the read-back did not match")}  # shown through _()


def describe(ticket: dict[str, Any]) -> TicketText:
    state = str(ticket.get("state") or "")
    outcome = ticket.get("outcome")
    reason = str(ticket.get("reason") or "")
    if outcome:
        head = _(OUTCOME_TEXT[str(outcome)]) if str(outcome) in OUTCOME_TEXT else str(outcome).upper()
        if reason and outcome != "done":
            head += f": {localise(reason)}"
        lease = ticket.get("lease_end")
        if outcome == "done" and isinstance(lease, (int, float)):  # epoch seconds: shown on the site's clock
            head += " " + _("(lease until {time})").format(time=timestamp(int(lease * 1e9), date=False))
        return TicketText(state, head, True, None, str(outcome))
    if state == "awaiting_approval":
        return TicketText(state, _("Waiting for a supervisor's approval"), False, "wait_approval", None)
    if state in ("selected", "ready"):
        what = _("Selected: the equipment is reserved for you") if state == "selected" else _("Approved: ready")
        return TicketText(state, _("{what} — press Operate to send").format(what=what), False, "operate", None)
    if state == "executing":
        return TicketText(state, _("Executing: writing and waiting for the read-back"), False, "wait", None)
    if state == "expired":
        return TicketText(state, _("EXPIRED: the approval or select window passed; nothing was sent"), True, None,
                          None)
    if state == "cancelled":
        return TicketText(state, _("CANCELLED: nothing was sent"), True, None, None)
    return TicketText(state, state or _("unknown"), state == "finished", None, None)


def approvals_from(items: list[dict[str, Any]], now_s: float, window_s: float = 120.0) -> list[dict[str, Any]]:
    """Requests awaiting approval from ``GET /commands?pending=true`` (ticket views), or, from a server
    without that filter, derived from the audit history it returns instead (entries with a ``kind``)."""
    if any("kind" in e or ("ticket" in e and "id" not in e) for e in items):
        return pending_approvals(items, now_s, window_s)
    out = []
    for t in items:
        if str(t.get("state")) != "awaiting_approval":
            continue
        out.append({"ticket": str(t.get("id")), "ts": t.get("created"), "user": t.get("user"), "verb": t.get("verb"),
                    "target": list(t.get("targets") or []), "params": t.get("params"), "safety": t.get("safety"),
                    "deadline": t.get("deadline")})
    return out


def pending_approvals(history: Iterable[dict[str, Any]], now_s: float, window_s: float = 120.0) -> list[dict[str, Any]]:
    """Tickets whose latest audit entry says ``awaiting_approval`` and whose window is still open.

    ``history`` is ``GET /commands`` (newest first). Crisis-plan runs awaiting approval are included.
    """
    latest: dict[str, dict[str, Any]] = {}
    for e in history:
        tid = e.get("ticket") or e.get("id")
        if not tid or tid in latest:
            continue  # newest first: the first entry seen is the latest
        latest[str(tid)] = e
    out = []
    for tid, e in latest.items():
        if str(e.get("state")) != "awaiting_approval" and str(e.get("kind")) != "approval_request":
            continue
        ts = e.get("ts") or e.get("created")
        if isinstance(ts, (int, float)) and now_s - float(ts) > window_s:
            continue
        out.append({"ticket": tid, **e})
    return out
