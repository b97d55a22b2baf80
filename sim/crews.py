"""Field crews and citizens of the simulated city: missions driven and repaired, reports posted.

::

    the control room ──(OPC UA write V006/mission "WO-000042;47.31;5.01", through its command gate)──►
    sim.fleet.Vehicle.write: the vehicle drives there (legs of ~400 m at urban speed, sim.fleet) ──►
    FieldCrews.step(t), after every step of the models:
       vehicle on site for a mission ─► the equipment at the mission's point (within 10 m) is repaired
       ``repair_s`` later (Simulator.clear: every fault of it cleared) ─► the vehicle drives back to its
       depot and its mission node reads "" again
    ReportGenerator.due(t): citizens' reports about what is really broken (lamps out, lamps on by day, dark
       panels, stuck bollards: the faults the models report), at a daily curve; ~630 a day at Dijon's scale (1,100
       lighting cabinets), scaled to the city simulated; 30 % duplicates of a recent report, 10 %
       mislocated (150-400 m off, or an address only), a few with nothing behind them ("other")
    post_reports(url, token, generator, clock): posts them to the server's intake (POST /api/v1/reports),
       what ``scada sim --reports URL --report-token TOKEN`` runs

A vehicle's mission keeps it working on site until the crew has repaired (``Vehicle.mission_work_s`` is
infinite while FieldCrews runs); the repair is what a crew does in the field, so the equipment's alarms
return to normal by themselves on the server's next poll.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import random
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from scada.config import EquipmentDef
from sim.fleet import TZ, Vehicle, distance_km, parse_mission

log = logging.getLogger(__name__)

REPAIR_S = 20 * 60.0  # time on site for a repair
AT_POINT_KM = 0.010  # a mission's point and its equipment: the same place
DIJON_CABINETS = 1100
REPORTS_PER_DAY = 630.0
DUPLICATES = 0.30
MISLOCATED = 0.10
#: relative report rate per local hour (people report on their way to work and in the evening dark)
DAY_CURVE = (0.3, 0.2, 0.1, 0.1, 0.1, 0.2, 0.6, 1.3, 1.8, 1.6, 1.3, 1.2,
             1.2, 1.2, 1.1, 1.1, 1.3, 1.6, 1.9, 2.0, 1.7, 1.2, 0.8, 0.5)
#: fault of a model → the category a citizen reports it as
CATEGORY_OF = {"lamp_failure": "lamp_out", "day_burner": "lamp_on_by_day", "mains_loss": "lamp_out",
               "bollard_fault": "bollard_stuck", "led_fault": "panel_dark", "power_fault": "panel_dark"}


@dataclass(slots=True)
class _Job:
    vehicle: str
    equipment: str | None
    since: float  # simulation time the crew got there


class FieldCrews:
    """Crews of the simulated vehicles: repair on site, then back to the depot (see the module docstring)."""

    def __init__(self, models: Mapping[str, Any], equipment: Mapping[str, EquipmentDef],
                 clear: Callable[[str], None], repair_s: float = REPAIR_S) -> None:
        self.models = models
        self.clear = clear
        self.repair_s = repair_s
        self.vehicles = {k: m for k, m in models.items() if isinstance(m, Vehicle)}
        self.fixed = [e for e in equipment.values() if e.template != "vehicle"]
        for v in self.vehicles.values():
            v.mission_work_s = math.inf  # the crew works until it has repaired
        self.jobs: dict[str, _Job] = {}
        self.repaired: list[tuple[float, str, str]] = []  # (time, vehicle, equipment)

    def equipment_at(self, lat: float, lon: float) -> str | None:
        best = min(self.fixed, key=lambda e: distance_km(lat, lon, e.lat, e.lon), default=None)
        if best is None or distance_km(lat, lon, best.lat, best.lon) > AT_POINT_KM:
            return None
        return best.id

    def step(self, t: float) -> None:
        for vid, v in self.vehicles.items():
            if not v.mission or not v.at_work():
                self.jobs.pop(vid, None)
                continue
            job = self.jobs.get(vid)
            if job is None:
                lat, lon = parse_mission(vid, v.mission)
                job = self.jobs[vid] = _Job(vid, self.equipment_at(lat, lon), t)
                log.info("%s on site for %s (%s)", vid, v.mission.split(";")[0], job.equipment or "no equipment")
            if t - job.since < self.repair_s:
                continue
            if job.equipment is not None:
                try:
                    self.clear(job.equipment)
                except (KeyError, ValueError):  # not simulated: nothing to repair
                    log.warning("%s: %s cannot be repaired in the simulator", vid, job.equipment)
                self.repaired.append((t, vid, job.equipment))
            v.finish_work()
            del self.jobs[vid]


# ---------------------------------------------------------------------- citizens
@dataclass(slots=True)
class _Seen:
    category: str
    lat: float
    lon: float
    address: str


class ReportGenerator:
    """Citizen reports over simulation time: ``due(t)`` → the request bodies for the intake API."""

    def __init__(self, models: Mapping[str, Any], equipment: Mapping[str, EquipmentDef], rng: random.Random,
                 per_day: float | None = None, start: float | None = None) -> None:
        self.models = models
        self.equipment = {k: e for k, e in equipment.items() if e.template != "vehicle"}
        cabinets = sum(1 for e in self.equipment.values() if e.template == "lighting_cabinet")
        self.per_day = per_day if per_day is not None else REPORTS_PER_DAY * max(cabinets, 1) / DIJON_CABINETS
        self.rng = rng
        self.t = start
        self.recent: deque[_Seen] = deque(maxlen=50)
        self.made = self.duplicates = self.mislocated = 0

    def rate_per_s(self, t: float) -> float:
        hour = dt.datetime.fromtimestamp(t, TZ).hour
        return self.per_day / 86400.0 * DAY_CURVE[hour] * 24 / sum(DAY_CURVE)

    def due(self, t: float) -> list[dict[str, Any]]:
        """The reports made between the last call and ``t`` (a Poisson process at the day's curve)."""
        if self.t is None or t <= self.t:
            self.t = t if self.t is None else self.t
            return []
        out: list[dict[str, Any]] = []
        now = self.t
        while True:
            now += self.rng.expovariate(max(self.rate_per_s(now), 1e-9))
            if now > t:
                break
            body = self._one()
            if body is not None:
                out.append(body)
        self.t = t
        return out

    def _broken(self) -> list[tuple[EquipmentDef, str]]:
        out = []
        for eid, e in self.equipment.items():
            faults = getattr(self.models.get(eid), "faults", None)  # a property of the models (a set)
            if not isinstance(faults, (set, frozenset)):
                continue
            for f in sorted(faults):
                if f in CATEGORY_OF:
                    out.append((e, CATEGORY_OF[f]))
        return out

    def _one(self) -> dict[str, Any] | None:
        rng = self.rng
        if self.recent and rng.random() < DUPLICATES:
            s = rng.choice(list(self.recent))
            self.duplicates += 1
            return self._body(s.category, s.lat + rng.gauss(0, 0.0003), s.lon + rng.gauss(0, 0.0004), s.address)
        broken = self._broken()
        if not broken:
            if rng.random() < 0.1 and self.equipment:  # somebody reports something there is nothing behind
                e = rng.choice(list(self.equipment.values()))
                return self._body("other", e.lat + rng.gauss(0, 0.0005), e.lon + rng.gauss(0, 0.0007), "")
            return None
        e, category = rng.choice(broken)
        lat, lon = e.lat + rng.gauss(0, 0.0002), e.lon + rng.gauss(0, 0.0003)
        address = str(e.identity.get("address") or "")
        self.recent.append(_Seen(category, lat, lon, address))
        if rng.random() < MISLOCATED:
            self.mislocated += 1
            if address and rng.random() < 0.5:
                return self._body(category, None, None, address)
            bearing, d_m = rng.uniform(0, 2 * math.pi), rng.uniform(150, 400)
            return self._body(category, lat + d_m * math.cos(bearing) / 110_540,
                              lon + d_m * math.sin(bearing) / (111_320 * math.cos(math.radians(lat))), "")
        return self._body(category, lat, lon, "")

    def _body(self, category: str, lat: float | None, lon: float | None, address: str) -> dict[str, Any]:
        self.made += 1
        body: dict[str, Any] = {"category": category, "text": "signalé par un habitant"}
        if lat is not None and lon is not None:
            body.update(lat=round(lat, 6), lon=round(lon, 6))
        if address:
            body["address"] = address
        if self.rng.random() < 0.5:  # half of them leave a way to be called back (made-up, never real)
            body["contact"] = {"phone": f"+33 6 00 {self.rng.randint(0, 99):02d} {self.rng.randint(0, 99):02d} "
                                        f"{self.rng.randint(0, 99):02d}"}
        return body


async def post_reports(url: str, token: str, generator: ReportGenerator, clock: Callable[[], float],
                       every_s: float = 1.0, stop: asyncio.Event | None = None) -> None:
    """Post the generator's reports to the server's intake until ``stop`` (or cancelled)."""
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=10) as c:
        while stop is None or not stop.is_set():
            for body in generator.due(clock()):
                try:
                    r = await c.post("/api/v1/reports", json=body, headers={"X-Intake-Token": token})
                    if r.status_code != 200:
                        log.warning("report refused: %s %s", r.status_code, r.text[:200])
                except httpx.HTTPError as exc:
                    log.warning("report not posted: %s", exc)
            await asyncio.sleep(every_s)


__all__ = ["REPAIR_S", "FieldCrews", "ReportGenerator", "post_reports"]
