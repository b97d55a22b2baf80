"""The fail-safe layer with REAL drivers against the REAL simulator servers (SNMP agent, Modbus gateway).

    sim models (stepped on an accelerated simulation clock, ×10)
      ├─ SnmpAgent (junctions)         ◄── drivers.snmp   ◄─┐
      └─ ModbusGateway (cabinets,       ◄── drivers.modbus ◄─┤ Poller → TagDatabase → monitor, gate interlocks
         bollards)                                           └ DriverWriter ◄── gate / leases (sim clock)

Everything the gate and the leases time (select windows, leases, heartbeats, confirmation) runs on the
simulation clock, so a 30 s unitBackupTime or the cabinets' 60 s heartbeat watchdog pass in a few real
seconds; the poller and the drivers run in real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from drivers.registry import DriverFactory
from failsafe.monitor import JunctionView
from failsafe.service import Failsafe
from failsafe.types import MONITOR, CommandRequest, FailsafeAlarm, Outcome, Principal
from failsafe.vocabulary import SNMP_SET_ALLOW_LIST
from failsafe.writer import DriverWriter
from scada.config import CityConfig, load_city
from scada.config.model import TagDef
from scada.poll import Poller
from scada.quality import Quality, Value
from scada.tagdb import TagDatabase
from sim.bollard import Bollard
from sim.junction import JunctionController
from sim.lighting import LightingCabinet
from sim.modbus_server import ModbusGateway
from sim.snmp_agent import SnmpAgent
from tests.failsafe.conftest import ALICE, BOB, ROOT, vocabulary

SPEED = 10.0
NIGHT = 1_735_945_200.0  # 2025-01-03 23:00 UTC
JUNCTIONS = ["J003", "J005", "J009"]
CABINETS = ["C0001", "C0004"]
BOLLARDS = ["BL01"]
AUTH, PRIV = "sim-auth-key-1", "sim-priv-key-1"


class SimClock:
    """Simulation time: start (default NIGHT) + SPEED × wall-clock seconds since the rig started (wall clock:
    shared with child processes)."""

    def __init__(self, start: float = NIGHT) -> None:
        self.start = start
        self.t0 = time.time()

    def __call__(self) -> float:
        return self.start + (time.time() - self.t0) * SPEED

    async def sleep(self, dt: float) -> None:
        await asyncio.sleep(dt / SPEED)


class RecordingWriter(DriverWriter):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.record: list[tuple[str, str, Value]] = []

    async def write(self, tag: TagDef, value: Value, *, tolerance: float | None = None) -> None:
        self.record.append((tag.equipment, tag.address, value))
        await super().write(tag, value, tolerance=tolerance)


class RigReads:
    """What every rig offers its tests: a tag's current sample, and waiting (real time) for a condition."""

    city: CityConfig
    db: TagDatabase

    def read(self, eq: str, tag: str) -> Any:
        return self.db.read(self.city.equipment[eq].tag_name(tag))

    async def wait(self, predicate: Any, timeout: float = 8.0) -> float:
        t0 = time.monotonic()
        while not predicate():
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"condition not met within {timeout} s (real)")
            await asyncio.sleep(0.02)
        return time.monotonic() - t0


@dataclass
class Rig(RigReads):
    city: CityConfig
    clock: SimClock
    models: dict[str, Any]
    agent: SnmpAgent
    gateway: ModbusGateway
    db: TagDatabase
    poller: Poller
    factory: DriverFactory
    writer: RecordingWriter
    fs: Failsafe
    alarms: list[FailsafeAlarm] = field(default_factory=list)
    stepper: asyncio.Task[None] | None = None
    supervisory_alive: bool = True

    async def kill_supervisory(self) -> None:
        """The supervisory server disappears: no lease refresh, no heartbeat, no poll. No release either."""
        self.supervisory_alive = False
        await stop_central(self.fs, self.poller, self.factory)


async def stop_central(fs: Failsafe, poller: Poller, factory: DriverFactory) -> None:
    """Stop the supervisory side abruptly: its fail-safe tasks (leases, heartbeats, monitor) and its polling,
    without any release; the field devices are then on their own. Bounded: nothing here may hang a test."""
    for task in fs._tasks:
        task.cancel()
    for task in fs._tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    fs._tasks.clear()
    if fs.monitor is not None:
        fs.monitor.stop()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(poller.aclose(), 5.0)
    for t in asyncio.all_tasks():
        if t.get_name().startswith("poll:"):
            t.cancel()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(factory.aclose(), 5.0)


@pytest.fixture
async def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Rig]:
    monkeypatch.setenv("SCADA_SNMP_AUTH_KEY", AUTH)
    monkeypatch.setenv("SCADA_SNMP_PRIV_KEY", PRIV)
    clock = SimClock()
    base = load_city(ROOT / "tags.yaml", ROOT / "alarms.yaml")
    models: dict[str, Any] = {}
    for eq_id in JUNCTIONS + CABINETS + BOLLARDS:
        eq = base.equipment[eq_id]
        rng = random.Random(f"42:{eq_id}")
        cls = {"junction": JunctionController, "lighting_cabinet": LightingCabinet, "bollard": Bollard}[eq.template]
        models[eq_id] = cls.from_equipment(eq, rng)  # type: ignore[attr-defined]
        models[eq_id].step(clock())
    agent = SnmpAgent({j: models[j] for j in JUNCTIONS}, v3_auth_key=AUTH, v3_priv_key=PRIV)
    await agent.start()
    gateway = ModbusGateway({int(base.equipment[e].params["unit"]): models[e] for e in CABINETS + BOLLARDS})
    await gateway.start()
    city = load_city(ROOT / "tags.yaml", ROOT / "alarms.yaml",
                     endpoint_overrides={"snmp-traffic": agent.endpoint, "modbus-1": gateway.endpoint})
    devices = JUNCTIONS + CABINETS + BOLLARDS
    for d in devices:
        city.devices[d].period_s = 0.5 if d in JUNCTIONS else 0.3
    db = TagDatabase(city.tags)
    factory = DriverFactory(city)
    poller = Poller(city, factory, db, devices=devices, max_backoff_s=0.5)

    async def step() -> None:
        while True:
            now = clock()
            for m in models.values():
                m.step(now)
            await asyncio.sleep(0.01)

    stepper = asyncio.create_task(step())
    await poller.start()
    writer = RecordingWriter(city, lambda name: poller.drivers.get(name))
    alarms: list[FailsafeAlarm] = []
    fs = Failsafe.build(city, db, writer, tmp_path / "state", vocabulary=vocabulary(), alarms=alarms.append,
                        clock=clock, sleep=clock.sleep, monitor_clock=time.time, fsync=False)
    await fs.start(lease_interval_s=0.05, monitor_interval_s=0.05)
    r = Rig(city, clock, models, agent, gateway, db, poller, factory, writer, fs, alarms, stepper)
    yield r
    snmp = {addr for eq, addr, _ in writer.record if city.equipment[eq].template == "junction"}
    assert snmp <= set(SNMP_SET_ALLOW_LIST), snmp  # every SET that really left the process
    await _close(r)


async def _close(r: Rig) -> None:
    """Teardown, bounded: scada.poll's Poller.aclose() sometimes never returns (a poll task swallows its
    cancellation, see the report); the fail-safe tests must not hang on it."""
    async def bounded(aw: Any) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(aw, 5.0)

    if r.supervisory_alive:
        await bounded(r.fs.aclose())
        await bounded(r.poller.aclose())
        await bounded(r.factory.aclose())
    for t in asyncio.all_tasks():
        if t.get_name().startswith("poll:"):
            t.cancel()
    if r.stepper is not None:
        r.stepper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await r.stepper
    await bounded(r.agent.aclose())
    await bounded(r.gateway.aclose())



async def test_flash_and_plan_through_snmp(rig: Rig) -> None:
    j = rig.models["J003"]
    r = await rig.fs.gate.execute(CommandRequest("flash", ("J003",), ALICE))
    assert r.outcome is Outcome.DONE, r.reason
    assert j.system_pattern_control == 255 and j.unit_backup_time == 30
    await rig.wait(lambda: rig.fs.monitor.view("J003").state == "flash")  # type: ignore[union-attr]
    ticket = rig.fs.gate.select(CommandRequest("select_plan", ("J005",), ALICE, {"plan": 2}))
    r = await rig.fs.gate.operate(ticket.id, ALICE)
    assert r.outcome is Outcome.DONE, r.reason
    assert rig.models["J005"].coord_pattern_status == 2
    bad = await rig.fs.gate.execute(CommandRequest("select_plan", ("J005",), ALICE, {"plan": 99}))
    assert bad.outcome is Outcome.REJECTED or bad.outcome is Outcome.NOT_CONFIRMED


async def test_lighting_override_and_road_class_minimum(rig: Rig) -> None:
    await rig.wait(lambda: rig.read("C0004", "schedule_level").quality is Quality.GOOD)
    assert rig.read("C0004", "schedule_level").value > 0  # night
    low = await rig.fs.gate.execute(CommandRequest("set_level", ("C0004",), ALICE, {"level": 30}))
    assert low.outcome is Outcome.REJECTED and "road-class minimum" in low.reason
    r = await rig.fs.gate.execute(CommandRequest("set_level", ("C0004",), ALICE, {"level": 100}, lease_s=600))
    assert r.outcome is Outcome.DONE, r.reason
    assert rig.models["C0004"].mode == 1 and rig.models["C0004"].override_level == 100


async def test_bollard_presence_interlock_and_approved_lower(rig: Rig) -> None:
    b = rig.models["BL01"]
    b.inject("presence")
    await rig.wait(lambda: rig.read("BL01", "presence").value is True)
    t = rig.fs.gate.select(CommandRequest("raise", ("BL01",), ALICE))
    assert t.reason.startswith("interlocks: BL01: vehicle presence")
    b.clear("presence")
    await rig.wait(lambda: rig.read("BL01", "presence").value is False)
    t = rig.fs.gate.select(CommandRequest("lower", ("BL01",), ALICE, lease_s=600))
    rig.fs.gate.approve(t.id, BOB)
    r = await rig.fs.gate.operate(t.id, ALICE)
    assert r.outcome is Outcome.DONE, r.reason
    assert b.position == 0 and b.command == 1


async def test_all_approaches_green_with_the_cabinet_monitor_disabled(rig: Rig) -> None:
    """Named test (integration): the field-safety monitor raises P1 within 1 s of the sample and asks flash."""
    j = rig.models["J005"]
    await rig.wait(lambda: rig.fs.monitor.view("J005").state == "normal")  # type: ignore[union-attr]
    j.inject("monitor_disabled")
    j.inject("conflicting_green", phases=tuple(range(1, j.phases + 1)))
    alarm_key = "failsafe/J005/conflicting_green"
    await rig.wait(lambda: any(a.key == alarm_key for a in rig.alarms))
    alarm = next(a for a in rig.alarms if a.key == alarm_key)
    sample_t = rig.read("J005", "phase_greens").receive_ns / 1e9
    assert alarm.priority == 1 and alarm.latched
    assert alarm.ts - sample_t < 1.0
    await rig.wait(lambda: any(a.key == "failsafe/J005/monitor_did_not_act" for a in rig.alarms))
    await rig.wait(lambda: any(e["kind"] == "outcome" and e.get("user") == MONITOR.name
                               for e in rig.fs.audit.entries()))
    assert j.system_pattern_control == 255  # the monitor's flash request reached the controller
    j.clear()


async def test_all_approaches_green_the_cabinet_monitor_latches_flash(rig: Rig) -> None:
    j = rig.models["J003"]
    await rig.wait(lambda: rig.fs.monitor.view("J003").state == "normal")  # type: ignore[union-attr]
    j.inject("conflicting_green", phases=tuple(range(1, j.phases + 1)))
    await rig.wait(lambda: any(a.key == "failsafe/J003/fault_flash" for a in rig.alarms))
    assert not any(a.key == "failsafe/J003/conflicting_green" for a in rig.alarms)  # never published
    view: JunctionView = rig.fs.monitor.view("J003")  # type: ignore[assignment]
    assert view.state == "fault_flash"
    assert not any(e.get("user") == MONITOR.name and e["kind"] == "operate" for e in rig.fs.audit.entries())


async def test_comm_loss_state_unknown_and_command_fails(rig: Rig) -> None:
    await rig.wait(lambda: rig.fs.monitor.view("J003").state == "normal")  # type: ignore[union-attr]
    rig.agent.set_comm_fault("J003", "drop")
    await rig.wait(lambda: rig.fs.monitor.view("J003").state == "unknown")  # type: ignore[union-attr]
    view = rig.fs.monitor.view("J003")
    assert view is not None and view.greens is None and view.yellows is None
    r = await rig.fs.gate.execute(CommandRequest("flash", ("J003",), ALICE))
    assert r.outcome is Outcome.FAILED
    rig.agent.set_comm_fault("J003", None)
    await rig.wait(lambda: rig.fs.monitor.view("J003").state != "unknown")  # type: ignore[union-attr]


async def test_crisis_plan_dry_run_then_activation_against_the_simulator(rig: Rig) -> None:
    sup = Principal("sam", frozenset({"supervisor"}), "crisis-desk")
    await rig.wait(lambda: rig.read("BL01", "presence").quality is Quality.GOOD)
    dry = rig.fs.crisis.dry_run("emergency_corridor_centre", sup)
    assert [s.outcome for s in dry.steps] == ["would_run"] * 4 and rig.writer.record == []
    run = await rig.fs.crisis.activate("emergency_corridor_centre", sup)
    assert [s.outcome for s in run.steps] == ["done", "done", "done", "deferred"], [s.reason for s in run.steps]
    assert all(rig.models[j].system_pattern_control == 255 for j in ("J003", "J005", "J009"))
    run = await rig.fs.crisis.approve(run.id, BOB)
    assert run.state == "done", [s.reason for s in run.steps]
    assert rig.models["BL01"].position == 0


async def test_killing_the_supervisory_side_leaves_the_field_autonomous(rig: Rig) -> None:
    """Named test: kill the server after commands: junctions on local plans, lighting on schedule,
    bollards local and interlocked, by the devices' own leases and watchdogs."""
    m = rig.models
    for verb, target, params in [("select_plan", "J005", {"plan": 2}), ("flash", "J003", {}),
                                 ("set_level", "C0001", {"level": 100})]:
        r = await rig.fs.gate.execute(CommandRequest(verb, (target,), ALICE, params, lease_s=3600))
        assert r.outcome is Outcome.DONE, r.reason
    t = rig.fs.gate.select(CommandRequest("lower", ("BL01",), ALICE, lease_s=3600))
    rig.fs.gate.approve(t.id, BOB)
    assert (await rig.fs.gate.operate(t.id, ALICE)).outcome is Outcome.DONE
    await asyncio.sleep(1.5)  # 15 s of simulation: refreshes and heartbeats keep everything as commanded
    assert m["J003"].system_pattern_control == 255 and m["C0001"].mode == 1 and m["BL01"].command == 1
    await rig.kill_supervisory()
    killed = rig.clock()
    # junctions: unitBackupTime (30 s) without a SET → backup mode, local plan
    await rig.wait(lambda: all(m[j].unit_control_status == 4 and m[j].system_pattern_control == 0
                               for j in ("J003", "J005")))
    assert rig.clock() - killed >= 25
    # lighting and bollard: the heartbeat stopped → back to schedule / local within the 60 s watchdog
    await rig.wait(lambda: m["C0001"].mode == 0 and m["BL01"].command == 0 and not m["BL01"].lease.active)
    assert 60 - 15 - 5 <= rig.clock() - killed <= 75  # 60 s after the last heartbeat (period 15 s)
    assert m["C0001"].schedule_level > 0 and m["C0001"].mode == 0  # on its night schedule, not off
    m["BL01"].inject("presence")
    await asyncio.sleep(0.5)
    assert not (m["BL01"].presence and m["BL01"].direction > 0)  # never rises onto a vehicle


async def test_kill_9_of_a_supervisory_process_and_restart(tmp_path: Path) -> None:
    """Named test: a real supervisory process (poller, drivers, gate) is killed with SIGKILL after its
    commands: the field returns to local control on its own; a restarted process on the same state
    directory, after the leases' end, journals them as expired and never re-asserts them."""
    import json
    import signal
    import sys

    clock = SimClock()
    base = load_city(ROOT / "tags.yaml", ROOT / "alarms.yaml")
    j = JunctionController.from_equipment(base.equipment["J003"], random.Random("42:J003"))
    c = LightingCabinet.from_equipment(base.equipment["C0001"], random.Random("42:C0001"))
    for m in (j, c):
        m.step(clock())
    agent = SnmpAgent({"J003": j}, v3_auth_key=AUTH, v3_priv_key=PRIV)
    await agent.start()
    gateway = ModbusGateway({int(base.equipment["C0001"].params["unit"]): c})
    await gateway.start()

    async def step() -> None:
        while True:
            for m in (j, c):
                m.step(clock())
            await asyncio.sleep(0.01)

    stepper = asyncio.create_task(step())
    state = tmp_path / "state"
    children: list[asyncio.subprocess.Process] = []

    async def spawn(*commands: str) -> asyncio.subprocess.Process:
        argv = [sys.executable, "-m", "tests.failsafe.supervisor_proc", "--snmp", agent.endpoint, "--modbus",
                gateway.endpoint, "--state", str(state), "--t0", repr(clock.t0), "--start", repr(NIGHT),
                "--speed", str(SPEED)]
        for cmd in commands:
            argv += ["--command", cmd]
        env = {**__import__("os").environ, "SCADA_SNMP_AUTH_KEY": AUTH, "SCADA_SNMP_PRIV_KEY": PRIV}
        child = await asyncio.create_subprocess_exec(*argv, cwd=str(ROOT), env=env, stdout=asyncio.subprocess.PIPE,
                                                     stderr=asyncio.subprocess.DEVNULL)
        children.append(child)
        return child

    async def until_ready(proc: asyncio.subprocess.Process) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        assert proc.stdout is not None
        while True:
            line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()
            assert line, "the supervisory process exited early"
            if line == "READY":
                return out
            out.append(json.loads(line))

    async def wait(pred: Any, timeout: float = 10.0) -> None:
        t0 = time.monotonic()
        while not pred():
            assert time.monotonic() - t0 < timeout, "condition not met"
            await asyncio.sleep(0.02)

    try:
        proc = await spawn("flash:J003:lease=70", "set_level:C0001:level=100:lease=70")
        results = await until_ready(proc)
        assert [r["outcome"] for r in results] == ["done", "done"], results
        await asyncio.sleep(1.0)
        assert j.system_pattern_control == 255 and c.mode == 1
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        killed = clock()
        await wait(lambda: j.system_pattern_control == 0 and j.unit_control_status == 4)  # backup: local plan
        await wait(lambda: c.mode == 0)  # heartbeat lost: back on its night schedule
        assert clock() - killed < 75
        # restart after the leases' end (70 s of simulation after the commands)
        last_end = max(r["lease_end"] for r in results)  # the second command may start seconds (sim) later
        await wait(lambda: clock() > last_end + 5, timeout=15)
        proc2 = await spawn()
        await until_ready(proc2)
        await asyncio.sleep(1.5)  # 15 s of simulation: refreshes would have happened by now
        # only the release was sent (0 = standby: local plan), never the expired flash again
        assert j.system_pattern_control == 0 and j.unit_control_status in (3, 4) and j.coord_pattern_status != 255
        assert c.mode == 0
        proc2.send_signal(signal.SIGKILL)
        await proc2.wait()
        from failsafe.audit import verify_file

        entries = [json.loads(x) for seg in sorted((state / "audit").glob("*.log")) for x in seg.read_text().splitlines()]
        expired = [e for e in entries if e["kind"] == "lease_expired"]
        assert len(expired) == 2 and all("not re-asserted" in e["reason"] for e in expired)
        assert verify_file(state / "audit", (state / "keys" / "audit.key").read_bytes()).ok  # the key made at start
    finally:
        for child in children:
            if child.returncode is None:
                child.kill()
                await child.wait()
        stepper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stepper
        await agent.aclose()
        await gateway.aclose()
