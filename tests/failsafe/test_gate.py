"""The command gate, step by step, on the fake field with a fake clock (no real time passes)."""

from __future__ import annotations

import pytest

from failsafe.types import CommandRequest, Outcome, Principal, TicketState
from scada.errors import CommandRejected, StorageError
from tests.failsafe.conftest import ALICE, BOB, CAROL, VIEWER, Stack

J1, J2 = "J001", "J002"


def kinds(stack: Stack) -> list[str]:
    return [e["kind"] for e in stack.audit.entries()]


async def test_flash_is_done_confirmed_and_journalled(stack: Stack) -> None:
    result = await stack.cmd("flash", J1)
    assert result.outcome is Outcome.DONE, result.reason
    writes = [(w.tag, w.value) for w in stack.field.writes]
    assert writes == [("unit_backup_time", 30), ("system_pattern_control", 255)]
    assert stack.field.devices[J1].flash_status == 3
    assert kinds(stack) == ["select", "operate", "lease_start", "outcome"]
    op = next(e for e in stack.audit.entries() if e["kind"] == "operate")
    assert op["user"] == "alice" and op["workstation"] == "ws-1" and op["target"] == [J1]
    assert op["requested"] == {J1: {"unit_backup_time": 30, "system_pattern_control": 255}}
    assert op["previous"] == {J1: {"unit_backup_time": 0, "system_pattern_control": 0}}
    assert op["lease_end"] == pytest.approx(stack.clock.now + 900, abs=1)
    assert stack.audit.verify().ok


async def test_select_then_operate_a_plan(stack: Stack) -> None:
    ticket = stack.gate.select(CommandRequest("select_plan", (J1,), ALICE, {"plan": 3}))
    assert ticket.state is TicketState.SELECTED, ticket.reason
    assert stack.gate.reservations() == {J1: "alice"}
    assert stack.field.writes == []  # select writes nothing
    result = await stack.gate.operate(ticket.id, ALICE)
    assert result.outcome is Outcome.DONE, result.reason
    assert stack.field.devices[J1].pattern == 3
    assert stack.gate.reservations() == {}


async def test_invalid_plan_is_not_confirmed_and_raises_an_alarm(stack: Stack) -> None:
    result = await stack.cmd("select_plan", J1, plan=99)  # the controller has no plan 99: bad_plan, local plan
    assert result.outcome is Outcome.NOT_CONFIRMED
    assert "coord_pattern_status" in result.reason and "99" in result.reason
    assert [a.priority for a in stack.alarms] == [3]
    assert stack.field.devices[J1].local_free == 7


@pytest.mark.parametrize("plan", [0, 254, 255, 256, -1, 3.5, "3", None, True])
async def test_plan_outside_1_253_is_refused_and_never_sent(stack: Stack, plan: object) -> None:
    result = await stack.cmd("select_plan", J1, plan=plan)
    assert result.outcome is Outcome.REJECTED and result.reason.startswith("target: ")
    assert stack.field.writes == []


async def test_every_step_refuses_with_its_own_reason(stack: Stack) -> None:
    cases = [
        (CommandRequest("flash", (J1,), Principal("", frozenset({"operator"}))), "user"),
        (CommandRequest("flash", (J1,), Principal("eve", frozenset({"operator"}), authenticated=False)), "user"),
        (CommandRequest("flash", (J1,), VIEWER), "user"),
        (CommandRequest("flash", ("J999",), ALICE), "target"),
        (CommandRequest("flash", (J1, "BL01"), ALICE), "target"),
        (CommandRequest("flash", ("B001",), ALICE), "target"),  # buildings are not commandable
        (CommandRequest("set_phase_green", (J1,), ALICE, {"phase": 2}), "target"),
        (CommandRequest("flash", (J1, J1), ALICE), "target"),
        (CommandRequest("flash", (J1,), ALICE, {"plan": 3}), "target"),
        (CommandRequest("raise", ("BL01",), ALICE, lease_s=-5), "target"),
    ]
    for req, step in cases:
        ticket = stack.gate.select(req)
        assert ticket.outcome is Outcome.REJECTED and ticket.reason.startswith(step + ": "), (req, ticket.reason)
    assert stack.field.writes == []
    refusals = [e for e in stack.audit.entries() if e["kind"] == "refusal"]
    assert len(refusals) == len(cases) and all(e["reason"] for e in refusals)


async def test_bollard_raise_with_presence_is_interlocked(stack: Stack) -> None:
    stack.field.devices["BL01"].presence = True
    stack.poll()
    ticket = stack.gate.select(CommandRequest("raise", ("BL01",), ALICE))
    assert ticket.outcome is Outcome.REJECTED
    assert ticket.reason.startswith("interlocks: BL01: vehicle presence")


async def test_interlock_input_with_bad_quality_refuses(stack: Stack) -> None:
    stack.field.comm_down.add("BL01")
    stack.poll()
    ticket = stack.gate.select(CommandRequest("raise", ("BL01",), ALICE))
    assert ticket.reason.startswith("inputs: BL01: interlock 'presence' needs 'presence' with good quality, got bad_comm")


async def test_lighting_below_road_class_minimum_at_night(stack: Stack) -> None:
    # C0001 is road class P3 (minimum 30 %), C0004 is M3 (50 %)
    low = stack.gate.select(CommandRequest("set_level", ("C0004",), ALICE, {"level": 40}))
    assert low.outcome is Outcome.REJECTED
    assert low.reason == ("interlocks: C0004: level below the road-class minimum at night: level 40 < minimum 50 "
                          "for road_class M3")
    ok = await stack.gate.execute(CommandRequest("set_level", ("C0001",), ALICE, {"level": 40}))
    assert ok.outcome is Outcome.DONE, ok.reason
    stack.field.devices["C0004"].night = False  # daytime: the schedule asks for nothing, no minimum
    stack.poll()
    day = await stack.gate.execute(CommandRequest("set_level", ("C0004",), ALICE, {"level": 0}))
    assert day.outcome is Outcome.DONE, day.reason


async def test_lighting_until_time_sets_the_device_lease(stack: Stack) -> None:
    until = stack.clock.now + 600
    result = await stack.gate.execute(CommandRequest("set_level", ("C0002",), ALICE, {"level": 80}, until=until))
    assert result.outcome is Outcome.DONE
    assert result.lease_end == pytest.approx(until)
    assert ("override_remaining", 600) in [(w.tag, w.value) for w in stack.field.writes]


async def test_lease_is_capped_per_type(stack: Stack) -> None:
    result = await stack.gate.execute(CommandRequest("set_level", ("C0002",), ALICE, {"level": 80}, lease_s=1e9))
    assert result.lease_end == pytest.approx(stack.clock.now + 12 * 3600)


async def test_safety_reducing_needs_a_different_approver(stack: Stack) -> None:
    ticket = stack.gate.select(CommandRequest("lower", ("BL01",), ALICE))
    assert ticket.state is TicketState.AWAITING_APPROVAL
    with pytest.raises(CommandRejected, match="different user"):
        stack.gate.approve(ticket.id, ALICE)
    with pytest.raises(CommandRejected, match="may not approve"):
        stack.gate.approve(ticket.id, CAROL)  # an operator, not an approver
    assert stack.gate.status(ticket.id).state is TicketState.AWAITING_APPROVAL  # type: ignore[union-attr]
    res = await stack.gate.operate(ticket.id, ALICE)  # operate before approval is refused
    assert res.outcome is not Outcome.DONE and stack.field.writes == []
    approved = stack.gate.approve(ticket.id, BOB)
    assert approved.state is TicketState.SELECTED
    result = await stack.gate.operate(ticket.id, ALICE)
    assert result.outcome is Outcome.DONE, result.reason
    assert stack.field.devices["BL01"].position == 0
    entry = next(e for e in stack.audit.entries() if e["kind"] == "operate")
    assert entry["approver"] == "bob" and entry["approver_workstation"] == "ws-2"


async def test_second_approval_by_the_same_user(stack: Stack) -> None:
    """Named test: the requester cannot be their own second person, even holding the approver role."""
    boss = Principal("boss", frozenset({"supervisor"}), workstation="ws-9")
    ticket = stack.gate.select(CommandRequest("lower", ("BL02",), boss))
    assert ticket.state is TicketState.AWAITING_APPROVAL
    with pytest.raises(CommandRejected) as exc:
        stack.gate.approve(ticket.id, boss)
    assert "different user" in exc.value.reason
    other_session = Principal("boss", frozenset({"supervisor"}), workstation="ws-10", session="s2")
    with pytest.raises(CommandRejected):
        stack.gate.approve(ticket.id, other_session)  # same user from another console is still the same user
    refusal = [e for e in stack.audit.entries() if e["kind"] == "refusal"]
    assert len(refusal) == 2 and refusal[0]["step"] == "approval" and refusal[0]["approver"] == "boss"
    stack.clock.advance(121)
    assert stack.gate.status(ticket.id).state is TicketState.EXPIRED  # type: ignore[union-attr]
    assert "approval_timeout" in kinds(stack)
    assert stack.field.writes == []


async def test_approval_after_the_window_is_refused(stack: Stack) -> None:
    ticket = stack.gate.select(CommandRequest("lower", ("BL01",), ALICE))
    stack.clock.advance(120.5)
    with pytest.raises(CommandRejected, match="expired"):
        stack.gate.approve(ticket.id, BOB)


async def test_expired_select(stack: Stack) -> None:
    """Named test: operate 15 s after select is refused and journalled as a select timeout."""
    ticket = stack.gate.select(CommandRequest("select_plan", (J1,), ALICE, {"plan": 2}))
    assert ticket.state is TicketState.SELECTED and ticket.deadline == pytest.approx(stack.clock.now + 15)
    stack.clock.advance(15.01)
    result = await stack.gate.operate(ticket.id, ALICE)
    assert result.outcome is Outcome.REJECTED and result.reason.startswith("select: expired")
    assert stack.field.writes == []
    assert "select_timeout" in kinds(stack)
    assert stack.gate.reservations() == {}
    # within the window it works
    t2 = stack.gate.select(CommandRequest("select_plan", (J1,), ALICE, {"plan": 2}))
    stack.clock.advance(14.9)
    assert (await stack.gate.operate(t2.id, ALICE)).outcome is Outcome.DONE


async def test_select_reserves_the_target_for_one_user(stack: Stack) -> None:
    t1 = stack.gate.select(CommandRequest("select_plan", (J1,), ALICE, {"plan": 2}))
    t2 = stack.gate.select(CommandRequest("select_plan", (J1,), CAROL, {"plan": 3}))
    assert t2.outcome is Outcome.REJECTED and t2.reason.startswith("select: J001 is reserved by alice")
    wrong = await stack.gate.operate(t1.id, CAROL)
    assert wrong.outcome is Outcome.REJECTED and "selected by alice" in wrong.reason
    # a safety-increasing command pre-empts the reservation
    flash = await stack.gate.execute(CommandRequest("flash", (J1,), CAROL))
    assert flash.outcome is Outcome.DONE
    assert stack.gate.status(t1.id).state is TicketState.CANCELLED  # type: ignore[union-attr]


async def test_mass_command_over_the_blast_radius(stack: Stack) -> None:
    """Named test: more junctions than the blast radius need a second person; above the hard cap never."""
    two = stack.gate.select(CommandRequest("select_plan", (J1, J2), ALICE, {"plan": 2}))
    assert two.mass and two.state is TicketState.AWAITING_APPROVAL
    junctions = tuple(sorted(e for e, d in stack.city.equipment.items() if d.template == "junction"))[:21]
    many = stack.gate.select(CommandRequest("select_plan", junctions, ALICE, {"plan": 2}))
    assert many.outcome is Outcome.REJECTED
    assert many.reason == "blast_radius: 21 junction targets in one command, the hard limit is 20"
    many_flash = stack.gate.select(CommandRequest("flash", junctions, ALICE))
    assert many_flash.outcome is Outcome.REJECTED and many_flash.reason.startswith("blast_radius")
    assert stack.field.writes == []


async def test_blast_radius_per_minute_per_type(stack: Stack) -> None:
    assert (await stack.cmd("select_plan", J1, plan=2)).outcome is Outcome.DONE
    second = stack.gate.select(CommandRequest("select_plan", (J2,), CAROL, {"plan": 2}))
    assert second.mass and second.state is TicketState.AWAITING_APPROVAL  # 2 junctions within a minute
    stack.clock.advance(61)
    third = stack.gate.select(CommandRequest("select_plan", ("J003",), CAROL, {"plan": 2}))
    assert not third.mass and third.state is TicketState.SELECTED


async def test_rate_limit_per_user_and_flash_is_exempt(stack: Stack) -> None:
    for i in range(10):
        r = await stack.gate.execute(CommandRequest("show_message", (f"P0{i % 5 + 1}",), ALICE, {"text": f"m{i}"}))
        assert r.outcome is Outcome.DONE, r.reason
        stack.clock.advance(1)
    r = await stack.gate.execute(CommandRequest("show_message", ("P01",), ALICE, {"text": "one too many"}))
    assert r.outcome is Outcome.REJECTED and r.reason.startswith("rate_limit: user 'alice' sent 10 commands")
    for j in ("J001", "J002", "J003"):
        flash = await stack.cmd("flash", j)
        assert flash.outcome is Outcome.DONE, flash.reason  # never blocked by rate limits or the per-minute radius
    lit = await stack.gate.execute(CommandRequest("set_level", ("C0003",), ALICE, {"level": 100}))
    assert lit.outcome is Outcome.DONE
    stack.clock.advance(60)
    r = await stack.gate.execute(CommandRequest("show_message", ("P01",), ALICE, {"text": "later"}))
    assert r.outcome is Outcome.DONE


async def test_releasing_a_flash_is_safety_reducing(stack: Stack) -> None:
    assert (await stack.cmd("flash", J1)).outcome is Outcome.DONE
    ticket = stack.gate.select(CommandRequest("return_to_local", (J1,), ALICE))
    assert ticket.safety == "reducing" and ticket.state is TicketState.AWAITING_APPROVAL
    stack.gate.approve(ticket.id, BOB)
    result = await stack.gate.operate(ticket.id, ALICE)
    assert result.outcome is Outcome.DONE, result.reason
    assert stack.field.devices[J1].spc == 0
    assert stack.leases.active(J1) is None
    assert "lease_released" in kinds(stack)


async def test_write_failure_is_failed_with_an_alarm(stack: Stack) -> None:
    stack.field.comm_down.add("P02")
    result = await stack.gate.execute(CommandRequest("show_message", ("P02",), ALICE, {"text": "hello"}))
    assert result.outcome is Outcome.FAILED and "timeout" in result.reason
    assert stack.alarms and stack.alarms[-1].equipment == "P02"
    assert stack.leases.active("P02") is None


async def test_cancel(stack: Stack) -> None:
    ticket = stack.gate.select(CommandRequest("select_plan", (J1,), ALICE, {"plan": 2}))
    with pytest.raises(CommandRejected):
        stack.gate.cancel(ticket.id, CAROL)
    stack.gate.cancel(ticket.id, ALICE)
    assert stack.gate.status(ticket.id).state is TicketState.CANCELLED  # type: ignore[union-attr]
    assert (await stack.gate.operate(ticket.id, ALICE)).outcome is Outcome.REJECTED
    assert stack.gate.reservations() == {}


async def test_unwritable_audit_refuses_all_but_safety_increasing(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(kind: str, **fields: object) -> dict[str, object]:
        raise StorageError("disk full")

    monkeypatch.setattr(stack.audit, "append", broken)
    plan = await stack.cmd("select_plan", J1, plan=2)
    assert plan.outcome is Outcome.REJECTED and plan.reason.startswith("audit: ")
    flash = await stack.cmd("flash", J2)
    assert flash.outcome is Outcome.DONE
    assert any(a.key == "failsafe/audit/unwritable" and a.priority == 2 for a in stack.alarms)
    assert all(w.equipment == J2 for w in stack.field.writes)


async def test_locked_out_equipment_is_not_commandable(stack: Stack) -> None:
    stack.gate.set_commandable(J1, False, "maintenance work order 42", by="maint")
    r = await stack.cmd("flash", J1)
    assert r.outcome is Outcome.REJECTED and r.reason == "target: J001 is not commandable: maintenance work order 42"
    stack.gate.set_commandable(J1, True, by="maint")
    assert (await stack.cmd("flash", J1)).outcome is Outcome.DONE


async def test_a_safety_lock_out_still_takes_flash(stack: Stack) -> None:
    """A junction locked out because its layout cannot be trusted refuses plans but still goes to flash."""
    stack.gate.set_commandable(J1, False, "layout refused by the field", by="monitor", allow_increasing=True)
    plan = await stack.cmd("select_plan", J1, plan=2)
    assert plan.outcome is Outcome.REJECTED and "not commandable: layout refused" in plan.reason
    assert (await stack.cmd("flash", J1)).outcome is Outcome.DONE
    stack.gate.set_commandable(J1, False, "maintenance work order 43", by="maint")  # now a maintenance lock-out
    assert (await stack.cmd("flash", J1)).outcome is Outcome.REJECTED


async def test_operate_rechecks_interlocks(stack: Stack) -> None:
    ticket = stack.gate.select(CommandRequest("raise", ("BL03",), ALICE))
    stack.gate.approve(ticket.id, BOB)
    stack.field.devices["BL03"].presence = True  # a vehicle arrives between select and operate
    stack.poll()
    result = await stack.gate.operate(ticket.id, ALICE)
    assert result.outcome is Outcome.REJECTED and result.reason.startswith("interlocks: BL03")
    assert stack.field.writes == []


async def test_classify_is_a_dry_run(stack: Stack) -> None:
    info = stack.gate.classify(CommandRequest("lower", ("BL01",), ALICE))
    assert info["ok"] and info["needs_approval"] and info["safety"] == "reducing"
    assert stack.gate.pending() == [] and stack.field.writes == []


async def test_an_approval_that_cannot_be_journalled_does_not_count(stack: Stack,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    ticket = stack.gate.select(CommandRequest("lower", ("BL01",), ALICE))

    def broken(kind: str, **fields: object) -> dict[str, object]:
        raise StorageError("disk full")

    monkeypatch.setattr(stack.audit, "append", broken)
    with pytest.raises(CommandRejected, match="audit"):
        stack.gate.approve(ticket.id, BOB)
    assert ticket.state is TicketState.AWAITING_APPROVAL and ticket.approver is None


async def test_operate_rechecks_the_operating_session(stack: Stack) -> None:
    ticket = stack.gate.select(CommandRequest("select_plan", (J1,), ALICE, {"plan": 2}))
    expired_session = Principal("alice", frozenset({"operator"}), workstation="ws-1", authenticated=False)
    r = await stack.gate.operate(ticket.id, expired_session)
    assert r.outcome is Outcome.REJECTED and r.reason.startswith("user: ")
    demoted = Principal("alice", frozenset({"viewer"}), workstation="ws-1")
    t2 = stack.gate.select(CommandRequest("select_plan", (J1,), ALICE, {"plan": 2}))
    r2 = await stack.gate.operate(t2.id, demoted)
    assert r2.outcome is Outcome.REJECTED and "may not" in r2.reason
    assert stack.field.writes == []
