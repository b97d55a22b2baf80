"""Behaviour of the camera model (pure, time passed in)."""

from __future__ import annotations

import random

import pytest

from scada.config import EquipmentDef
from sim.camera import FAULTS, Camera

T0 = 1_780_000_000.0


def camera(**kw: object) -> Camera:
    args: dict[str, object] = {"in_rate_bps": 1000.0, "initial_uptime_s": 50.0, "initial_octets": 0}
    args.update(kw)
    c = Camera("CAM1", **args)  # type: ignore[arg-type]
    c.step(T0)
    return c


@pytest.mark.parametrize(
    ("faults", "link", "recording", "octets_after_10s"),
    [
        ([], 1, True, 10_000),
        (["offline"], 2, False, 0),
        (["not_recording"], 1, False, 10_000),
        (["offline", "not_recording"], 2, False, 0),
    ],
)
def test_faults_table(faults: list[str], link: int, recording: bool, octets_after_10s: int) -> None:
    c = camera()
    for f in faults:
        c.inject(f)
    c.step(T0 + 10)
    assert c.if_oper_status == link
    assert c.recording is recording
    assert c.in_octets == octets_after_10s
    assert c.uptime_cs == 6000  # uptime counts whatever the video link does
    assert c.status() == {"uptime": 6000, "link": link, "in_octets": octets_after_10s, "recording": int(recording)}
    c.clear()
    c.step(T0 + 20)
    assert c.online and c.recording and c.in_octets == octets_after_10s + 10_000


@pytest.mark.parametrize(("steps", "uptime_cs"), [([0.01], 5001), ([1.0, 2.5], 5250), ([100.0], 15_000)])
def test_uptime_in_centiseconds(steps: list[float], uptime_cs: int) -> None:
    c = camera()
    for s in steps:
        c.step(T0 + s)
    assert c.uptime_cs == uptime_cs


def test_counters_wrap_at_32_bits() -> None:
    c = camera(in_rate_bps=1000.0, initial_octets=2**32 - 500, initial_uptime_s=(2**32 - 50) / 100)
    c.step(T0 + 1)
    assert c.in_octets == 500
    assert c.uptime_cs == 50


def test_power_cycle_mutes_then_restarts_counters() -> None:
    c = camera()
    c.step(T0 + 10)
    c.inject("power_cycle", off_s=5)
    assert not c.powered and not c.online and not c.recording and c.if_oper_status == 2
    c.step(T0 + 14)
    assert not c.powered
    c.step(T0 + 17)  # booted at T0 + 15
    assert c.powered and c.recording
    assert c.uptime_cs == 200 and c.in_octets == 2000


def test_power_cycle_without_off_time_restarts_now_and_clear_powers_back() -> None:
    c = camera()
    c.step(T0 + 10)
    c.inject("power_cycle")
    assert c.powered and c.uptime_cs == 0 and c.in_octets == 0
    c.inject("power_cycle", off_s=1000)
    c.step(T0 + 20)
    c.clear("power_cycle")
    assert c.powered and c.uptime_cs == 0


def test_bad_rates_are_refused() -> None:
    # unknown fault names are refused like every model's: tests/sim/test_faults.py
    with pytest.raises(ValueError, match="in_rate_bps"):
        Camera("X", in_rate_bps=-1)
    assert Camera.FAULTS == FAULTS


def test_steps_backwards_are_ignored() -> None:
    c = camera()
    c.step(T0 + 10)
    c.step(T0 + 5)
    assert c.now_s == T0 + 10 and c.in_octets == 10_000


def test_from_equipment_is_deterministic() -> None:
    eq = EquipmentDef(
        id="CAM007",
        template="camera",
        kind="camera",
        domain="cctv",
        commune="Dijon",
        lat=47.3,
        lon=5.0,
        device="CAM007",
        identity={"manufacturer": "Axis", "model": "Q6135-LE"},
        params={},
        prefix="dijon/camera/CAM007",
        source="test",
    )
    a = Camera.from_equipment(eq, random.Random(3))
    b = Camera.from_equipment(eq, random.Random(3))
    for c in (a, b):
        c.step(T0)
        c.step(T0 + 60)
    assert a.status() == b.status()
    assert a.sys_name == "CAM007" and "Q6135-LE" in a.sys_descr
    assert 20_000 <= a.in_rate_bps <= 80_000
    assert Camera.from_equipment(eq, random.Random(4)).in_rate_bps != a.in_rate_bps
