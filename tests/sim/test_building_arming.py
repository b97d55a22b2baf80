"""Remote intrusion arming of the building model: a lease the building counts down, its schedule as fallback.

Pure model tests, time passed in: ``Building.write`` is what the OPC UA server calls on a client Write.
"""

from __future__ import annotations

import pytest

from sim.building import ARM_LEASE, ARM_REQUEST, DEFAULT_LEASE_S, REQ_ARM, REQ_DISARM, REQ_LOCAL, Building
from sim.lease import WATCHDOG_S
from tests.sim.test_building_fleet import TUESDAY, at, office, run


def state(b: Building) -> tuple[bool, bool, int, int]:
    v = b.values()
    return v["intrusion/armed"], v["intrusion/alarm"], v[ARM_REQUEST], v[ARM_LEASE]


def keep_alive(b: Building) -> None:
    """What the central's lease refresh does: re-write the seconds left."""
    b.write(ARM_LEASE, b.values()[ARM_LEASE])


def test_remote_disarm_at_night_counts_down_then_the_schedule_re_arms() -> None:
    b = office()
    t0 = at(TUESDAY, 23)
    b.step(t0)
    assert state(b) == (True, False, REQ_LOCAL, 0)
    b.write(ARM_REQUEST, REQ_DISARM)
    b.write(ARM_LEASE, 100)
    assert state(b) == (False, False, REQ_DISARM, 100)
    b.step(t0 + 30)
    assert state(b) == (False, False, REQ_DISARM, 70)
    keep_alive(b)  # at t0 + 30: the watchdog restarts, the end stays t0 + 100
    b.step(t0 + 80)
    keep_alive(b)
    b.step(t0 + 99.5)
    assert state(b) == (False, False, REQ_DISARM, 1)
    b.step(t0 + 100)
    assert state(b) == (True, False, REQ_LOCAL, 0)  # the building is closed and every door shut: armed
    assert not b.lease.active


def test_no_central_write_for_the_watchdog_period_ends_the_request() -> None:
    b = office()
    t0 = at(TUESDAY, 2)
    b.step(t0)
    b.write(ARM_REQUEST, REQ_DISARM)
    b.write(ARM_LEASE, 3600)
    b.step(t0 + WATCHDOG_S - 0.5)
    assert state(b)[2] == REQ_DISARM and not b.armed
    b.step(t0 + WATCHDOG_S + 0.5)
    assert state(b) == (True, False, REQ_LOCAL, 0)  # central lost: back to the schedule long before the lease end


def test_lease_and_request_rules_like_the_bollard() -> None:
    b = office()
    t0 = at(TUESDAY, 3)
    b.step(t0)
    b.write(ARM_LEASE, 500)  # no request in force: ignored, reads back 0
    assert state(b) == (True, False, REQ_LOCAL, 0) and not b.lease.active
    b.write(ARM_REQUEST, REQ_DISARM)  # a request without a lease gets the default
    assert state(b) == (False, False, REQ_DISARM, DEFAULT_LEASE_S)
    b.step(t0 + 10)
    b.write(ARM_REQUEST, REQ_DISARM)  # repeated: keeps what is left (and proves the central alive)
    assert b.values()[ARM_LEASE] == DEFAULT_LEASE_S - 10
    b.write(ARM_LEASE, 0)  # lease 0: back to the schedule at once
    assert state(b) == (True, False, REQ_LOCAL, 0)
    b.write(ARM_REQUEST, REQ_DISARM)
    b.write(ARM_REQUEST, REQ_LOCAL)  # request 0: the same
    assert state(b) == (True, False, REQ_LOCAL, 0)
    b.write(ARM_REQUEST, REQ_LOCAL)  # idempotent (the gate's release after a return to local)
    assert state(b) == (True, False, REQ_LOCAL, 0)


@pytest.mark.parametrize(("key", "value", "why"), [
    (ARM_REQUEST, 3, "must be 0 local, 1 arm or 2 disarm, got 3"),
    (ARM_REQUEST, -1, "must be 0 local, 1 arm or 2 disarm, got -1"),
    (ARM_REQUEST, True, "takes a whole number, got True"),
    (ARM_REQUEST, 1.0, "takes a whole number, got 1.0"),
    (ARM_LEASE, 65536, "must be 0..65535 s, got 65536"),
    (ARM_LEASE, -5, "must be 0..65535 s, got -5"),
    ("intrusion/armed", False, "'intrusion/armed' is not writable"),
    ("intrusion/alarm", False, "'intrusion/alarm' is not writable"),
])
def test_out_of_range_writes_are_refused_and_change_nothing(key: str, value: object, why: str) -> None:
    b = office()
    b.step(at(TUESDAY, 3))
    b.write(ARM_REQUEST, REQ_DISARM)
    before = b.values()
    with pytest.raises(ValueError, match=why):
        b.write(key, value)
    assert b.values() == before


def test_disarm_with_an_active_alarm_keeps_it_latched_until_the_site_clears_it() -> None:
    b = office()
    t0 = at(TUESDAY, 23)
    b.step(t0)
    b.inject("door_forced", door=2)
    b.clear("door_forced")
    assert state(b) == (True, True, REQ_LOCAL, 0)
    b.write(ARM_REQUEST, REQ_DISARM)
    b.write(ARM_LEASE, 50)
    assert state(b) == (False, True, REQ_DISARM, 50)  # disarmed; the alarm memory stays
    b.step(t0 + 50)
    assert state(b) == (True, True, REQ_LOCAL, 0)  # the schedule re-arms; still latched
    b.step(at(TUESDAY, 24 + 8.5))  # the first one in acknowledges it at opening time
    assert state(b) == (False, False, REQ_LOCAL, 0)
    # the panel reset on site (clear "intrusion") acknowledges it too, whatever raised it
    b.step(at(TUESDAY, 24 + 23))
    b.inject("door_forced", door=1)
    b.clear("door_forced")
    b.write(ARM_REQUEST, REQ_DISARM)
    b.clear("intrusion")
    assert state(b)[:3] == (False, False, REQ_DISARM)


def test_intrusion_fault_under_a_remote_disarm_latches_without_arming() -> None:
    b = office()
    b.step(at(TUESDAY, 1))
    b.write(ARM_REQUEST, REQ_DISARM)
    b.inject("intrusion")
    assert state(b)[:3] == (False, True, REQ_DISARM)
    b.clear("intrusion")
    assert state(b)[:3] == (False, False, REQ_DISARM)


def test_remote_arm_by_day_waits_for_the_last_door_then_doors_raise_the_alarm() -> None:
    b = office()
    t = at(TUESDAY, 10)
    b.step(t)
    while not any(b.doors):  # someone is going through a door
        t += 1.0
        b.step(t)
        assert t < at(TUESDAY, 12), "no door opened in two hours"
    b.write(ARM_REQUEST, REQ_ARM)
    b.write(ARM_LEASE, 1800)
    assert state(b)[:3] == (False, False, REQ_ARM)  # a panel does not set with a zone open
    while any(b.doors):
        t += 0.5
        b.step(t)
        keep_alive(b)
    assert b.armed and not b.alarm  # set as soon as the last door shut
    while not b.alarm:  # the building is occupied: the next door opening is an intrusion alarm
        t += 1.0
        b.step(t)
        keep_alive(b)
        assert t < at(TUESDAY, 13)
    b.write(ARM_REQUEST, REQ_LOCAL)  # return to local: the schedule says open, so disarmed; still latched
    assert state(b) == (False, True, REQ_LOCAL, 0)


def test_closing_time_does_not_override_a_remote_disarm_and_arms_when_it_ends() -> None:
    b = office()
    t = at(TUESDAY, 17.5)
    b.step(t)
    b.write(ARM_REQUEST, REQ_DISARM)  # a night crew
    b.write(ARM_LEASE, 5400)  # until 19:00
    while t < at(TUESDAY, 18.9):
        t += 30.0
        b.step(t)
        keep_alive(b)
        if t > at(TUESDAY, 18.5):
            assert not b.armed and not any(b.doors)  # closed, doors shut, still disarmed: the lease holds
    b.step(at(TUESDAY, 19) + 1)
    assert state(b) == (True, False, REQ_LOCAL, 0)


def test_the_first_one_in_at_opening_time_ends_a_remote_arm() -> None:
    b = office()
    t = at(TUESDAY, 7)
    b.step(t)
    b.write(ARM_REQUEST, REQ_ARM)
    b.write(ARM_LEASE, 3 * 3600)
    while t < at(TUESDAY, 8.1):
        t += 20.0
        b.step(t)
        if b.arm_request == REQ_ARM:
            keep_alive(b)
    assert state(b)[2:] == (REQ_LOCAL, 0) and not b.armed  # local wins
    b.write(ARM_LEASE, 3 * 3600 - 4000)  # the central's next refresh is ignored: the request stays dropped
    assert state(b)[2:] == (REQ_LOCAL, 0)


def test_a_frozen_gateway_loses_central_writes() -> None:
    b = office()
    b.step(at(TUESDAY, 3))
    b.inject("frozen")
    b.write(ARM_REQUEST, REQ_DISARM)
    assert state(b) == (True, False, REQ_LOCAL, 0)
    b.clear("frozen")
    assert state(b) == (True, False, REQ_LOCAL, 0)  # the write never reached the building


def test_same_history_whatever_the_step_size_with_a_lease() -> None:
    fine, coarse = office(seed=9), office(seed=9)
    t0 = at(TUESDAY, 16)
    for b in (fine, coarse):
        b.step(t0)
        b.write(ARM_REQUEST, REQ_ARM)
        b.write(ARM_LEASE, 50)  # ends inside the steps: the lease end is an event of its own
    checkpoints = [t0 + 7.3, t0 + 49.99, t0 + 50, t0 + 51, at(TUESDAY, 19)]
    t = t0
    for cp in checkpoints:
        run(fine, t, cp, 1.0)
        coarse.step(cp)
        assert fine.values() == coarse.values()
        t = cp
    assert fine.arm_request == REQ_LOCAL
