"""Lighting cabinet behaviour (pure, time passed in): schedule across winter/summer/DST nights, energy,
override lease, heartbeat loss, never off at night, faults, register map; plus sim.astro."""

from __future__ import annotations

import random
import struct
from datetime import UTC, date, datetime, timedelta

import pytest

from scada.config import load_city
from sim.astro import DIJON_LAT, DIJON_LON, solar_elevation, sun_times
from sim.lease import WATCHDOG_S
from sim.lighting import (
    MODE_LOCAL_MANUAL,
    MODE_OFF_DAYTIME,
    MODE_OVERRIDE,
    MODE_SCHEDULE,
    NIGHT_MIN_LEVEL,
    PARIS,
    LightingCabinet,
    LightingSchedule,
)
from sim.modbus_map import IllegalAddress, IllegalValue


def local(y: int, mo: int, d: int, h: int, mi: int = 0, s: int = 0) -> float:
    return datetime(y, mo, d, h, mi, s, tzinfo=PARIS).timestamp()


def utc(y: int, mo: int, d: int, h: int, mi: int = 0) -> float:
    return datetime(y, mo, d, h, mi, tzinfo=UTC).timestamp()


def f32(words: list[int]) -> float:
    return float(struct.unpack(">f", struct.pack(">HH", *words))[0])


def cabinet(n: int = 30, **kw: object) -> LightingCabinet:
    return LightingCabinet("C-test", n, rng=random.Random(7), nominal_w=100.0, **kw)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------- astro
@pytest.mark.parametrize(
    ("day", "rise_local", "set_local", "day_len_h"),
    [
        (date(2026, 12, 21), "08:23", "16:51", 8.46),
        (date(2026, 6, 21), "05:43", "21:40", 15.95),
        (date(2026, 3, 20), "06:43", "18:52", 12.15),  # equinox, CET
        (date(2026, 3, 29), "07:24", "20:05", 12.67),  # first CEST day
    ],
)
def test_sun_times_dijon(day: date, rise_local: str, set_local: str, day_len_h: float) -> None:
    st = sun_times(day)
    assert st.sunrise is not None and st.sunset is not None
    assert st.sunrise.astimezone(PARIS).strftime("%H:%M") == rise_local
    assert st.sunset.astimezone(PARIS).strftime("%H:%M") == set_local
    assert (st.sunset - st.sunrise).total_seconds() / 3600 == pytest.approx(day_len_h, abs=0.02)
    # at the computed instants the sun's centre is 0.833° below the horizon (refraction + radius)
    assert solar_elevation(st.sunrise) == pytest.approx(-0.833, abs=0.02)
    assert solar_elevation(st.sunset) == pytest.approx(-0.833, abs=0.02)


def test_solar_elevation_noon_and_midnight() -> None:
    noon = datetime(2026, 6, 21, 11, 42, tzinfo=UTC)  # solar noon at 5.04° E
    assert solar_elevation(noon, DIJON_LAT, DIJON_LON) == pytest.approx(90 - DIJON_LAT + 23.44, abs=0.1)
    assert solar_elevation(noon + timedelta(hours=12)) < -15
    with pytest.raises(ValueError):
        solar_elevation(datetime(2026, 6, 21, 12))
    assert sun_times(date(2026, 6, 21), lat=80.0).sunset is None  # polar day


# -------------------------------------------------------------------------------------------- schedule
@pytest.mark.parametrize(
    ("when", "level"),
    [
        # winter night 21→22 December (sunset 16:51:50, sunrise 08:24:27)
        (local(2026, 12, 21, 16, 51), 0),
        (local(2026, 12, 21, 16, 52), 100),
        (local(2026, 12, 21, 21, 59, 59), 100),
        (local(2026, 12, 21, 22, 0), 70),
        (local(2026, 12, 21, 23, 59, 59), 70),
        (local(2026, 12, 22, 0, 0), 50),
        (local(2026, 12, 22, 5, 29, 59), 50),
        (local(2026, 12, 22, 5, 30), 100),
        (local(2026, 12, 22, 8, 24), 100),
        (local(2026, 12, 22, 8, 25), 0),
        (local(2026, 12, 22, 12, 0), 0),
        # summer night 21→22 June (sunset 21:40:01, sunrise 05:43:31): short 100 % phases
        (local(2026, 6, 21, 21, 40), 0),
        (local(2026, 6, 21, 21, 41), 100),
        (local(2026, 6, 21, 22, 0), 70),
        (local(2026, 6, 22, 0, 0), 50),
        (local(2026, 6, 22, 5, 30), 100),
        (local(2026, 6, 22, 5, 43), 100),
        (local(2026, 6, 22, 5, 44), 0),
        # spring DST night 28→29 March 2026 (02:00 CET → 03:00 CEST): steps follow the wall clock
        (utc(2026, 3, 28, 23, 0), 50),  # 00:00 CET
        (utc(2026, 3, 29, 3, 29), 50),  # 05:29 CEST
        (utc(2026, 3, 29, 3, 30), 100),  # 05:30 CEST (would be 04:30 UTC with a fixed +1 h)
        (utc(2026, 3, 29, 4, 30), 100),
        (local(2026, 3, 29, 7, 24), 100),
        (local(2026, 3, 29, 7, 26), 0),
        # autumn DST night 24→25 October 2026 (03:00 CEST → 02:00 CET)
        (utc(2026, 10, 24, 21, 59), 70),  # 23:59 CEST
        (utc(2026, 10, 24, 22, 0), 50),  # 00:00 CEST
        (utc(2026, 10, 25, 4, 29), 50),  # 05:29 CET
        (utc(2026, 10, 25, 4, 30), 100),  # 05:30 CET
    ],
)
def test_schedule_level(when: float, level: int) -> None:
    assert LightingSchedule().level(when) == level


@pytest.mark.parametrize(
    ("noon", "switch_on", "switch_off"),
    [
        (local(2026, 12, 21, 12), local(2026, 12, 21, 16, 51, 50), local(2026, 12, 22, 8, 24, 27)),
        (local(2026, 6, 21, 12), local(2026, 6, 21, 21, 40, 1), local(2026, 6, 22, 5, 43, 31)),
        (local(2026, 3, 28, 12), local(2026, 3, 28, 19, 3, 38), local(2026, 3, 29, 7, 24, 59)),
        (local(2026, 10, 24, 12), local(2026, 10, 24, 18, 36, 10), local(2026, 10, 25, 7, 12, 35)),
    ],
    ids=["winter", "summer", "dst-spring", "dst-autumn"],
)
def test_cabinet_follows_a_whole_night_minute_by_minute(noon: float, switch_on: float, switch_off: float) -> None:
    cab = cabinet()
    sched = LightingSchedule()
    levels: list[int] = []
    energy0 = None
    t = noon
    while t <= noon + 86400:
        cab.step(t)
        energy0 = cab.energy if energy0 is None else energy0
        assert cab.schedule_level == sched.level(t)
        night = switch_on + 1 <= t <= switch_off - 1
        if night:
            assert cab.mode == MODE_SCHEDULE and cab.target_level > 0 and cab.contactor_closed
        elif not switch_on - 1 <= t <= switch_off + 1:
            assert cab.mode == MODE_OFF_DAYTIME and cab.power == 0.0 and not cab.contactor_closed
        assert cab.levels == [cab.target_level] * 30
        assert cab.power == pytest.approx(30 * 100.0 * cab.target_level / 100)
        if not levels or levels[-1] != cab.target_level:
            levels.append(cab.target_level)
        t += 60
    assert levels == [0, 100, 70, 50, 100, 0]
    # energy: exact integral of the schedule (3 kW at 100 %), checked against the breakpoints
    assert energy0 is not None
    day1 = datetime.fromtimestamp(noon, PARIS).date()
    day2 = day1 + timedelta(days=1)
    t22 = datetime(day1.year, day1.month, day1.day, 22, tzinfo=PARIS).timestamp()
    t00 = datetime(day2.year, day2.month, day2.day, 0, tzinfo=PARIS).timestamp()
    t0530 = datetime(day2.year, day2.month, day2.day, 5, 30, tzinfo=PARIS).timestamp()
    hours = [(t22 - switch_on, 1.0), (t00 - t22, 0.7), (t0530 - t00, 0.5), (switch_off - t0530, 1.0)]
    expected_kwh = sum(3.0 * share * seconds / 3600 for seconds, share in hours)
    assert cab.energy - energy0 == pytest.approx(expected_kwh, abs=0.15)  # within a second of switching


# -------------------------------------------------------------------------------------- register map
def test_register_map() -> None:
    cab = cabinet(12)
    t = local(2026, 12, 21, 23)
    cab.inject("lamp_failure", index=3)
    cab.step(t)
    assert cab.modbus_read("di", 0, 3) == [1, 1, 0]
    ir = cab.modbus_read("ir", 0, 8)
    assert ir[:2] == [12, 1]
    assert f32(ir[2:4]) == pytest.approx(11 * 100.0 * 0.7)
    assert f32(ir[4:6]) == pytest.approx(cab.energy, rel=1e-6)
    assert ir[6:8] == [70, MODE_SCHEDULE]
    assert cab.modbus_read("ir", 8, 92) == [0] * 92  # reserved gap
    lamp = cab.modbus_read("ir", 100, 12 * 4)
    assert lamp[0:3] == [70, 0, 700]  # lamp 1: 70 %, ok, 70.0 W
    assert lamp[8:11] == [70, 1, 0]  # lamp 3: failed, dark
    assert lamp[3] == int(cab.energy_kwh[0] * 10) & 0xFFFF
    assert cab.modbus_read("hr", 0, 3) == [100, 0, 0]
    for table, address, count in [("ir", 100 + 12 * 4, 1), ("ir", 0, 149), ("di", 3, 1), ("hr", 3, 1), ("co", 0, 1)]:
        with pytest.raises(IllegalAddress):
            cab.modbus_read(table, address, count)  # type: ignore[arg-type]
    for table, address in [("ir", 0), ("hr", 3), ("di", 0), ("co", 0)]:
        with pytest.raises(IllegalAddress):
            cab.modbus_write(table, address, [1])  # type: ignore[arg-type]


def test_from_equipment_uses_inventory_params() -> None:
    city = load_city("tags.yaml", "alarms.yaml")
    eq = city.equipment["C0001"]
    cab = LightingCabinet.from_equipment(eq, random.Random(1))
    assert cab.id == "C0001" and cab.luminaire_count == eq.params["luminaires"] == 30
    assert all(60 <= w <= 120 for w in cab.nominal_w)
    assert cab.schedule.lat == eq.lat
    again = LightingCabinet.from_equipment(eq, random.Random(1))
    assert again.nominal_w == cab.nominal_w and again.energy_kwh == cab.energy_kwh  # deterministic


# ---------------------------------------------------------------------------------- override + lease
def test_override_lease_counts_down_and_expires_to_schedule() -> None:
    cab = cabinet()
    t = local(2026, 12, 21, 23)
    cab.step(t)
    cab.modbus_write("hr", 0, [90, 120, 1])
    assert cab.mode == MODE_OVERRIDE and cab.levels[0] == 90
    assert cab.modbus_read("hr", 0, 3) == [90, 120, 1]
    assert cab.modbus_read("ir", 7, 1) == [MODE_OVERRIDE]
    for k in range(1, 12):  # heartbeat keeps changing: only the lease ends it
        cab.modbus_write("hr", 2, [1 + k])
        cab.step(t + 10 * k)
        assert cab.modbus_read("hr", 1, 1) == [120 - 10 * k]
        assert cab.mode == MODE_OVERRIDE
    cab.step(t + 119.5)
    assert cab.mode == MODE_OVERRIDE and cab.modbus_read("hr", 1, 1) == [1]
    cab.step(t + 120)
    assert cab.mode == MODE_SCHEDULE and cab.levels[0] == 70
    assert cab.modbus_read("hr", 0, 2) == [90, 0]  # the level register keeps the last request


def test_level_alone_does_not_start_an_override_and_lease_zero_cancels() -> None:
    cab = cabinet()
    t = local(2026, 12, 21, 23)
    cab.step(t)
    cab.modbus_write("hr", 0, [40])
    assert cab.mode == MODE_SCHEDULE and cab.levels[0] == 70
    cab.modbus_write("hr", 1, [600])
    assert cab.mode == MODE_OVERRIDE and cab.levels[0] == 40
    cab.modbus_write("hr", 0, [60])  # a new level applies to the running override
    assert cab.levels[0] == 60
    cab.modbus_write("hr", 1, [0])
    assert cab.mode == MODE_SCHEDULE and cab.levels[0] == 70


def test_heartbeat_loss_drops_the_override_after_60_s() -> None:
    cab = cabinet()
    t = local(2026, 12, 22, 1)
    cab.step(t)
    cab.modbus_write("hr", 0, [100, 3600, 5])
    for k in range(1, 31):  # 5 min of heartbeats every 10 s
        t += 10
        cab.step(t)
        cab.modbus_write("hr", 2, [5 + k])
        assert cab.mode == MODE_OVERRIDE
    last_beat = t
    cab.modbus_write("hr", 2, [35])  # writing the same value is no sign of life
    cab.step(last_beat + WATCHDOG_S - 0.5)
    assert cab.mode == MODE_OVERRIDE
    cab.step(last_beat + WATCHDOG_S + 30)  # one big step: the deadline is applied at the exact second
    assert cab.mode == MODE_SCHEDULE and cab.levels[0] == 50
    assert cab.modbus_read("hr", 1, 1) == [0]
    assert cab.lease.central_alive(cab.now or 0) is False


def test_override_write_without_heartbeat_still_expires_on_watchdog() -> None:
    cab = cabinet()
    t = local(2026, 12, 22, 1)
    cab.step(t)
    cab.modbus_write("hr", 0, [100, 3600])  # e.g. mbpoll: no heartbeat at all
    cab.step(t + 59)
    assert cab.mode == MODE_OVERRIDE
    cab.step(t + 61)
    assert cab.mode == MODE_SCHEDULE


@pytest.mark.parametrize("level", [101, 255, 65535])
def test_out_of_range_override_level_is_refused(level: int) -> None:
    cab = cabinet()
    cab.step(local(2026, 12, 21, 12))
    with pytest.raises(IllegalValue):
        cab.modbus_write("hr", 0, [level, 60, 1])
    assert cab.modbus_read("hr", 0, 3) == [100, 0, 0]  # nothing applied


def test_never_off_at_night() -> None:
    cab = cabinet()
    t = local(2026, 12, 21, 20)
    cab.step(t)
    with pytest.raises(IllegalValue):
        cab.modbus_write("hr", 0, [0, 600, 1])  # switching a street off at night is refused
    with pytest.raises(IllegalValue):
        cab.modbus_write("hr", 0, [NIGHT_MIN_LEVEL - 1, 600, 1])
    cab.modbus_write("hr", 0, [NIGHT_MIN_LEVEL, 600, 1])
    assert cab.levels[0] == NIGHT_MIN_LEVEL
    cab.modbus_write("hr", 0, [0, 0, 2])  # cancelling the override with level 0 is fine
    assert cab.mode == MODE_SCHEDULE and cab.levels[0] == 100
    # by day an override to 0 is accepted; if its lease runs into the night it is raised to the minimum
    day = local(2026, 12, 21, 16, 30)
    cab2 = cabinet()
    cab2.step(day)
    cab2.modbus_write("hr", 0, [0, 3600, 1])
    for k in range(1, 40):
        cab2.modbus_write("hr", 2, [1 + k])
        cab2.step(day + 50 * k)
    assert cab2.mode == MODE_OVERRIDE and cab2.levels[0] == NIGHT_MIN_LEVEL


def test_no_sequence_of_central_requests_turns_the_night_off() -> None:
    rng = random.Random(3)
    for seed in range(20):
        cab = cabinet(4)
        cab.rng.seed(seed)
        t = local(2026, 12, 21, 17)
        cab.step(t)
        for _ in range(200):
            t += rng.choice([0.5, 5, 30, 90])
            cab.step(t)
            action = rng.random()
            try:
                if action < 0.4:
                    cab.modbus_write("hr", rng.randrange(3), [rng.randrange(0, 130)])
                elif action < 0.6:
                    cab.modbus_write("hr", 0, [rng.randrange(0, 130), rng.randrange(0, 200), rng.randrange(5)])
            except IllegalValue:
                pass
            assert cab.target_level >= NIGHT_MIN_LEVEL and cab.power > 0


# ---------------------------------------------------------------------------------------------- faults
def test_lamp_failure_by_index_and_count() -> None:
    cab = cabinet()
    t = local(2026, 12, 21, 23)
    cab.step(t)
    cab.inject("lamp_failure", index=[1, 30])
    assert cab.failed_count == 2 and cab.status[0] == cab.status[29] == 1
    assert cab.power_w[0] == 0.0 and cab.levels[0] == 70
    assert cab.power == pytest.approx(28 * 70.0)
    cab.inject("lamp_failure", count=3)
    assert cab.failed_count == 5
    other = cabinet()
    other.step(t)
    other.inject("lamp_failure", index=[1, 30])
    other.inject("lamp_failure", count=3)
    assert other.failed == cab.failed  # deterministic with the rng
    cab.clear("lamp_failure")
    assert cab.failed_count == 0 and cab.power == pytest.approx(30 * 70.0)
    with pytest.raises(ValueError):
        cab.inject("lamp_failure", index=31)


def test_day_burner_shows_by_day_only() -> None:
    cab = cabinet()
    cab.inject("day_burner", index=5)
    cab.step(local(2026, 12, 21, 12))
    assert cab.status[4] == 2 and cab.levels[4] == 100 and cab.power == pytest.approx(100.0)
    assert cab.mode == MODE_OFF_DAYTIME and not cab.contactor_closed
    cab.step(local(2026, 12, 21, 20))
    assert cab.status[4] == 0 and cab.levels[4] == 100 and cab.power == pytest.approx(3000.0)


def test_mains_loss_door_and_local_manual() -> None:
    cab = cabinet()
    t = local(2026, 12, 21, 20)
    cab.step(t)
    e = cab.energy
    cab.inject("mains_loss")
    cab.inject("door_open")
    assert cab.modbus_read("di", 0, 3) == [0, 0, 1]
    cab.step(t + 3600)
    assert cab.power == 0.0 and cab.energy == e and cab.levels == [0] * 30
    assert cab.schedule_level == 100  # the controller still knows what it should do
    cab.clear("mains_loss")
    assert cab.modbus_read("di", 0, 3) == [1, 1, 1] and cab.power == pytest.approx(3000.0)
    cab.inject("local_manual", level=100)
    cab.step(t + 3 * 3600)  # 23:00 would be 70 %
    assert cab.mode == MODE_LOCAL_MANUAL and cab.levels[0] == 100
    cab.modbus_write("hr", 0, [50, 600, 1])  # central override accepted but the local switch wins
    assert cab.mode == MODE_LOCAL_MANUAL and cab.levels[0] == 100
    cab.clear()
    assert cab.mode == MODE_OVERRIDE and cab.levels[0] == 50 and cab.faults == set()
    with pytest.raises(ValueError):
        cab.inject("meteor")
    with pytest.raises(ValueError):
        cab.clear("meteor")


def test_frozen_registers_stop_changing_while_the_cabinet_works() -> None:
    cab = cabinet()
    t = local(2026, 12, 21, 21, 30)
    cab.step(t)
    before = cab.modbus_read("ir", 0, 8)
    cab.inject("frozen")
    cab.step(t + 3600)
    assert cab.modbus_read("ir", 0, 8) == before
    assert cab.schedule_level == 70 and "frozen" in cab.faults
    cab.clear("frozen")
    assert cab.modbus_read("ir", 6, 1) == [70]
