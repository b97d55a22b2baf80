"""The Writer port over the REAL simulator models (sim/*), in process, on the fake clock.

Junctions are ``sim.junction.JunctionController`` (SNMP objects by tag name, SETs through the same two
methods the SNMP agent calls), lighting cabinets and bollards are ``sim.lighting.LightingCabinet`` /
``sim.bollard.Bollard`` addressed by their Modbus map (``hr:1`` → ``modbus_write("hr", 1, [v])``), so
hypothesis can drive thousands of command sequences against the simulator's own field logic without
sockets. Panels use the small fake (their protocol is framing only). After every field step the
field-side invariants are checked and violations recorded:

    junction    no two conflicting phases green/yellow together unless the test disabled the cabinet
                monitor (``monitor_disabled``) on purpose
    bollard     never rising while a vehicle is on the presence loop
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from failsafe.vocabulary import SNMP_SET_ALLOW_LIST
from scada.config.model import CityConfig, TagDef
from scada.errors import CommError, DeviceError, WriteNotAllowed
from scada.quality import Quality, Sample, Value
from scada.tagdb import TagDatabase
from sim.bollard import Bollard
from sim.junction import JunctionController
from sim.lighting import LightingCabinet
from sim.modbus_map import ModbusRefusal
from tests.failsafe.fakes import FakeClock, FakePanel, WriteRecord

FLASHING = {3, 4, 5, 6, 7, 8}


def _split(address: str) -> tuple[str, int]:
    table, _, addr = address.partition(":")
    return table, int(addr)


@dataclass
class SimField:
    city: CityConfig
    clock: FakeClock
    models: dict[str, Any] = field(default_factory=dict)
    comm_down: set[str] = field(default_factory=set)
    monitor_disabled: set[str] = field(default_factory=set)
    writes: list[WriteRecord] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    @classmethod
    def build(cls, city: CityConfig, clock: FakeClock, equipment: list[str], seed: int = 42) -> SimField:
        f = cls(city, clock)
        for eq_id in equipment:
            eq = city.equipment[eq_id]
            rng = random.Random(f"{seed}:{eq_id}")
            if eq.template == "junction":
                f.models[eq_id] = JunctionController.from_equipment(eq, rng)
            elif eq.template == "lighting_cabinet":
                f.models[eq_id] = LightingCabinet.from_equipment(eq, rng)
            elif eq.template == "bollard":
                f.models[eq_id] = Bollard.from_equipment(eq, rng)
            elif eq.template == "panel":
                f.models[eq_id] = FakePanel(eq_id)
        clock.field = f  # type: ignore[assignment]
        f.step(clock.now)
        return f

    # ------------------------------------------------------------------ field side
    def step(self, now: float) -> None:
        for eq_id, m in self.models.items():
            m.step(now)
            self._check(eq_id, m, now)

    def _check(self, eq_id: str, m: Any, now: float) -> None:
        if isinstance(m, JunctionController):
            if m.unit_flash_status in FLASHING or eq_id in self.monitor_disabled:
                return
            pairs = m.conflicting_pairs(m.phase_greens | m.phase_yellows)
            if pairs:
                self.violations.append(f"{now:.1f} {eq_id}: conflicting {pairs}")
        elif isinstance(m, Bollard):
            if m.presence and m.direction > 0:
                self.violations.append(f"{now:.1f} {eq_id}: rising onto a vehicle")

    def local(self, eq_id: str) -> bool:
        m = self.models[eq_id]
        if isinstance(m, JunctionController):
            return m.system_pattern_control == 0
        if isinstance(m, LightingCabinet):
            return m.mode != 1
        if isinstance(m, Bollard):
            return m.command == 0 and not m.lease.active
        return bool(m.local)

    # ------------------------------------------------------------------ Writer port
    async def write(self, tag: TagDef, value: Value, *, tolerance: float | None = None) -> None:
        if not tag.writable:
            raise WriteNotAllowed(f"{tag.name}: not writable")
        if tag.equipment in self.comm_down:
            raise CommError(f"{tag.equipment}: timeout")
        m = self.models[tag.equipment]
        now = self.clock.now
        if isinstance(m, JunctionController):
            if tag.address not in SNMP_SET_ALLOW_LIST:
                raise WriteNotAllowed(f"{tag.name}: notWritable")
            if tag.tag == "system_pattern_control":
                m.set_system_pattern_control(int(value), now)  # type: ignore[arg-type]
            else:
                m.set_unit_backup_time(int(value), now)  # type: ignore[arg-type]
        elif isinstance(m, FakePanel):
            m.set(tag.tag, value, now)
        else:
            table, addr = _split(tag.address)
            try:
                m.modbus_write(table, addr, [int(value)])  # type: ignore[arg-type]
            except ModbusRefusal as exc:
                raise DeviceError(f"{tag.name}: {exc}") from None
        self.writes.append(WriteRecord(now, tag.equipment, tag.tag, value))
        self.step(now)

    def value(self, tag: TagDef) -> Value:
        m = self.models[tag.equipment]
        if isinstance(m, JunctionController):
            return m.served(tag.tag)
        if isinstance(m, FakePanel):
            return m.read(tag.tag)
        table, addr = _split(tag.address)
        raw = m.modbus_read(table, addr, 1)[0]
        return bool(raw) if tag.dtype == "bool" else int(raw)

    async def read(self, tag: TagDef) -> Sample:
        if tag.equipment in self.comm_down:
            raise CommError(f"{tag.equipment}: timeout")
        ns = int(self.clock.now * 1e9)
        return Sample(self.value(tag), Quality.GOOD, ns, ns)

    def poll(self, db: TagDatabase, equipment: list[str] | None = None) -> None:
        ns = int(self.clock.now * 1e9)
        for eq_id in equipment or list(self.models):
            if eq_id not in self.models:
                continue
            batch: list[tuple[int | str, Sample]] = []
            for i in db.equipment_indices(eq_id):
                d = db.defs[int(i)]
                if d.dtype == "float" or "/" in d.tag:
                    continue  # power/energy floats and per-luminaire tags: not needed by the gate
                if eq_id in self.comm_down:
                    batch.append((int(i), Sample(None, Quality.BAD_COMM, ns, ns)))
                else:
                    v = self.value(d)  # None: an object the controller lacks (noSuchInstance over SNMP)
                    batch.append((int(i), Sample(v, Quality.GOOD if v is not None else Quality.BAD_CONFIG, ns, ns)))
            db.apply_samples(batch)
