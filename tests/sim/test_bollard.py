"""Bollard behaviour (pure, time passed in): travel, lease, heartbeat, presence interlock, faults."""

from __future__ import annotations

import random

import pytest

from scada.config import load_city
from sim.bollard import CMD_LOCAL, CMD_LOWER, CMD_RAISE, DEFAULT_LEASE_S, DOWN, MOVING, UNKNOWN, UP, Bollard
from sim.modbus_map import DeviceFailure, IllegalAddress, IllegalValue

T0 = 1_790_000_000.0  # a weekday afternoon (UTC)


def quiet(travel_s: float = 4.0) -> Bollard:
    """A bollard without local traffic (deterministic)."""
    b = Bollard("BL-test", travel_s=travel_s, passages_per_hour=0.0, rng=random.Random(1))
    b.step(T0)
    return b


def test_starts_up_and_serves_the_map() -> None:
    b = quiet()
    assert b.position == UP
    assert b.modbus_read("ir", 0, 1) == [UP]
    assert b.modbus_read("di", 0, 2) == [0, 0]
    assert b.modbus_read("hr", 0, 3) == [CMD_LOCAL, 0, 0]
    for table, address in [("ir", 1), ("di", 2), ("hr", 3), ("co", 0)]:
        with pytest.raises(IllegalAddress):
            b.modbus_read(table, address, 1)  # type: ignore[arg-type]
    with pytest.raises(IllegalAddress):
        b.modbus_write("ir", 0, [1])


def test_lower_with_lease_then_back_to_local() -> None:
    b = quiet()
    b.modbus_write("hr", 0, [CMD_LOWER, 30, 1])
    assert b.modbus_read("hr", 0, 3) == [CMD_LOWER, 30, 1]
    b.step(T0 + 1)
    assert b.position == MOVING
    b.step(T0 + 4)
    assert b.position == DOWN
    for k in range(1, 6):
        b.modbus_write("hr", 2, [1 + k])
        b.step(T0 + 4 + 5 * k)
        assert b.position == DOWN
    assert b.modbus_read("hr", 1, 1) == [1]
    b.step(T0 + 30)
    assert b.command == CMD_LOCAL and b.modbus_read("hr", 0, 2) == [CMD_LOCAL, 0]
    b.step(T0 + 31)
    assert b.position == MOVING
    b.step(T0 + 35)
    assert b.position == UP


def test_command_without_lease_gets_the_default_lease() -> None:
    b = quiet()
    b.modbus_write("hr", 0, [CMD_LOWER])
    assert b.modbus_read("hr", 1, 1) == [DEFAULT_LEASE_S]
    b.modbus_write("hr", 0, [CMD_LOCAL])  # back to local at once
    assert b.modbus_read("hr", 0, 2) == [CMD_LOCAL, 0]
    with pytest.raises(IllegalValue):
        b.modbus_write("hr", 0, [3])


def test_heartbeat_loss_returns_to_local() -> None:
    b = quiet()
    b.modbus_write("hr", 0, [CMD_LOWER, 3600, 7])
    b.step(T0 + 10)
    assert b.position == DOWN
    b.step(T0 + 59)
    assert b.command == CMD_LOWER
    b.step(T0 + 61)
    assert b.command == CMD_LOCAL and b.lease.remaining(T0 + 61) == 0
    b.step(T0 + 70)
    assert b.position == UP


def test_raise_refused_while_presence_whatever_central_asks() -> None:
    b = quiet()
    b.modbus_write("hr", 0, [CMD_LOWER, 600, 1])
    b.step(T0 + 5)
    b.inject("presence")
    assert b.modbus_read("di", 0, 1) == [1]
    with pytest.raises(IllegalValue):
        b.modbus_write("hr", 0, [CMD_RAISE, 600, 2])
    assert b.command == CMD_LOWER  # nothing changed
    b.modbus_write("hr", 0, [CMD_LOCAL, 0, 3])  # local operation wants up: the interlock holds it down
    b.step(T0 + 30)
    assert b.position == DOWN
    b.clear("presence")
    b.step(T0 + 31)
    assert b.position == MOVING
    b.step(T0 + 35)
    assert b.position == UP


def test_presence_while_rising_reverses() -> None:
    b = quiet(travel_s=6.0)
    b.modbus_write("hr", 0, [CMD_LOWER, 600, 1])
    b.step(T0 + 6)
    assert b.position == DOWN
    b.modbus_write("hr", 0, [CMD_RAISE, 600, 2])
    b.step(T0 + 9)  # half-way up
    assert b.position == MOVING and b.direction == 1
    b.inject("presence")
    assert b.direction == -1  # reverses at once
    b.step(T0 + 20)
    assert b.position == DOWN and b.command == CMD_RAISE
    b.clear("presence")
    b.step(T0 + 27)
    assert b.position == UP


def test_up_bollard_stays_up_when_a_vehicle_waits_on_the_loop() -> None:
    b = quiet()
    b.inject("presence")
    b.step(T0 + 20)
    assert b.position == UP  # the loop forbids rising, it does not force lowering


def test_fault_stops_and_refuses_commands() -> None:
    b = quiet(travel_s=6.0)
    b.modbus_write("hr", 0, [CMD_LOWER, 600, 1])
    b.step(T0 + 3)
    b.inject("bollard_fault")
    assert b.position == UNKNOWN and b.modbus_read("di", 1, 1) == [1]
    b.step(T0 + 30)
    assert b.position == UNKNOWN and 0.0 < b.height < 1.0
    with pytest.raises(DeviceFailure):
        b.modbus_write("hr", 0, [CMD_RAISE, 600, 2])
    b.modbus_write("hr", 0, [CMD_LOCAL, 0, 3])  # going back to local is always accepted
    b.clear("bollard_fault")
    b.step(T0 + 40)
    assert b.position == UP


def test_frozen_and_unknown_faults() -> None:
    b = quiet()
    b.inject("frozen")
    b.modbus_write("hr", 0, [CMD_LOWER, 600, 1])
    b.step(T0 + 10)
    assert b.position == DOWN and b.modbus_read("ir", 0, 1) == [UP] and b.modbus_read("hr", 0, 1) == [CMD_LOCAL]
    b.clear()
    assert b.modbus_read("ir", 0, 1) == [DOWN] and b.faults == set()
    with pytest.raises(ValueError):
        b.inject("meteor")


def test_local_cycle_serves_vehicles_and_interlock_always_holds() -> None:
    """Busy local traffic + random central requests: presence never coincides with a rising bollard."""
    rng = random.Random(11)
    b = Bollard("BL-busy", travel_s=3.0, passages_per_hour=120.0, rng=random.Random(5))
    t = T0
    b.step(t)
    seen_presence = seen_down = 0
    for _ in range(3000):
        t += 0.5
        b.step(t)
        if rng.random() < 0.01:
            try:
                b.modbus_write("hr", 0, [rng.randrange(3), rng.randrange(0, 60), rng.randrange(9)])
            except IllegalValue:
                assert b.presence
        if b.presence:
            seen_presence += 1
            assert b.direction != 1
        seen_down += b.position == DOWN
    assert seen_presence > 0 and seen_down > 0


def test_from_equipment_is_deterministic() -> None:
    eq = load_city("tags.yaml", "alarms.yaml").equipment["BL01"]
    runs = []
    for _ in range(2):
        b = Bollard.from_equipment(eq, random.Random(42))
        trace = []
        for k in range(2000):
            b.step(T0 + k)
            trace.append((b.position, b.presence))
        runs.append(trace)
    assert runs[0] == runs[1] and b.id == "BL01"
