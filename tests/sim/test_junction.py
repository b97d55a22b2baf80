"""Behaviour of the junction controller model (pure, time passed in) and its safety properties."""

from __future__ import annotations

import random
import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scada.config import EquipmentDef
from sim.junction import FAULTS, JunctionController, Plan, Stage

T0 = 1_780_000_000.0  # simulation epoch seconds (a June day)
ALL4 = 0b1111
A, B = 0b0011, 0b1100  # stage masks of the test junction: phases 1+2, then 3+4

# unitFlashStatus / unitControlStatus / localFreeStatus values
NOT_FLASH, AUTOMATIC, FAULT_MONITOR, MMU, STARTUP = 2, 3, 5, 6, 7
SYSTEM_CONTROL, STANDBY, BACKUP, TIMEBASE = 2, 3, 4, 6


def stage(phases: tuple[int, ...], green: float, max_green: float | None = None) -> Stage:
    return Stage(frozenset(phases), green, max_green if max_green is not None else green + 10)


def make(**kw: object) -> JunctionController:
    """A crossroads: phases 1+2 (north/south) and 3+4 (east/west); plan 1 local, 2 peak, 3 night."""
    args: dict[str, object] = {
        "phases": 4,
        "permissive": [(1, 2), (3, 4)],
        "plans": {
            1: [stage((1, 2), 20, 30), stage((3, 4), 15, 25)],
            2: [stage((1, 2), 30), stage((3, 4), 20)],
            3: [stage((3, 4), 10), stage((1, 2), 8)],
        },
        "min_green_s": 6.0,
        "all_red_s": 2.0,
        "startup_flash_s": 8.0,
        "startup_red_s": 4.0,
        "backup_time_s": 30,
    }
    args.update(kw)
    j = JunctionController("J1", **args)  # type: ignore[arg-type]
    j.step(T0)
    return j


def equipment(layout: str | None = None, eq_id: str = "J042") -> EquipmentDef:
    return EquipmentDef(
        id=eq_id,
        template="junction",
        kind="junction",
        domain="traffic",
        commune="Dijon",
        lat=47.32,
        lon=5.04,
        device=eq_id,
        identity={"manufacturer": "Aximum", "model": "ATC-1202"},
        params={"layout": layout} if layout else {},
        prefix=f"dijon/junction/{eq_id}",
        source="test",
    )


def timeline(j: JunctionController, until: float, dt: float = 0.1) -> list[tuple[float, int, int, int]]:
    """Step to ``until`` by ``dt``; (t, reds, yellows, greens) after each step."""
    out = []
    t = j.now_s
    assert t is not None
    n = round((until - t) / dt)
    for i in range(1, n + 1):
        now = t + i * dt
        j.step(now)
        out.append((now, *j.sample()))
    return out


def green_intervals(samples: list[tuple[float, int, int, int]], mask: int) -> list[tuple[float, float]]:
    """[start, end) of the periods where exactly ``mask`` is green (sampled)."""
    spans: list[tuple[float, float]] = []
    start = None
    for t, _, _, g in samples:
        if g == mask and start is None:
            start = t
        elif g != mask and start is not None:
            spans.append((start, t))
            start = None
    return spans


# --------------------------------------------------------------------------- construction


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"plans": {1: [stage((1, 3), 20)]}}, "phase 1 conflicts with phase(s) [3]"),
        ({"plans": {1: [stage((1, 2), 5)]}}, "below the minimum green"),
        ({"plans": {1: [Stage(frozenset({1, 2}), 20, 10)]}}, "max green"),
        ({"plans": {1: [stage((1, 9), 20)]}}, "non-empty subset"),
        ({"plans": {254: [stage((1, 2), 20)]}}, "plan number must be 1..253"),
        ({"plans": {}}, "at least one plan"),
        ({"amber_s": 2.5}, "amber_s must be >= 3"),
        ({"all_red_s": 0.5}, "all_red_s must be >= 1"),
        ({"phases": 9}, "phases must be 1..8"),
        ({"permissive": [(1, 5)]}, "unknown phase"),
        ({"local_schedule": [(0, 9)]}, "local_schedule entry"),
        ({"local_schedule": [(60, 1)]}, "must start at minute 0"),
        ({"backup_time_s": 70000}, "backup_time_s"),
    ],
)
def test_invalid_configuration_is_refused(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        make(**kw)


def test_compatibility_matrix_is_symmetric_and_conflicting_by_default() -> None:
    j = make(phases=5, permissive=[(2, 1), (3, 4)])
    assert j.permissive_pairs == {(1, 2), (3, 4)}
    for a in range(1, 6):
        for b in range(1, 6):
            if a != b:
                assert j.conflicts(a, b) == j.conflicts(b, a)
                assert j.conflicts(a, b) == ((min(a, b), max(a, b)) not in {(1, 2), (3, 4)})
    assert j.conflicting_pairs(0b11111) == [(1, 3), (1, 4), (1, 5), (2, 3), (2, 4), (2, 5), (3, 5), (4, 5)]
    assert j.conflicting_pairs(A) == []


def test_plans_accept_plan_objects() -> None:
    j = make(plans=[Plan(5, (stage((1, 2), 10), stage((3, 4), 10)))], local_schedule=[(0, 5)])
    assert j.running_plan == 5 and j.coord_pattern_status == 5


# --------------------------------------------------------------------------- fixed-time operation


def test_fixed_time_cycle_greens_amber_all_red() -> None:
    j = make()
    assert j.sample() == (B, 0, A) and j.unit_flash_status == NOT_FLASH
    assert j.unit_control_status == TIMEBASE and j.coord_pattern_status == 1 and j.system_pattern_control == 0
    s = timeline(j, T0 + 80)
    # A green 20 s, amber 3 s, all-red 2 s, B green 15 s, amber 3, all-red 2 → cycle 45 s
    assert green_intervals(s, A)[0][1] == pytest.approx(T0 + 20, abs=0.11)
    at = {round(t - T0, 1): (r, y, g) for t, r, y, g in s}
    assert at[20.5] == (B, A, 0)  # amber on the terminating phases
    assert at[23.5] == (ALL4, 0, 0)  # all red
    assert at[25.5] == (A, 0, B)
    assert at[41.5] == (A, B, 0)
    assert at[47.0] == (B, 0, A)  # next cycle
    assert [round(b - a) for a, b in green_intervals(s, B)] == [15]


@pytest.mark.parametrize(("plan", "greens"), [(1, (20, 15)), (2, (30, 20)), (3, (10, 8))])
def test_each_plan_runs_its_green_times(plan: int, greens: tuple[float, float]) -> None:
    j = make(local_schedule=[(0, plan)])
    s = timeline(j, T0 + 300)
    first, second = (A, B) if plan != 3 else (B, A)
    full_first = green_intervals(s, first)[1:-1]  # skip the partial ones at the edges
    full_second = green_intervals(s, second)[1:-1]
    assert full_first and full_second
    assert {round(b - a) for a, b in full_first} == {greens[0]}
    assert {round(b - a) for a, b in full_second} == {greens[1]}


@pytest.mark.parametrize(
    ("offset", "b_green"),
    [(0.5, 6.0), (3.0, 6.0), (5.9, 6.0), (8.0, 8.0), (12.0, 12.0)],
)
def test_plan_change_keeps_minimum_green(offset: float, b_green: float) -> None:
    j = make(backup_time_s=0)
    j.step(T0 + 25)  # stage B (3+4) starts at T0 + 25
    assert j.sample()[2] == B
    j.set_system_pattern_control(2, now_s=T0 + 25 + offset)
    s = timeline(j, T0 + 100)
    b_end = next(t for t, _, _, g in s if g != B)
    assert b_end - (T0 + 25) == pytest.approx(b_green, abs=0.11)
    # then amber 3 s, all-red 2 s, and plan 2's first stage (A) for its 30 s
    a_spans = green_intervals(s, A)
    assert a_spans[0][0] - b_end == pytest.approx(5.0, abs=0.11)
    assert a_spans[0][1] - a_spans[0][0] == pytest.approx(30.0, abs=0.11)
    assert j.coord_pattern_status == 2 and j.unit_control_status == SYSTEM_CONTROL


def test_plan_change_to_a_plan_starting_with_the_same_stage_needs_no_clearance() -> None:
    j = make(backup_time_s=0)
    j.set_system_pattern_control(2, now_s=T0 + 10)  # stage A is running; plan 2 starts with A
    s = timeline(j, T0 + 60)
    assert green_intervals(s, A)[0] == pytest.approx((T0 + 10.1, T0 + 40.0), abs=0.11)  # 30 s of plan 2 from T0+10
    assert all(y == 0 for t, _, y, _g in s if t < T0 + 40)


# --------------------------------------------------------------------------- central requests


@pytest.mark.parametrize(
    ("value", "ucs", "ufs", "cps", "lfs", "sas", "spc", "running"),
    [
        (0, STANDBY, NOT_FLASH, 1, 2, 0, 0, 1),
        (2, SYSTEM_CONTROL, NOT_FLASH, 2, 2, 0, 2, 2),
        (3, SYSTEM_CONTROL, NOT_FLASH, 3, 2, 0, 3, 3),
        (77, SYSTEM_CONTROL, NOT_FLASH, 1, 7, 1 << 4, 77, 1),  # invalid plan: local plan + badPlan
        (253, SYSTEM_CONTROL, NOT_FLASH, 1, 7, 1 << 4, 253, 1),
        (254, SYSTEM_CONTROL, NOT_FLASH, 254, 3, 0, 254, 1),  # free: local plan, commandFree
        (255, SYSTEM_CONTROL, AUTOMATIC, 255, 2, 0, 255, None),  # flash
    ],
)
def test_system_pattern_control_requests(
    value: int, ucs: int, ufs: int, cps: int, lfs: int, sas: int, spc: int, running: int | None
) -> None:
    j = make(backup_time_s=0)
    assert j.set_system_pattern_control(value, now_s=T0 + 1)
    j.step(T0 + 60)
    assert j.unit_control_status == ucs
    assert j.unit_flash_status == ufs
    assert j.coord_pattern_status == cps
    assert j.local_free_status == lfs
    assert j.short_alarm_status == sas
    assert j.system_pattern_control == spc
    if running is not None:
        assert j.running_plan == running and j.mode in ("green", "amber", "all_red")
    else:
        assert j.sample() == (0, ALL4, 0) and j.mode == "flash"


def test_flash_request_goes_through_clearance_and_back_through_all_red() -> None:
    j = make(backup_time_s=0)
    j.set_system_pattern_control(255, now_s=T0 + 2)  # A started at T0: min green until T0 + 6
    s = timeline(j, T0 + 20)
    at = {round(t - T0, 1): (r, y, g) for t, r, y, g in s}
    assert at[5.9] == (B, 0, A)
    assert at[6.1] == (B, A, 0)  # amber 3 s
    assert at[9.1] == (ALL4, 0, 0)  # all-red 2 s
    assert at[11.1] == (0, ALL4, 0) and j.unit_flash_status == AUTOMATIC
    j.set_system_pattern_control(0)  # standby: back to the local plan through start-up red
    s = timeline(j, T0 + 40)
    at = {round(t - T0, 1): (r, y, g) for t, r, y, g in s}
    assert at[20.1] == (ALL4, 0, 0) and at[23.9] == (ALL4, 0, 0)
    assert at[24.1] == (B, 0, A)
    assert j.unit_flash_status == NOT_FLASH and j.unit_control_status == STANDBY


def test_values_out_of_range_are_refused() -> None:
    j = make()
    with pytest.raises(ValueError, match=r"0\.\.255"):
        j.set_system_pattern_control(256)
    with pytest.raises(ValueError, match=r"0\.\.65535"):
        j.set_unit_backup_time(-1)


# --------------------------------------------------------------------------- backup timer (lease)


def test_lease_expires_after_backup_time_without_sets() -> None:
    j = make(backup_time_s=30)
    j.set_system_pattern_control(2, now_s=T0 + 10)
    j.step(T0 + 39.9)
    assert (j.unit_control_status, j.system_pattern_control) == (SYSTEM_CONTROL, 2)
    j.step(T0 + 40.0)
    assert (j.unit_control_status, j.system_pattern_control) == (BACKUP, 0)
    j.step(T0 + 120)
    assert j.running_plan == 1  # back on the local plan
    j.set_system_pattern_control(3)  # a new request leaves backup mode
    assert (j.unit_control_status, j.system_pattern_control) == (SYSTEM_CONTROL, 3)


def test_each_set_restarts_the_backup_timer() -> None:
    j = make(backup_time_s=30)
    for k in range(6):  # a heartbeat every 20 s
        j.set_system_pattern_control(2, now_s=T0 + 20 * k)
    j.step(T0 + 100 + 29)
    assert j.unit_control_status == SYSTEM_CONTROL
    j.step(T0 + 100 + 31)
    assert j.unit_control_status == BACKUP


def test_expiry_is_found_inside_a_long_step() -> None:
    j = make(backup_time_s=30)
    j.set_system_pattern_control(255, now_s=T0 + 1)
    j.step(T0 + 3600)  # one step over the expiry: flash must have ended at T0 + 31
    assert j.unit_control_status == BACKUP and j.unit_flash_status == NOT_FLASH


@pytest.mark.parametrize(("backup", "expired"), [(0, False), (30, True), (65535, False)])
def test_backup_time_zero_disables_the_timer(backup: int, expired: bool) -> None:
    j = make(backup_time_s=60)
    assert j.set_unit_backup_time(backup)
    assert j.unit_backup_time == backup
    j.set_system_pattern_control(2, now_s=T0 + 1)
    j.step(T0 + 1000)
    assert (j.unit_control_status == BACKUP) is expired


def test_a_set_before_the_first_step_is_kept() -> None:
    j = JunctionController(
        "J9", phases=4, permissive=[(1, 2), (3, 4)], plans={1: [stage((1, 2), 10)], 2: [stage((3, 4), 10)]}
    )
    j.set_system_pattern_control(2)
    j.step(T0)
    assert j.running_plan == 2 and j.unit_control_status == SYSTEM_CONTROL
    j.step(T0 + 59.9)
    assert j.unit_control_status == SYSTEM_CONTROL
    j.step(T0 + 60)
    assert j.unit_control_status == BACKUP


# --------------------------------------------------------------------------- conflict monitor


@pytest.mark.parametrize(("monitor", "ufs"), [("mmu", MMU), ("controller", FAULT_MONITOR)])
def test_conflicting_green_latches_flash_until_local_reset(monitor: str, ufs: int) -> None:
    j = make()
    j.step(T0 + 5)
    j.inject("conflicting_green", phases=(1, 3), monitor=monitor)
    # latched at once: the conflict is never published
    assert j.sample() == (0, ALL4, 0)
    assert j.unit_flash_status == ufs and j.short_alarm_status == (1 << 7) | (1 << 1) and j.latched
    assert j.coord_pattern_status == 255
    # central requests, lease expiry and a power cycle do not release it
    j.set_system_pattern_control(0, now_s=T0 + 10)
    j.step(T0 + 100)
    j.inject("power_cycle", off_s=2)
    j.step(T0 + 200)
    assert j.unit_flash_status == ufs and j.sample() == (0, ALL4, 0)
    j.inject("local_reset")
    assert j.unit_flash_status == STARTUP and not j.latched and j.short_alarm_status == 0
    j.step(T0 + 208.1)
    assert j.sample() == (ALL4, 0, 0)  # start-up red
    j.step(T0 + 212.1)
    assert j.sample() == (B, 0, A) and j.unit_flash_status == NOT_FLASH


@pytest.mark.parametrize("how", ["clear_fault", "clear_all"])
def test_clearing_the_fault_also_resets_the_latch(how: str) -> None:
    j = make()
    j.inject("conflicting_green")  # default: the first conflicting pair
    assert j.latched
    j.clear("conflicting_green" if how == "clear_fault" else None)
    assert not j.latched and j.unit_flash_status == STARTUP


def test_stuck_green_permissive_with_the_stage_trips_when_the_stage_changes() -> None:
    j = make()
    j.inject("conflicting_green", phases=(2,))  # phase 2 stuck green: compatible with stage A
    assert not j.latched and j.sample() == (B, 0, A)
    j.step(T0 + 26)  # stage B would start at T0 + 25: 2 + 3 conflict
    assert j.latched and j.sample() == (0, ALL4, 0)


def test_monitor_disabled_lets_the_conflict_show_and_central_flash_hides_it() -> None:
    j = make()
    j.inject("monitor_disabled")
    j.inject("conflicting_green", phases=(1, 3))
    g = j.sample()[2]
    assert j.conflicting_pairs(g) and j.unit_flash_status == NOT_FLASH
    j.set_system_pattern_control(255)  # what the supervisory check does: request flash
    j.step(T0 + 20)
    assert j.sample() == (0, ALL4, 0) and j.unit_flash_status == AUTOMATIC
    j.clear("monitor_disabled")
    assert not j.latched  # flashing: nothing driven to compare
    j.set_system_pattern_control(0)
    j.step(T0 + 30)
    assert j.latched and j.unit_flash_status == MMU  # the stuck green shows again → latched


@pytest.mark.parametrize("layout", ["cross4", "nema8", "tee"])
def test_all_phases_green_is_latched_and_shows_only_with_the_monitor_disabled(layout: str) -> None:
    """AC-TS-12: "all approaches green" is the extreme conflicting green."""
    j = JunctionController.from_equipment(equipment(layout), random.Random(5))
    j.step(T0)
    every = tuple(range(1, j.phases + 1))
    j.inject("conflicting_green", phases=every)
    assert j.latched and j.phase_greens == 0 and j.unit_flash_status == MMU
    k = JunctionController.from_equipment(equipment(layout), random.Random(5))
    k.step(T0)
    k.inject("monitor_disabled")
    k.inject("conflicting_green", phases=every)
    assert k.phase_greens == (1 << k.phases) - 1 and k.unit_flash_status == NOT_FLASH and not k.latched


# --------------------------------------------------------------------------- other faults


def test_power_cycle_dark_then_startup_flash_then_local_plan() -> None:
    j = make(backup_time_s=45)
    j.set_system_pattern_control(2, now_s=T0 + 1)
    up = j.uptime_cs
    j.inject("power_cycle", off_s=5, now_s=T0 + 10)
    assert not j.powered and j.sample() == (0, 0, 0)
    j.step(T0 + 14.9)
    assert not j.powered
    j.step(T0 + 15.0)
    assert j.powered and j.unit_flash_status == STARTUP and j.sample() == (0, ALL4, 0)
    assert j.uptime_cs == 0 < up
    j.step(T0 + 23.05)
    assert j.sample() == (ALL4, 0, 0)
    j.step(T0 + 27.05)
    assert j.sample() == (B, 0, A)
    # the central request is volatile, the backup time is configuration
    assert j.unit_control_status == TIMEBASE and j.system_pattern_control == 0 and j.running_plan == 1
    assert j.unit_backup_time == 45


def test_clear_power_cycle_powers_back_now() -> None:
    j = make()
    j.inject("power_cycle", off_s=600)
    j.step(T0 + 3)
    j.clear("power_cycle")
    assert j.powered and j.unit_flash_status == STARTUP


def test_frozen_status_stops_updating_but_the_controller_runs() -> None:
    j = make(backup_time_s=0)
    j.inject("frozen")
    before = j.status()
    up = j.uptime_cs
    j.set_system_pattern_control(255, now_s=T0 + 2)
    j.step(T0 + 30)
    assert j.status() == before
    assert j.uptime_cs == up + 3000  # sysUpTime keeps counting
    assert j.mode == "flash"  # the controller itself obeyed
    j.clear("frozen")
    assert j.unit_flash_status == AUTOMATIC and j.system_pattern_control == 255


def test_fault_names() -> None:
    # unknown names are refused like every model's: tests/sim/test_faults.py
    assert "power_cycle" in FAULTS and JunctionController.FAULTS == FAULTS


def test_inject_before_the_first_step_is_an_error() -> None:
    j = JunctionController("J9", phases=2, permissive=[], plans={1: [stage((1,), 10), stage((2,), 10)]})
    with pytest.raises(RuntimeError, match="step"):
        j.inject("frozen")


# --------------------------------------------------------------------------- bus priority


@pytest.mark.parametrize(
    ("requests", "a_green"),
    [
        ([], 20.0),
        ([(15, 1, 5.0)], 25.0),  # extended by 5 s
        ([(15, 2, 10.0)], 30.0),  # up to the stage's max green (30)
        ([(15, 1, 8.0), (22, 2, 8.0)], 30.0),  # capped at the max
        ([(15, 3, 10.0)], 20.0),  # phase 3 is not green: ignored
    ],
)
def test_bus_priority_extends_green_within_the_plan_max(
    requests: list[tuple[float, int, float]], a_green: float
) -> None:
    j = make()
    for at, phase, extend in requests:
        j.step(T0 + at)
        j.request_bus_priority(phase, extend_s=extend)
    s = timeline(j, T0 + 40)
    a_end = next(t for t, _, _, g in s if g != A)
    assert a_end - T0 == pytest.approx(a_green, abs=0.11)


def test_bus_priority_is_refused_while_a_plan_change_is_pending_and_via_inject() -> None:
    j = make()
    j.set_system_pattern_control(3, now_s=T0 + 2)  # plan 3 starts with B: A must end at min green
    assert not j.request_bus_priority(1)
    j.step(T0 + 6.05)
    assert j.sample()[1] == A  # amber at min green, no extension
    k = make()
    k.inject("bus_priority", phase=1, extend_s=4.0, now_s=T0 + 10)
    assert next(t for t, _, _, g in timeline(k, T0 + 30) if g != A) == pytest.approx(T0 + 24, abs=0.11)


# --------------------------------------------------------------------------- local schedule, time


def paris(y: int, mo: int, d: int, h: int, mi: int, s: int = 0) -> float:
    return datetime(y, mo, d, h, mi, s, tzinfo=ZoneInfo("Europe/Paris")).timestamp()


def test_time_of_day_schedule_changes_plan_at_the_boundary() -> None:
    sched = [(0, 3), (7 * 60 + 30, 2), (9 * 60 + 30, 1)]
    j = JunctionController(
        "J1",
        phases=4,
        permissive=[(1, 2), (3, 4)],
        plans={
            1: [stage((1, 2), 20), stage((3, 4), 15)],
            2: [stage((1, 2), 30), stage((3, 4), 20)],
            3: [stage((3, 4), 10), stage((1, 2), 8)],
        },
        local_schedule=sched,
    )
    j.step(paris(2026, 3, 10, 7, 25))
    assert j.running_plan == 3 and j.coord_pattern_status == 3
    j.step(paris(2026, 3, 10, 7, 29, 59))
    assert j.running_plan == 3
    j.step(paris(2026, 3, 10, 7, 31))
    assert j.running_plan == 2
    j.step(paris(2026, 3, 10, 12, 0))  # one long step across the 09:30 boundary
    assert j.running_plan == 1
    j.step(paris(2026, 3, 11, 1, 0))  # and across midnight
    assert j.running_plan == 3


def test_uptime_counts_centiseconds() -> None:
    j = make(initial_uptime_s=100.0)
    assert j.uptime_cs == 10_000
    j.step(T0 + 2.5)
    assert j.uptime_cs == 10_250


def test_steps_backwards_are_ignored() -> None:
    j = make()
    j.step(T0 + 30)
    snap = j.status()
    j.step(T0 + 10)
    assert j.status() == snap and j.now_s == T0 + 30


# --------------------------------------------------------------------------- from_equipment


def test_from_equipment_is_deterministic_for_the_rng() -> None:
    a = JunctionController.from_equipment(equipment(), random.Random(7))
    b = JunctionController.from_equipment(equipment(), random.Random(7))
    assert a.plans == b.plans and a.permissive_pairs == b.permissive_pairs and a.description == b.description
    for j in (a, b):
        j.step(T0)
    timeline(a, T0 + 500, dt=1.0)
    timeline(b, T0 + 500, dt=1.0)
    assert a.status() == b.status() and a.uptime_cs == b.uptime_cs
    layouts = {JunctionController.from_equipment(equipment(), random.Random(s)).phases for s in range(30)}
    assert layouts == {4, 8}  # cross4/tee (4 phases) and nema8


@pytest.mark.parametrize(("layout", "phases", "stages"), [("cross4", 4, 2), ("nema8", 8, 4), ("tee", 4, 3)])
def test_from_equipment_layouts(layout: str, phases: int, stages: int) -> None:
    j = JunctionController.from_equipment(equipment(layout), random.Random(1))
    assert j.phases == phases and len(j.plans) >= 3
    assert all(len(p.stages) == stages for p in j.plans.values())
    assert j.unit_backup_time == 60 and "ATC-1202" in j.sys_descr and j.sys_name == "J042"
    j.step(T0)
    s = timeline(j, T0 + 400, dt=0.5)
    assert all(not j.conflicting_pairs(g | y) for _, _, y, g in s)
    assert len({g for *_, g in s}) > stages  # stages and transitions show up


def test_from_equipment_rejects_an_unknown_layout() -> None:
    with pytest.raises(ValueError, match="layout must be one of"):
        JunctionController.from_equipment(equipment("roundabout"), random.Random(1))


# --------------------------------------------------------------------------- property-based safety

SPC_VALUES = [0, 1, 2, 3, 4, 42, 200, 253, 254, 255]
action = st.one_of(
    st.tuples(st.just("step"), st.floats(0.05, 120.0)),
    st.tuples(st.just("step"), st.floats(0.05, 2.0)),
    st.tuples(st.just("spc"), st.sampled_from(SPC_VALUES)),
    st.tuples(st.just("backup"), st.sampled_from([0, 5, 30, 60])),
    st.tuples(st.just("bus"), st.integers(1, 8), st.floats(0.0, 30.0)),
    st.tuples(st.just("conflict"), st.integers(1, 8), st.integers(1, 8), st.sampled_from(["mmu", "controller"])),
    st.tuples(st.just("inject"), st.sampled_from(["frozen", "local_reset"])),
    st.tuples(st.just("power"), st.floats(0.0, 20.0)),
    st.tuples(st.just("clear"), st.sampled_from([None, "conflicting_green", "frozen", "power_cycle", "local_reset"])),
)


def check_sample(j: JunctionController, ctx: object) -> None:
    reds, yellows, greens = j.sample()
    assert not j.conflicting_pairs(greens), f"conflicting greens {greens:#x} after {ctx}"
    assert reds & yellows == 0 and reds & greens == 0 and yellows & greens == 0, ctx
    if j.unit_flash_status == NOT_FLASH:
        # driven by the controller: no conflicting green/yellow either, and every phase shows one colour
        assert not j.conflicting_pairs(greens | yellows), f"conflict in {greens:#x}|{yellows:#x} after {ctx}"
        assert reds | yellows | greens == (1 << j.phases) - 1, ctx
    elif j.powered:
        assert greens == 0 and reds == 0, ctx


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    layout=st.sampled_from(["cross4", "nema8", "tee"]),
    seed=st.integers(0, 2**16),
    actions=st.lists(action, max_size=60),
)
def test_no_sequence_of_requests_leases_and_faults_shows_conflicting_greens(
    layout: str, seed: int, actions: list[tuple[object, ...]]
) -> None:
    j = JunctionController.from_equipment(equipment(layout), random.Random(seed))
    t = T0 + seed
    j.step(t)
    check_sample(j, "start")
    for i, act in enumerate(actions):
        kind = act[0]
        if kind == "step":  # time passes: heartbeat losses and lease expiries happen here
            t += float(act[1])  # type: ignore[arg-type]
            j.step(t)
        elif kind == "spc":
            j.set_system_pattern_control(int(act[1]))  # type: ignore[call-overload]
        elif kind == "backup":
            j.set_unit_backup_time(int(act[1]))  # type: ignore[call-overload]
        elif kind == "bus":
            j.request_bus_priority(int(act[1]), float(act[2]))  # type: ignore[call-overload, arg-type]
        elif kind == "conflict":
            a, b = int(act[1]), int(act[2])  # type: ignore[call-overload]
            if max(a, b) <= j.phases:
                j.inject("conflicting_green", phases=(a, b), monitor=act[3])
        elif kind == "inject":
            j.inject(str(act[1]))
        elif kind == "power":
            j.inject("power_cycle", off_s=float(act[1]))  # type: ignore[arg-type]
        elif kind == "clear":
            j.clear(act[1])  # type: ignore[arg-type]
        check_sample(j, actions[: i + 1])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    layout=st.sampled_from(["cross4", "nema8", "tee"]),
    seed=st.integers(0, 2**16),
    requests=st.lists(
        st.tuples(st.floats(0.0, 40.0), st.sampled_from([*SPC_VALUES, "bus", "backup0", "backup5"])), max_size=12
    ),
)
def test_timing_rules_hold_under_central_requests(layout: str, seed: int, requests: list[tuple[float, object]]) -> None:
    """Sampled every 0.25 s: amber ≥ 3 s, min green served, all-red before a conflicting green."""
    dt = 0.25
    j = JunctionController.from_equipment(equipment(layout), random.Random(seed))
    t = T0
    j.step(t)
    n = j.phases
    last_active = [-1e9] * (n + 1)  # last time each phase showed green or yellow
    colour: list[str] = ["?"] * (n + 1)
    since = [t] * (n + 1)
    pending = sorted(requests, key=lambda r: r[0])
    end = T0 + sum(r[0] for r in requests) + 120
    at = T0
    schedule = []
    for wait, what in pending:
        at += wait
        schedule.append((at, what))
    while t < end:
        t += dt
        j.step(t)
        while schedule and schedule[0][0] <= t:
            _, what = schedule.pop(0)
            if what == "bus":
                j.request_bus_priority(1 + seed % n, 15.0)
            elif what == "backup0":
                j.set_unit_backup_time(0)
            elif what == "backup5":
                j.set_unit_backup_time(5)
            else:
                j.set_system_pattern_control(int(what))  # type: ignore[call-overload]
        _, y, g = j.sample()
        flashing = j.unit_flash_status != NOT_FLASH
        for p in range(1, n + 1):
            bit = 1 << (p - 1)
            c = "F" if flashing else ("G" if g & bit else "Y" if y & bit else "R")
            if c != colour[p]:
                held = t - since[p]
                if colour[p] == "Y" and c == "R":
                    assert held >= 3.0 - dt - 1e-9, f"phase {p}: amber {held} s"
                if colour[p] == "G" and c == "Y" and since[p] > T0:
                    assert held >= 6.0 - dt - 1e-9, f"phase {p}: green {held} s"
                if c == "G":
                    for q in range(1, n + 1):
                        if q != p and j.conflicts(p, q):
                            gap = t - last_active[q]
                            assert gap >= 2.0 - dt - 1e-9, f"phase {p} green {gap} s after {q}"
                colour[p], since[p] = c, t
            if c in "GYF":
                last_active[p] = t
