"""Vehicle model: a geolocated service vehicle of the métropole's fleet (OPC UA, ``fleet-1``).

Each vehicle belongs to a team of one service (``lighting-03``, ``police-01``...), works a shift
pattern (day, evening, night or office hours, Europe/Paris local time) and has a depot: its
inventory position. It is pure — :meth:`Vehicle.step` advances it to simulation time ``now_s`` —
and, like :mod:`sim.building`, draws random numbers only at event times, so a seed gives the same
trajectory whatever the step size.

Life of a vehicle::

    off_duty (at the depot, 0 km/h)
       │ shift starts
       ▼
    available ──(a job comes in, Poisson)──► busy: drive to the job ──► busy: work on site
       ▲    (parked, or patrolling for police)                                │ work done
       └──────── back to the depot (half the time) or wait where it is ◄──────┘
    shift ends: finish the current job, then drive home as off_duty and park

Paths are plausible rather than exact: a trip to another commune goes through the centre of the
commune nearest to the trip's midpoint (the main road), every trip is cut into ~400 m legs, and
each leg has its own speed (town 20-50 km/h, between communes 45-80 km/h). Positions are
interpolated along the legs, so a vehicle never jumps.

Faults / commands (:meth:`Vehicle.inject` / :meth:`Vehicle.clear`):

=============  ===============================================================================
``dispatch``   ``lat=, lon=`` (and ``work_min=`` 30): the control room sends the team to a job
``breakdown``  the vehicle stops where it is and reports off_duty until cleared
``frozen``     the reported values stop changing (tracker hung); cleared → they jump
=============  ===============================================================================

Missions from the control room (the writable OPC UA node ``V001/mission``, a String written through the
command gate's ``mission`` verb): ``"<order id>;<lat>;<lon>"`` starts a dispatch to that point (what
:mod:`sim.crews` drives and repairs); the node reads back the mission in force ("" when none, and again
"" once the work on site is over). A malformed mission is refused (BadOutOfRange for that node).
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import math
import random
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from scada.config import EquipmentDef
from scada.config.generate import COMMUNES
from sim.faults import check_fault, unknown_fault

TZ = ZoneInfo("Europe/Paris")
AVAILABLE, BUSY, OFF_DUTY = 0, 1, 2
FAULTS = ("dispatch", "breakdown", "frozen")
MISSION = "mission"
WRITABLE: dict[str, str] = {MISSION: "String"}

#: service → weight in the fleet (the services of alarms.yaml that send people on site)
SERVICES: list[tuple[str, float]] = [
    ("lighting", 0.22), ("traffic", 0.14), ("buildings", 0.14), ("police", 0.22), ("bollards", 0.06),
    ("cctv", 0.07), ("panels", 0.05), ("parking", 0.10),
]
#: shift name → (start hour, length in hours, days of the week)
SHIFTS: dict[str, tuple[float, float, tuple[int, ...]]] = {
    "day": (6.0, 8.0, (0, 1, 2, 3, 4, 5, 6)),
    "evening": (14.0, 8.0, (0, 1, 2, 3, 4, 5, 6)),
    "night": (22.0, 8.0, (0, 1, 2, 3, 4, 5, 6)),
    "office": (8.0, 9.0, (0, 1, 2, 3, 4)),
}
JOB_EVERY_MIN = 50.0  # mean time between two jobs for an available team
WORK_MIN = (15.0, 75.0)  # time on site
LEG_M = 400.0  # a trip is cut into legs of about this length, each with its own speed
KM_PER_DEG_LAT = 110.57


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Equirectangular distance: plenty for a 20 km wide métropole."""
    x = (lon2 - lon1) * 111.32 * math.cos(math.radians((lat1 + lat2) / 2))
    y = (lat2 - lat1) * KM_PER_DEG_LAT
    return math.hypot(x, y)


@dataclass(slots=True)
class _Trip:
    """Legs of one trip: cumulative arrival times and the points between them."""

    points: list[tuple[float, float]]  # n + 1 points
    times: list[float]  # n + 1 instants (times[0] = departure)
    speeds: list[float]  # n leg speeds, km/h

    @property
    def arrival(self) -> float:
        return self.times[-1]

    def at(self, t: float) -> tuple[float, float, float]:
        """(lat, lon, speed km/h) at time ``t``."""
        if t >= self.times[-1]:
            return (*self.points[-1], 0.0)
        if t <= self.times[0]:
            return (*self.points[0], 0.0)
        k = bisect.bisect_right(self.times, t) - 1
        t0, t1 = self.times[k], self.times[k + 1]
        f = (t - t0) / (t1 - t0) if t1 > t0 else 1.0
        (a_lat, a_lon), (b_lat, b_lon) = self.points[k], self.points[k + 1]
        return a_lat + f * (b_lat - a_lat), a_lon + f * (b_lon - a_lon), self.speeds[k]


class Vehicle:
    """One service vehicle (see the module docstring)."""

    FAULTS = FAULTS
    WRITABLE = WRITABLE

    def __init__(self, equipment_id: str, depot: tuple[float, float], rng: random.Random,
                 team: str | None = None, shift: str | None = None) -> None:
        self.id = equipment_id
        self.rng = rng
        self.depot = depot
        service = rng.choices([s for s, _ in SERVICES], weights=[w for _, w in SERVICES])[0]
        self.team = team or f"{service}-{rng.randint(1, 12):02d}"
        self.service = self.team.split("-")[0]
        if shift is None:
            if service == "police":
                shift = rng.choice(["day", "evening", "night"])
            else:
                shift = rng.choices(["day", "evening", "night", "office"], weights=[3, 2, 1, 4])[0]
        if shift not in SHIFTS:
            raise ValueError(f"{equipment_id}: shift must be one of {', '.join(SHIFTS)}, got {shift!r}")
        self.shift = shift
        start, length, self.shift_days = SHIFTS[shift]
        self.shift_start_h = start + rng.choice([-0.25, 0.0, 0.0, 0.25])
        self.shift_len_h = length
        self.lat, self.lon = depot
        self.speed = 0.0
        self.status = OFF_DUTY
        self.on_shift = False
        self._phase = "parked"  # parked | to_job | working | to_depot | patrol
        self._trip: _Trip | None = None
        self._phase_end = float("inf")
        self._next_job = float("inf")
        self._boundary = float("inf")
        self._work_s = 0.0
        self._broken = False
        self._frozen: dict[str, Any] | None = None
        self._t: float | None = None
        self.mission = ""  # the control room's mission in force ("<order>;<lat>;<lon>"), "" when none
        self.mission_work_s: float | None = None  # sim.crews: the crew works until it repairs (None: random)

    @classmethod
    def from_equipment(cls, eq: EquipmentDef, rng: random.Random) -> Vehicle:
        team = eq.params.get("team")
        shift = eq.params.get("shift")
        return cls(eq.id, (eq.lat, eq.lon), rng, str(team) if team else None, str(shift) if shift else None)

    # ------------------------------------------------------------------ shifts
    def _shift_windows(self, t: float) -> list[tuple[float, float]]:
        """Shift (start, end) instants that overlap the days around ``t``."""
        day = dt.datetime.fromtimestamp(t, TZ).date()
        out = []
        for k in range(-1, 9):
            d = day + dt.timedelta(days=k)
            if d.weekday() not in self.shift_days:
                continue
            h = self.shift_start_h
            start = dt.datetime.combine(d, dt.time(int(h), round((h % 1) * 60) % 60), TZ).timestamp()
            out.append((start, start + self.shift_len_h * 3600.0))
        return out

    def on_shift_at(self, t: float) -> bool:
        return any(a <= t < b for a, b in self._shift_windows(t))

    def _next_boundary(self, t: float) -> float:
        times = [x for w in self._shift_windows(t) for x in w if x > t]
        return min(times) if times else t + 7 * 86400.0

    # ------------------------------------------------------------------ stepping
    def step(self, now_s: float) -> None:
        """Advance to simulation time ``now_s``."""
        if self._t is None:
            self._t = now_s
            self.on_shift = self.on_shift_at(now_s)
            self._boundary = self._next_boundary(now_s)
            if self.on_shift:
                self.status = AVAILABLE
                self._schedule_job()
                self._maybe_patrol()
            self._update_position()
            return
        if now_s <= self._t:
            return
        while True:
            t_next, what = min((self._boundary, "boundary"), (self._phase_end, "phase_end"), (self._next_job, "job"))
            if t_next > now_s:
                break
            self._t = t_next
            self._apply(what)
        self._t = now_s
        self._update_position()

    def _apply(self, what: str) -> None:
        assert self._t is not None
        t = self._t
        self._update_position()
        if what == "boundary":
            self._boundary = self._next_boundary(t)
            self.on_shift = self.on_shift_at(t + 1.0)
            if self._broken:
                return
            if self.on_shift:
                if self.status == OFF_DUTY:
                    self.status = AVAILABLE
                    self._schedule_job()
                    if self._phase == "parked":
                        self._maybe_patrol()
            elif self.status == AVAILABLE:
                self._go_home()
            # busy at the end of the shift: the job is finished first (see phase_end)
        elif what == "job":
            self._next_job = float("inf")
            lat, lon = self._job_site()
            self._start_job(lat, lon, self.rng.uniform(*WORK_MIN) * 60.0)
        elif what == "phase_end":
            self._phase_end = float("inf")
            if self._phase == "to_job":
                self._phase = "working"
                self._trip = None
                self._phase_end = t + self._work_s
            elif self._phase == "working":
                self._phase = "parked"
                self.mission = ""
                self.status = AVAILABLE
                if not self.on_shift:
                    self._go_home()
                elif self.rng.random() < 0.5:
                    self._drive(self.depot, "to_depot")
                else:
                    self._maybe_patrol()
                if self.on_shift:
                    self._schedule_job()
            elif self._phase == "to_depot":
                self._phase = "parked"
                self._trip = None
                if self.on_shift:
                    self._maybe_patrol()
            elif self._phase == "patrol":
                self._phase = "parked"
                self._trip = None
                self._maybe_patrol()

    def _schedule_job(self) -> None:
        assert self._t is not None
        self._next_job = self._t + self.rng.expovariate(1.0 / (JOB_EVERY_MIN * 60.0))

    def _job_site(self) -> tuple[float, float]:
        """Somewhere in a commune: near home more often (teams cover their sector first)."""
        if self.rng.random() < 0.5:
            lat, lon = self.depot
            spread = 0.008
        else:
            _, lat, lon, _ = self.rng.choices(COMMUNES, weights=[c[3] for c in COMMUNES])[0]
            spread = 0.006
        return lat + self.rng.gauss(0, spread), lon + self.rng.gauss(0, spread * 1.4)

    def _start_job(self, lat: float, lon: float, work_s: float) -> None:
        self.status = BUSY
        self._next_job = float("inf")
        self._work_s = work_s
        self._drive((lat, lon), "to_job")

    def _go_home(self) -> None:
        self.status = OFF_DUTY
        self._next_job = float("inf")
        self._drive(self.depot, "to_depot")

    def _maybe_patrol(self) -> None:
        """Police teams patrol their sector while available; others wait parked."""
        if self.service != "police" or self.status != AVAILABLE or self._broken:
            return
        lat, lon = self.depot
        target = (lat + self.rng.gauss(0, 0.006), lon + self.rng.gauss(0, 0.008))
        self._drive(target, "patrol", town_only=True)

    # ------------------------------------------------------------------ paths
    def _drive(self, dest: tuple[float, float], phase: str, town_only: bool = False) -> None:
        assert self._t is not None
        start = (self.lat, self.lon)
        waypoints = [start]
        if not town_only and distance_km(*start, *dest) > 3.0:
            mid = ((start[0] + dest[0]) / 2, (start[1] + dest[1]) / 2)
            via = min(COMMUNES, key=lambda c: distance_km(c[1], c[2], *mid))
            if distance_km(via[1], via[2], *mid) < 0.5 * distance_km(*start, *dest):
                waypoints.append((via[1], via[2]))
        waypoints.append(dest)
        points = [start]
        speeds: list[float] = []
        times = [self._t]
        for a, b in itertools.pairwise(waypoints):
            d_km = distance_km(*a, *b)
            n = max(1, round(d_km * 1000 / LEG_M))
            fast = not town_only and d_km > 2.0
            for k in range(1, n + 1):
                p = (a[0] + (b[0] - a[0]) * k / n, a[1] + (b[1] - a[1]) * k / n)
                # town streets at both ends of the trip, the main road in between
                middle = fast and 1 < k < n
                v = self.rng.uniform(45.0, 80.0) if middle else self.rng.uniform(20.0, 50.0)
                if town_only:
                    v = self.rng.uniform(15.0, 35.0)
                speeds.append(round(v, 1))
                times.append(times[-1] + (d_km / n) / v * 3600.0)
                points.append(p)
        self._trip = _Trip(points, times, speeds)
        self._phase = phase
        self._phase_end = self._trip.arrival

    def _update_position(self) -> None:
        if self._t is None:
            return
        if self._trip is not None and self._phase in ("to_job", "to_depot", "patrol"):
            self.lat, self.lon, self.speed = self._trip.at(self._t)
        else:
            self.speed = 0.0

    # ------------------------------------------------------------------ faults
    def inject(self, fault: str, **params: Any) -> None:
        """Inject a fault or a dispatch (see the module docstring)."""
        if fault == "dispatch":
            if self._t is None:
                raise ValueError(f"{self.id}: cannot dispatch before the first step")
            self._update_position()
            self._start_job(float(params["lat"]), float(params["lon"]), float(params.get("work_min", 30)) * 60.0)
            self._update_position()
        elif fault == "breakdown":
            self._update_position()
            self._broken = True
            self._trip = None
            self._phase = "parked"
            self._phase_end = float("inf")
            self._next_job = float("inf")
            self.status = OFF_DUTY
            self.speed = 0.0
        elif fault == "frozen":
            if self._frozen is None:
                self._frozen = self._live_values()
        else:
            raise unknown_fault(self.id, fault, FAULTS)

    def clear(self, fault: str | None = None, **params: Any) -> None:
        """Clear one fault, or all of them when ``fault`` is None (a dispatch cannot be cleared)."""
        check_fault(self.id, fault, FAULTS)
        if fault in (None, "breakdown") and self._broken:
            self._broken = False
            if self.on_shift:
                self.status = AVAILABLE
                self._schedule_job()
            else:
                self._go_home()
        if fault in (None, "frozen"):
            self._frozen = None

    def write(self, key: str, value: Any) -> None:
        """A client write of a writable node (the OPC UA server calls it): a mission starts a dispatch."""
        if key != MISSION:
            raise ValueError(f"{self.id}: {key} is not writable")
        text = str(value).strip()
        if not text:
            self.mission = ""
            return
        lat, lon = parse_mission(self.id, text)
        if self._t is None:
            raise ValueError(f"{self.id}: cannot take a mission before the first step")
        self._update_position()
        self._start_job(lat, lon, self.mission_work_s if self.mission_work_s is not None
                        else self.rng.uniform(*WORK_MIN) * 60.0)
        self._update_position()
        self.mission = text

    def at_work(self) -> bool:
        """On site for the current job (driving finished, work not yet)."""
        return self._phase == "working"

    def finish_work(self) -> None:
        """End the work on site now (sim.crews: the repair is done): the mission is over, back to the depot."""
        if self._phase != "working" or self._t is None:
            return
        self._phase = "parked"
        self._phase_end = float("inf")
        self.mission = ""
        self.status = AVAILABLE if self.on_shift and not self._broken else OFF_DUTY
        self._drive(self.depot, "to_depot")
        if self.status == AVAILABLE:
            self._schedule_job()

    # ------------------------------------------------------------------ reporting
    def _live_values(self) -> dict[str, Any]:
        return {"lat": round(self.lat, 6), "lon": round(self.lon, 6), "speed": round(self.speed, 1),
                "status": self.status, "team": self.team, MISSION: self.mission}

    def values(self) -> dict[str, Any]:
        """Reported values keyed by node name below the vehicle (``lat`` → OPC UA ``V001/lat``)."""
        return dict(self._frozen) if self._frozen is not None else self._live_values()


def parse_mission(vehicle: str, text: str) -> tuple[float, float]:
    """``"<order>;<lat>;<lon>"`` → (lat, lon); ValueError (the node's BadOutOfRange) when malformed."""
    parts = text.split(";")
    try:
        if len(parts) != 3 or not parts[0]:
            raise ValueError
        lat, lon = float(parts[1]), float(parts[2])
    except ValueError:
        raise ValueError(f"{vehicle}: a mission is '<order>;<lat>;<lon>', got {text[:80]!r}") from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ValueError(f"{vehicle}: mission position out of range, got {lat}, {lon}")
    return lat, lon


__all__ = ["AVAILABLE", "BUSY", "FAULTS", "MISSION", "OFF_DUTY", "Vehicle", "distance_km", "parse_mission"]
