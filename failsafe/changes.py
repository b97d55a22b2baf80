"""The safety configuration under change control: what a reload changes in it, and its second-person approval.

The safety configuration is everything in ``commands.yaml`` (the command vocabulary: verbs, parameter
limits, roles, interlocks, blast radius, rate limits, approval rules, crisis plans) and what the
field-safety monitor reads from it (compatibility matrices and layouts, samples before flash, conflict
colours), resolved against the city (a junction's inventory ``layout`` column picks its matrix)::

    running Vocabulary + city ──┐
                                ├─ safety_diff() ─► ["J004 layout: pairs (1,3) (1,4) (2,3) (2,4) now compatible",
    new Vocabulary + new city ──┘                    "verb lighting_cabinet.set_level: parameter level max 100 → 80"]
                                                     (empty: nothing safety-related changed, apply at once)

    ChangeControl (one per server; survives the reloads it controls)
      request(requester, diff, fingerprint) ─► ConfigChange awaiting_approval (deadline = the running
      │                                        vocabulary's approval window); a newer request supersedes it
      ├─ approve(id, approver, gate)   a different user with one of the running vocabulary's approver roles
      │                                (CommandGate.approver_problem, the rule of critical commands); the
      │                                caller then re-validates the files and settles it: applied / refused
      ├─ reject(id, user, gate)        its requester or an approver drops it
      └─ sweep(gate)                   past its deadline: expired

    every step ─► the fail-safe layer's audit log (config_change_request / _approval / _applied / _refused /
                  _rejected / _timeout / _superseded); the server adds its audit trail and the journal

Junctions added or removed by the inventory are not listed: a new junction comes with its monitor
matrix (more watching, not less), a removed one has nothing left to watch. Nothing here reads files or
applies anything: the server validates, diffs and applies (``server.app``).
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from failsafe.gate import CommandGate
from failsafe.types import Principal
from failsafe.vocabulary import CompatibilityMatrix, Condition, TypePolicy, VerbSpec, Vocabulary, WriteSpec
from scada.config.model import CityConfig
from scada.errors import CommandRejected, Refusal, StorageError

log = logging.getLogger(__name__)

__all__ = ["ChangeControl", "ConfigChange", "matrix_diff", "safety_diff"]

KEEP_DECIDED = 200  # decided changes kept for the list (the audit log is the record)


# ---------------------------------------------------------------------------------------------- the diff
def _fmt(v: Any) -> str:
    """A value as an engineer reads it in a diff line."""
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return f"{v:g}"
    if isinstance(v, (set, frozenset)):
        return "{" + ", ".join(sorted(_fmt(x) for x in v)) + "}" if v else "none"
    if isinstance(v, WriteSpec):
        return f"{v.tag}={_fmt(v.value)}" + (f" (±{v.tolerance:g})" if v.tolerance is not None else "")
    if isinstance(v, Condition):
        return v.describe()
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{k}: {_fmt(x)}" for k, x in sorted(v.items(), key=lambda kv: str(kv[0]))) + "}"
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return ", ".join(f"{f.name} {_fmt(getattr(v, f.name))}" for f in dataclasses.fields(v))
    return str(v)


def _change(label: str, old: Any, new: Any) -> list[str]:
    """``label old → new`` when they differ (sets: what was added and removed)."""
    if old == new:
        return []
    if isinstance(old, frozenset) and isinstance(new, frozenset):
        parts = [f"+{_fmt(x)}" for x in sorted(new - old, key=str)]
        parts += [f"-{_fmt(x)}" for x in sorted(old - new, key=str)]
        return [f"{label} {' '.join(parts)}"]
    return [f"{label} {_fmt(old)} → {_fmt(new)}"]


def _pairs(pairs: Iterable[frozenset[int]]) -> str:
    return " ".join(f"({a},{b})" for a, b in sorted(tuple(sorted(p)) for p in pairs))


def matrix_diff(old: CompatibilityMatrix, new: CompatibilityMatrix) -> str:
    """``pairs (1,3) (2,4) now compatible; pairs (1,2) now conflicting; phases 4 → 8`` ('' if the same)."""
    parts: list[str] = []
    if old.phases != new.phases:
        parts.append(f"phases {old.phases} → {new.phases}")
    if new.permissive - old.permissive:
        parts.append(f"pairs {_pairs(new.permissive - old.permissive)} now compatible")
    if old.permissive - new.permissive:
        parts.append(f"pairs {_pairs(old.permissive - new.permissive)} now conflicting")
    return "; ".join(parts)


def _fields(who: str, old: Any, new: Any, labels: Mapping[str, str]) -> list[str]:
    out: list[str] = []
    for attr, label in labels.items():
        out += _change(f"{who}: {label}", getattr(old, attr), getattr(new, attr))
    return out


_TYPE_FIELDS = {"critical": "critical", "select_timeout_s": "select timeout (s)",
                "confirm_timeout_s": "confirm timeout (s)", "lease_default_s": "default lease (s)",
                "lease_max_s": "maximum lease (s)", "refresh_s": "lease refresh (s)", "heartbeat": "heartbeat",
                "blast": "blast radius", "roles": "roles", "constants": "constants"}
_VERB_FIELDS = {"safety": "safety", "increasing_when": "increasing when", "roles": "roles", "lease": "lease",
                "writes": "writes", "refresh": "refresh writes", "release": "release writes", "confirm": "confirm"}
_PARAM_FIELDS = ("type", "min", "max", "max_length", "choices")


def _verb_diff(who: str, old: VerbSpec, new: VerbSpec) -> list[str]:
    out = _fields(who, old, new, _VERB_FIELDS)
    for name in sorted(set(old.params) | set(new.params)):
        po, pn = old.params.get(name), new.params.get(name)
        if po is None:
            out.append(f"{who}: new parameter {name}")
        elif pn is None:
            out.append(f"{who}: parameter {name} removed")
        else:
            for attr in _PARAM_FIELDS:
                label = f"{who}: parameter {name} {attr.replace('_', ' ')}"
                out += _change(label, getattr(po, attr), getattr(pn, attr))
    return out


def _type_diff(name: str, old: TypePolicy, new: TypePolicy) -> list[str]:
    out = _fields(f"type {name}", old, new, _TYPE_FIELDS)
    for vn in sorted(set(old.verbs) | set(new.verbs)):
        vo, vnew = old.verbs.get(vn), new.verbs.get(vn)
        if vo is None:
            out.append(f"verb {name}.{vn}: new verb (safety {vnew.safety if vnew else '?'})")
        elif vnew is None:
            out.append(f"verb {name}.{vn}: removed")
        else:
            out += _verb_diff(f"verb {name}.{vn}", vo, vnew)
    io = {i.name: i for i in old.interlocks}
    inew = {i.name: i for i in new.interlocks}
    for iname in sorted(set(io) | set(inew)):
        a, b = io.get(iname), inew.get(iname)
        who = f"interlock {name}.{iname}"
        if a is None:
            out.append(f"{who}: new interlock on {_fmt(b.verbs) if b else '?'}")
        elif b is None:
            out.append(f"{who}: removed (was on {_fmt(a.verbs)}: {a.reason})")
        else:
            out += _fields(who, a, b, {"verbs": "verbs", "when": "when", "refuse_if": "refuse if",
                                       "require_param": "required parameter", "require_at_least": "at least",
                                       "reason": "reason"})
    return out


def _junctions_of(city: CityConfig | None, vocab: Vocabulary) -> set[str]:
    if city is not None:
        return {e.id for e in city.equipment.values() if e.template == "junction"}
    return set(vocab.matrices)


def safety_diff(old: Vocabulary | None, new: Vocabulary | None, old_city: CityConfig | None = None,
                new_city: CityConfig | None = None) -> list[str]:
    """Every change of the safety configuration from (``old``, ``old_city``) to (``new``, ``new_city``), one
    readable line each; empty when nothing safety-related changed. Line numbers and file names are not
    changes."""
    if new is None:
        return [] if old is None else \
            ["command vocabulary: removed (every command refused, the field-safety monitor stopped)"]
    if old is None:
        return [f"command vocabulary: introduced ({len(new.types)} commandable types)"]
    out: list[str] = []
    out += _change("approval: window (s)", old.approval_window_s, new.approval_window_s)
    out += _change("approval: approver roles", old.approver_roles, new.approver_roles)
    out += _change("rate limits: per user per minute", old.rate_per_user, new.rate_per_user)
    out += _change("rate limits: global per minute", old.rate_global, new.rate_global)
    out += _change("crisis roles:", old.crisis_roles, new.crisis_roles)
    out += _change("monitor: samples before flash", old.samples_before_flash, new.samples_before_flash)
    out += _change("monitor: conflict colours", old.conflict_colours, new.conflict_colours)
    for name in sorted(set(old.types) | set(new.types)):
        to, tn = old.types.get(name), new.types.get(name)
        if to is None:
            out.append(f"type {name}: now commandable (verbs {', '.join(tn.verbs) if tn else ''})")
        elif tn is None:
            out.append(f"type {name}: no longer commandable")
        else:
            out += _type_diff(name, to, tn)
    for name in sorted(set(old.layouts) | set(new.layouts)):
        lo, ln = old.layouts.get(name), new.layouts.get(name)
        if lo is None or ln is None:
            out.append(f"layout {name}: {'new' if lo is None else 'removed'}")
        elif d := matrix_diff(lo, ln):
            out.append(f"layout {name}: {d}")
    if d := matrix_diff(old.default_matrix, new.default_matrix):
        out.append(f"default matrix: {d}")
    by_change: dict[str, list[str]] = {}  # one line per distinct change (a layout edit moves many junctions)
    for jid in sorted(_junctions_of(old_city, old) & _junctions_of(new_city, new)):
        if d := matrix_diff(old.matrix_for(jid), new.matrix_for(jid)):
            by_change.setdefault(d, []).append(jid)
    for d, jids in by_change.items():
        shown = " ".join(jids[:10]) + (f" (+{len(jids) - 10} more)" if len(jids) > 10 else "")
        out.append(f"{shown} layout: {d}")
    for name in sorted(set(old.crisis_plans) | set(new.crisis_plans)):
        po, pn = old.crisis_plans.get(name), new.crisis_plans.get(name)
        if po is None or pn is None:
            out.append(f"crisis plan {name}: {'new' if po is None else 'removed'}")
        else:
            out += _fields(f"crisis plan {name}", po, pn, {"description": "description", "steps": "steps",
                                                           "lease_s": "lease (s)", "roles": "roles"})
    return out


# ---------------------------------------------------------------------------------------------- approval
@dataclass(slots=True)
class ConfigChange:
    """A reload that changes the safety configuration, waiting for a second person."""

    id: str
    requester: Principal
    created: float
    deadline: float
    diff: tuple[str, ...]
    fingerprint: str  # of the files as validated: the approval applies exactly those
    summary: str = ""  # the rest of the reload (devices, equipment, tags), for the approver
    state: str = "awaiting_approval"  # applied | refused | rejected | expired | superseded
    decided_by: str | None = None
    decided_at: float | None = None
    reason: str = ""

    @property
    def pending(self) -> bool:
        return self.state == "awaiting_approval"

    def view(self) -> dict[str, Any]:
        return {"id": self.id, "state": self.state, "requester": self.requester.name,
                "workstation": self.requester.workstation, "created": self.created, "deadline": self.deadline,
                "diff": list(self.diff), "summary": self.summary, "decided_by": self.decided_by,
                "decided_at": self.decided_at, "reason": self.reason}


class ChangeControl:
    """Pending safety-configuration changes (see the module docstring). The rules and the clock come from the
    running fail-safe layer's gate, passed to each call: the gate of the configuration in force decides."""

    def __init__(self, on_decided: Callable[[ConfigChange], None] | None = None) -> None:
        self._changes: dict[str, ConfigChange] = {}
        self.on_decided = on_decided  # rejected, expired, superseded: the server journals them too

    # ------------------------------------------------------------------ queries
    def get(self, change_id: str, gate: CommandGate | None = None) -> ConfigChange | None:
        if gate is not None:
            self.sweep(gate)
        return self._changes.get(change_id)

    def pending(self, gate: CommandGate | None = None) -> list[ConfigChange]:
        if gate is not None:
            self.sweep(gate)
        return [c for c in self._changes.values() if c.pending]

    def changes(self, gate: CommandGate | None = None) -> list[ConfigChange]:
        """Every change still held, newest first."""
        if gate is not None:
            self.sweep(gate)
        return sorted(self._changes.values(), key=lambda c: c.created, reverse=True)

    # ------------------------------------------------------------------ steps
    def request(self, requester: Principal, diff: Iterable[str], fingerprint: str, gate: CommandGate,
                summary: str = "") -> ConfigChange:
        """Record a change awaiting approval. The same files requested again give the same pending change; other
        files supersede it (the files on disk are one state: only the newest request can be applied)."""
        self.sweep(gate)
        for old in self.pending():
            if old.fingerprint == fingerprint:
                return old
        now = gate.clock()
        change = ConfigChange(uuid.uuid4().hex[:12], requester, now, now + gate.vocab.approval_window_s,
                              tuple(diff), fingerprint, summary)
        self._append(gate, "config_change_request", change, user=requester.name, workstation=requester.workstation)
        for old in self.pending():
            self._decide(gate, old, "superseded", requester.name, f"superseded by change {change.id}")
        self._changes[change.id] = change
        self._prune()
        return change

    def approve(self, change_id: str, approver: Principal, gate: CommandGate) -> ConfigChange:
        """Second-person approval; raises CommandRejected with the reason. The caller then re-validates the
        files and calls :meth:`settle` (applied or refused)."""
        change = self._open(change_id, gate, "approve")
        why = gate.approver_problem(change.requester, approver)
        if why:
            self._append(gate, "config_change_refusal", change, step="approval", approver=approver.name,
                         approver_workstation=approver.workstation, reason=why, must=False)
            raise CommandRejected(f"approval: {why}")
        self._append(gate, "config_change_approval", change, approver=approver.name,
                     approver_workstation=approver.workstation)
        change.decided_by, change.decided_at, change.state = approver.name, gate.clock(), "approved"
        return change

    def settle(self, change: ConfigChange, gate: CommandGate | None, applied: bool, reason: str = "") -> None:
        """After an approval: the configuration was applied, or refused (files changed since, invalid now...)."""
        change.state = "applied" if applied else "refused"
        change.reason = reason
        if gate is not None:
            self._append(gate, "config_change_applied" if applied else "config_change_refused", change,
                         approver=change.decided_by, reason=reason or None, must=False)

    def reject(self, change_id: str, user: Principal, gate: CommandGate) -> ConfigChange:
        """Drop a pending change: its requester or an approver may."""
        change = self._open(change_id, gate, "reject")
        if user.name != change.requester.name and not (user.roles & gate.vocab.approver_roles):
            raise CommandRejected(f"reject: {user.name} may not reject {change.requester.name}'s change; needs one "
                                  f"of {', '.join(sorted(gate.vocab.approver_roles))} or to be its requester")
        self._decide(gate, change, "rejected", user.name, f"rejected by {user.name}")
        return change

    def sweep(self, gate: CommandGate) -> None:
        now = gate.clock()
        for change in list(self._changes.values()):
            if change.pending and now > change.deadline:
                self._decide(gate, change, "expired", None,
                             f"no second-person approval within {change.deadline - change.created:g} s")

    # ------------------------------------------------------------------ helpers
    def _open(self, change_id: str, gate: CommandGate, step: str) -> ConfigChange:
        self.sweep(gate)
        change = self._changes.get(change_id)
        if change is None:
            raise CommandRejected(f"{step}: unknown configuration change {change_id!r}", Refusal.NOT_FOUND)
        if not change.pending:
            raise CommandRejected(f"{step}: configuration change {change_id} is {change.state}"
                                  + (f" ({change.reason})" if change.reason else ""))
        return change

    def _decide(self, gate: CommandGate, change: ConfigChange, state: str, by: str | None, reason: str) -> None:
        change.state, change.decided_by, change.decided_at, change.reason = state, by, gate.clock(), reason
        self._append(gate, f"config_change_{'timeout' if state == 'expired' else state}", change, user=by,
                     reason=reason, must=False)
        if self.on_decided is not None:
            try:
                self.on_decided(change)
            except Exception:  # the decision stands (it is in the audit log); the listener's failure is logged
                log.exception("configuration change %s: listener failed", change.id)

    @staticmethod
    def _append(gate: CommandGate, kind: str, change: ConfigChange, must: bool = True, **extra: Any) -> None:
        """Write to the fail-safe audit log; a request or approval that cannot be written does not count."""
        fields: dict[str, Any] = {"change": change.id, "requester": change.requester.name, "diff": list(change.diff),
                                  "fingerprint": change.fingerprint, "deadline": change.deadline}
        fields.update({k: v for k, v in extra.items() if v is not None})
        try:
            gate.audit.append(kind, **fields)
        except StorageError as exc:
            if must:
                raise CommandRejected(f"audit: the audit log cannot be written ({exc})") from exc

    def _prune(self) -> None:
        decided = [c for c in self._changes.values() if not c.pending]
        for c in sorted(decided, key=lambda c: c.created)[: max(0, len(decided) - KEEP_DECIDED)]:
            del self._changes[c.id]
