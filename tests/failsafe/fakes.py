"""A small in-process field for fast fail-safe tests: devices that obey the simulator contract (docs/contracts.md).

These fakes stand in for the Writer port (``write(tag, value)`` / ``read(tag)``) so that hypothesis can
run thousands of command sequences in seconds with a fake clock. The same properties are checked
against the real simulator and real drivers in ``test_integration.py``.

    FakeClock ── sleep(dt) advances time, steps every device, lets the event loop run
    FakeField ── one model per equipment, keyed by equipment id; write/read by TagDef; comm faults;
                 every write recorded (who could have issued it is checked against the audit log)
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from typing import Any

from failsafe.vocabulary import SNMP_SET_ALLOW_LIST, Vocabulary
from scada.config.model import CityConfig, EquipmentDef, TagDef
from scada.errors import CommError, WriteNotAllowed
from scada.quality import Quality, Sample, Value
from scada.tagdb import TagDatabase

T0 = 1_750_000_000.0  # a fixed epoch start: the fake clock never reads the real one


class FakeClock:
    def __init__(self, start: float = T0) -> None:
        self.now = start
        self.field: FakeField | None = None

    def __call__(self) -> float:
        return self.now

    async def sleep(self, dt: float) -> None:
        self.advance(dt)
        await asyncio.sleep(0)

    def advance(self, dt: float) -> None:
        self.now += max(0.0, dt)
        if self.field is not None:
            self.field.step(self.now)


# ------------------------------------------------------------------------------------------ devices
def ring_sequence(permissive: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """(greens, yellows) per 2 s slot: each permissive pair is a stage, then its amber, then all red."""
    seq: list[tuple[int, int]] = []
    for a, b in permissive:
        mask = (1 << (a - 1)) | (1 << (b - 1))
        seq += [(mask, 0), (0, mask), (0, 0)]
    return seq or [(1, 0), (0, 1), (0, 0)]


@dataclass
class FakeJunction:
    eq: str
    spc: int = 0
    ubt: int = 0
    last_set: float = 0.0
    control_status: int = 6  # timebase (local)
    flash_status: int = 2  # not_flash
    local_free: int = 2
    greens: int = 0
    yellows: int = 0
    reds: int = 0
    pattern: int = 1  # local plan
    valid_plans: tuple[int, ...] = (1, 2, 3, 4, 5)
    sequence: list[tuple[int, int]] = field(default_factory=lambda: ring_sequence([(1, 2), (3, 4)]))
    phases: int = 4
    conflict: bool = False  # injected: all approaches green
    mmu_works: bool = True
    mmu_delay: float = 0.3
    conflict_since: float | None = None
    fault_latched: bool = False
    backups: int = 0
    now: float = 0.0

    def set(self, tag: str, value: int, now: float) -> None:
        if tag == "system_pattern_control":
            if not 0 <= value <= 255:
                raise ValueError(value)
            self.spc = value
            self.last_set = now
        elif tag == "unit_backup_time":
            self.ubt = value
            self.last_set = now

    def step(self, now: float) -> None:
        self.now = now
        if self.spc and self.ubt and now - self.last_set >= self.ubt:
            self.spc = 0
            self.control_status = 4  # backup mode
            self.backups += 1
        if self.fault_latched:
            self.flash_status, self.pattern = 5, 255
            self.greens, self.yellows, self.reds = 0, 0, 0
            return
        if self.conflict:
            self.conflict_since = now if self.conflict_since is None else self.conflict_since
            if self.mmu_works and now - self.conflict_since >= self.mmu_delay:
                self.fault_latched = True
                self.step(now)
                return
        if self.spc == 255:
            self.flash_status, self.pattern, self.control_status = 3, 255, 2
            self.greens, self.yellows, self.reds = 0, (1 << self.phases) - 1, 0
        else:
            self.flash_status = 2
            if self.spc == 0:
                self.pattern, self.local_free = 1, 2
                if self.control_status == 2:
                    self.control_status = 3
            elif self.spc in self.valid_plans:
                self.pattern, self.control_status, self.local_free = self.spc, 2, 2
            else:
                self.pattern, self.control_status, self.local_free = 1, 2, 7
            g, y = self.sequence[int(now // 2) % len(self.sequence)]
            self.greens, self.yellows = g, y
            self.reds = ((1 << self.phases) - 1) & ~(g | y)
        if self.conflict and self.spc != 255:  # in flash the flash transfer relays cut the load switches
            self.greens = (1 << self.phases) - 1
            self.yellows, self.reds = 0, 0

    def read(self, tag: str) -> Value:
        static: dict[str, Value] = {"uptime": int(self.now * 100) % (1 << 32)}  # up since the epoch: it counts
        for n in self.valid_plans:
            static[f"pattern_cycle_{n}"] = 2 * len(self.sequence)  # 2 s slots
        for p in range(1, 9):  # phaseConcurrency: the phases sharing a stage with p ("" beyond its phases)
            stages = [g for g, _ in self.sequence if g >> (p - 1) & 1]
            static[f"phase_concurrency_{p}"] = "".join(chr(q) for q in range(1, self.phases + 1)
                                                       if q != p and any(g >> (q - 1) & 1 for g in stages))
        return {
            "phase_greens": self.greens, "phase_yellows": self.yellows, "phase_reds": self.reds,
            "unit_control_status": self.control_status, "unit_flash_status": self.flash_status,
            "short_alarm_status": 0, "coord_pattern_status": self.pattern, "local_free_status": self.local_free,
            "system_pattern_control": self.spc, "unit_backup_time": self.ubt, **static,
        }[tag]

    @property
    def local(self) -> bool:
        return self.spc == 0


@dataclass
class FakeCabinet:
    eq: str
    night: bool = True
    schedule: int = 60
    override_level: int = 0
    expires: float | None = None
    heartbeat: int = 0
    last_alive: float | None = None
    now: float = 0.0

    def set(self, tag: str, value: int, now: float) -> None:
        if tag == "override_level":
            self.override_level = value
        elif tag == "override_remaining":
            self.expires = now + value if value > 0 else None
            self.last_alive = now
        elif tag == "heartbeat":
            if value != self.heartbeat:
                self.heartbeat, self.last_alive = value, now

    def step(self, now: float) -> None:
        self.now = now
        if self.expires is not None and (now >= self.expires or self.last_alive is None or
                                         now - self.last_alive >= 60):
            self.expires = None

    @property
    def mode(self) -> int:
        if self.expires is not None:
            return 1
        return 0 if self.night else 3

    def read(self, tag: str) -> Value:
        level = self.override_level if self.expires is not None else (self.schedule if self.night else 0)
        return {
            "mains_ok": True, "contactor_closed": level > 0, "door_open": False, "luminaire_count": 30,
            "failed_count": 0, "power": 30.0 * level, "energy": 1.0, "schedule_level": self.schedule if self.night else 0,
            "mode": self.mode, "override_level": self.override_level,
            "override_remaining": 0 if self.expires is None else math.ceil(self.expires - self.now),
            "heartbeat": self.heartbeat,
        }.get(tag, level if tag.endswith("/level") else 0)

    @property
    def local(self) -> bool:
        return self.expires is None


@dataclass
class FakeBollard:
    eq: str
    command: int = 0
    expires: float | None = None
    heartbeat: int = 0
    last_alive: float | None = None
    presence: bool = False
    fault: bool = False
    position: int = 1  # up
    now: float = 0.0
    raised_on_presence: int = 0

    def set(self, tag: str, value: int, now: float) -> None:
        """As sim.bollard: a command without a lease gets 60 s; local or a 0 lease cancels the lease."""
        if tag == "command":
            self.command = value
            if value == 0:
                self.expires = None
            elif self.expires is None:
                self.expires, self.last_alive = now + 60, now
        elif tag == "lease_remaining":
            if self.command == 0 or value == 0:
                self.command, self.expires = 0, None
            else:
                self.expires, self.last_alive = now + value, now
        elif tag == "heartbeat":
            if value != self.heartbeat:
                self.heartbeat, self.last_alive = value, now

    def step(self, now: float) -> None:
        self.now = now
        if self.expires is not None and (now >= self.expires or self.last_alive is None or
                                         now - self.last_alive >= 60):
            self.expires = None
        if self.expires is None:
            self.command = 0
        if self.command == 1:
            self.position = 0
        elif self.command == 2 and not self.presence and not self.fault:
            self.position = 1
        elif self.command == 0 and not self.presence:
            self.position = 1  # local: raised unless a vehicle is there
        if self.position == 1 and self.presence:
            self.raised_on_presence += 1

    def read(self, tag: str) -> Value:
        return {"position": self.position, "presence": self.presence, "fault": self.fault, "command": self.command,
                "lease_remaining": 0 if self.expires is None else math.ceil(self.expires - self.now),
                "heartbeat": self.heartbeat}[tag]

    @property
    def local(self) -> bool:
        return self.expires is None


@dataclass
class FakePanel:
    eq: str
    message: str = ""

    def set(self, tag: str, value: Any, now: float) -> None:
        if tag == "message":
            self.message = str(value)

    def step(self, now: float) -> None:
        pass

    def read(self, tag: str) -> Value:
        return {"message": self.message, "status": 0, "brightness": 80}[tag]

    @property
    def local(self) -> bool:
        return self.message == ""


MODELS: dict[str, type] = {"junction": FakeJunction, "lighting_cabinet": FakeCabinet, "bollard": FakeBollard,
                           "panel": FakePanel}


@dataclass
class WriteRecord:
    t: float
    equipment: str
    tag: str
    value: Value


@dataclass
class FakeField:
    """The Writer port over in-process fake devices, plus a poller into a TagDatabase."""

    city: CityConfig
    clock: FakeClock
    devices: dict[str, Any] = field(default_factory=dict)
    comm_down: set[str] = field(default_factory=set)
    writes: list[WriteRecord] = field(default_factory=list)
    write_delay: float = 0.0

    @classmethod
    def build(cls, city: CityConfig, clock: FakeClock, vocab: Vocabulary) -> FakeField:
        f = cls(city, clock)
        for eq in city.equipment.values():
            model = MODELS.get(eq.template)
            if model is FakeJunction:
                m = vocab.matrix_for(eq.id)
                pairs = sorted(tuple(sorted(p)) for p in m.permissive)
                f.devices[eq.id] = FakeJunction(eq.id, sequence=ring_sequence(pairs), phases=m.phases)  # type: ignore[arg-type]
            elif model is not None:
                f.devices[eq.id] = model(eq.id)
        clock.field = f
        f.step(clock.now)
        return f

    def step(self, now: float) -> None:
        for d in self.devices.values():
            d.step(now)

    async def write(self, tag: TagDef, value: Value, *, tolerance: float | None = None) -> None:
        if not tag.writable:
            raise WriteNotAllowed(f"{tag.name}: not writable")
        eq = self.city.equipment[tag.equipment]
        if self.city.devices[eq.device].protocol == "snmp" and tag.address not in SNMP_SET_ALLOW_LIST:
            raise WriteNotAllowed(f"{tag.name}: SNMP SET outside the allow-list")
        if tag.equipment in self.comm_down:
            raise CommError(f"{tag.equipment}: timeout")
        if self.write_delay:
            await self.clock.sleep(self.write_delay)
        self.writes.append(WriteRecord(self.clock.now, tag.equipment, tag.tag, value))
        self.devices[tag.equipment].set(tag.tag, value, self.clock.now)
        self.devices[tag.equipment].step(self.clock.now)

    async def read(self, tag: TagDef) -> Sample:
        if tag.equipment in self.comm_down:
            raise CommError(f"{tag.equipment}: timeout")
        ns = int(self.clock.now * 1e9)
        return Sample(self.devices[tag.equipment].read(tag.tag), Quality.GOOD, ns, ns)

    def poll(self, db: TagDatabase, equipment: list[str] | None = None) -> None:
        """One atomic sample per equipment, applied as one batch (like one SNMP GET PDU)."""
        ns = int(self.clock.now * 1e9)
        for eq_id in equipment or list(self.devices):
            idx = db.equipment_indices(eq_id)
            if idx.size == 0:
                continue
            dev = self.devices[eq_id]
            batch: list[tuple[int | str, Sample]] = []
            for i in idx:
                d = db.defs[int(i)]
                if eq_id in self.comm_down:
                    batch.append((int(i), Sample(None, Quality.BAD_COMM, ns, ns)))
                else:
                    batch.append((int(i), Sample(dev.read(d.tag), Quality.GOOD, ns, ns)))
            db.apply_samples(batch)


def equipment_of(city: CityConfig, template: str) -> list[EquipmentDef]:
    return [e for e in city.equipment.values() if e.template == template]
