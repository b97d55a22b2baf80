"""Layout verification in the monitor (fake field): unverified until read, P2 after two status periods, then verified."""

from __future__ import annotations

from failsafe.concurrency import concurrency_tags
from scada.quality import Quality, Sample
from tests.failsafe.conftest import Stack
from tests.failsafe.test_monitor import J, monitor_for


async def test_unreadable_concurrency_is_a_p2_after_two_periods_then_verified(stack: Stack) -> None:
    mon = monitor_for(stack)
    conc = concurrency_tags(stack.db, stack.city, J)
    assert sorted(conc) == list(range(1, 9))

    def tick(blind: bool) -> None:
        stack.clock.advance(0.5)
        stack.poll()
        if blind:  # the status answers, phaseConcurrency does not
            ns = int(stack.clock.now * 1e9)
            stack.db.apply_samples([(i, Sample(None, Quality.BAD_COMM, ns, ns)) for i in conc.values()])
        mon.check()

    def p2() -> list[bool]:
        return [a.active for a in stack.alarms if a.key == f"failsafe/{J}/layout_unverified"]

    for _ in range(3):  # 1 s = two periods of the junction's status sample (0.5 s) after the first one (t0 + 0.5)
        tick(blind=True)
    assert mon.layouts()["unverified"].count(J) == 1 and p2() == []
    tick(blind=True)
    assert p2() == [True] and stack.alarms[-1].priority == 2
    assert "layout not verified against the field at J004" in stack.alarms[-1].message
    tick(blind=False)
    assert p2() == [True, False] and J in mon.layouts()["verified"]
    assert not [a for a in stack.alarms if "layout_refused" in a.key]


async def test_static_objects_are_used_at_most_stale_after_of_their_periods_old(stack: Stack) -> None:
    """The static objects (60 s class) are not in the status sample: the monitor uses their last good values,
    at most stale_after (3) of their periods old. Older: a plan's cycle time is unknown, and a verified layout
    whose phaseConcurrency has not been read for that long raises the P2 "layout_unverified" (the matrix stays
    the stricter field ∩ layout), cleared by the next full read."""
    mon = monitor_for(stack)
    conc = concurrency_tags(stack.db, stack.city, J)
    cycle = stack.db.index[stack.city.equipment[J].tag_name("pattern_cycle_1")]

    def p2() -> list[bool]:
        return [a.active for a in stack.alarms if a.key == f"failsafe/{J}/layout_unverified"]

    def tick(statics: bool) -> None:
        stack.clock.advance(0.5)
        stack.poll()
        if not statics:  # the status answers; the slow group's answers are garbled (bad_device)
            ns = int(stack.clock.now * 1e9)
            stack.db.apply_samples([(i, Sample(None, Quality.BAD_DEVICE, ns, ns)) for i in conc.values()])
        mon.check()

    tick(statics=True)
    j = mon._junctions[J]
    assert J in mon.layouts()["verified"] and j.conc_max_age_s == 3 * 60.0
    matrix = j.matrix
    assert mon._cycle_s(j, 1) is not None  # just read
    for _ in range(2 * 179):  # 179 s without a good phaseConcurrency read: still within 3 x 60 s
        tick(statics=False)
    assert p2() == []
    for _ in range(4):
        tick(statics=False)
    assert p2() == [True] and "for 180 s (phaseConcurrency unreadable" in stack.alarms[-1].message
    assert J in mon.layouts()["verified"] and mon._junctions[J].matrix == matrix  # still checking with it
    tick(statics=True)
    assert p2() == [True, False]
    # a plan's cycle time read more than 3 x 60 s ago is not used (unknown: the NTCIP maximum applies)
    old = int((stack.clock.now - 181) * 1e9)
    stack.db.apply_samples([(cycle, Sample(90, Quality.GOOD, old, old))])
    assert mon._cycle_s(j, 1) is None
    fresh = int((stack.clock.now - 179) * 1e9)
    stack.db.apply_samples([(cycle, Sample(90, Quality.GOOD, fresh, fresh))])
    assert mon._cycle_s(j, 1) == 90.0
