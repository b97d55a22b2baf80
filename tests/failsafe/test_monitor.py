"""Field-safety monitor on the fake field: conflicting greens, fault flash, comm loss, atomic samples."""

from __future__ import annotations

import numpy as np

from failsafe.monitor import FieldSafetyMonitor
from failsafe.types import Outcome
from failsafe.vocabulary import CompatibilityMatrix
from scada.quality import Quality
from tests.failsafe.conftest import Stack

J = "J004"


def monitor_for(stack: Stack) -> FieldSafetyMonitor:
    stack.watch = [J]
    mon = FieldSafetyMonitor(stack.city, stack.vocab, stack.db, stack.gate, alarms=stack.alarms.append,
                             audit=stack.audit, clock=stack.clock).start()
    stack.monitor = mon
    return mon


def p1(stack: Stack, name: str) -> list[float]:
    return [a.ts for a in stack.alarms if a.key == f"failsafe/{J}/{name}" and a.priority == 1 and a.active]


def test_compatibility_matrix_is_symmetric_and_default_conflicting() -> None:
    m = CompatibilityMatrix(4, frozenset({frozenset((1, 3))}))
    assert m.compatible(1, 3) and m.compatible(3, 1)
    assert not m.compatible(1, 2) and not m.compatible(2, 4)  # not listed → conflicting
    assert m.conflicts(0b0101) == []
    assert m.conflicts(0b1111) == [(1, 2), (1, 4), (2, 3), (2, 4), (3, 4)]
    assert CompatibilityMatrix(8, frozenset()).conflicts(0b11) == [(1, 2)]


async def test_all_approaches_green_with_a_working_cabinet_monitor(stack: Stack) -> None:
    """Named test: "all approaches green" injection → P1 at once; the cabinet MMU flashes; latched fault alarm."""
    mon = monitor_for(stack)
    await stack.run_for(4)
    assert mon.view(J).state == "normal"  # type: ignore[union-attr]
    assert stack.alarms == []
    stack.field.devices[J].conflict = True
    stack.field.devices[J].mmu_delay = 0.6  # the next 0.5 s sample still shows the conflict
    stack.clock.advance(0.5)
    sample_t = stack.clock.now
    stack.poll()  # the conflicting sample arrives: the alarm is raised in the same call
    assert p1(stack, "conflicting_green") == [sample_t]
    assert mon.view(J).state == "conflict"  # type: ignore[union-attr]
    await stack.run_for(2)
    mon.check()
    assert mon.view(J).state == "fault_flash"  # type: ignore[union-attr]
    assert p1(stack, "fault_flash") and not p1(stack, "monitor_did_not_act")
    assert await mon.process_pending() == []  # the controller acted: no flash request
    assert [w for w in stack.field.writes if w.equipment == J] == []
    await stack.run_for(10)
    assert len(p1(stack, "fault_flash")) == 1  # latched: raised once, not per sample


async def test_all_approaches_green_and_the_cabinet_monitor_does_not_act(stack: Stack) -> None:
    mon = monitor_for(stack)
    dev = stack.field.devices[J]
    dev.conflict, dev.mmu_works = True, False
    await stack.run_for(0.5)
    assert len(p1(stack, "conflicting_green")) == 1
    mon.check()
    assert await mon.process_pending() == []
    await stack.run_for(1.5)  # three more samples (commands.yaml: samples_before_flash 4): not yet
    mon.check()
    assert not p1(stack, "monitor_did_not_act")
    await stack.run_for(0.5)  # four more samples, still not flashing → flash through the gate
    mon.check()
    assert len(p1(stack, "monitor_did_not_act")) == 1
    results = await mon.process_pending()
    assert [r.outcome for r in results] == [Outcome.DONE]
    assert dev.spc == 255
    op = [e for e in stack.audit.entries() if e["kind"] == "operate"]
    assert op[-1]["user"] == "field-safety-monitor" and op[-1]["verb"] == "flash"
    await stack.run_for(1)
    mon.check()
    assert mon.view(J).state == "flash"  # type: ignore[union-attr]


async def test_conflict_counted_on_unchanged_samples(stack: Stack) -> None:
    """Samples whose values did not change publish no event: check() still counts them."""
    mon = monitor_for(stack)
    dev = stack.field.devices[J]
    dev.conflict, dev.mmu_works = True, False
    for _ in range(5):  # the conflict, then samples_before_flash (4) more
        stack.clock.advance(0.5)
        stack.poll()
        mon.check()
    assert len(p1(stack, "monitor_did_not_act")) == 1


async def test_comm_loss_shows_unknown_never_the_last_colours(stack: Stack) -> None:
    mon = monitor_for(stack)
    await stack.run_for(2)
    before = mon.view(J)
    assert before is not None and before.state == "normal" and before.greens is not None
    stack.field.comm_down.add(J)
    await stack.run_for(1)
    after = mon.view(J)
    assert after is not None and after.state == "unknown"
    assert after.greens is None and after.yellows is None and after.reds is None
    assert "bad_comm" in after.reason
    stack.field.comm_down.discard(J)
    await stack.run_for(1)
    assert mon.view(J).state == "normal"  # type: ignore[union-attr]


async def test_stale_samples_show_unknown(stack: Stack) -> None:
    mon = monitor_for(stack)
    await stack.run_for(1)
    stack.clock.advance(3.5)  # the poller stopped: nothing received for > 3 scan periods (1 s)
    mon.check()
    assert mon.view(J).state == "unknown"  # type: ignore[union-attr]


async def test_mixed_samples_are_never_combined(stack: Stack) -> None:
    mon = monitor_for(stack)
    await stack.run_for(1)
    db = stack.db
    greens = db.index[stack.city.equipment[J].tag_name("phase_greens")]
    # only the greens tag arrives in a later, separate batch showing every phase green
    ns = int((stack.clock.now + 0.9) * 1e9)
    db.apply(np.array([greens]), np.array([255.0]), np.array([int(Quality.GOOD)], dtype=np.uint8), ns, ns)
    assert not p1(stack, "conflicting_green")
    assert mon.view(J).state == "normal"  # type: ignore[union-attr]


async def test_reset_clears_latched_alarms_and_is_journalled(stack: Stack) -> None:
    mon = monitor_for(stack)
    stack.field.devices[J].conflict = True
    await stack.run_for(2)
    assert p1(stack, "fault_flash")
    mon.reset(J, "maint")
    cleared = [a for a in stack.alarms if not a.active]
    assert {a.key.rsplit("/", 1)[1] for a in cleared} >= {"conflicting_green", "fault_flash"}
    assert any(e["kind"] == "monitor_reset" and e["user"] == "maint" for e in stack.audit.entries())
    await stack.run_for(1)
    assert len(p1(stack, "fault_flash")) == 2  # still in fault flash after the reset: raised again
