"""The uncommanded-change watch (failsafe/watch.py) on the fake field and a fake clock: the gate and the leases
write through the watch's RecordingWriter, "outside" writes go straight to the fake devices (as snmpset or
mbpoll would), and the real tag database carries the samples. The same cases against the real simulator,
independent tools and the real server: tests/server/test_uncommanded.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from failsafe.audit import AuditLog
from failsafe.gate import CommandGate
from failsafe.leases import LeaseManager
from failsafe.types import CommandRequest, CommandResult, FailsafeAlarm, Outcome, Principal
from failsafe.watch import RecordingWriter, UncommandedWatch
from scada.quality import Quality, Sample
from tests.failsafe.conftest import ALICE, AUDIT_KEY, BOB, city, vocabulary
from tests.failsafe.fakes import FakeClock, FakeField, FakeJunction, FakePanel


@dataclass
class Rig:
    clock: FakeClock
    fld: FakeField
    db: object
    leases: LeaseManager
    gate: CommandGate
    writer: RecordingWriter
    watch: UncommandedWatch
    audit: AuditLog
    alarms: list[FailsafeAlarm] = field(default_factory=list)

    def poll(self, *eqs: str) -> None:
        self.fld.poll(self.db, list(eqs) or None)  # type: ignore[arg-type]

    def outside(self, eq: str, tag: str, value: object) -> None:
        """A write that bypasses the system (another tool on the field network)."""
        self.fld.devices[eq].set(tag, value, self.clock.now)
        self.fld.devices[eq].step(self.clock.now)

    async def run_for(self, seconds: float, *eqs: str) -> None:
        end = self.clock.now + seconds
        while self.clock.now < end - 1e-9:
            self.clock.advance(min(0.5, end - self.clock.now))
            self.poll(*eqs)
            await self.leases.tick()
            self.watch.check()

    async def cmd(self, verb: str, target: str, user: Principal = ALICE, **params: object) -> CommandResult:
        return await self.gate.execute(CommandRequest(verb, (target,), user, dict(params)))  # type: ignore[arg-type]

    def active(self, code: str, eq: str) -> FailsafeAlarm | None:
        """The latest alarm of that key if it is active."""
        mine = [a for a in self.alarms if a.key == f"failsafe/{eq}/{code}"]
        return mine[-1] if mine and mine[-1].active else None


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    from scada.tagdb import TagDatabase

    c, v = city(), vocabulary()
    clock = FakeClock()
    fld = FakeField.build(c, clock, v)
    for dev in fld.devices.values():
        if isinstance(dev, FakeJunction):
            dev.ubt = 60  # as the simulator's controllers: a backup time is configured
        if isinstance(dev, FakePanel):
            dev.message = "Bienvenue"  # the panel's own text
    db = TagDatabase(c.tags)
    audit = AuditLog(tmp_path / "audit", AUDIT_KEY, fsync=False, clock=clock)
    writer = RecordingWriter(fld, clock)
    leases = LeaseManager(c, v, writer, audit, store=tmp_path / "leases.json", clock=clock)
    alarms: list[FailsafeAlarm] = []
    gate = CommandGate(c, v, writer, audit, leases, reader=db, alarms=alarms.append, clock=clock, sleep=clock.sleep)
    watch = UncommandedWatch(c, v, db, leases, writer, alarms=alarms.append, audit=audit, clock=clock)
    rig = Rig(clock, fld, db, leases, gate, writer, watch, audit, alarms)
    watch.start()  # no event loop here: changes are compared at once, in the poller's (this) thread
    rig.poll()
    return rig


async def test_outside_flash_is_an_uncommanded_change_until_return_to_local(rig: Rig) -> None:
    rig.outside("J005", "system_pattern_control", 255)
    rig.poll("J005")
    alarm = rig.active("uncommanded_change", "J005")
    assert alarm is not None and alarm.priority == 2
    assert alarm.message == "pattern flash, no lease from this system"
    assert rig.watch.findings() == {"J005": "pattern flash, no lease from this system"}
    assert any(e.get("event") == "uncommanded_change" for e in rig.audit.latest("J005", 10))
    result = await rig.cmd("return_to_local", "J005")
    assert result.outcome is Outcome.DONE, result.reason
    rig.poll("J005")
    assert rig.active("uncommanded_change", "J005") is None
    assert rig.watch.findings() == {}


async def test_adopting_under_a_lease_clears_and_a_later_outside_change_names_what_we_hold(rig: Rig) -> None:
    cab = "C0001"
    rig.outside(cab, "override_level", 70)
    rig.outside(cab, "override_remaining", 600)
    rig.poll(cab)
    assert rig.active("uncommanded_change", cab).message == "override level 70 %, no lease from this system"  # type: ignore[union-attr]
    result = await rig.cmd("adopt", cab, level=70)
    assert result.outcome is Outcome.DONE, result.reason
    rig.poll(cab)
    assert rig.active("uncommanded_change", cab) is None and rig.leases.active(cab) is not None
    await rig.run_for(40, cab)  # past the grace: our lease, not the grace, is what makes 70 % ours
    assert rig.active("uncommanded_change", cab) is None
    rig.outside(cab, "override_level", 90)
    rig.poll(cab)
    assert rig.active("uncommanded_change", cab).message == "override level 90 %, this system holds 70 %"  # type: ignore[union-attr]


async def test_our_commands_and_their_lease_end_raise_nothing(rig: Rig) -> None:
    r1 = await rig.cmd("select_plan", "J003", plan=2)
    r2 = await rig.cmd("set_level", "C0002", level=80)
    r3 = await rig.cmd("show_message", "P01", text="Travaux rue Monge")
    assert [r.outcome for r in (r1, r2, r3)] == [Outcome.DONE] * 3, (r1.reason, r2.reason, r3.reason)
    await rig.run_for(60, "J003", "C0002", "P01")  # far past the grace: the leases in force make them ours
    assert rig.watch.findings() == {}
    # short leases running out: the devices go back to local by themselves (or by our release)
    for verb, eq, params in (("select_plan", "J004", {"plan": 3}), ("set_level", "C0003", {"level": 90}),
                             ("show_message", "P02", {"text": "Marché"})):
        res = await rig.gate.execute(CommandRequest(verb, (eq,), ALICE, params, lease_s=5))
        assert res.outcome is Outcome.DONE, res.reason
    await rig.run_for(90, "J004", "C0003", "P02")
    assert rig.leases.active("J004") is None and rig.fld.devices["J004"].spc == 0
    assert rig.fld.devices["P02"].message == ""
    assert rig.watch.findings() == {}
    assert not [a for a in rig.alarms if a.active and "uncommanded" in a.key]


async def test_a_value_we_write_is_ours_only_within_the_confirm_timeout(rig: Rig) -> None:
    """A write in flight (before its lease exists) is not a difference; the same value left without a lease
    of ours is one once the type's confirm timeout (junction: 20 s) has passed."""
    tag = rig.gate._tags[city().equipment["J007"].tag_name("system_pattern_control")]
    await rig.writer.write(tag, 3)
    rig.poll("J007")
    assert rig.active("uncommanded_change", "J007") is None
    rig.clock.advance(15)
    rig.fld.devices["J007"].last_set = rig.clock.now  # keep the controller from its backup timer
    rig.poll("J007")
    assert rig.active("uncommanded_change", "J007") is None
    rig.clock.advance(6)
    rig.watch.check(["J007"])
    assert rig.active("uncommanded_change", "J007").message == "pattern 3, no lease from this system"  # type: ignore[union-attr]


async def test_backup_time_zero_from_outside_until_return_to_local(rig: Rig) -> None:
    rig.outside("J006", "unit_backup_time", 0)
    rig.outside("J006", "system_pattern_control", 2)
    rig.poll("J006")
    zero = rig.active("backup_time_zero", "J006")
    assert zero is not None and zero.priority == 2 and "never fall back" in zero.message
    assert rig.active("uncommanded_change", "J006").message == "pattern 2, no lease from this system"  # type: ignore[union-attr]
    result = await rig.cmd("return_to_local", "J006")
    assert result.outcome is Outcome.DONE, result.reason
    rig.poll("J006")
    assert rig.active("backup_time_zero", "J006") is None and rig.active("uncommanded_change", "J006") is None
    assert rig.fld.devices["J006"].ubt == 30


async def test_panel_own_text_is_local_and_an_outside_text_is_not(rig: Rig) -> None:
    assert rig.active("uncommanded_change", "P01") is None  # "Bienvenue" was there before us: its own
    rig.outside("P01", "message", "ROUTE FERMEE")
    rig.poll("P01")
    assert rig.active("uncommanded_change", "P01").message == "message 'ROUTE FERMEE', no lease from this system"  # type: ignore[union-attr]
    result = await rig.cmd("adopt", "P01", text="ROUTE FERMEE")
    assert result.outcome is Outcome.DONE, result.reason
    rig.poll("P01")
    assert rig.active("uncommanded_change", "P01") is None


async def test_bollard_and_approval_of_adopt(rig: Rig) -> None:
    rig.outside("BL02", "command", 1)
    rig.poll("BL02")
    change = rig.active("uncommanded_change", "BL02")
    assert change is not None and change.message == "command lower (position down), no lease from this system"
    ticket = rig.gate.select(CommandRequest("adopt", ("BL02",), ALICE, {"command": 1}))
    assert ticket.safety == "reducing" and ticket.needs_approval  # holding a bollard movement: a second person
    rig.gate.approve(ticket.id, BOB)
    result = await rig.gate.operate(ticket.id, ALICE)
    assert result.outcome is Outcome.DONE, result.reason
    rig.poll("BL02")
    assert rig.active("uncommanded_change", "BL02") is None


async def test_local_manual_control_is_p3_not_an_uncommanded_change(rig: Rig) -> None:
    cab = city().equipment["C0004"]
    mode, level = cab.tag_name("mode"), cab.tag_name("override_level")
    rig.db.apply_samples([(mode, Sample.good(2)), (level, Sample.good(35))])  # type: ignore[attr-defined]
    local = rig.active("local_control", "C0004")
    assert local is not None and local.priority == 3 and "local manual control" in local.message
    assert rig.active("uncommanded_change", "C0004") is None
    rig.db.apply_samples([(mode, Sample.good(0))])  # type: ignore[attr-defined]
    assert rig.active("local_control", "C0004") is None


async def test_an_unreadable_request_decides_nothing(rig: Rig) -> None:
    rig.outside("J008", "system_pattern_control", 255)
    rig.poll("J008")
    assert rig.active("uncommanded_change", "J008") is not None
    tag = city().equipment["J008"].tag_name("system_pattern_control")
    rig.db.apply_samples([(tag, Sample(None, Quality.BAD_COMM, 1, 1))])  # type: ignore[attr-defined]
    rig.watch.check(["J008"])
    assert rig.active("uncommanded_change", "J008") is not None  # unknown: kept, not cleared


async def test_each_interval_re_evaluates_only_what_time_alone_can_change(rig: Rig) -> None:
    """run()'s interval set (``_timed``): equipment with a lease of ours or a write of ours still in its
    grace; nothing else (its verdict changes only with a value, which arrives as a change event), so at
    city scale an interval evaluates a handful of equipment, not every watched one."""
    assert rig.watch._timed(rig.clock.now, 1.0) == set()  # nothing commanded: nothing time-dependent
    # a write of ours without a lease: timed while its grace (junction confirm timeout 20 s) runs, then not
    tag = rig.gate._tags[city().equipment["J007"].tag_name("system_pattern_control")]
    await rig.writer.write(tag, 3)
    assert rig.watch._timed(rig.clock.now, 1.0) == {"J007"}
    rig.clock.advance(20.5)
    assert rig.watch._timed(rig.clock.now, 1.0) == {"J007"}  # the grace just ran out: this interval decides
    rig.poll("J007")
    rig.watch.check(rig.watch._timed(rig.clock.now, 1.0), rig.clock.now)
    assert rig.active("uncommanded_change", "J007") is not None  # decided by the interval, no change event
    rig.clock.advance(5)
    assert "J007" not in rig.watch._timed(rig.clock.now, 1.0)
    # a command: its lease keeps the equipment timed while in force and for its grace after it ended
    res = await rig.gate.execute(CommandRequest("select_plan", ("J004",), ALICE, {"plan": 3}, lease_s=5))
    assert res.outcome is Outcome.DONE, res.reason
    assert "J004" in rig.watch._timed(rig.clock.now, 1.0)
    await rig.run_for(10, "J004")  # the lease ran out (the device back to local)
    assert rig.leases.active("J004") is None and "J004" in rig.watch._timed(rig.clock.now, 1.0)
    await rig.run_for(30, "J004")
    assert "J004" not in rig.watch._timed(rig.clock.now, 1.0)
    assert len(rig.watch._eqs) > 10  # the others were never in the interval set
