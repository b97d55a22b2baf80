"""Parking counter (bay sensors of one street or car park): occupancy with a plausible daily rhythm.

    target share of bays (weekday, city centre)
    1.0 ┤                 ╭──╮    ╭───╮
        │           ╭─────╯  ╰────╯   ╰──╮
    0.5 ┤       ╭───╯                    ╰────╮
        │───────╯ residents overnight          ╰──────
    0.0 ┼──────┬──────┬──────┬──────┬──────┬──────┬──
        0      4      8      12     16     20     24   local time (Saturday: later, higher peak;
                                                        Sunday: flat and low; suburbs × 0.75)

Cars are simulated one by one: arrivals are a Poisson stream whose rate chases the target (departures
expected from Little's law + the gap to the target over 20 min); each car draws its stay when it
arrives (short shopping stays, half-day, commuters by day; long resident stays in the evening) and
leaves when it is over. An arrival finding the car park full drives on. ``overstays`` counts the cars
parked longer than max_stay_s (blue zone: 1 h 30) within the paid hours (Mon-Sat 09:00-19:00).
Deterministic for a given rng and step sequence.

Modbus map (RTU unit on the parking bus): ir:0 capacity, ir:1 occupied, ir:2 overstays.
Faults: frozen (served registers stop changing), full (an event fills every bay).
"""

from __future__ import annotations

import heapq
import logging
import math
import random
from collections.abc import Sequence
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sim.faults import check_fault, unknown_fault
from sim.modbus_map import IllegalAddress, RegisterImage, Table

if TYPE_CHECKING:
    from scada.config import EquipmentDef

__all__ = ["ParkingCounter", "target_share"]

log = logging.getLogger(__name__)

PARIS = ZoneInfo("Europe/Paris")
MAX_SUBSTEP_S = 60.0
CHASE_S = 1200.0

# share of occupied bays by local hour (city centre)
_WEEKDAY = (0.35, 0.33, 0.32, 0.32, 0.33, 0.36, 0.45, 0.62, 0.80, 0.88, 0.90, 0.88,
            0.80, 0.84, 0.88, 0.87, 0.85, 0.82, 0.75, 0.65, 0.55, 0.48, 0.42, 0.38)  # fmt: skip
_SATURDAY = (0.40, 0.38, 0.36, 0.35, 0.35, 0.35, 0.38, 0.45, 0.60, 0.78, 0.90, 0.95,
             0.88, 0.86, 0.92, 0.96, 0.95, 0.90, 0.80, 0.68, 0.58, 0.52, 0.46, 0.42)  # fmt: skip
_SUNDAY = (0.42, 0.40, 0.38, 0.37, 0.37, 0.37, 0.38, 0.40, 0.45, 0.52, 0.60, 0.65,
           0.62, 0.55, 0.55, 0.58, 0.60, 0.58, 0.55, 0.52, 0.48, 0.45, 0.43, 0.42)  # fmt: skip

# stay mixtures (probability, mean stay s) by time of arrival
_DAY_STAYS = ((0.85, 30 * 60.0), (0.12, 80 * 60.0), (0.03, 5 * 3600.0))
_EVENING_SHORT = (0.5, 60 * 60.0)  # the rest are residents leaving the next morning 07:00-09:30


def target_share(now_s: float, commune: str = "Dijon", tz: ZoneInfo = PARIS) -> float:
    """Share of occupied bays the daily rhythm asks at now_s (0..0.98)."""
    local = datetime.fromtimestamp(now_s, tz)
    table = _SUNDAY if local.weekday() == 6 else _SATURDAY if local.weekday() == 5 else _WEEKDAY
    h = local.hour + local.minute / 60.0 + local.second / 3600.0
    i = int(h) % 24
    frac = h - int(h)
    share = table[i] * (1 - frac) + table[(i + 1) % 24] * frac
    factor = 1.0 if commune == "Dijon" else 0.75
    return min(0.98, share * factor)


def _daytime(now_s: float, tz: ZoneInfo) -> bool:
    return 7 <= datetime.fromtimestamp(now_s, tz).hour < 19


def _to_morning(now_s: float, tz: ZoneInfo) -> float:
    """Seconds from now_s to the next 07:00 local."""
    local = datetime.fromtimestamp(now_s, tz)
    morning = local.replace(hour=7, minute=0, second=0, microsecond=0)
    if morning <= local:
        morning = datetime.combine(local.date() + timedelta(days=1), time(7), tz)
    return morning.timestamp() - now_s


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


class ParkingCounter(RegisterImage):
    """Bay occupancy counter. Pure: time only comes in through step(now_s)."""

    FAULTS = ("frozen", "full")

    def __init__(
        self,
        equipment_id: str,
        capacity: int,
        *,
        commune: str = "Dijon",
        max_stay_s: float = 5400.0,
        rng: random.Random | None = None,
        tz: ZoneInfo = PARIS,
    ) -> None:
        if not 1 <= capacity <= 0xFFFF:
            raise ValueError(f"{equipment_id}: capacity must be 1..65535, got {capacity}")
        self.id = equipment_id
        self.capacity = capacity
        self.commune = commune
        self.max_stay_s = max_stay_s
        self.rng = rng if rng is not None else random.Random(equipment_id)
        self.tz = tz
        self.now: float | None = None
        self.full_event = False
        self.turned_away = 0
        self._cars: list[tuple[float, float]] = []  # heap of (departure, arrival)
        self._frozen: dict[Table, list[int]] | None = None

    @classmethod
    def from_equipment(cls, eq: EquipmentDef, rng: random.Random) -> ParkingCounter:
        params: dict[str, Any] = eq.params
        capacity = params.get("capacity")
        if capacity is None:
            capacity = rng.choice((40, 60, 80, 120, 200, 350))
        return cls(eq.id, int(capacity), commune=eq.commune, rng=rng)

    @property
    def occupied(self) -> int:
        return len(self._cars)

    @property
    def overstays(self) -> int:
        """Cars parked longer than max_stay_s within today's paid hours (Mon-Sat 09:00-19:00 local)."""
        if self.now is None:
            return 0
        local = datetime.fromtimestamp(self.now, self.tz)
        if local.weekday() == 6 or not 9 <= local.hour < 19:
            return 0
        opening = local.replace(hour=9, minute=0, second=0, microsecond=0).timestamp()
        limit = self.now - self.max_stay_s
        if opening > limit:
            return 0
        return sum(1 for _, arrival in self._cars if arrival < limit)

    @property
    def faults(self) -> set[str]:
        out = set()
        if self._frozen is not None:
            out.add("frozen")
        if self.full_event:
            out.add("full")
        return out

    def target(self, now_s: float) -> float:
        return 1.0 if self.full_event else target_share(now_s, self.commune, self.tz)

    def _draw_stay(self, now_s: float) -> float:
        rng = self.rng
        if _daytime(now_s, self.tz):
            x = rng.random()
            for p, mean in _DAY_STAYS:
                if x < p:
                    return rng.expovariate(1.0 / mean)
                x -= p
            return rng.expovariate(1.0 / _DAY_STAYS[0][1])
        if rng.random() < _EVENING_SHORT[0]:
            return rng.expovariate(1.0 / _EVENING_SHORT[1])
        stay = _to_morning(now_s, self.tz) + rng.uniform(0.0, 9000.0)
        if rng.random() < 0.1:  # some residents leave the car for the day
            stay += rng.expovariate(1.0 / 86400.0)
        return stay

    def _mean_stay(self, now_s: float) -> float:
        if _daytime(now_s, self.tz):
            return sum(p * mean for p, mean in _DAY_STAYS)
        p, mean = _EVENING_SHORT
        return p * mean + (1 - p) * (_to_morning(now_s, self.tz) + 4500.0 + 0.1 * 86400.0)

    def step(self, now_s: float) -> None:
        if self.now is None:
            self.now = now_s
            self._populate(now_s)
            return
        t = self.now
        while t < now_s:
            nxt = min(now_s, t + MAX_SUBSTEP_S)
            self._advance(t, nxt)
            t = nxt
            self.now = t

    def _populate(self, t: float) -> None:
        """Start in a plausible state: cars already parked for part of their stay."""
        n = min(self.capacity, round(self.target(t) * self.capacity))
        for _ in range(n):
            stay = self._draw_stay(t - 3600.0)
            age = self.rng.uniform(0.0, stay)
            heapq.heappush(self._cars, (t - age + stay, t - age))

    def _advance(self, t0: float, t1: float) -> None:
        cars = self._cars
        while cars and cars[0][0] <= t1:
            heapq.heappop(cars)
        goal = self.target(t1) * self.capacity
        rate = len(cars) / self._mean_stay(t1) + (goal - len(cars)) / CHASE_S
        if self.full_event:  # an event: far more drivers looking for a bay than bays
            rate += self.capacity / 300.0
        for _ in range(_poisson(self.rng, max(0.0, rate) * (t1 - t0))):
            if len(cars) >= self.capacity:
                self.turned_away += 1
                continue
            arrival = self.rng.uniform(t0, t1)
            heapq.heappush(cars, (arrival + self._draw_stay(arrival), arrival))

    # ----------------------------------------------------------------------------------------- modbus
    def registers(self, table: Table) -> list[int]:
        if table == "ir":
            return [self.capacity, self.occupied, self.overstays]
        return []

    def modbus_write(self, table: Table, address: int, values: Sequence[int]) -> None:
        raise IllegalAddress(self.id, f"{table}:{address}: the parking counter has no writable register")

    # ----------------------------------------------------------------------------------------- faults
    def inject(self, fault: str, **params: Any) -> None:
        if fault == "frozen":
            self.freeze_image()
        elif fault == "full":
            self.full_event = True
        else:
            raise unknown_fault(self.id, fault, self.FAULTS)
        log.info("%s: fault %s injected", self.id, fault)

    def clear(self, fault: str | None = None, **params: Any) -> None:
        check_fault(self.id, fault, self.FAULTS)
        if fault in (None, "frozen"):
            self.thaw_image()
        if fault in (None, "full"):
            self.full_event = False
        log.info("%s: fault %s cleared", self.id, fault or "(all)")
