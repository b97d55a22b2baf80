"""Building model: fire panel zones, intrusion system and door contacts, as a BMS reports them.

One :class:`Building` is one building of the city's building management server (OPC UA, ``bms-1``).
It is pure: :meth:`Building.step` advances it to simulation time ``now_s`` (epoch seconds) and
nothing inside reads a clock. Randomness comes only from the ``random.Random`` it was built with,
and random draws happen at *event times* (a door opening, the building closing), never per step, so
the same seed gives the same history however coarsely or finely the runner steps it.

Fire panel, per zone (``<id>/fire/zone<i>``, 0 normal / 1 alarm / 2 fault)::

    normal(0) ──fire_fault──► fault(2)          alarm wins over fault; an alarm is latched until
       │   ▲                     │              the panel is reset (``clear("fire_alarm")``), a
    fire_alarm└──clear───────────┘              fault until it is repaired (``clear("fire_fault")``)
       ▼
    alarm(1) ── while the building is occupied the evacuation opens every door for a few minutes

Intrusion system (``<id>/intrusion/armed``, ``<id>/intrusion/alarm``) on the building's opening
hours (Europe/Paris local time; each building draws its own hours and days)::

    disarmed ──(closing time, all doors shut; else when the last door shuts)──► armed
       ▲                                                                          │ a door opens
       └──────── opening time: disarm, the alarm is acknowledged ◄── armed+alarm ◄┘ or `intrusion`

Doors (``<id>/doors/door<i>``, True = open): while the building is open each door opens at random
(Poisson; door 1, the main entrance, most often) for a few seconds; closed at night.

Faults (:meth:`Building.inject` / :meth:`Building.clear`):

=================  ======================================================================
``fire_alarm``     ``zone=<i>`` (default 1, or ``"all"``): zone in alarm, latched
``fire_fault``     ``zone=<i>`` (default 1, or ``"all"``): zone in fault (wiring, detector)
``intrusion``      a detector trips: the system reports armed and in alarm until cleared
``door_forced``    ``door=<i>`` (default 1): the door is held open; raises the intrusion
                   alarm while armed
``frozen``         the reported values stop changing (the BMS gateway hangs); the building
                   itself keeps living and the values jump when cleared
=================  ======================================================================
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any
from zoneinfo import ZoneInfo

from scada.config import EquipmentDef
from sim.faults import check_fault, unknown_fault

TZ = ZoneInfo("Europe/Paris")
FIRE_NORMAL, FIRE_ALARM, FIRE_FAULT = 0, 1, 2
FAULTS = ("fire_alarm", "fire_fault", "intrusion", "door_forced", "frozen")

#: Occupancy patterns: (weight, days of the week open (0 = Monday), opening hour range, closing hour range)
PATTERNS: list[tuple[float, tuple[int, ...], tuple[float, float], tuple[float, float]]] = [
    (0.6, (0, 1, 2, 3, 4), (6.5, 8.5), (17.5, 20.0)),  # offices, schools, town-hall services
    (0.25, (0, 1, 2, 3, 4, 5), (8.0, 9.5), (18.0, 21.0)),  # libraries, public reception
    (0.15, (0, 1, 2, 3, 4, 5, 6), (7.0, 9.0), (21.0, 23.0)),  # sports halls, culture
]
EVACUATION_S = (180.0, 420.0)  # doors held open after a fire alarm in an occupied building
DOOR_OPEN_S = (3.0, 20.0)  # how long a door stays open when someone goes through
MAIN_DOOR_PER_HOUR = 24.0  # door i opens on average MAIN_DOOR_PER_HOUR / i times an hour


class Building:
    """Fire panel zones, intrusion system and doors of one building (see the module docstring)."""

    FAULTS = FAULTS

    def __init__(self, equipment_id: str, fire_zones: int, doors: int, rng: random.Random) -> None:
        if fire_zones < 1 or doors < 0:
            raise ValueError(f"{equipment_id}: needs at least one fire zone and no negative door count, "
                             f"got fire_zones={fire_zones}, doors={doors}")
        self.id = equipment_id
        self.rng = rng
        weights = [p[0] for p in PATTERNS]
        _, self.open_days, open_range, close_range = rng.choices(PATTERNS, weights=weights)[0]
        # opening hours rounded to the quarter hour, as a facility manager would set them
        self.open_hour = round(rng.uniform(*open_range) * 4) / 4
        self.close_hour = round(rng.uniform(*close_range) * 4) / 4
        self.zones = [FIRE_NORMAL] * fire_zones
        self.zone_alarm = [False] * fire_zones
        self.zone_fault = [False] * fire_zones
        self.doors = [False] * doors
        self.door_forced = [False] * doors
        self._door_close_at = [0.0] * doors
        self._door_next_open = [float("inf")] * doors
        self.armed = False
        self.alarm = False
        self.occupied = False
        self._intrusion_fault = False
        self._pending_arm = False
        self._evacuate_until = 0.0
        self._t: float | None = None
        self._boundary = float("inf")
        self._frozen: dict[str, Any] | None = None

    @classmethod
    def from_equipment(cls, eq: EquipmentDef, rng: random.Random) -> Building:
        return cls(eq.id, int(eq.params.get("fire_zones", 1)), int(eq.params.get("doors", 1)), rng)

    # ------------------------------------------------------------------ schedule
    def is_open_at(self, t: float) -> bool:
        """Whether the building's opening hours include epoch second ``t``."""
        local = dt.datetime.fromtimestamp(t, TZ)
        hour = local.hour + local.minute / 60 + local.second / 3600
        return local.weekday() in self.open_days and self.open_hour <= hour < self.close_hour

    def _next_boundary(self, t: float) -> float:
        """The first opening or closing instant strictly after ``t`` (DST-aware)."""
        day = dt.datetime.fromtimestamp(t, TZ).date()
        for k in range(9):
            d = day + dt.timedelta(days=k)
            if d.weekday() not in self.open_days:
                continue
            for hour in (self.open_hour, self.close_hour):
                when = dt.datetime.combine(d, dt.time(int(hour), round((hour % 1) * 60) % 60), TZ).timestamp()
                if when > t:
                    return when
        return t + 7 * 86400.0  # unreachable with at least one open day

    # ------------------------------------------------------------------ stepping
    def step(self, now_s: float) -> None:
        """Advance to simulation time ``now_s``, processing every event in time order."""
        if self._t is None:
            self._start(now_s)
            return
        if now_s <= self._t:
            return
        while True:
            t_next, what, idx = self._next_event()
            if t_next > now_s:
                break
            self._t = t_next
            self._apply(what, idx)
        self._t = now_s

    def _start(self, t: float) -> None:
        self._t = t
        self.occupied = self.is_open_at(t)
        self.armed = not self.occupied
        self._boundary = self._next_boundary(t)
        for i in range(len(self.doors)):
            self._schedule_door(i)

    def _next_event(self) -> tuple[float, str, int]:
        best = (self._boundary, "boundary", -1)
        for i, close_at in enumerate(self._door_close_at):
            if self.doors[i] and not self.door_forced[i] and not self._evacuate_until and close_at < best[0]:
                best = (close_at, "close", i)
        for i, open_at in enumerate(self._door_next_open):
            if open_at < best[0]:
                best = (open_at, "open", i)
        if self._evacuate_until and self._evacuate_until < best[0]:
            best = (self._evacuate_until, "evacuated", -1)
        return best

    def _apply(self, what: str, i: int) -> None:
        assert self._t is not None
        t = self._t
        if what == "boundary":
            self.occupied = self.is_open_at(t + 1.0)
            self._boundary = self._next_boundary(t)
            if self.occupied:
                self.armed = False  # the first one in disarms; the alarm is acknowledged
                self.alarm = False
                self._pending_arm = False
            else:
                self._pending_arm = True
                self._try_arm()
            for k in range(len(self.doors)):
                self._schedule_door(k)
        elif what == "open":
            self.doors[i] = True
            self._door_close_at[i] = t + self.rng.uniform(*DOOR_OPEN_S)
            self._door_next_open[i] = float("inf")
            if self.armed:
                self.alarm = True
        elif what == "close":
            self.doors[i] = False
            self._schedule_door(i)
            self._try_arm()
        elif what == "evacuated":
            self._evacuate_until = 0.0
            for k in range(len(self.doors)):
                if not self.door_forced[k]:
                    self.doors[k] = False
                    self._schedule_door(k)
            self._try_arm()

    def _schedule_door(self, i: int) -> None:
        assert self._t is not None
        if self.doors[i] or self._evacuate_until:
            return
        if self.occupied:
            rate = MAIN_DOOR_PER_HOUR / (i + 1) / 3600.0
            self._door_next_open[i] = self._t + self.rng.expovariate(rate)
        else:
            self._door_next_open[i] = float("inf")

    def _try_arm(self) -> None:
        if self._pending_arm and not self.occupied and not any(self.doors):
            self.armed = True
            self._pending_arm = False

    # ------------------------------------------------------------------ faults
    def inject(self, fault: str, **params: Any) -> None:
        """Inject a device fault (see the module docstring for names and parameters)."""
        if fault == "fire_alarm":
            for z in self._zones(params.get("zone", 1)):
                self.zone_alarm[z] = True
            if self.occupied and self._t is not None and not self._evacuate_until:
                self._evacuate_until = self._t + self.rng.uniform(*EVACUATION_S)
                for k in range(len(self.doors)):
                    self.doors[k] = True
                    self._door_next_open[k] = float("inf")
        elif fault == "fire_fault":
            for z in self._zones(params.get("zone", 1)):
                self.zone_fault[z] = True
        elif fault == "intrusion":
            self._intrusion_fault = True
            self.armed = True
            self.alarm = True
        elif fault == "door_forced":
            d = self._door(params.get("door", 1))
            self.door_forced[d] = True
            self.doors[d] = True
            self._door_next_open[d] = float("inf")
            if self.armed:
                self.alarm = True
        elif fault == "frozen":
            if self._frozen is None:
                self._frozen = self._live_values()
        else:
            raise unknown_fault(self.id, fault, FAULTS)
        self._refresh_zones()

    def clear(self, fault: str | None = None, **params: Any) -> None:
        """Clear one fault (``zone=``/``door=`` narrow it) or every fault when ``fault`` is None."""
        check_fault(self.id, fault, FAULTS)
        if fault in (None, "fire_alarm"):
            for z in self._zones(params.get("zone", "all")):
                self.zone_alarm[z] = False
        if fault in (None, "fire_fault"):
            for z in self._zones(params.get("zone", "all")):
                self.zone_fault[z] = False
        if fault in (None, "intrusion") and self._intrusion_fault:
            self._intrusion_fault = False
            self.alarm = False
            self.armed = not self.occupied and not any(self.doors)
        if fault in (None, "door_forced"):
            doors = range(len(self.doors)) if params.get("door") is None else [self._door(params["door"])]
            for d in doors:
                if self.door_forced[d]:
                    self.door_forced[d] = False
                    self.doors[d] = False
                    if self._t is not None:
                        self._schedule_door(d)
            self._try_arm()
        if fault in (None, "frozen"):
            self._frozen = None
        self._refresh_zones()

    def _zones(self, zone: Any) -> list[int]:
        if zone == "all":
            return list(range(len(self.zones)))
        z = int(zone)
        if not 1 <= z <= len(self.zones):
            raise ValueError(f"{self.id}: zone must be 1..{len(self.zones)} or 'all', got {zone!r}")
        return [z - 1]

    def _door(self, door: Any) -> int:
        d = int(door)
        if not 1 <= d <= len(self.doors):
            raise ValueError(f"{self.id}: door must be 1..{len(self.doors)}, got {door!r}")
        return d - 1

    def _refresh_zones(self) -> None:
        for z in range(len(self.zones)):
            self.zones[z] = FIRE_ALARM if self.zone_alarm[z] else FIRE_FAULT if self.zone_fault[z] else FIRE_NORMAL

    # ------------------------------------------------------------------ reporting
    def _live_values(self) -> dict[str, Any]:
        out: dict[str, Any] = {f"fire/zone{i + 1}": v for i, v in enumerate(self.zones)}
        out["intrusion/armed"] = self.armed
        out["intrusion/alarm"] = self.alarm
        for i, v in enumerate(self.doors):
            out[f"doors/door{i + 1}"] = v
        return out

    def values(self) -> dict[str, Any]:
        """Reported values keyed by node path below the building (``fire/zone1`` → OPC UA ``B001/fire/zone1``)."""
        return dict(self._frozen) if self._frozen is not None else self._live_values()


__all__ = ["FAULTS", "FIRE_ALARM", "FIRE_FAULT", "FIRE_NORMAL", "Building"]
