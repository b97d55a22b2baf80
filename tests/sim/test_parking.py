"""Parking counter behaviour (pure, time passed in): daily rhythm, overstays, determinism, map, faults."""

from __future__ import annotations

import random
from datetime import datetime
from statistics import mean

import pytest

from scada.config import load_city
from sim.modbus_map import IllegalAddress
from sim.parking import PARIS, ParkingCounter, target_share


def local(y: int, mo: int, d: int, h: int, mi: int = 0) -> float:
    return datetime(y, mo, d, h, mi, tzinfo=PARIS).timestamp()


MONDAY = local(2026, 3, 9, 0)


def week_trace(counter: ParkingCounter, start: float = MONDAY, step_s: float = 300.0) -> list[tuple[float, int, int]]:
    out = []
    t = start
    while t < start + 7 * 86400:
        counter.step(t)
        out.append((t, counter.occupied, counter.overstays))
        t += step_s
    return out


@pytest.fixture(scope="module")
def trace() -> list[tuple[float, int, int]]:
    return week_trace(ParkingCounter("PK-test", 200, rng=random.Random(3)))


def _hours(trace: list[tuple[float, int, int]], days: set[int], hours: range) -> list[int]:
    out = []
    for t, occ, _ in trace:
        local_t = datetime.fromtimestamp(t, PARIS)
        if local_t.weekday() in days and local_t.hour in hours:
            out.append(occ)
    return out


def test_occupancy_follows_the_daily_rhythm(trace: list[tuple[float, int, int]]) -> None:
    assert all(0 <= occ <= 200 for _, occ, _ in trace)
    weekday_day = mean(_hours(trace, {0, 1, 2, 3, 4}, range(10, 17)))
    weekday_night = mean(_hours(trace, {0, 1, 2, 3, 4}, range(1, 5)))
    sunday_day = mean(_hours(trace, {6}, range(10, 17)))
    assert weekday_day > 0.75 * 200 and weekday_night < 0.45 * 200
    assert sunday_day < weekday_day - 30
    # the simulated cars track the target share within a few bays on average
    errors = [abs(occ - target_share(t) * 200) for t, occ, _ in trace]
    assert mean(errors) < 15


def test_overstays_only_in_paid_hours(trace: list[tuple[float, int, int]]) -> None:
    for t, occ, over in trace:
        local_t = datetime.fromtimestamp(t, PARIS)
        assert 0 <= over <= occ
        if local_t.weekday() == 6 or not 10 <= local_t.hour < 19:
            if not 9 <= local_t.hour < 19 or local_t.weekday() == 6:
                assert over == 0
    afternoon = [over for t, _, over in trace if datetime.fromtimestamp(t, PARIS).hour in (15, 16)]
    assert max(afternoon) > 0 and mean(afternoon) < 0.5 * 200


def test_deterministic_with_the_rng() -> None:
    a = week_trace(ParkingCounter("PK", 80, rng=random.Random(9)), step_s=900)
    b = week_trace(ParkingCounter("PK", 80, rng=random.Random(9)), step_s=900)
    c = week_trace(ParkingCounter("PK", 80, rng=random.Random(10)), step_s=900)
    assert a == b and a != c


def test_suburb_is_quieter() -> None:
    assert target_share(local(2026, 3, 10, 11), "Chenôve") < target_share(local(2026, 3, 10, 11), "Dijon")


def test_register_map_and_faults() -> None:
    p = ParkingCounter("PK-map", 120, rng=random.Random(1))
    assert p.modbus_read("ir", 0, 3) == [120, 0, 0]
    t = local(2026, 3, 10, 15)
    p.step(t)
    assert p.modbus_read("ir", 0, 3) == [120, p.occupied, p.overstays] and p.occupied > 0
    with pytest.raises(IllegalAddress):
        p.modbus_read("ir", 3, 1)
    with pytest.raises(IllegalAddress):
        p.modbus_read("hr", 0, 1)
    with pytest.raises(IllegalAddress):
        p.modbus_write("hr", 0, [1])
    p.inject("frozen")
    frozen = p.modbus_read("ir", 0, 3)
    p.inject("full")
    p.step(t + 4 * 3600)
    assert p.modbus_read("ir", 0, 3) == frozen
    p.clear("frozen")
    assert p.occupied >= 115 and p.turned_away > 0  # the event filled it, later arrivals drive on
    p.clear()
    assert p.faults == set()
    with pytest.raises(ValueError):
        p.inject("meteor")


def test_from_equipment() -> None:
    eq = load_city("tags.yaml", "alarms.yaml").equipment["PK06"]
    p = ParkingCounter.from_equipment(eq, random.Random(1))
    assert p.id == "PK06" and p.commune == "Chenôve" and 1 <= p.capacity <= 400
