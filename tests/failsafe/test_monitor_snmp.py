"""The field-safety monitor is never fooled: regression tests against the simulator's REAL SNMP agent.

    JunctionController (sim/junction.py, stepped to simulated time t)
        └─ SnmpAgent (sim/snmp_agent.py, 127.0.0.1:0) ◄── SnmpDriver (drivers/snmp.py) one poll at t
                                                           │ samples stamped t (simulated time)
                                                           ▼
                                 TagDatabase ──► FieldSafetyMonitor (clock = t) ──► alarms

The protocol path is real (every value crosses UDP through pysnmp twice); only time is simulated, so ten
minutes of flash or a plan's whole cycle pass in a few seconds. Findings covered: greens checked whatever
the controller says about flash; a frozen controller caught in a plan and in flash, and never a false one
over ten minutes of flash, free or standby; a layout declaring "all pairs compatible" at J004 refused.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from drivers.registry import DriverFactory
from failsafe.concurrency import check_layouts, tagdb_reader
from failsafe.gate import CommandGate
from failsafe.monitor import FieldSafetyMonitor
from failsafe.types import CommandRequest, FailsafeAlarm
from failsafe.vocabulary import Vocabulary, load_vocabulary
from scada.config import CityConfig, load_city
from scada.config.model import TagDef
from scada.quality import Sample
from scada.tagdb import TagDatabase
from sim.junction import JunctionController
from sim.snmp_agent import SnmpAgent
from tests.failsafe.conftest import ALICE, ROOT, make_stack
from tests.failsafe.conftest import vocabulary as shipped_vocabulary
from tests.failsafe.test_concurrency import all_pairs_layout

J = "J004"  # a cross4 junction: phases 1+2 and 3+4 permissive
DAY = 1_736_935_200.0  # 2025-01-15 10:00 UTC: the local schedule runs plan 1


@dataclass
class SnmpJunction:
    city: CityConfig
    model: JunctionController
    agent: SnmpAgent
    factory: DriverFactory
    points: list[TagDef]
    db: TagDatabase
    t: float = DAY
    alarms: list[FailsafeAlarm] = dataclasses.field(default_factory=list)
    monitor: FieldSafetyMonitor | None = None

    def clock(self) -> float:
        return self.t

    def watch(self, vocab: Vocabulary, gate: CommandGate | None = None) -> FieldSafetyMonitor:
        self.monitor = FieldSafetyMonitor(self.city, vocab, self.db, gate, alarms=self.alarms.append,
                                          clock=self.clock).start()
        return self.monitor

    async def poll(self) -> None:
        """One real SNMP read of the junction, stamped with the simulated time."""
        driver = self.factory(self.city.devices[self.city.equipment[J].device])
        if not driver.connected:
            await driver.connect()
        samples = await driver.read(self.points)
        ns = int(self.t * 1e9)
        self.db.apply_samples([(p.name, Sample(s.value, s.quality, ns, ns))
                               for p, s in zip(self.points, samples, strict=True)])

    async def run(self, seconds: float, every: float = 1.0) -> None:
        end = self.t + seconds
        while self.t < end - 1e-9:
            self.t += every
            self.model.step(self.t)
            await self.poll()
            if self.monitor is not None:
                self.monitor.check(self.t)

    def active(self, code: str) -> list[FailsafeAlarm]:
        """The alarms of ``code`` whose last transition is active (raise/clear pairs folded)."""
        last: FailsafeAlarm | None = None
        for a in self.alarms:
            if a.key == f"failsafe/{J}/{code}":
                last = a
        return [last] if last is not None and last.active else []

    def read(self, tag: str) -> Any:
        return self.db.read(self.city.equipment[J].tag_name(tag)).value

    def raised(self, code: str) -> list[FailsafeAlarm]:
        return [a for a in self.alarms if a.key == f"failsafe/{J}/{code}" and a.active]


@pytest.fixture
async def field() -> AsyncIterator[SnmpJunction]:
    base = load_city(ROOT / "tags.yaml", ROOT / "alarms.yaml")
    eq = base.equipment[J]
    eq = dataclasses.replace(eq, params={**eq.params, "layout": "cross4"})  # what commands.yaml says J004 is
    model = JunctionController.from_equipment(eq, random.Random(f"42:{J}"))
    model.step(DAY)
    agent = SnmpAgent({J: model})
    await agent.start()
    city = load_city(ROOT / "tags.yaml", ROOT / "alarms.yaml", endpoint_overrides={"snmp-traffic": agent.endpoint})
    tags = city.tag_by_name()
    points = [tags[n] for n in city.devices[city.equipment[J].device].tags]
    factory = DriverFactory(city)
    try:
        yield SnmpJunction(city, model, agent, factory, points, TagDatabase(city.tags))
    finally:
        await factory.aclose()
        await agent.aclose()


def vocabulary() -> Vocabulary:
    return shipped_vocabulary()


async def to_flash(f: SnmpJunction) -> None:
    f.model.set_unit_backup_time(0, f.t)  # no lease expiry: nobody refreshes the request in these tests
    f.model.set_system_pattern_control(255, f.t)
    await f.run(40)
    assert f.read("unit_flash_status") == 3 and f.read("coord_pattern_status") == 255


# ---------------------------------------------------------------------------------------------- finding 4
async def test_flash_reported_with_conflicting_greens_is_a_p1(field: SnmpJunction) -> None:
    """The controller says flash (pattern 255, unitFlashStatus automatic) while its greens conflict: P1."""
    f = field
    mon = f.watch(vocabulary())
    await to_flash(f)
    assert mon.view(J).state == "flash"  # type: ignore[union-attr]
    f.model.inject("flash_transfer_failed")  # the load switches stay connected in flash
    f.model.inject("conflicting_green", phases=(1, 3))
    await f.run(1)
    assert f.read("unit_flash_status") == 3 and f.read("coord_pattern_status") == 255  # it still says flash
    assert f.read("phase_greens") == 0b101  # ... and shows 1+3 green, through SNMP
    p1 = f.raised("conflicting_green_in_flash")
    assert len(p1) == 1 and p1[0].priority == 1 and p1[0].latched and "reports flash" in p1[0].message
    view = mon.view(J)
    assert view is not None and view.state == "conflict" and view.conflicts == ((1, 3),)
    await f.run(4)  # still conflicting 4 samples on (samples_before_flash): the cabinet did not act (flash again)
    assert f.raised("monitor_did_not_act") and len(f.raised("conflicting_green_in_flash")) == 1


async def test_plain_flash_is_not_a_conflict(field: SnmpJunction) -> None:
    """Flashing amber lights every yellow: in flash only the greens are checked."""
    f = field
    mon = f.watch(vocabulary())
    await to_flash(f)
    await f.run(30)
    assert mon.view(J).state == "flash" and f.alarms == []  # type: ignore[union-attr]


# ---------------------------------------------------------------------------------------------- finding 5
async def test_frozen_controller_in_a_plan_is_p2_and_unknown(field: SnmpJunction) -> None:
    f = field
    mon = f.watch(vocabulary())
    await f.run(20)
    assert mon.view(J).state == "normal"  # type: ignore[union-attr]
    plan = int(f.read("coord_pattern_status"))
    cycle = int(f.read(f"pattern_cycle_{plan}"))
    assert cycle == f.model.pattern_cycle_time(plan) > 0  # the controller's own patternCycleTime, over SNMP
    greens = f.read("phase_greens")
    while f.read("phase_greens") == greens:  # freeze right after a stage change: the worst case to wait for
        await f.run(1)
    f.model.inject("frozen")  # stale status, sysUpTime keeps counting
    up0 = int(f.read("uptime"))
    await f.run(cycle - 5)
    assert not f.raised("controller_frozen")  # not before one cycle
    await f.run(10)
    assert int(f.read("uptime")) - up0 >= cycle * 100  # the uptime counted
    p2 = f.active("controller_frozen")
    assert len(p2) == 1 and p2[0].priority == 2 and "unchanged" in p2[0].message
    view = mon.view(J)
    assert view is not None and view.state == "unknown" and view.greens is None and "frozen" in view.reason
    f.model.clear("frozen")
    await f.run(2)
    assert not f.active("controller_frozen") and mon.view(J).state == "normal"  # type: ignore[union-attr]


async def test_frozen_controller_in_flash_is_p2(field: SnmpJunction) -> None:
    """Frozen in flash: the phases legitimately stand still; the stale snapshot's sysUpTime gives it away."""
    f = field
    mon = f.watch(vocabulary())
    await to_flash(f)
    f.model.inject("frozen", uptime="stopped")
    await f.run(10)
    p2 = f.active("controller_frozen")
    assert len(p2) == 1 and "sysUpTime standing still" in p2[0].message
    assert mon.view(J).state == "unknown"  # type: ignore[union-attr]


@pytest.mark.parametrize("request_", [255, 254, 0])
async def test_ten_minutes_of_flash_free_or_standby_raise_no_p2(field: SnmpJunction, request_: int) -> None:
    f = field
    mon = f.watch(vocabulary())
    f.model.set_system_pattern_control(request_, f.t)
    f.model.set_unit_backup_time(0, f.t)  # no lease expiry: the mode holds for the whole ten minutes
    await f.run(600, every=2.0)
    assert f.read("coord_pattern_status") == {255: 255, 254: 254, 0: f.model.running_plan}[request_]
    assert not f.raised("controller_frozen")
    assert mon.view(J).state in ("flash", "normal")  # type: ignore[union-attr]


# ---------------------------------------------------------------------------------------------- finding 7
async def test_all_pairs_compatible_layout_is_refused_at_start(field: SnmpJunction, tmp_path: Path) -> None:
    f = field
    vocab = load_vocabulary(all_pairs_layout(tmp_path), f.city)
    stack = make_stack(tmp_path, vocab)  # a real gate (its field is never written here)
    mon = f.watch(vocab, stack.gate)
    mon.check(f.t)
    assert J in mon.layouts()["unverified"]  # not read yet
    await f.run(1)
    assert mon.layouts()["refused"] == [J]
    p1 = f.active("layout_refused")
    assert len(p1) == 1 and p1[0].priority == 1 and "1+3" in p1[0].message
    refusal = stack.gate.classify(CommandRequest("select_plan", (J,), ALICE, {"plan": 2}))
    assert not refusal["ok"] and "layout refused" in refusal["reason"]  # that junction's commands refused
    # the monitor checks with the stricter matrix (field ∩ layout): 1+3 green together is still a conflict
    f.model.inject("monitor_disabled")
    f.model.inject("conflicting_green", phases=(1, 3))
    await f.run(1)
    assert f.raised("conflicting_green")


async def test_all_pairs_compatible_layout_is_refused_at_reload(field: SnmpJunction, tmp_path: Path) -> None:
    """The reload check (server/components/failsafe.py prepare): the running tag database's phaseConcurrency."""
    f = field
    await f.run(1)
    path = all_pairs_layout(tmp_path)
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if t.startswith(f"  {J}:"))
    problems = check_layouts(load_vocabulary(path, f.city), tagdb_reader(f.db, f.city), [J])
    assert [str(p).split(": its")[0] for p in problems] == [f"{path}:{line}: junction '{J}'"]
    shipped = check_layouts(vocabulary(), tagdb_reader(f.db, f.city), [J])
    assert shipped == []  # the shipped cross4 layout agrees with the controller


async def test_a_matching_layout_is_verified(field: SnmpJunction) -> None:
    f = field
    mon = f.watch(vocabulary())
    await f.run(1)
    assert mon.layouts()["verified"] == [J] and not f.raised("layout_refused")
