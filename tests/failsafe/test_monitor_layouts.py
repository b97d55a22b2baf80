"""Layout verification in the monitor (fake field): unverified until read, P2 after two scan periods, then verified."""

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

    for _ in range(5):  # 2 s = two periods of the fast scan class after the first status sample (t0 + 0.5)
        tick(blind=True)
    assert mon.layouts()["unverified"].count(J) == 1 and p2() == []
    tick(blind=True)
    assert p2() == [True] and stack.alarms[-1].priority == 2
    assert "layout not verified against the field at J004" in stack.alarms[-1].message
    tick(blind=False)
    assert p2() == [True, False] and J in mon.layouts()["verified"]
    assert not [a for a in stack.alarms if "layout_refused" in a.key]
