"""Small shared types of the fail-safe layer: who asks, what is asked, what came of it, and the ports.

Ports (the fail-safe layer imports no driver; the server plugs the real ones in)::

    Writer        async write(tag, value, *, tolerance=None) -> None
                                                       raises DriverError; the driver reads back
                                                       (a DeviceError carrying ``.sample`` = the device
                                                       took it but shows something else: not confirmed)
                  async read(tag) -> Sample            a live read of one point
    StateReader   read(name) -> Sample                 the tag database (latest polled value)
    AlarmSink     (FailsafeAlarm) -> None              the server forwards to the alarm engine
    Clock         () -> float                          epoch seconds (injectable: tests use a fake clock)

Outcomes (as the design asks, every command returns one explicitly)::

    done            written and confirmed by read-back within the type's timeout
    rejected        refused by the gate; ``reason`` names the first failed step
    failed          the write raised (device unreachable, device error)
    not_confirmed   written, but the read-back never matched: an alarm is raised
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from scada.config.model import TagDef
from scada.errors import Refusal
from scada.quality import Sample, Value

Clock = Callable[[], float]


def system_clock() -> float:
    return time.time()


@runtime_checkable
class Writer(Protocol):
    """What the gate needs from the drivers (the server adapts drivers/registry to this)."""

    async def write(self, tag: TagDef, value: Value, *, tolerance: float | None = None) -> None: ...

    async def read(self, tag: TagDef) -> Sample: ...


class StateReader(Protocol):
    """Latest known value of a tag (scada.tagdb.TagDatabase satisfies it)."""

    def read(self, name: str) -> Sample: ...


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated user as the server hands it over (the gate never sees passwords).

    ``authenticated`` is what the server's session check said; the gate refuses anything else.
    Build it from scada.users.User: ``Principal(u.name, frozenset({u.role}), workstation=...)``.
    """

    name: str
    roles: frozenset[str]
    workstation: str = ""
    authenticated: bool = True
    session: str = ""


#: The field-safety monitor's own identity: it may only ask for flash (role ``monitor``).
MONITOR = Principal("field-safety-monitor", frozenset({"monitor"}), workstation="failsafe.monitor")


@dataclass(frozen=True, slots=True)
class CommandRequest:
    """One operator request: a verb on one or more targets of the same type."""

    verb: str
    targets: tuple[str, ...]
    user: Principal
    params: Mapping[str, Value] = field(default_factory=dict)
    lease_s: float | None = None  # requested lease duration (capped per type); None = the type's default
    until: float | None = None  # or an end time (epoch s): "set level L until T"
    note: str = ""  # the operator's reason, journalled
    approval: str | None = None  # id of a granted group approval (crisis plans) instead of a per-ticket one
    crisis: str | None = None  # crisis plan run this command belongs to


class Outcome(enum.StrEnum):
    DONE = "done"
    REJECTED = "rejected"
    FAILED = "failed"
    NOT_CONFIRMED = "not_confirmed"


class TicketState(enum.StrEnum):
    AWAITING_APPROVAL = "awaiting_approval"
    SELECTED = "selected"  # critical type: targets reserved for the user, operate before the deadline
    READY = "ready"  # non-critical type: operate before the deadline
    EXECUTING = "executing"
    FINISHED = "finished"  # see Ticket.outcome
    EXPIRED = "expired"  # approval or select window passed
    CANCELLED = "cancelled"

    @property
    def pending(self) -> bool:
        return self in (TicketState.AWAITING_APPROVAL, TicketState.SELECTED, TicketState.READY)


@dataclass(frozen=True, slots=True)
class TargetResult:
    target: str
    outcome: Outcome
    reason: str = ""
    previous: Mapping[str, Value] = field(default_factory=dict)
    requested: Mapping[str, Value] = field(default_factory=dict)


@dataclass(slots=True)
class Ticket:
    """A command's life in the gate: select → (approve) → operate → outcome. Mutated only by the gate."""

    id: str
    request: CommandRequest
    type: str
    safety: str  # increasing | neutral | reducing (as classified at select)
    mass: bool
    state: TicketState
    created: float
    deadline: float | None = None
    approver: Principal | None = None
    approved_at: float | None = None
    lease_end: float | None = None
    outcome: Outcome | None = None
    reason: str = ""
    results: tuple[TargetResult, ...] = ()

    @property
    def needs_approval(self) -> bool:
        return self.state is TicketState.AWAITING_APPROVAL

    def view(self) -> dict[str, object]:
        """A JSON-able summary for the API."""
        r = self.request
        return {
            "id": self.id, "type": self.type, "verb": r.verb, "targets": list(r.targets), "params": dict(r.params),
            "user": r.user.name, "workstation": r.user.workstation, "safety": self.safety, "mass": self.mass,
            "state": self.state.value, "created": self.created, "deadline": self.deadline,
            "approver": self.approver.name if self.approver else None, "lease_end": self.lease_end,
            "outcome": self.outcome.value if self.outcome else None, "reason": self.reason,
            "results": [{"target": t.target, "outcome": t.outcome.value, "reason": t.reason,
                         "previous": dict(t.previous), "requested": dict(t.requested)} for t in self.results],
        }


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What operate/execute return: the explicit outcome, with the reason at the first failure."""

    ticket: str
    outcome: Outcome | None  # None while the ticket is still pending (awaiting approval)
    reason: str = ""
    results: tuple[TargetResult, ...] = ()
    lease_end: float | None = None
    state: TicketState = TicketState.FINISHED
    #: why a rejected command was rejected, as a code (e.g. NOT_FOUND for an unknown ticket): callers match
    #: this, never ``reason``'s text; None when not rejected
    code: Refusal | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.DONE


@dataclass(frozen=True, slots=True)
class FailsafeAlarm:
    """An alarm raised by the fail-safe layer; the server forwards it to the alarm engine.

    ``key`` is stable per condition (``failsafe/J001/conflicting_green``) so repeated raises are one alarm.
    ``active=False`` clears a non-latched alarm.
    """

    key: str
    equipment: str
    priority: int
    message: str
    latched: bool = False
    active: bool = True
    ts: float = 0.0


AlarmSink = Callable[[FailsafeAlarm], None]


def no_alarms(alarm: FailsafeAlarm) -> None:
    """Default sink: alarms are only logged (the server connects the alarm engine)."""
