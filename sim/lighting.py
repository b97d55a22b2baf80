"""Street-lighting cabinet: astronomical schedule with night dimming, luminaires, central override lease.

    sunset ─────────── 22:00 ───────── 00:00 ─────────── 05:30 ────────── sunrise
      │   100 %          │    70 %       │     50 %        │    100 %        │  off (day)
      └──────────────────┴───────────────┴─────────────────┴─────────────────┘
      local wall-clock steps (Europe/Paris, DST via zoneinfo); sunset/sunrise from sim.astro for the
      cabinet's latitude/longitude. Steps that fall outside the night (a summer 05:30 after sunrise)
      are simply skipped.

What the cabinet decides (``_evaluate``), highest priority first::

    mains lost          → contactor open, every luminaire dark (the controller itself is battery-backed
                          and keeps answering Modbus, so the centre sees mains_ok = 0)
    local_manual fault  → mode 2, the technician's level
    override lease      → mode 1, hr:0 level (at night never below NIGHT_MIN_LEVEL)
    schedule            → mode 0 at night, mode 3 (off_daytime) by day

The override lease (hr:1 seconds, counted down by the cabinet) ends when it runs out or when the
supervisory heartbeat hr:2 has not changed for 60 s (sim.lease): the cabinet then follows its stored
schedule, so losing the central system never switches a street off at night.

Luminaires: nominal 60-120 W (one type per cabinet), power = nominal × level, energy integrates power
exactly between events (steps are cut at schedule changes and lease deadlines, at most 60 s long).
Per-luminaire status: 0 ok, 1 failed (dark while commanded, latched until cleared), 2 day_burner
(burning while the cabinet commands off: its node relay is stuck closed on the permanent phase).

Modbus map (unit per cabinet; see sim/README_field.md)::

    di:0 mains_ok   di:1 contactor_closed   di:2 door_open
    ir:0 luminaire count   ir:1 failed count   ir:2-3 power W f32   ir:4-5 energy kWh f32
    ir:6 schedule level %  ir:7 mode (0 schedule, 1 override, 2 local_manual, 3 off_daytime)
    ir:8-99 reserved (read as 0)
    ir:100+4(i-1) .. +3: level %, status, power 0.1 W, energy 0.1 kWh (wraps at 65536)   i = 1..N
    hr:0 override level %   hr:1 override seconds left   hr:2 heartbeat

Faults (inject/clear): lamp_failure (index=1-based int or list, or count=n), day_burner (same),
mains_loss, door_open, frozen (served registers stop changing; the cabinet keeps working),
local_manual (level=%).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sim.astro import DIJON_LAT, DIJON_LON, sun_times
from sim.faults import Reevaluating, check_fault, unknown_fault
from sim.lease import Lease, lease_write
from sim.modbus_map import IllegalValue, RegisterImage, Table, float32_words, u16

if TYPE_CHECKING:
    from scada.config import EquipmentDef

__all__ = [
    "DEFAULT_PROFILE",
    "MODE_LOCAL_MANUAL",
    "MODE_OFF_DAYTIME",
    "MODE_OVERRIDE",
    "MODE_SCHEDULE",
    "NIGHT_MIN_LEVEL",
    "PARIS",
    "DimStep",
    "LightingCabinet",
    "LightingSchedule",
]

log = logging.getLogger(__name__)

PARIS = ZoneInfo("Europe/Paris")
MODE_SCHEDULE, MODE_OVERRIDE, MODE_LOCAL_MANUAL, MODE_OFF_DAYTIME = 0, 1, 2, 3
STATUS_OK, STATUS_FAILED, STATUS_DAY_BURNER = 0, 1, 2
NIGHT_MIN_LEVEL = 20  # an override can dim a street at night, never switch it off
MAX_SUBSTEP_S = 60.0
IR_LUMINAIRES = 100


@dataclass(frozen=True, slots=True)
class DimStep:
    at: time  # local wall-clock time
    level: int  # %


DEFAULT_PROFILE: tuple[DimStep, ...] = (DimStep(time(22, 0), 70), DimStep(time(0, 0), 50), DimStep(time(5, 30), 100))


@dataclass(frozen=True, slots=True)
class LightingSchedule:
    """The cabinet's stored astronomical schedule (pure: ``at(now_s)``)."""

    lat: float = DIJON_LAT
    lon: float = DIJON_LON
    tz: ZoneInfo = PARIS
    profile: tuple[DimStep, ...] = DEFAULT_PROFILE
    on_level: int = 100  # from sunset to the first step
    sunset_offset_min: float = 0.0  # + = later
    sunrise_offset_min: float = 0.0
    _cache: dict[float, list[tuple[float, int]]] = field(default_factory=dict, compare=False, repr=False)

    def sunrise_s(self, day: date) -> float:
        rise = sun_times(day, self.lat, self.lon).sunrise
        if rise is None:  # polar night/day: not at Dijon; treat the day as 06:00-18:00 local
            return datetime.combine(day, time(6), self.tz).timestamp()
        return rise.timestamp() + self.sunrise_offset_min * 60.0

    def sunset_s(self, day: date) -> float:
        sset = sun_times(day, self.lat, self.lon).sunset
        if sset is None:
            return datetime.combine(day, time(18), self.tz).timestamp()
        return sset.timestamp() + self.sunset_offset_min * 60.0

    def night(self, now_s: float) -> tuple[float, float] | None:
        """(sunset, next sunrise) of the night containing now_s, or None by day."""
        day = datetime.fromtimestamp(now_s, self.tz).date()
        rise = self.sunrise_s(day)
        if now_s < rise:
            return self.sunset_s(day - timedelta(days=1)), rise
        sset = self.sunset_s(day)
        if now_s >= sset:
            return sset, self.sunrise_s(day + timedelta(days=1))
        return None

    def _steps(self, start: float, end: float) -> list[tuple[float, int]]:
        steps = self._cache.get(start)
        if steps is None:
            first = datetime.fromtimestamp(start, self.tz).date()
            steps = []
            for day in (first, first + timedelta(days=1)):
                for step in self.profile:
                    ts = datetime.combine(day, step.at, self.tz).timestamp()
                    if start < ts < end:
                        steps.append((ts, step.level))
            steps.sort()
            if len(self._cache) > 8:
                self._cache.clear()
            self._cache[start] = steps
        return steps

    def at(self, now_s: float) -> tuple[int, float]:
        """(level % the schedule asks at now_s, time of the next change)."""
        window = self.night(now_s)
        if window is None:
            day = datetime.fromtimestamp(now_s, self.tz).date()
            return 0, self.sunset_s(day)
        start, end = window
        level, until = self.on_level, end
        for ts, step_level in self._steps(start, end):
            if ts <= now_s:
                level = step_level
            else:
                until = ts
                break
        return level, until

    def level(self, now_s: float) -> int:
        return self.at(now_s)[0]


class LightingCabinet(RegisterImage, Reevaluating):
    """One cabinet controller and its luminaires. Pure: time only comes in through step(now_s)."""

    FAULTS = ("lamp_failure", "day_burner", "mains_loss", "door_open", "frozen", "local_manual")

    def __init__(
        self,
        equipment_id: str,
        luminaires: int = 30,
        *,
        schedule: LightingSchedule | None = None,
        rng: random.Random | None = None,
        nominal_w: float | None = None,
    ) -> None:
        if not 1 <= luminaires <= 4000:
            raise ValueError(f"{equipment_id}: luminaires must be 1..4000, got {luminaires}")
        self.id = equipment_id
        self.rng = rng if rng is not None else random.Random(equipment_id)
        self.schedule = schedule or LightingSchedule()
        n = luminaires
        base = nominal_w if nominal_w is not None else float(self.rng.choice((60, 70, 80, 90, 100, 110, 120)))
        self.nominal_w = [base] * n
        self.energy_kwh = [round(self.rng.uniform(50.0, 600.0), 1) for _ in range(n)]
        self.levels = [0] * n
        self.power_w = [0.0] * n
        self.status = [STATUS_OK] * n
        self.failed: set[int] = set()  # 0-based
        self.day_burners: set[int] = set()
        self.mains_ok = True
        self.door_open = False
        self.contactor_closed = False
        self.mode = MODE_OFF_DAYTIME
        self.schedule_level = 0
        self.target_level = 0
        self.override_level = 100
        self.local_manual_level: int | None = None
        self.lease = Lease()
        self.now: float | None = None
        self._sched: tuple[int, float] | None = None  # (level, valid until) from schedule.at()
        self._sched_from = 0.0
        self._frozen: dict[Table, list[int]] | None = None

    @classmethod
    def from_equipment(cls, eq: EquipmentDef, rng: random.Random) -> LightingCabinet:
        params: dict[str, Any] = eq.params
        schedule = LightingSchedule(lat=eq.lat, lon=eq.lon)
        return cls(eq.id, int(params.get("luminaires", 30)), schedule=schedule, rng=rng)

    # ------------------------------------------------------------------------------------------ time
    @property
    def luminaire_count(self) -> int:
        return len(self.levels)

    @property
    def power(self) -> float:
        return sum(self.power_w)

    @property
    def energy(self) -> float:
        return sum(self.energy_kwh)

    @property
    def failed_count(self) -> int:
        return sum(1 for s in self.status if s == STATUS_FAILED)

    @property
    def faults(self) -> set[str]:
        out = set()
        if self.failed:
            out.add("lamp_failure")
        if self.day_burners:
            out.add("day_burner")
        if not self.mains_ok:
            out.add("mains_loss")
        if self.door_open:
            out.add("door_open")
        if self._frozen is not None:
            out.add("frozen")
        if self.local_manual_level is not None:
            out.add("local_manual")
        return out

    def step(self, now_s: float) -> None:
        """Advance to now_s: integrate energy piecewise, applying schedule changes and lease deadlines."""
        if self.now is None:
            self.now = now_s
            self._evaluate(now_s)
            return
        t = self.now
        while t < now_s:
            candidates = [now_s, t + MAX_SUBSTEP_S]
            if self._sched is not None and self._sched[1] > t:
                candidates.append(self._sched[1])
            deadline = self.lease.next_deadline()
            if deadline is not None and deadline > t:
                candidates.append(deadline)
            nxt = min(candidates)
            self._integrate(nxt - t)
            t = nxt
            self.now = t
            self._evaluate(t)

    def _integrate(self, dt: float) -> None:
        if dt <= 0:
            return
        k = dt / 3.6e6
        energy = self.energy_kwh
        for i, p in enumerate(self.power_w):
            if p:
                energy[i] += p * k

    def _schedule_at(self, t: float) -> int:
        if self._sched is None or not (self._sched_from <= t < self._sched[1]):
            self._sched = self.schedule.at(t)
            self._sched_from = t
        return self._sched[0]

    def _evaluate(self, t: float) -> None:
        why = self.lease.check(t)
        if why is not None:
            log.info("%s: override ended (%s), back to the stored schedule", self.id, why)
        level = self._schedule_at(t)
        self.schedule_level = level
        if self.local_manual_level is not None:
            mode, target = MODE_LOCAL_MANUAL, self.local_manual_level
        elif self.lease.active:
            mode, target = MODE_OVERRIDE, self.override_level
            if level > 0:
                target = max(target, NIGHT_MIN_LEVEL)
        else:
            mode, target = (MODE_SCHEDULE, level) if level > 0 else (MODE_OFF_DAYTIME, 0)
        if mode != self.mode:
            log.debug("%s: mode %d -> %d (level %d %%)", self.id, self.mode, mode, target)
        self.mode, self.target_level = mode, target
        self.contactor_closed = self.mains_ok and target > 0
        for i, nominal in enumerate(self.nominal_w):
            if not self.mains_ok:
                lvl, status, power = 0, STATUS_FAILED if i in self.failed else STATUS_OK, 0.0
            elif i in self.failed:
                lvl, status, power = target, STATUS_FAILED, 0.0
            elif target == 0 and i in self.day_burners:
                lvl, status, power = 100, STATUS_DAY_BURNER, nominal
            else:
                lvl, status, power = target, STATUS_OK, nominal * target / 100.0
            self.levels[i] = lvl
            self.status[i] = status
            self.power_w[i] = power

    # ------------------------------------------------------------------------------------------ modbus
    def registers(self, table: Table) -> list[int]:
        """The whole live register image of one table."""
        if table == "di":
            return [int(self.mains_ok), int(self.contactor_closed), int(self.door_open)]
        if table == "hr":
            now = self.now if self.now is not None else 0.0
            return [self.override_level, self.lease.remaining(now), self.lease.heartbeat]
        if table == "ir":
            head = [self.luminaire_count, self.failed_count, *float32_words(self.power), *float32_words(self.energy)]
            head += [self.schedule_level, self.mode]
            image = head + [0] * (IR_LUMINAIRES - len(head))
            for i in range(self.luminaire_count):
                image += [
                    self.levels[i],
                    self.status[i],
                    u16(self.power_w[i] * 10.0),
                    int(self.energy_kwh[i] * 10.0) & 0xFFFF,
                ]
            return image
        return []

    def modbus_write(self, table: Table, address: int, values: Sequence[int]) -> None:
        new = lease_write(self.id, table, address, values)
        now = self.now if self.now is not None else 0.0
        level = new.get(0, self.override_level)
        if not 0 <= level <= 100:
            raise IllegalValue(self.id, f"override level must be 0..100 %, got {level}")
        lease_after = new[1] > 0 if 1 in new else self.lease.active
        request = 0 in new or 1 in new  # a heartbeat alone is never refused
        if request and lease_after and level < NIGHT_MIN_LEVEL and self._schedule_at(now) > 0:
            raise IllegalValue(self.id, f"override level {level} % refused at night (minimum {NIGHT_MIN_LEVEL} %)")
        if 2 in new:
            self.lease.beat(now, new[2])
        if 0 in new:
            self.override_level = level
        if 1 in new:
            self.lease.start(now, new[1])
            if new[1]:
                log.info("%s: override %d %% for %d s", self.id, level, new[1])
            else:
                log.info("%s: override cancelled by the central system", self.id)
        elif 0 in new and self.lease.active:
            self.lease.start(now, self.lease.remaining(now))  # a new level re-arms the watchdog
        self._evaluate(now)

    # ------------------------------------------------------------------------------------------ faults
    def _pick(self, params: dict[str, Any], exclude: set[int]) -> set[int]:
        index = params.get("index")
        if index is not None:
            indices = [index] if isinstance(index, int) else list(index)
            for i in indices:
                if not 1 <= int(i) <= self.luminaire_count:
                    raise ValueError(f"{self.id}: luminaire index must be 1..{self.luminaire_count}, got {i}")
            return {int(i) - 1 for i in indices}
        count = int(params.get("count", 1))
        pool = [i for i in range(self.luminaire_count) if i not in exclude]
        return set(self.rng.sample(pool, min(count, len(pool))))

    def inject(self, fault: str, **params: Any) -> None:
        if fault == "lamp_failure":
            picked = self._pick(params, self.failed)
            self.failed |= picked
            self.day_burners -= picked
        elif fault == "day_burner":
            picked = self._pick(params, self.day_burners | self.failed)
            self.day_burners |= picked
        elif fault == "mains_loss":
            self.mains_ok = False
        elif fault == "door_open":
            self.door_open = True
        elif fault == "local_manual":
            level = int(params.get("level", 100))
            if not 0 <= level <= 100:
                raise ValueError(f"{self.id}: local_manual level must be 0..100, got {level}")
            self.local_manual_level = level
        elif fault == "frozen":
            self.freeze_image()
        else:
            raise unknown_fault(self.id, fault, self.FAULTS)
        self._fault_changed(f"fault {fault} injected {params or ''}")

    def clear(self, fault: str | None = None, **params: Any) -> None:
        check_fault(self.id, fault, self.FAULTS)
        if fault in (None, "lamp_failure"):
            self.failed.clear()
        if fault in (None, "day_burner"):
            self.day_burners.clear()
        if fault in (None, "mains_loss"):
            self.mains_ok = True
        if fault in (None, "door_open"):
            self.door_open = False
        if fault in (None, "local_manual"):
            self.local_manual_level = None
        if fault in (None, "frozen"):
            self.thaw_image()
        self._fault_changed(f"fault {fault or '(all)'} cleared")
