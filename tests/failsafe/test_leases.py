"""Leases: refresh, expiry at the exact end, release, heartbeat, restart never re-asserts an expired lease."""

from __future__ import annotations

import pytest

from failsafe.types import CommandRequest, Outcome
from tests.failsafe.conftest import ALICE, Stack

J = "J003"


def writes_to(stack: Stack, eq: str, since: float = 0.0) -> list[tuple[float, str, object]]:
    return [(w.t, w.tag, w.value) for w in stack.field.writes if w.equipment == eq and w.t >= since]


async def test_junction_lease_is_refreshed_then_released_at_its_end(stack: Stack) -> None:
    stack.watch = [J]
    t0 = stack.clock.now
    r = await stack.gate.execute(CommandRequest("select_plan", (J,), ALICE, {"plan": 2}, lease_s=60))
    assert r.outcome is Outcome.DONE and r.lease_end == pytest.approx(t0 + 60)
    await stack.run_for(59)
    refreshes = [w for w in writes_to(stack, J) if w[1] == "system_pattern_control" and w[2] == 2]
    assert len(refreshes) >= 6  # the command itself + one every 10 s: the backup timer (30 s) never runs out
    assert stack.field.devices[J].backups == 0 and stack.field.devices[J].pattern == 2
    await stack.run_for(1.5)
    assert stack.leases.active(J) is None
    after = writes_to(stack, J, since=t0 + 60)
    assert after[0][1:] == ("system_pattern_control", 0)  # released at the lease end (± one tick)
    assert after[0][0] - (t0 + 60) <= 0.5
    assert stack.field.devices[J].local
    kinds = [e["kind"] for e in stack.audit.entries() if e.get("target") == J]
    assert kinds == ["lease_start", "lease_expired", "lease_release_done"]
    await stack.run_for(120)
    assert writes_to(stack, J, since=t0 + 61) == []  # never refreshed again


async def test_server_gone_junction_falls_back_by_its_backup_timer(stack: Stack) -> None:
    stack.watch = [J]
    await stack.gate.execute(CommandRequest("flash", (J,), ALICE))
    await stack.run_for(20)
    assert stack.field.devices[J].spc == 255
    # the supervisory server dies: nobody ticks the leases any more; only the field runs
    stack.clock.advance(31)
    dev = stack.field.devices[J]
    assert dev.spc == 0 and dev.control_status == 4 and dev.flash_status == 2  # backup mode, local plan


async def test_restart_never_reasserts_an_expired_lease(stack: Stack) -> None:
    stack.watch = [J, "C0005"]
    await stack.gate.execute(CommandRequest("flash", (J,), ALICE, lease_s=120))
    await stack.gate.execute(CommandRequest("set_level", ("C0005",), ALICE, {"level": 90}, lease_s=100))
    await stack.run_for(10)
    # crash (no clean shutdown), the field falls back on its own, the server comes back after the leases ended
    stack.clock.advance(300)
    before = len(stack.field.writes)
    restarted = stack.restart()
    await restarted.leases.tick()
    new = stack.field.writes[before:]
    # release writes only: nothing re-asserted
    assert sorted((w.equipment, w.tag, w.value) for w in new) == [("C0005", "override_remaining", 0),
                                                                   (J, "system_pattern_control", 0)]
    notes = [e for e in restarted.audit.entries() if e["kind"] == "lease_expired"]
    assert len(notes) == 2 and all("not re-asserted" in e["reason"] for e in notes)
    for _ in range(5):
        stack.clock.advance(10)
        await restarted.leases.tick()
    assert stack.field.writes[before + len(new):] == []
    assert restarted.audit.verify().ok


async def test_restart_resumes_an_unexpired_lease(stack: Stack) -> None:
    stack.watch = [J]
    await stack.gate.execute(CommandRequest("flash", (J,), ALICE, lease_s=600))
    stack.clock.advance(20)
    restarted = stack.restart()
    assert restarted.leases.active(J) is not None
    before = len(stack.field.writes)
    await restarted.leases.tick()
    assert [(w.tag, w.value) for w in stack.field.writes[before:]] == [("unit_backup_time", 30),
                                                                        ("system_pattern_control", 255)]
    assert any(e["kind"] == "lease_resumed" for e in restarted.audit.entries())


async def test_heartbeat_keeps_a_lighting_override_and_its_loss_drops_it(stack: Stack) -> None:
    stack.watch = ["C0006"]
    cab = stack.field.devices["C0006"]
    r = await stack.gate.execute(CommandRequest("set_level", ("C0006",), ALICE, {"level": 100}, lease_s=3600))
    assert r.outcome is Outcome.DONE
    await stack.run_for(300)
    beats = [w for w in writes_to(stack, "C0006") if w[1] == "heartbeat"]
    assert len(beats) >= 300 / 15 - 1 and len({b[2] for b in beats}) == len(beats)  # changes every period
    assert cab.mode == 1
    # heartbeat loss (server killed): the cabinet drops the override within 60 s, back to its schedule
    stack.clock.advance(61)
    assert cab.mode == 0 and cab.local


async def test_no_heartbeat_without_a_lease(stack: Stack) -> None:
    stack.watch = ["C0007"]
    await stack.run_for(60)
    assert [w for w in stack.field.writes if w.tag == "heartbeat"] == []


async def test_new_command_supersedes_the_lease(stack: Stack) -> None:
    stack.watch = ["C0008"]
    await stack.gate.execute(CommandRequest("set_level", ("C0008",), ALICE, {"level": 80}))
    first = stack.leases.active("C0008")
    await stack.gate.execute(CommandRequest("set_level", ("C0008",), ALICE, {"level": 90}))
    second = stack.leases.active("C0008")
    assert first is not None and second is not None and first.id != second.id and first.state == "superseded"


async def test_refresh_failure_is_journalled_once_and_release_is_retried(stack: Stack) -> None:
    stack.watch = ["P03"]
    await stack.gate.execute(CommandRequest("show_message", ("P03",), ALICE, {"text": "roadworks"}, lease_s=30))
    stack.field.comm_down.add("P03")
    for _ in range(6):
        stack.clock.advance(10)
        await stack.leases.tick()
    assert stack.field.devices["P03"].message == "roadworks"  # the panel has no lease of its own
    stack.field.comm_down.discard("P03")
    for _ in range(31):  # retries back off to at most 30 s
        stack.clock.advance(1)
        await stack.leases.tick()
    assert stack.field.devices["P03"].message == ""  # release retried until it got through
    kinds = [e["kind"] for e in stack.audit.entries() if e.get("target") == "P03"]
    assert kinds == ["lease_start", "lease_expired", "lease_release_done"]


async def test_a_pending_release_never_clobbers_a_newer_command(stack: Stack) -> None:
    stack.watch = ["P04"]
    await stack.gate.execute(CommandRequest("show_message", ("P04",), ALICE, {"text": "old"}, lease_s=5))
    stack.field.comm_down.add("P04")
    for _ in range(10):  # the lease ends; its release fails and keeps being retried
        stack.clock.advance(1)
        await stack.leases.tick()
    assert [lease.state for lease in stack.leases.leases()] == ["releasing"]
    stack.field.comm_down.discard("P04")
    r = await stack.gate.execute(CommandRequest("show_message", ("P04",), ALICE, {"text": "new"}, lease_s=600))
    assert r.outcome is Outcome.DONE
    for _ in range(40):
        stack.clock.advance(1)
        await stack.leases.tick()
    assert stack.field.devices["P04"].message == "new"


async def test_an_old_refresh_in_flight_never_lands_after_a_newer_command(stack: Stack) -> None:
    import asyncio

    stack.watch = [J]
    assert (await stack.gate.execute(CommandRequest("select_plan", (J,), ALICE, {"plan": 2}))).outcome is Outcome.DONE
    gate_open = asyncio.Event()
    real_write = stack.field.write
    order: list[tuple[str, object]] = []
    lock = asyncio.Lock()  # one request at a time per device, like DriverWriter

    async def slow_write(tag, value, *, tolerance=None):  # type: ignore[no-untyped-def]
        async with lock:
            if not gate_open.is_set():
                await gate_open.wait()  # the refresh's first SET is stuck on the wire
            order.append((tag.tag, value))
            await real_write(tag, value, tolerance=tolerance)

    stack.field.write = slow_write  # type: ignore[method-assign]
    stack.clock.advance(11)  # a refresh is due
    refresh = asyncio.create_task(stack.leases.tick())
    await asyncio.sleep(0)
    flash = asyncio.create_task(stack.gate.execute(CommandRequest("flash", (J,), ALICE)))
    await asyncio.sleep(0)
    gate_open.set()
    await refresh
    assert (await flash).outcome is Outcome.DONE
    assert order[-1] == ("system_pattern_control", 255)
    assert ("system_pattern_control", 2) not in order  # the old plan's refresh stopped before its SET
    assert stack.field.devices[J].spc == 255
