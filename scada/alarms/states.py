"""The ISA-18.2 / IEC 62682 alarm state machine, as a pure function (no clock, no I/O).

One alarm is a :class:`Status`: the four ISA-18.2 process/acknowledge states plus orthogonal flags::

                    condition on                      acknowledge
        ┌────────┐ ─────────────► ┌─────────────┐ ─────────────► ┌─────────────┐
        │ NORMAL │                │    UNACK    │                │    ACKED    │
        │        │ ◄─┐            │ active,     │                │ active,     │
        └────────┘   │            │ unacked     │                │ acked       │
             ▲       │            └─────────────┘                └─────────────┘
             │       │ acknowledge       │ condition off                │ condition off
             │       │                   ▼                              │
             │     ┌───────────────────────┐   condition on (re-alarm)  │
             │     │ RTN_UNACK             │ ─────────► UNACK           │
             │     │ returned, unacked     │                            │
             │     └───────────────────────┘                            │
             └──────────────────────────────────────────────────────────┘

    Latched rules (``latched: true``): condition off does not leave the active state; the alarm is
    *held* (flag LATCHED) until an operator **reset**: held UNACK → RTN_UNACK, held ACKED → NORMAL.
    Condition on while held just clears the hold.

Orthogonal flags (each alarm is still evaluated and journalled whatever its flags, OPC UA Part 9 §4.8):

    shelving     NONE ─shelve(timed ≤ max, reason)──► TIMED ──time expired──► NONE (re-annunciates:
                  │                                    │                       an active ACKED alarm
                  └─shelve one-shot (active, reason)─► ONE_SHOT                becomes UNACK again)
                                                       └── ends when the alarm becomes inactive
                 unshelve: any shelving → NONE.  Priority-1 alarms cannot be shelved.
    suppressed   by design (the engine: the rule's ``suppressed_by`` alarm is present) and/or by an
                 operator (reason required, not priority 1); the two are independent bits.
    out of       operator with a work-order reference; return to service clears it.
    service

:func:`transition` returns the new :class:`Status` or a :class:`Refused` with the reason. Anything
not drawn above is refused: the table-driven test enumerates every (status, event) pair.
The vectorised engine does not re-implement these rules: it uses lookup tables generated from
:func:`transition` (:data:`ON_TABLE`, :data:`OFF_TABLE`, :data:`EXPIRE_TABLE`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from scada.i18n import N_

NS_PER_S = 1_000_000_000
DEFAULT_MAX_SHELVE_S = 8 * 3600.0  # AC-AL-04 (proposed): shelving ≤ 8 h unless the caller's policy says otherwise
DIAGNOSTIC = 5  # priority code of non-annunciated diagnostic events (1 critical .. 4 low)


class AlarmState(enum.IntEnum):
    """The ISA-18.2 states (the journal stores these codes)."""

    NORMAL = 0  # inactive, acknowledged
    UNACK = 1  # active, unacknowledged
    ACKED = 2  # active, acknowledged
    RTN_UNACK = 3  # returned to normal, unacknowledged

    @property
    def active(self) -> bool:
        return self in (AlarmState.UNACK, AlarmState.ACKED)

    @property
    def acked(self) -> bool:
        return self in (AlarmState.NORMAL, AlarmState.ACKED)

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> AlarmState:
        return cls[text.strip().upper()]


class Shelving(enum.IntEnum):
    NONE = 0
    TIMED = 1
    ONE_SHOT = 2


class Flag(enum.IntFlag):
    """Bits of the journal's ``flags`` column: the orthogonal flags after the event."""

    SHELVED_TIMED = 1
    SHELVED_ONE_SHOT = 2
    SUPPRESSED_DESIGN = 4
    SUPPRESSED_OPERATOR = 8
    OUT_OF_SERVICE = 16
    LATCHED = 32  # latched alarm held active after its condition returned, awaiting reset

    @staticmethod
    def labels(bits: int) -> list[str]:
        return [f.name.lower() for f in Flag if f.name is not None and bits & f]

    @staticmethod
    def parse(text: str) -> Flag:
        out = Flag(0)
        for part in text.split(","):
            if part.strip():
                out |= Flag[part.strip().upper()]
        return out


HIDDEN = Flag.SHELVED_TIMED | Flag.SHELVED_ONE_SHOT | Flag.SUPPRESSED_DESIGN | Flag.SUPPRESSED_OPERATOR | \
    Flag.OUT_OF_SERVICE  # flags that keep an alarm off the operator's list (it is still journalled)


class Event(enum.IntEnum):
    """Everything that can happen to an alarm (the journal's ``event`` codes)."""

    CONDITION_ON = 1  # condition present (after the on-delay)
    CONDITION_OFF = 2  # condition gone (after the off-delay)
    ACKNOWLEDGE = 3
    RESET = 4
    SHELVE = 5  # timed shelving
    SHELVE_ONE_SHOT = 6
    UNSHELVE = 7
    SHELVE_EXPIRED = 8
    SUPPRESS = 9  # by an operator
    UNSUPPRESS = 10
    DESIGN_SUPPRESS = 11  # by the engine (suppressed_by)
    DESIGN_RELEASE = 12
    REMOVE_FROM_SERVICE = 13
    RETURN_TO_SERVICE = 14
    FLOOD_BEGIN = 20  # per area, not per alarm (journal only)
    FLOOD_END = 21
    CONFIG_CHANGE = 22  # a configuration reload, applied or refused (journal only, no alarm)
    WORK_ORDER = 23  # alarms linked to a work order (journal only: detail names the order and the alarms)

    @property
    def label(self) -> str:
        return self.name.lower()

    @property
    def operator(self) -> bool:
        """Events that only an operator can request (each needs a user)."""
        return self in OPERATOR_EVENTS

    @classmethod
    def parse(cls, text: str) -> Event:
        return cls[text.strip().upper()]


OPERATOR_EVENTS = frozenset({
    Event.ACKNOWLEDGE, Event.RESET, Event.SHELVE, Event.SHELVE_ONE_SHOT, Event.UNSHELVE, Event.SUPPRESS,
    Event.UNSUPPRESS, Event.REMOVE_FROM_SERVICE, Event.RETURN_TO_SERVICE,
})
ALARM_EVENTS = tuple(e for e in Event if e < Event.FLOOD_BEGIN)


@dataclass(frozen=True, slots=True)
class Status:
    """Everything the state machine knows about one alarm."""

    state: AlarmState = AlarmState.NORMAL
    held: bool = False  # latched and the condition has returned: active until reset
    shelving: Shelving = Shelving.NONE
    shelved_until_ns: int = 0
    suppressed_design: bool = False
    suppressed_operator: bool = False
    out_of_service: bool = False

    @property
    def flags(self) -> Flag:
        f = Flag(0)
        if self.shelving is Shelving.TIMED:
            f |= Flag.SHELVED_TIMED
        elif self.shelving is Shelving.ONE_SHOT:
            f |= Flag.SHELVED_ONE_SHOT
        if self.suppressed_design:
            f |= Flag.SUPPRESSED_DESIGN
        if self.suppressed_operator:
            f |= Flag.SUPPRESSED_OPERATOR
        if self.out_of_service:
            f |= Flag.OUT_OF_SERVICE
        if self.held:
            f |= Flag.LATCHED
        return f

    @property
    def shelved(self) -> bool:
        return self.shelving is not Shelving.NONE

    @property
    def suppressed(self) -> bool:
        return self.suppressed_design or self.suppressed_operator

    def visible(self, priority: int) -> bool:
        """Shown on the operator's list: not normal, annunciated priority, not shelved/suppressed/OOS."""
        return self.state is not AlarmState.NORMAL and priority < DIAGNOSTIC and not (self.flags & HIDDEN)


@dataclass(frozen=True, slots=True)
class Context:
    """The alarm's configured attributes that the state machine needs."""

    priority: int = 3  # 1 critical .. 4 low, 5 diagnostic
    latched: bool = False
    max_shelve_s: float = DEFAULT_MAX_SHELVE_S


@dataclass(frozen=True, slots=True)
class Refused:
    """An event that is not allowed in this status, and why (shown to the operator, journalled).

    The reason is an English msgid of the catalogue (marked ``N_``): journalled as it is, it is translated
    where it is shown (:func:`scada.i18n.localise`)."""

    reason: str


def transition(status: Status, event: Event, ctx: Context = Context(), *, now_ns: int = 0, until_ns: int = 0,
               user: str = "", text: str = "") -> Status | Refused:
    """Apply ``event`` to ``status``.

    ``now_ns`` is the time of the event (UTC epoch ns), ``until_ns`` the end of a timed shelving,
    ``user`` the operator (required for operator events), ``text`` the reason (shelve, suppress) or
    the work-order reference (remove from service).
    """
    if event in OPERATOR_EVENTS and not user.strip():
        return Refused(f"{event.label}: a user is required")
    s = status
    st = s.state
    if event is Event.CONDITION_ON:
        if st in (AlarmState.NORMAL, AlarmState.RTN_UNACK):
            return replace(s, state=AlarmState.UNACK)
        if s.held:
            return replace(s, held=False)
        return Refused(N_("the alarm is already active"))
    if event is Event.CONDITION_OFF:
        if not st.active or s.held:
            return Refused(N_("the alarm is not active"))
        if ctx.latched:
            return replace(s, held=True)
        new = AlarmState.RTN_UNACK if st is AlarmState.UNACK else AlarmState.NORMAL
        return _inactive(replace(s, state=new))
    if event is Event.ACKNOWLEDGE:
        if st is AlarmState.UNACK:
            return replace(s, state=AlarmState.ACKED)
        if st is AlarmState.RTN_UNACK:
            return replace(s, state=AlarmState.NORMAL)
        if st is AlarmState.ACKED:
            return Refused(N_("already acknowledged"))
        return Refused(N_("nothing to acknowledge: the alarm is normal"))
    if event is Event.RESET:
        if not ctx.latched:
            return Refused(N_("reset only applies to latched alarms"))
        if not st.active:
            return Refused(N_("the alarm is not active: nothing to reset"))
        if not s.held:
            return Refused(N_("the condition is still present: reset is possible once it has returned to normal"))
        new = AlarmState.RTN_UNACK if st is AlarmState.UNACK else AlarmState.NORMAL
        return _inactive(replace(s, state=new, held=False))
    if event in (Event.SHELVE, Event.SHELVE_ONE_SHOT):
        if ctx.priority == 1:
            return Refused(N_("priority-1 (critical) alarms cannot be shelved"))
        if s.shelved:
            return Refused(N_("already shelved (one-shot): unshelve it first") if s.shelving is Shelving.ONE_SHOT
                           else N_("already shelved: unshelve it first"))
        if not text.strip():
            return Refused(N_("shelving needs a reason"))
        if event is Event.SHELVE_ONE_SHOT:
            if not st.active:
                return Refused(N_("one-shot shelving applies to an active alarm"))
            return replace(s, shelving=Shelving.ONE_SHOT, shelved_until_ns=0)
        duration_s = (until_ns - now_ns) / NS_PER_S
        if duration_s <= 0:
            return Refused(N_("the shelving duration must be positive"))
        if duration_s > ctx.max_shelve_s + 1e-9:
            return Refused(f"the shelving duration {_hms(duration_s)} exceeds the maximum {_hms(ctx.max_shelve_s)}")
        return replace(s, shelving=Shelving.TIMED, shelved_until_ns=until_ns)
    if event is Event.UNSHELVE:
        if not s.shelved:
            return Refused(N_("the alarm is not shelved"))
        return replace(s, shelving=Shelving.NONE, shelved_until_ns=0)
    if event is Event.SHELVE_EXPIRED:
        if s.shelving is not Shelving.TIMED:
            return Refused(N_("the alarm is not under timed shelving"))
        if now_ns < s.shelved_until_ns:
            return Refused(N_("the shelving has not expired yet"))
        new = AlarmState.UNACK if st is AlarmState.ACKED else st  # re-annunciate if still active
        return replace(s, state=new, shelving=Shelving.NONE, shelved_until_ns=0)
    if event is Event.SUPPRESS:
        if ctx.priority == 1:
            return Refused(N_("priority-1 (critical) alarms cannot be suppressed by an operator"))
        if s.suppressed_operator:
            return Refused(N_("already suppressed by an operator"))
        if not text.strip():
            return Refused(N_("suppression needs a reason"))
        return replace(s, suppressed_operator=True)
    if event is Event.UNSUPPRESS:
        if not s.suppressed_operator:
            if s.suppressed_design:
                return Refused(N_("suppressed by design: the suppression ends by itself when the suppressing alarm "
                                  "clears"))
            return Refused(N_("the alarm is not suppressed"))
        return replace(s, suppressed_operator=False)
    if event is Event.DESIGN_SUPPRESS:
        if s.suppressed_design:
            return Refused(N_("already suppressed by design"))
        return replace(s, suppressed_design=True)
    if event is Event.DESIGN_RELEASE:
        return replace(s, suppressed_design=False) if s.suppressed_design else Refused(N_("not suppressed by design"))
    if event is Event.REMOVE_FROM_SERVICE:
        if s.out_of_service:
            return Refused(N_("already out of service"))
        if not text.strip():
            return Refused(N_("removing an alarm from service needs a work-order reference"))
        return replace(s, out_of_service=True)
    if event is Event.RETURN_TO_SERVICE:
        return replace(s, out_of_service=False) if s.out_of_service else Refused(N_("the alarm is not out of service"))
    return Refused(f"{event.label} is not an alarm event")


def _inactive(s: Status) -> Status:
    """One-shot shelving ends when the alarm becomes inactive."""
    if s.shelving is Shelving.ONE_SHOT:
        return replace(s, shelving=Shelving.NONE, shelved_until_ns=0)
    return s


def _hms(seconds: float) -> str:
    seconds = round(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}min{s:02d}s" if m else f"{s}s")


# ---------------------------------------------------------------- vectorised lookup tables
# The engine keeps state (uint8), held (bool), shelving (uint8) and the rule's latched flag in numpy
# columns and applies the process events through these tables, all generated from transition().
# Index: ((state * 2 + held) * 2 + latched) * 3 + shelving. Value: new state * 8 + held * 4 + shelving,
# or -1 when the event is refused in that status.

TABLE_SIZE = 4 * 2 * 2 * 3


def table_index(state: npt.NDArray[np.uint8], held: npt.NDArray[np.bool_], latched: npt.NDArray[np.bool_],
                shelving: npt.NDArray[np.uint8]) -> npt.NDArray[np.intp]:
    return ((state.astype(np.intp) * 2 + held) * 2 + latched) * 3 + shelving


def _table(event: Event) -> npt.NDArray[np.int16]:
    out = np.full(TABLE_SIZE, -1, dtype=np.int16)
    for st in AlarmState:
        for held in (False, True):
            for latched in (False, True):
                for sh in Shelving:
                    i = ((int(st) * 2 + held) * 2 + latched) * 3 + int(sh)
                    s = Status(st, held, sh, 1 if sh is Shelving.TIMED else 0)
                    r = transition(s, event, Context(latched=latched), now_ns=1)
                    if isinstance(r, Status):
                        out[i] = int(r.state) * 8 + int(r.held) * 4 + int(r.shelving)
    return out


ON_TABLE = _table(Event.CONDITION_ON)
OFF_TABLE = _table(Event.CONDITION_OFF)
EXPIRE_TABLE = _table(Event.SHELVE_EXPIRED)
