"""The ISA-18.2 state machine, table-driven: every allowed transition, and nothing else.

The tables below are written from standards.md §2.1/§2.5 independently of the implementation. The test
enumerates every valid status (state × latched hold × shelving × suppression × out of service) × every
alarm event × latched/not × priority 1/3, and asserts that :func:`transition` gives exactly what the
tables say, and a refusal with a reason for every pair the tables do not list.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest

from scada.alarms.states import (
    ALARM_EVENTS,
    EXPIRE_TABLE,
    OFF_TABLE,
    ON_TABLE,
    OPERATOR_EVENTS,
    AlarmState,
    Context,
    Event,
    Flag,
    Refused,
    Shelving,
    Status,
    table_index,
    transition,
)

N, U, A, R = AlarmState.NORMAL, AlarmState.UNACK, AlarmState.ACKED, AlarmState.RTN_UNACK
NOW = 1_000_000
LATER = NOW + 3600 * 10**9  # a one-hour timed shelving
ANY = None

# Process events: (state, held, latched, event) → (new state, new held). ANY matches both values.
PROCESS: list[tuple[AlarmState, bool | None, bool | None, Event, AlarmState, bool | None]] = [
    (N, False, ANY, Event.CONDITION_ON, U, False),
    (R, False, ANY, Event.CONDITION_ON, U, False),  # re-alarm before acknowledgement
    (U, True, True, Event.CONDITION_ON, U, False),  # latched and held: the condition is back
    (A, True, True, Event.CONDITION_ON, A, False),
    (U, False, False, Event.CONDITION_OFF, R, False),
    (A, False, False, Event.CONDITION_OFF, N, False),
    (U, False, True, Event.CONDITION_OFF, U, True),  # latched: held active until reset
    (A, False, True, Event.CONDITION_OFF, A, True),
    (U, ANY, ANY, Event.ACKNOWLEDGE, A, ANY),  # ANY in the result: unchanged
    (R, False, ANY, Event.ACKNOWLEDGE, N, False),
    (U, True, True, Event.RESET, R, False),
    (A, True, True, Event.RESET, N, False),
]


def valid_statuses() -> list[tuple[Status, bool]]:
    """Every consistent (status, latched): hold only on an active latched alarm; one-shot only when active."""
    out = []
    for st, held, latched, sh, sd, so, oos in itertools.product(
            AlarmState, (False, True), (False, True), Shelving, (False, True), (False, True), (False, True)):
        if held and not (latched and st.active):
            continue
        if sh is Shelving.ONE_SHOT and not st.active:
            continue
        until = LATER if sh is Shelving.TIMED else 0
        out.append((Status(st, held, sh, until, sd, so, oos), latched))
    return out


def expected(s: Status, latched: bool, priority: int, event: Event, *, now: int, until: int) -> Status | None:
    """What the standard allows, or None (refused)."""
    if event in (Event.CONDITION_ON, Event.CONDITION_OFF, Event.ACKNOWLEDGE, Event.RESET):
        for st, held, lat, ev, new_st, new_held in PROCESS:
            if ev is event and st is s.state and held in (ANY, s.held) and lat in (ANY, latched):
                r = replace(s, state=new_st, held=s.held if new_held is ANY else new_held)
                if not new_st.active and r.shelving is Shelving.ONE_SHOT:  # one-shot ends on return to normal
                    r = replace(r, shelving=Shelving.NONE, shelved_until_ns=0)
                return r
        return None
    if event is Event.SHELVE:
        ok = priority != 1 and s.shelving is Shelving.NONE and 0 < until - now <= 8 * 3600 * 10**9
        return replace(s, shelving=Shelving.TIMED, shelved_until_ns=until) if ok else None
    if event is Event.SHELVE_ONE_SHOT:
        ok = priority != 1 and s.shelving is Shelving.NONE and s.state.active
        return replace(s, shelving=Shelving.ONE_SHOT) if ok else None
    if event is Event.UNSHELVE:
        return replace(s, shelving=Shelving.NONE, shelved_until_ns=0) if s.shelving is not Shelving.NONE else None
    if event is Event.SHELVE_EXPIRED:
        if s.shelving is not Shelving.TIMED or now < s.shelved_until_ns:
            return None
        return replace(s, shelving=Shelving.NONE, shelved_until_ns=0, state=U if s.state is A else s.state)
    if event is Event.SUPPRESS:
        return replace(s, suppressed_operator=True) if priority != 1 and not s.suppressed_operator else None
    if event is Event.UNSUPPRESS:
        return replace(s, suppressed_operator=False) if s.suppressed_operator else None
    if event is Event.DESIGN_SUPPRESS:
        return None if s.suppressed_design else replace(s, suppressed_design=True)
    if event is Event.DESIGN_RELEASE:
        return replace(s, suppressed_design=False) if s.suppressed_design else None
    if event is Event.REMOVE_FROM_SERVICE:
        return None if s.out_of_service else replace(s, out_of_service=True)
    if event is Event.RETURN_TO_SERVICE:
        return replace(s, out_of_service=False) if s.out_of_service else None
    raise AssertionError(event)


@pytest.mark.parametrize("event", ALARM_EVENTS, ids=lambda e: e.label)
def test_every_transition_and_no_other(event: Event) -> None:
    allowed = 0
    for (s, latched), priority in itertools.product(valid_statuses(), (1, 3)):
        for now in ((NOW, LATER) if event is Event.SHELVE_EXPIRED else (NOW,)):
            want = expected(s, latched, priority, event, now=now, until=LATER)
            got = transition(s, event, Context(priority=priority, latched=latched), now_ns=now, until_ns=LATER,
                             user="alice", text="work order 42 / reason")
            if want is None:
                assert isinstance(got, Refused), (s, latched, priority, event, got)
                assert got.reason.strip(), "a refusal always says why"
            else:
                assert got == want, (s, latched, priority, event)
                allowed += 1
    assert allowed > 0


def test_table_covers_the_diagram() -> None:
    """Every arrow of the ISA-18.2 diagram appears in the process table."""
    arrows = {(st, ev, new) for st, _, _, ev, new, _ in PROCESS}
    assert (N, Event.CONDITION_ON, U) in arrows
    assert (U, Event.ACKNOWLEDGE, A) in arrows
    assert (U, Event.CONDITION_OFF, R) in arrows
    assert (A, Event.CONDITION_OFF, N) in arrows
    assert (R, Event.ACKNOWLEDGE, N) in arrows
    assert (R, Event.CONDITION_ON, U) in arrows


@pytest.mark.parametrize("event", sorted(OPERATOR_EVENTS), ids=lambda e: e.label)
def test_operator_events_need_a_user(event: Event) -> None:
    s = Status(U, shelving=Shelving.TIMED, shelved_until_ns=LATER, suppressed_operator=True, out_of_service=True)
    for user in ("", "   "):
        r = transition(s, event, Context(latched=True), now_ns=NOW, until_ns=LATER, user=user, text="x")
        assert isinstance(r, Refused) and "user" in r.reason


@pytest.mark.parametrize(("status", "event", "ctx", "kwargs", "words"), [
    (Status(U), Event.SHELVE, Context(priority=1), {"until_ns": LATER}, "priority-1"),
    (Status(U), Event.SHELVE_ONE_SHOT, Context(priority=1), {}, "priority-1"),
    (Status(U), Event.SHELVE, Context(), {"until_ns": NOW + 9 * 3600 * 10**9}, "exceeds the maximum"),
    (Status(U), Event.SHELVE, Context(), {"until_ns": NOW}, "positive"),
    (Status(U), Event.SHELVE, Context(), {"until_ns": LATER, "text": ""}, "reason"),
    (Status(N), Event.SHELVE_ONE_SHOT, Context(), {}, "active alarm"),
    (Status(U, shelving=Shelving.TIMED, shelved_until_ns=LATER), Event.SHELVE, Context(), {"until_ns": LATER},
     "already shelved"),
    (Status(U), Event.UNSHELVE, Context(), {}, "not shelved"),
    (Status(A), Event.ACKNOWLEDGE, Context(), {}, "already acknowledged"),
    (Status(N), Event.ACKNOWLEDGE, Context(), {}, "nothing to acknowledge"),
    (Status(U), Event.RESET, Context(), {}, "latched"),
    (Status(U), Event.RESET, Context(latched=True), {}, "still present"),
    (Status(N), Event.RESET, Context(latched=True), {}, "not active"),
    (Status(U), Event.SUPPRESS, Context(), {"text": ""}, "reason"),
    (Status(U), Event.SUPPRESS, Context(priority=1), {}, "priority-1"),
    (Status(U, suppressed_design=True), Event.UNSUPPRESS, Context(), {}, "by design"),
    (Status(U), Event.UNSUPPRESS, Context(), {}, "not suppressed"),
    (Status(U), Event.REMOVE_FROM_SERVICE, Context(), {"text": " "}, "work-order"),
    (Status(U, out_of_service=True), Event.REMOVE_FROM_SERVICE, Context(), {}, "already out of service"),
    (Status(U), Event.RETURN_TO_SERVICE, Context(), {}, "not out of service"),
])
def test_refusal_reasons(status: Status, event: Event, ctx: Context, kwargs: dict[str, object], words: str) -> None:
    args: dict[str, object] = {"now_ns": NOW, "user": "alice", "text": "because", **kwargs}
    r = transition(status, event, ctx, **args)  # type: ignore[arg-type]
    assert isinstance(r, Refused)
    assert words in r.reason


def test_max_shelve_is_inclusive() -> None:
    r = transition(Status(U), Event.SHELVE, Context(max_shelve_s=3600), now_ns=NOW, until_ns=NOW + 3600 * 10**9,
                   user="a", text="r")
    assert isinstance(r, Status) and r.shelving is Shelving.TIMED


def test_flags_bits() -> None:
    s = Status(U, True, Shelving.ONE_SHOT, 0, True, True, True)
    assert Flag.labels(int(s.flags)) == ["shelved_one_shot", "suppressed_design", "suppressed_operator",
                                         "out_of_service", "latched"]
    assert not s.visible(3) and Status(U).visible(3) and not Status(U).visible(5) and not Status(N).visible(1)


@pytest.mark.parametrize(("table", "event"), [(ON_TABLE, Event.CONDITION_ON), (OFF_TABLE, Event.CONDITION_OFF),
                                              (EXPIRE_TABLE, Event.SHELVE_EXPIRED)])
def test_vectorised_tables_match_the_pure_function(table: np.ndarray, event: Event) -> None:
    for s, latched in valid_statuses():
        code = int(table[table_index(np.array([int(s.state)], dtype=np.uint8), np.array([s.held]),
                                     np.array([latched]), np.array([int(s.shelving)], dtype=np.uint8))[0]])
        r = transition(s, event, Context(latched=latched), now_ns=LATER + 1)
        if isinstance(r, Refused):
            assert code == -1
        else:
            assert code == int(r.state) * 8 + int(r.held) * 4 + int(r.shelving)
