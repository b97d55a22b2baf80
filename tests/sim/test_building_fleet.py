"""Building and vehicle models: pure behaviour tests, time passed in, no servers."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pytest

from scada.config import load_city
from scada.config.generate import COMMUNES
from sim.building import FIRE_ALARM, FIRE_FAULT, FIRE_NORMAL, TZ, Building
from sim.fleet import AVAILABLE, BUSY, OFF_DUTY, Vehicle, distance_km

ROOT = Path(__file__).resolve().parents[2]
TUESDAY = dt.datetime(2026, 3, 10, tzinfo=TZ)  # a Tuesday, local midnight


def at(day: dt.datetime, hour: float) -> float:
    return (day + dt.timedelta(hours=hour)).timestamp()


def office(seed: int = 1, zones: int = 3, doors: int = 2) -> Building:
    b = Building("B900", zones, doors, random.Random(seed))
    b.open_days, b.open_hour, b.close_hour = (0, 1, 2, 3, 4), 8.0, 18.0
    return b


def run(model: Building | Vehicle, t0: float, t1: float, dt_s: float) -> None:
    t = t0
    while t < t1:
        model.step(t)
        t += dt_s
    model.step(t1)


# ---------------------------------------------------------------------------------------------- building
def test_armed_at_night_disarmed_during_opening_hours_doors_used_by_day_only() -> None:
    b = office()
    b.step(at(TUESDAY, 3))
    assert b.values()["intrusion/armed"] is True
    assert b.values()["intrusion/alarm"] is False
    opened = {1: 0, 2: 0}
    t = at(TUESDAY, 3)
    while t < at(TUESDAY, 23):
        t += 5
        b.step(t)
        hour = (dt.datetime.fromtimestamp(t, TZ) - TUESDAY).total_seconds() / 3600
        v = b.values()
        for d in (1, 2):
            if v[f"doors/door{d}"]:
                assert 8 <= hour < 18.2, f"door {d} open at {hour:.2f} h"
                opened[d] += 1
        if 8.01 <= hour < 18:
            assert v["intrusion/armed"] is False
        if hour >= 18.2:
            assert v["intrusion/armed"] is True  # armed once the last door shut after closing time
    assert opened[1] > opened[2] > 0  # the main entrance is the busiest
    assert b.values()["intrusion/alarm"] is False


def test_same_seed_same_history_whatever_the_step_size() -> None:
    fine, coarse = office(seed=5), office(seed=5)
    fine.step(at(TUESDAY, 6))
    coarse.step(at(TUESDAY, 6))
    checkpoints = [at(TUESDAY, h) for h in (9, 12.5, 17.9, 19, 30)]
    t = at(TUESDAY, 6)
    for cp in checkpoints:
        run(fine, t, cp, 1.0)
        coarse.step(cp)
        assert fine.values() == coarse.values()
        t = cp


def test_weekend_stays_armed() -> None:
    b = office()
    saturday = TUESDAY + dt.timedelta(days=4)
    run(b, at(saturday, 0), at(saturday, 23), 60)
    assert b.armed and not any(b.doors)
    assert not b.is_open_at(at(saturday, 11))


def test_fire_alarm_latches_and_wins_over_fault() -> None:
    b = office()
    b.step(at(TUESDAY, 2))
    b.inject("fire_fault", zone=2)
    assert [b.values()[f"fire/zone{i}"] for i in (1, 2, 3)] == [FIRE_NORMAL, FIRE_FAULT, FIRE_NORMAL]
    b.inject("fire_alarm", zone=2)
    assert b.values()["fire/zone2"] == FIRE_ALARM
    run(b, at(TUESDAY, 2), at(TUESDAY, 6), 300)
    assert b.values()["fire/zone2"] == FIRE_ALARM  # latched until the panel is reset
    b.clear("fire_alarm")
    assert b.values()["fire/zone2"] == FIRE_FAULT  # the fault is still there
    b.clear("fire_fault", zone=2)
    assert all(b.values()[f"fire/zone{i}"] == FIRE_NORMAL for i in (1, 2, 3))
    b.inject("fire_alarm", zone="all")
    assert all(b.values()[f"fire/zone{i}"] == FIRE_ALARM for i in (1, 2, 3))


def test_fire_alarm_in_an_occupied_building_evacuates_through_every_door() -> None:
    b = office()
    b.step(at(TUESDAY, 10))
    b.inject("fire_alarm", zone=1)
    assert all(b.values()[f"doors/door{d}"] for d in (1, 2))
    b.step(at(TUESDAY, 10) + 60)
    assert all(b.values()[f"doors/door{d}"] for d in (1, 2))
    b.step(at(TUESDAY, 10) + 8 * 60)  # evacuation lasts 3-7 min
    assert b.values()["fire/zone1"] == FIRE_ALARM
    b.step(at(TUESDAY, 10) + 8 * 60 + 1)
    assert b._evacuate_until == 0.0


def test_forced_door_at_night_raises_the_intrusion_alarm_until_the_morning_disarm() -> None:
    b = office()
    b.step(at(TUESDAY, 23))
    b.inject("door_forced", door=2)
    v = b.values()
    assert v["doors/door2"] is True and v["intrusion/armed"] is True and v["intrusion/alarm"] is True
    b.clear("door_forced")
    assert b.values()["doors/door2"] is False
    assert b.values()["intrusion/alarm"] is True  # latched: someone has to come and look
    b.step(at(TUESDAY, 24 + 8.5))  # Wednesday morning, the first one in disarms
    assert b.values()["intrusion/alarm"] is False and b.values()["intrusion/armed"] is False


def test_intrusion_fault_and_clear() -> None:
    b = office()
    b.step(at(TUESDAY, 11))
    assert not b.armed
    b.inject("intrusion")
    assert b.values()["intrusion/armed"] and b.values()["intrusion/alarm"]
    b.clear("intrusion")
    assert not b.values()["intrusion/alarm"] and not b.values()["intrusion/armed"]


def test_frozen_values_stop_changing_then_jump() -> None:
    b = office()
    b.step(at(TUESDAY, 2))
    b.inject("frozen")
    b.inject("fire_alarm", zone=1)
    b.step(at(TUESDAY, 12))
    assert b.values()["fire/zone1"] == FIRE_NORMAL and b.values()["intrusion/armed"] is True
    b.clear("frozen")
    assert b.values()["fire/zone1"] == FIRE_ALARM and b.values()["intrusion/armed"] is False


def test_bad_faults_are_refused() -> None:
    b = office(zones=2, doors=1)
    with pytest.raises(ValueError, match="unknown fault 'fire'"):
        b.inject("fire")
    with pytest.raises(ValueError, match=r"zone must be 1\.\.2"):
        b.inject("fire_alarm", zone=3)
    with pytest.raises(ValueError, match=r"door must be 1\.\.1"):
        b.inject("door_forced", door=2)


def test_from_equipment_reads_zones_and_doors() -> None:
    eq = load_city(ROOT / "tags.yaml").equipment["B004"]
    b = Building.from_equipment(eq, random.Random(1))
    keys = b.values().keys()
    assert sum(k.startswith("fire/") for k in keys) == eq.params["fire_zones"]
    assert sum(k.startswith("doors/") for k in keys) == eq.params["doors"]


# ---------------------------------------------------------------------------------------------- vehicles
LAT = (min(c[1] for c in COMMUNES) - 0.05, max(c[1] for c in COMMUNES) + 0.05)
LON = (min(c[2] for c in COMMUNES) - 0.07, max(c[2] for c in COMMUNES) + 0.07)


def test_a_day_of_a_vehicle_is_plausible() -> None:
    statuses = set()
    for seed in range(6):
        v = Vehicle(f"V{seed}", (47.322, 5.0415), random.Random(seed), shift="day")
        prev = None
        t = at(TUESDAY, 0)
        v.step(t)
        while t < at(TUESDAY, 24):
            t += 10
            v.step(t)
            val = v.values()
            statuses.add(val["status"])
            hour = (t - at(TUESDAY, 0)) / 3600
            assert LAT[0] < val["lat"] < LAT[1] and LON[0] < val["lon"] < LON[1]
            assert 0 <= val["speed"] <= 80
            if prev is not None:  # no teleporting: ≤ 80 km/h over 10 s is ≤ 223 m
                assert distance_km(prev[0], prev[1], val["lat"], val["lon"]) <= 0.23
            prev = (val["lat"], val["lon"])
            if hour < v.shift_start_h - 0.01:
                assert val["status"] == OFF_DUTY and val["speed"] == 0
        assert v.values()["status"] == OFF_DUTY
        assert distance_km(*v.depot, v.lat, v.lon) < 0.01  # parked at the depot at night
    assert statuses == {AVAILABLE, BUSY, OFF_DUTY}


def test_vehicle_determinism_across_step_sizes_and_team() -> None:
    a = Vehicle("V1", (47.30, 5.13), random.Random(9), shift="office")
    b = Vehicle("V1", (47.30, 5.13), random.Random(9), shift="office")
    assert a.team == b.team and a.team.split("-")[0] in {"lighting", "traffic", "buildings", "police", "bollards",
                                                         "cctv", "panels", "parking"}
    a.step(at(TUESDAY, 7))
    b.step(at(TUESDAY, 7))
    for cp in (9, 11.5, 14, 17.5):
        run(a, a._t or 0, at(TUESDAY, cp), 3.0)
        b.step(at(TUESDAY, cp))
        assert a.values() == b.values()


def test_dispatch_breakdown_frozen() -> None:
    v = Vehicle("V7", (47.322, 5.0415), random.Random(3), shift="day")
    v.step(at(TUESDAY, 9))
    target = (47.2870, 5.0640)  # Longvic
    v.inject("dispatch", lat=target[0], lon=target[1], work_min=20)
    v.step(at(TUESDAY, 9) + 30)
    assert v.values()["status"] == BUSY and v.values()["speed"] > 0
    run(v, at(TUESDAY, 9) + 30, at(TUESDAY, 9.25), 5)  # ~4 km: there in about 8 min, 20 min on site
    assert distance_km(v.lat, v.lon, *target) < 0.01 and v.values()["speed"] == 0
    assert v.values()["status"] == BUSY  # working on site
    v.inject("frozen")
    v.inject("breakdown")
    assert v.values()["status"] == BUSY  # the tracker hangs: still the old report
    v.clear("frozen")
    assert v.values()["status"] == OFF_DUTY and v.values()["speed"] == 0
    pos = (v.lat, v.lon)
    v.step(at(TUESDAY, 11))
    assert (v.lat, v.lon) == pos
    v.clear("breakdown")
    assert v.values()["status"] == AVAILABLE
    with pytest.raises(ValueError, match="unknown fault"):
        v.inject("flat_tyre")
