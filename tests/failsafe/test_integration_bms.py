"""The fail-safe layer's building verbs through the REAL OPC UA driver to the simulator's REAL BMS server.

    sim.building.Building × 10 (stepped on an accelerated simulation clock, ×10)
      └─ OpcUaModelServer "bms" (writable intrusion/arm_request, intrusion/arm_lease)
            ▲ subscriptions                 ▲ Write + read-back
         drivers.opcua ◄── Poller → TagDatabase      DriverWriter ◄── gate / leases (sim clock)

Same rig as test_integration.py (whose SNMP/Modbus rig it copies) but for the BMS: the gate's select,
second-person approval, write, read-back confirmation, lease refresh and release all cross a real
OPC UA session, and the building model alone decides what the variables show.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from drivers.registry import DriverFactory
from failsafe.service import Failsafe
from failsafe.types import CommandRequest, FailsafeAlarm, Outcome, TicketState
from scada.config import CityConfig, load_city
from scada.poll import Poller
from scada.quality import Quality
from scada.tagdb import TagDatabase
from sim.building import REQ_ARM, REQ_DISARM, REQ_LOCAL, Building
from sim.opcua_server import OpcUaModelServer
from tests.failsafe.conftest import ALICE, BOB, ROOT, vocabulary
from tests.failsafe.test_integration import RecordingWriter, RigReads, SimClock, stop_central

SPEED = 10.0
TZ = dt.timezone(dt.timedelta(hours=1))  # Paris in January
NIGHT = dt.datetime(2025, 1, 7, 23, 30, tzinfo=TZ).timestamp()  # Tuesday night: every building closed, armed
DAY = dt.datetime(2025, 1, 7, 10, 30, tzinfo=TZ).timestamp()  # Tuesday 10:30: every building open, disarmed
ARMING = {"intrusion/arm_request", "intrusion/arm_lease"}


@dataclass
class BmsRig(RigReads):
    city: CityConfig
    clock: SimClock
    models: dict[str, Building]
    server: OpcUaModelServer
    db: TagDatabase
    poller: Poller
    factory: DriverFactory
    writer: RecordingWriter
    fs: Failsafe
    alarms: list[FailsafeAlarm] = field(default_factory=list)
    stepper: asyncio.Task[None] | None = None
    central_alive: bool = True

    def audit(self, kind: str, target: str) -> list[dict[str, Any]]:
        def targets(e: dict[str, Any]) -> list[str]:  # the gate journals a list, the leases one id
            t = e.get("target")
            return [t] if isinstance(t, str) else list(t or [])

        return [e for e in self.fs.audit.entries() if e["kind"] == kind and target in targets(e)]

    async def kill_central(self) -> None:
        """The supervisory side disappears: no refresh, no release, no poll (the field is on its own)."""
        self.central_alive = False
        await stop_central(self.fs, self.poller, self.factory)


@contextlib.asynccontextmanager
async def bms_rig(tmp_path: Path, start: float) -> AsyncIterator[BmsRig]:
    clock = SimClock(start)
    base = load_city(ROOT / "tags.yaml", ROOT / "alarms.yaml")
    models: dict[str, Building] = {}
    for eq in base.equipment.values():
        if eq.template == "building":
            models[eq.id] = Building.from_equipment(eq, random.Random(f"42:{eq.id}"))
            models[eq.id].step(clock())
    server = OpcUaModelServer("bms", models, path="/city/bms")
    await server.start()
    await server.publish(clock())
    city = load_city(ROOT / "tags.yaml", ROOT / "alarms.yaml", endpoint_overrides={"opcua-bms": server.endpoint})
    city.devices["bms-1"].period_s = 0.3
    db = TagDatabase(city.tags)
    factory = DriverFactory(city)
    poller = Poller(city, factory, db, devices=["bms-1"], max_backoff_s=0.5)

    async def step() -> None:  # the simulator's runner: step every model, then publish
        while True:
            now = clock()
            for m in models.values():
                m.step(now)
            await server.publish(now)
            await asyncio.sleep(0.02)

    stepper = asyncio.create_task(step())
    await poller.start()
    writer = RecordingWriter(city, lambda name: poller.drivers.get(name))
    alarms: list[FailsafeAlarm] = []
    fs = Failsafe.build(city, db, writer, tmp_path / "state", vocabulary=vocabulary(), alarms=alarms.append,
                        clock=clock, sleep=clock.sleep, fsync=False, monitor=False)
    await fs.start(lease_interval_s=0.05)
    rig = BmsRig(city, clock, models, server, db, poller, factory, writer, fs, alarms, stepper)
    try:
        yield rig
        # every write that left the process went to one of the two arming points, and nowhere else
        assert {addr.rsplit(";s=", 1)[1].split("/", 1)[1] for _, addr, _ in writer.record} <= ARMING
    finally:
        async def bounded(aw: Any) -> None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(aw, 5.0)

        if rig.central_alive:
            await bounded(fs.aclose())
            await bounded(poller.aclose())
            await bounded(factory.aclose())
        stepper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stepper
        await bounded(server.aclose())


async def test_disarm_needs_a_second_person_and_lease_expiry_returns_the_building_to_its_schedule(
        tmp_path: Path) -> None:
    async with bms_rig(tmp_path, NIGHT) as rig:
        b = rig.models["B001"]
        await rig.wait(lambda: rig.read("B001", "intrusion_armed").value is True)
        assert b.armed and b.arm_request == REQ_LOCAL
        ticket = rig.fs.gate.select(CommandRequest("disarm_intrusion", ("B001",), ALICE, lease_s=150,
                                                   note="night cleaning crew"))
        assert ticket.state is TicketState.AWAITING_APPROVAL and ticket.safety == "reducing"
        early = await rig.fs.gate.operate(ticket.id, ALICE)  # no second person yet
        assert early.outcome is Outcome.REJECTED and b.arm_request == REQ_LOCAL
        rig.fs.gate.approve(ticket.id, BOB)
        result = await rig.fs.gate.operate(ticket.id, ALICE)
        operated = rig.clock()
        assert result.outcome is Outcome.DONE, result.reason
        assert b.arm_request == REQ_DISARM and not b.armed
        # the poller's subscription sees what the building reports
        await rig.wait(lambda: rig.read("B001", "intrusion_arm_request").value == REQ_DISARM
                       and rig.read("B001", "intrusion_armed").value is False)
        assert rig.read("B001", "intrusion_arm_lease").quality is Quality.GOOD
        # past the building's 60 s watchdog: the lease refresh (every 20 s) keeps the request in force
        await rig.wait(lambda: rig.clock() > operated + 100, timeout=15)
        assert b.arm_request == REQ_DISARM and not b.armed and 30 < b.lease.remaining(rig.clock()) < 60
        assert rig.audit("lease_refresh_failed", "B001") == []
        # the lease ends: back to the building's own schedule (closed → armed), nothing re-asserted
        await rig.wait(lambda: b.arm_request == REQ_LOCAL and b.armed, timeout=15)
        assert 140 <= rig.clock() - operated <= 165
        await rig.wait(lambda: rig.read("B001", "intrusion_armed").value is True
                       and rig.read("B001", "intrusion_arm_lease").value == 0)
        await rig.wait(lambda: len(rig.audit("lease_release_done", "B001")) == 1)
        assert len(rig.audit("lease_expired", "B001")) == 1
        assert not rig.alarms


async def test_arm_by_day_confirmed_by_read_back_then_return_to_local(tmp_path: Path) -> None:
    async with bms_rig(tmp_path, DAY) as rig:
        b = rig.models["B002"]
        await rig.wait(lambda: rig.read("B002", "intrusion_armed").value is False)
        ticket = rig.fs.gate.select(CommandRequest("arm_intrusion", ("B002",), ALICE, lease_s=1800))
        assert ticket.state is TicketState.SELECTED  # critical: select-before-operate, no approval (neutral)
        result = await rig.fs.gate.operate(ticket.id, ALICE)
        assert result.outcome is Outcome.DONE, result.reason  # armed once its doors were shut
        assert b.arm_request == REQ_ARM and b.armed
        lease = rig.fs.leases.active("B002")
        assert lease is not None and lease.safety == "neutral"
        ticket = rig.fs.gate.select(CommandRequest("return_to_local", ("B002",), ALICE))
        result = await rig.fs.gate.operate(ticket.id, ALICE)
        assert result.outcome is Outcome.DONE, result.reason
        assert b.arm_request == REQ_LOCAL and not b.lease.active and not b.armed  # open: its schedule disarms
        assert rig.fs.leases.active("B002") is None
        assert len(rig.audit("lease_released", "B002")) == 1


async def test_a_door_held_open_leaves_the_arming_not_confirmed(tmp_path: Path) -> None:
    async with bms_rig(tmp_path, DAY) as rig:
        b = rig.models["B003"]
        b.inject("door_forced", door=1)
        await rig.wait(lambda: rig.read("B003", "door_1").value is True)
        ticket = rig.fs.gate.select(CommandRequest("arm_intrusion", ("B003",), ALICE, lease_s=600))
        result = await rig.fs.gate.operate(ticket.id, ALICE)
        assert result.outcome is Outcome.NOT_CONFIRMED
        assert "intrusion_armed" in result.reason
        assert b.arm_request == REQ_ARM and not b.armed  # the request is taken, the panel cannot set
        assert any(a.key == "failsafe/B003/command_not_confirmed" for a in rig.alarms)
        assert rig.fs.leases.active("B003") is not None  # it reached the device: held, so it is released
        b.clear("door_forced")
        await rig.wait(lambda: b.armed)  # the last door shut: the pending arm sets


async def test_the_central_gone_the_building_returns_to_its_schedule_by_itself(tmp_path: Path) -> None:
    async with bms_rig(tmp_path, NIGHT) as rig:
        b = rig.models["B004"]
        await rig.wait(lambda: rig.read("B004", "intrusion_armed").quality is Quality.GOOD)
        ticket = rig.fs.gate.select(CommandRequest("disarm_intrusion", ("B004",), ALICE, lease_s=3600))
        rig.fs.gate.approve(ticket.id, BOB)
        assert (await rig.fs.gate.operate(ticket.id, ALICE)).outcome is Outcome.DONE
        await asyncio.sleep(3.0)  # 30 s of simulation: refreshed
        assert b.arm_request == REQ_DISARM and not b.armed
        await rig.kill_central()
        killed = rig.clock()
        await rig.wait(lambda: b.arm_request == REQ_LOCAL and b.armed, timeout=10)
        assert 60 - 20 - 5 <= rig.clock() - killed <= 70  # 60 s after the last refresh (every 20 s)


@pytest.mark.parametrize("when", [NIGHT, DAY])
def test_the_rig_times_are_what_the_tests_assume(when: float) -> None:
    city = load_city(ROOT / "tags.yaml", ROOT / "alarms.yaml")
    models = [Building.from_equipment(e, random.Random(1)) for e in city.equipment.values() if e.template == "building"]
    assert len(models) == 10
    assert all(m.is_open_at(when) is (when == DAY) for m in models)
