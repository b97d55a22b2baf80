"""The junction model's static NTCIP configuration and the frozen / flash-transfer faults (sim/junction.py)."""

from __future__ import annotations

import pytest

from sim.junction import JunctionController, Stage

T0 = 1_736_935_200.0  # 10:00 UTC


def cross4(**kw: object) -> JunctionController:
    plans = {1: [Stage(frozenset({1, 2}), 30, 40), Stage(frozenset({3, 4}), 20, 30)]}
    j = JunctionController("J1", phases=4, permissive=[(1, 2), (3, 4)], plans=plans, all_red_s=2.0, **kw)  # type: ignore[arg-type]
    j.step(T0)
    return j


def test_phase_concurrency_is_the_controllers_matrix() -> None:
    j = cross4()
    assert [j.phase_concurrency(p) for p in range(1, 5)] == [b"\x02", b"\x01", b"\x04", b"\x03"]
    assert j.served("phase_concurrency_3") == "\x04" and j.served("phase_concurrency_5") is None
    with pytest.raises(ValueError):
        j.phase_concurrency(5)


def test_pattern_cycle_time_counts_the_clearances() -> None:
    j = cross4()
    assert j.pattern_cycle_time(1) == 30 + 20 + 2 * (3 + 2)  # two stage changes, each ending a green
    assert j.served("pattern_cycle_1") == 60 and j.served("pattern_cycle_2") is None


@pytest.mark.parametrize(("uptime", "moves"), [("counting", True), ("stopped", False)])
def test_frozen_status_with_counting_or_stopped_uptime(uptime: str, moves: bool) -> None:
    j = cross4()
    j.inject("frozen", uptime=uptime)
    before, up = j.status(), j.uptime_cs
    j.step(T0 + 100)
    assert j.status() == before  # the served status is stale either way
    assert (j.uptime_cs == up + 10_000) is moves and (j.uptime_cs == up) is not moves
    j.clear("frozen")
    assert j.uptime_cs == up + 10_000 and j.status() != before
    with pytest.raises(ValueError):
        j.inject("frozen", uptime="sometimes")


def test_flash_transfer_failed_leaves_stuck_greens_under_the_flash() -> None:
    j = cross4(backup_time_s=0)  # no lease expiry: flash holds
    j.set_system_pattern_control(255, T0)
    j.step(T0 + 60)
    assert j.unit_flash_status == 3 and j.phase_greens == 0
    j.inject("conflicting_green", phases=(1, 3))
    assert j.phase_greens == 0  # the transfer relays cut the load switches
    j.inject("flash_transfer_failed")
    assert j.unit_flash_status == 3 and j.coord_pattern_status == 255 and j.phase_greens == 0b101
    assert j.phase_yellows == 0b1010
    j.clear("flash_transfer_failed")
    assert j.phase_greens == 0
