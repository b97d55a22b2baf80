"""Dispatch: which crew to send to a work order (ranked by estimated travel time), and arrival by geofence.

::

    crews.yaml (crew → service, vehicles, shifts)     the fleet's live positions (vehicle tags lat/lon, via
    open orders (a crew in the field is busy)          ``Positions``: the server reads its tag database)
                         │                                  │
                         └────────► rank(order, ...) ◄──────┘
                                      one Candidate per crew of the order's service: its nearest vehicle
                                      with a known position, the straight-line distance and the ETA;
                                      available = on shift (crews.yaml, city local time) AND not busy AND
                                      a vehicle position known; available crews first, then by ETA
    arrived(orders en route, positions) ─► the orders whose vehicle is within ``radius_m`` (50 m) of the
                                          equipment: the server moves them to "on site"

The estimate (:class:`StraightLineRouter`): great-circle (haversine) distance × an urban detour factor
(1.3 by default: a street network is about 30 % longer than the crow flies in a European city centre) at a
configured average speed (25 km/h by default: urban traffic, lights and parking included). It is an
estimate for ranking, not a navigation time. A road-network router (OSRM, Valhalla...) can replace it by
implementing :class:`Router`; nothing else changes.

Pure: no clock, no I/O (positions and the local time are passed in), so the tests run on fixed data.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from scada.i18n import _
from scada.workorders.crews import Crew, CrewsConfig
from scada.workorders.model import Status, WorkOrder

EARTH_RADIUS_M = 6_371_008.8  # mean radius (IUGG)
DETOUR = 1.3
SPEED_KMH = 25.0
ARRIVAL_RADIUS_M = 50.0


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres between two WGS 84 points (spherical earth: < 0.5 % error)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


class Router(Protocol):
    """Travel time between two points; a road-network router implements the same method."""

    def travel_s(self, lat1: float, lon1: float, lat2: float, lon2: float) -> float: ...


@dataclass(frozen=True, slots=True)
class StraightLineRouter:
    """Straight line × ``detour`` at ``speed_kmh`` (see the module docstring)."""

    speed_kmh: float = SPEED_KMH
    detour: float = DETOUR

    def travel_s(self, lat1: float, lon1: float, lat2: float, lon2: float) -> float:
        return haversine_m(lat1, lon1, lat2, lon2) * self.detour / (self.speed_kmh / 3.6)


@dataclass(frozen=True, slots=True)
class Fix:
    """A vehicle's last known position (None when the fleet server gives none of good quality)."""

    lat: float
    lon: float
    status: str | None = None  # the fleet's own status (available, busy, off_duty), shown, not decisive


Positions = Callable[[str], Fix | None]  # vehicle id → its position


@dataclass(frozen=True, slots=True)
class Candidate:
    crew: str
    service: str
    vehicle: str | None  # the crew's nearest vehicle with a known position
    lat: float | None
    lon: float | None
    distance_m: float | None
    eta_s: float | None
    available: bool
    on_shift: bool
    busy_with: str | None  # the crew's mission in progress (an order id)
    why: str  # "" when available, else why not

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def busy_crews(open_orders: Iterable[WorkOrder], *, but: str | None = None) -> dict[str, str]:
    """crew → the order it is in the field for (assigned, en route, on site); ``but`` that order excepted."""
    out: dict[str, str] = {}
    for o in open_orders:
        if o.crew and o.status.in_field and o.id != but:
            out.setdefault(o.crew, o.id)
    return out


def rank(order: WorkOrder, crews: CrewsConfig, busy: Mapping[str, str], positions: Positions,
         local_now: dt.datetime, router: Router | None = None, *, any_service: bool = False) -> list[Candidate]:
    """The crews of ``order``'s service (every crew with ``any_service``), best first (see the docstring)."""
    router = router or StraightLineRouter()
    out: list[Candidate] = []
    for crew in crews.crews.values():
        if crew.service != order.service and not any_service:
            continue
        out.append(_candidate(order, crew, busy, positions, local_now, router))
    out.sort(key=lambda c: (not c.available, c.eta_s is None, c.eta_s or 0.0, c.crew))
    return out


def _candidate(order: WorkOrder, crew: Crew, busy: Mapping[str, str], positions: Positions,
               local_now: dt.datetime, router: Router) -> Candidate:
    best: tuple[float, str, Fix] | None = None
    for v in crew.vehicles:
        fix = positions(v)
        if fix is None:
            continue
        eta = router.travel_s(fix.lat, fix.lon, order.lat, order.lon)
        if best is None or eta < best[0]:
            best = (eta, v, fix)
    on_shift = crew.on_shift(local_now)
    mission = busy.get(crew.id)
    # in the server's language: the dispatch dialog shows it as it comes
    why = [w for w, bad in ((_("off shift"), not on_shift), (_("busy with {order}").format(order=mission),
                                                             mission is not None),
                            (_("no vehicle position"), best is None)) if bad]
    if best is None:
        return Candidate(crew.id, crew.service, crew.vehicles[0] if crew.vehicles else None, None, None, None, None,
                         False, on_shift, mission, ", ".join(why))
    eta, vehicle, fix = best
    return Candidate(crew.id, crew.service, vehicle, fix.lat, fix.lon,
                     round(haversine_m(fix.lat, fix.lon, order.lat, order.lon), 1), round(eta, 1), not why, on_shift,
                     mission, ", ".join(why))


def arrived(orders: Iterable[WorkOrder], positions: Positions, radius_m: float = ARRIVAL_RADIUS_M) -> list[WorkOrder]:
    """The orders en route whose vehicle is within ``radius_m`` of their equipment (→ on site)."""
    out: list[WorkOrder] = []
    for o in orders:
        if o.status is not Status.EN_ROUTE or not o.vehicle:
            continue
        fix = positions(o.vehicle)
        if fix is not None and haversine_m(fix.lat, fix.lon, o.lat, o.lon) <= radius_m:
            out.append(o)
    return out


__all__ = ["ARRIVAL_RADIUS_M", "Candidate", "Fix", "Positions", "Router", "StraightLineRouter", "arrived",
           "busy_crews", "haversine_m", "rank"]
