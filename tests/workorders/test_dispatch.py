"""Dispatch over a real store and the shipped crews.yaml: the travel-time estimate, the ranking of crews
(shift, busy, position), the Router seam, and arrival by geofence."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from scada.config import CityConfig
from scada.geo import M_PER_DEG_LAT
from scada.workorders import Action, CrewsConfig, Status
from scada.workorders.dispatch import Fix, StraightLineRouter, arrived, busy_crews, haversine_m, rank
from tests.workorders.conftest import MIN, T0, Book

PARIS = ZoneInfo("Europe/Paris")
MONDAY_10H = dt.datetime(2027, 1, 18, 10, 0, tzinfo=PARIS)  # lighting-day on shift, lighting-night off
MONDAY_20H = dt.datetime(2027, 1, 18, 20, 0, tzinfo=PARIS)  # the other way round


def north_of(lat: float, lon: float, metres: float) -> Fix:
    return Fix(lat + metres / M_PER_DEG_LAT, lon)


def test_haversine_and_the_documented_estimate() -> None:
    # one degree of latitude at the métropole's latitude: 111.1 km on the sphere (the map frame says 110.5)
    assert haversine_m(47.0, 5.0, 48.0, 5.0) == pytest.approx(111_195, rel=1e-4)
    assert haversine_m(47.32, 5.04, 47.32, 5.04) == 0.0
    # 1 km straight, × 1.3 detour at 25 km/h → 187.2 s
    assert StraightLineRouter().travel_s(47.0, 5.0, 47.0 + 1000 / 111_195, 5.0) == pytest.approx(187.2, rel=1e-3)
    assert StraightLineRouter(speed_kmh=50, detour=1.0).travel_s(47.0, 5.0, 47.0 + 1000 / 111_195, 5.0) == \
        pytest.approx(72.0, rel=1e-3)


def test_rank_prefers_available_then_nearest(book: Book, city: CityConfig, crews: CrewsConfig) -> None:
    order, _ = book.orders.create("op", "C0001", "lamp out", 3, T0)
    eq = city.equipment["C0001"]
    # lighting-day's V007 is 2 km away, V006 800 m; lighting-night's V011 is 300 m away
    fixes = {"V006": north_of(eq.lat, eq.lon, 800), "V007": north_of(eq.lat, eq.lon, 2000),
             "V011": north_of(eq.lat, eq.lon, 300)}
    day = rank(order, crews, {}, fixes.get, MONDAY_10H)
    assert [c.crew for c in day] == ["lighting-day", "lighting-night"]  # only the lighting service's crews
    best = day[0]
    assert best.available and best.vehicle == "V006" and best.why == ""
    assert best.distance_m == pytest.approx(800, abs=5)
    assert best.eta_s == pytest.approx(800 * 1.3 / (25 / 3.6), rel=0.01)
    night = day[1]
    assert not night.available and night.why == "off shift" and night.vehicle == "V011"
    # in the evening the night crew is on shift and nearer
    evening = rank(order, crews, {}, fixes.get, MONDAY_20H)
    assert [c.crew for c in evening] == ["lighting-night", "lighting-day"] and evening[0].available
    # busy with another mission: not available (none is: then simply the nearest first), with the reason
    busy = rank(order, crews, {"lighting-day": "WO-000099"}, fixes.get, MONDAY_10H)
    assert not any(c.available for c in busy) and [c.crew for c in busy] == ["lighting-night", "lighting-day"]
    assert (busy[1].busy_with, busy[1].why) == ("WO-000099", "busy with WO-000099")
    # no position for any vehicle: not available, listed after the ones with an ETA
    blind = rank(order, crews, {}, {"V011": fixes["V011"]}.get, MONDAY_10H)
    assert blind[-1].crew == "lighting-day" and blind[-1].eta_s is None and "no vehicle position" in blind[-1].why
    # every service on request (bollards-1 has no shift: always on duty)
    assert {c.crew for c in rank(order, crews, {}, fixes.get, MONDAY_10H, any_service=True)} == set(crews.crews)


def test_a_road_router_plugs_in(book: Book, city: CityConfig, crews: CrewsConfig) -> None:
    class Ferry:
        """A router that knows V007's straight road: everything else is slow."""

        def travel_s(self, lat1: float, lon1: float, lat2: float, lon2: float) -> float:
            return 60.0 if lat1 > lat2 + 0.015 else 3600.0

    order, _ = book.orders.create("op", "C0001", "lamp out", 3, T0)
    eq = city.equipment["C0001"]
    fixes = {"V006": north_of(eq.lat, eq.lon, 800), "V007": north_of(eq.lat, eq.lon, 2000)}
    best = rank(order, crews, {}, fixes.get, MONDAY_10H, Ferry())[0]
    assert (best.vehicle, best.eta_s) == ("V007", 60.0)


def test_busy_crews_and_geofence(book: Book, city: CityConfig) -> None:
    a, _ = book.orders.create("op", "C0001", "lamp out", 3, T0)
    b, _ = book.orders.create("op", "C0002", "cabinet dark", 2, T0)
    a = book.orders.act(a.id, Action.ASSIGN, "op", T0 + MIN, {"crew": "lighting-day"})
    assert busy_crews([a, b]) == {"lighting-day": a.id}
    assert busy_crews([a, b], but=a.id) == {}  # re-dispatching the same order does not count it
    a = book.orders.act(a.id, Action.EN_ROUTE, "crew.lighting-day", T0 + 2 * MIN)
    eq = city.equipment["C0001"]
    assert a.vehicle == "V006"
    assert arrived([a, b], {"V006": north_of(eq.lat, eq.lon, 60)}.get) == []
    assert arrived([a, b], {"V006": north_of(eq.lat, eq.lon, 40)}.get) == [a]
    nowhere: dict[str, Fix] = {}
    assert arrived([a], nowhere.get) == []  # no position: not arrived
    on_site = book.orders.act(a.id, Action.ON_SITE, "system", T0 + 3 * MIN)
    assert on_site.status is Status.ON_SITE
    assert arrived([on_site], {"V006": north_of(eq.lat, eq.lon, 0)}.get) == []  # only orders en route


def test_why_texts_in_the_sites_language(book: Book, city: CityConfig, crews: CrewsConfig) -> None:
    """The dispatch's "why not" and the refusals are built through scada.i18n: French for a French site."""
    from scada.errors import Refused
    from scada.i18n import set_language

    order, _ = book.orders.create("op", "C0001", "lamp out", 3, T0)
    set_language("fr")  # the fixture puts English back
    ranked = rank(order, crews, {"lighting-day": "WO-000099"}, lambda v: None, MONDAY_20H)
    assert {c.why for c in ranked} == {"hors horaire, occupée par WO-000099, position du véhicule inconnue",
                                       "position du véhicule inconnue"}, [c.why for c in ranked]
    with pytest.raises(Refused) as exc:
        book.orders.create("op", "C0001", "lamp out", 7, T0)
    assert exc.value.why == "la priorité doit être de 1 à 4, reçu 7"
