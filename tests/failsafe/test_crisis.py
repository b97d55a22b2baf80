"""Crisis plans: dry run, activation by a supervisor, flash at once, bollards after one group approval."""

from __future__ import annotations

import pytest

from failsafe.crisis import CrisisRunner
from tests.failsafe.conftest import ALICE, BOB, Principal, Stack

SUP = Principal("sam", frozenset({"supervisor"}), workstation="crisis-desk")
PLAN = "emergency_corridor_centre"


def runner(stack: Stack) -> CrisisRunner:
    stack.watch = ["J003", "J005", "J009", "BL01"]
    return CrisisRunner(stack.gate, stack.vocab, stack.audit, clock=stack.clock)


async def test_dry_run_writes_nothing_and_says_what_would_happen(stack: Stack) -> None:
    cr = runner(stack)
    run = cr.dry_run(PLAN, SUP)
    assert stack.field.writes == []
    assert [s.outcome for s in run.steps] == ["would_run"] * 4
    assert [s.needs_approval for s in run.steps] == [False, False, False, True]
    assert run.steps[0].writes == {"unit_backup_time": 30, "system_pattern_control": 255}
    stack.field.devices["BL01"].fault = True
    stack.poll()
    again = cr.dry_run(PLAN, SUP)
    assert again.steps[3].outcome == "would_refuse" and "fault" in again.steps[3].reason
    assert any(e["kind"] == "crisis_dry_run" for e in stack.audit.entries())


async def test_only_an_authorised_supervisor_activates(stack: Stack) -> None:
    from scada.errors import CommandRejected

    cr = runner(stack)
    with pytest.raises(CommandRejected, match="may not activate"):
        await cr.activate(PLAN, ALICE)
    with pytest.raises(CommandRejected, match="no crisis plan"):
        await cr.activate("nope", SUP)
    assert stack.field.writes == []


async def test_activation_flashes_at_once_and_lowers_bollards_after_approval(stack: Stack) -> None:
    from scada.errors import CommandRejected

    cr = runner(stack)
    run = await cr.activate(PLAN, SUP)
    assert run.state == "awaiting_approval"
    assert [s.outcome for s in run.steps] == ["done", "done", "done", "deferred"]
    for j in ("J003", "J005", "J009"):
        assert stack.field.devices[j].spc == 255
    assert stack.field.devices["BL01"].position == 1  # not yet
    with pytest.raises(CommandRejected, match="different user"):
        await cr.approve(run.id, SUP)
    with pytest.raises(CommandRejected, match="may not approve"):
        await cr.approve(run.id, ALICE)
    done = await cr.approve(run.id, BOB)
    assert done.state == "done" and done.approver == "bob"
    assert stack.field.devices["BL01"].position == 0
    steps = [e for e in stack.audit.entries() if e["kind"] == "crisis_step"]
    assert len(steps) == 5  # 3 flashes, the deferral, the bollard
    ops = [e for e in stack.audit.entries() if e["kind"] == "operate"]
    assert all(e["crisis"] == run.id for e in ops) and ops[-1]["approver"] == "bob"
    assert all(lease.end == pytest.approx(stack.clock.now + 1800, abs=5) for lease in stack.leases.leases())
    assert stack.audit.verify().ok


async def test_a_failing_step_does_not_stop_the_others(stack: Stack) -> None:
    cr = runner(stack)
    stack.field.comm_down.add("J005")
    run = await cr.activate(PLAN, SUP)
    assert [s.outcome for s in run.steps[:3]] == ["done", "failed", "done"]
    run = await cr.approve(run.id, BOB)
    assert run.state == "partial"


async def test_approval_window_expires(stack: Stack) -> None:
    from scada.errors import CommandRejected

    cr = runner(stack)
    run = await cr.activate(PLAN, SUP)
    stack.clock.advance(121)
    with pytest.raises(CommandRejected, match="window"):
        await cr.approve(run.id, BOB)
    assert stack.field.devices["BL01"].position == 1
