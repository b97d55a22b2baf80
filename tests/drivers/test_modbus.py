"""Modbus TCP driver against the simulator's gateway (sim.modbus_server), and mbpoll as a peer."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from drivers.base import DriverContext
from drivers.modbus import ModbusTcpDriver
from drivers.modbus_plan import decode_registers, layout_key, plan_reads
from scada.config import CityConfig
from scada.config.model import TagDef
from scada.errors import CommError, DeviceError, WriteNotAllowed
from scada.poll import Poller, device_stat_tags, stat_tag_name
from scada.quality import Quality
from scada.tagdb import TagDatabase
from sim.bollard import Bollard
from sim.lighting import LightingCabinet
from sim.modbus_server import ModbusGateway
from tests.drivers.conftest import demo_city, device_points, wait_for
from tests.peers import require_peer

Gateway = tuple[ModbusGateway, dict[str, Any], CityConfig]


def modbus_models(config: CityConfig, endpoint: str = "modbus-1") -> dict[int, Any]:
    import random

    now = time.time()
    units: dict[int, Any] = {}
    for eq in config.equipment.values():
        if eq.params.get("endpoint") != endpoint:
            continue
        cls = {"lighting_cabinet": LightingCabinet, "bollard": Bollard}.get(eq.template)
        if cls is None:
            continue
        model = cls.from_equipment(eq, random.Random(eq.id))
        model.step(now)
        units[int(eq.params["unit"])] = model
    return units


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    units = modbus_models(demo_city())
    gw = ModbusGateway(units)
    await gw.start()
    yield gw, {m.id: m for m in units.values()}, demo_city(modbus_1=gw.endpoint)
    await gw.aclose()


def by_tag(points: list[TagDef], samples: list[Any]) -> dict[str, Any]:
    return {p.tag: s for p, s in zip(points, samples, strict=True)}


async def test_read_types_scaling_and_planned_requests(gateway: Gateway) -> None:
    _gw, models, cfg = gateway
    drv = ModbusTcpDriver(cfg.devices["C0001"])
    await drv.connect()
    points = device_points(cfg, "C0001")
    samples = await drv.read(points)
    assert all(s.quality is Quality.GOOD for s in samples), [p.name for p, s in zip(points, samples, strict=True)
                                                              if s.quality is not Quality.GOOD]
    assert drv.requests == drv.plan(points).request_count == 4  # di, hr, ir 0..7, ir 100..
    assert len(points) > 30 * drv.requests
    got = by_tag(points, samples)
    cab = models["C0001"]
    unit = int(cfg.equipment["C0001"].params["unit"])
    assert unit == drv.default_unit
    ir = cab.modbus_read("ir", 0, 8)
    assert got["luminaire_count"].value == ir[0] == cab.luminaire_count
    assert got["power"].value == pytest.approx(decode_registers(ir[2:4], "float32"))
    assert isinstance(got["power"].value, float) and isinstance(got["luminaire_count"].value, int)
    assert got["mains_ok"].value is bool(cab.modbus_read("di", 0, 1)[0])
    lamp = cab.modbus_read("ir", 100, 4)
    assert got["lamp_01/level"].value == lamp[0]
    assert got["lamp_01/power"].value == pytest.approx(lamp[2] * 0.1)  # scale 0.1 W
    assert got["lamp_01/energy"].value == pytest.approx(lamp[3] * 0.1)
    await drv.aclose()


async def test_cabinets_of_one_layout_share_one_plan_on_their_own_units(gateway: Gateway) -> None:
    """Every demo cabinet through one DriverContext (as the poller's): one plan per layout, retargeted to
    each cabinet's unit (the same requests as a plan of its own), and each cabinet reads its own values."""
    _gw, models, cfg = gateway
    context = DriverContext()
    cabinets = sorted(e.id for e in cfg.equipment.values() if e.template == "lighting_cabinet")
    assert len(cabinets) >= 6
    plans = {}
    for name in cabinets:
        drv = ModbusTcpDriver(cfg.devices[name], context)
        await drv.connect()
        points = device_points(cfg, name)
        samples = await drv.read(points)
        await drv.aclose()
        assert all(s.quality is Quality.GOOD for s in samples), name
        assert by_tag(points, samples)["luminaire_count"].value == models[name].luminaire_count
        plan = plans[name] = drv.plan(points)
        alone = plan_reads(points, default_unit=drv.default_unit)
        assert plan.requests == alone.requests and plan.invalid == alone.invalid
        assert {r.unit for r in plan.requests} == {int(cfg.equipment[name].params["unit"])}
    layouts = {name: layout_key(device_points(cfg, name), units=False) for name in cabinets}
    assert len(set(layouts.values())) < len(cabinets)  # the demo's cabinets repeat layouts: sharing is tested
    assert len({id(p.cache) for p in plans.values()}) == len(set(layouts.values()))  # one derived set per layout
    for a in cabinets:
        for b in cabinets:
            assert (plans[a].cache is plans[b].cache) == (layouts[a] == layouts[b])


async def test_write_read_back_and_device_refusals(gateway: Gateway) -> None:
    _gw, models, cfg = gateway
    drv = ModbusTcpDriver(cfg.devices["C0002"])
    await drv.connect()
    points = {p.tag: p for p in device_points(cfg, "C0002")}
    back = await drv.write(points["override_level"], 100)
    assert back.value == 100 and models["C0002"].override_level == 100
    with pytest.raises(DeviceError, match="illegal data value"):
        await drv.write(points["override_level"], 150)  # the cabinet refuses > 100 % (exception 3)
    with pytest.raises(WriteNotAllowed):
        await drv.write(points["luminaire_count"], 3)  # input register: never written
    with pytest.raises(WriteNotAllowed):
        await drv.write(points["override_level"], 70000)  # does not fit uint16
    # a bollard refuses to raise while a vehicle is on the loop: the command is not a success
    bollard = next(m for m in models.values() if isinstance(m, Bollard))
    bdev = next(d for d in cfg.devices.values() if bollard.id in d.equipment)
    bpoints = {p.tag: p for p in device_points(cfg, bdev.name)}
    bdrv = ModbusTcpDriver(bdev)
    await bdrv.connect()
    assert (await bdrv.write(bpoints["command"], "lower")).value == 1
    bollard.inject("presence")
    with pytest.raises(DeviceError):  # exception 3, or WriteNotConfirmed (a DeviceError) on read-back
        await bdrv.write(bpoints["command"], "raise")
    await drv.aclose()
    await bdrv.aclose()
    with pytest.raises(CommError):
        await drv.write(points["override_level"], 50)  # closed: never a silent success


async def test_exception_responses_bad_device_and_gap_split(gateway: Gateway) -> None:
    _gw, _models, cfg = gateway
    dev = cfg.devices["C0003"]
    drv = ModbusTcpDriver(dev)
    await drv.connect()
    unit = drv.default_unit
    last = 100 + 4 * int(cfg.equipment["C0003"].params["luminaires"]) - 1  # last luminaire register
    good = TagDef("x/last", "C0003", "last", "last", dev.name, f"ir:{last}", "int", unit=unit)
    far = TagDef("x/far", "C0003", "far", "far", dev.name, f"ir:{last + 6}", "int", unit=unit)  # past the map
    missing = TagDef("x/ir5000", "C0003", "ir5000", "ir5000", dev.name, "ir:5000", "int", unit=unit)
    plan = drv.plan([good, far, missing])
    assert [(r.start, r.count) for r in plan.requests] == [(last, 7), (5000, 1)]
    samples = await drv.read([good, far, missing])
    assert samples[0].quality is Quality.GOOD  # the merged block was refused, then read point by point
    assert samples[1].quality is Quality.BAD_DEVICE and samples[2].quality is Quality.BAD_DEVICE
    assert "illegal data address" in str(drv.last_error)
    # a unit the gateway does not serve: exception 11 (target failed to respond) → bad_comm
    other = TagDef("x/u99", "Z", "u99", "u99", dev.name, "ir:0", "int", unit=99)
    (s,) = await drv.read([other])
    assert s.quality is Quality.BAD_COMM and drv.connected
    await drv.aclose()


async def test_comm_loss_restart_faults_and_recovery(gateway: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="scada.poll")
    gw, _models, cfg = gateway
    dev = cfg.devices["C0004"]
    dev.period_s, dev.timeout_s = 0.3, 0.15
    db = TagDatabase(cfg.tags + device_stat_tags(cfg, ["C0004"]))
    poller = Poller(cfg, lambda d: ModbusTcpDriver(d), db, devices=["C0004"], max_backoff_s=0.3)
    await poller.start()
    power = cfg.equipment["C0004"].prefix + "/power"
    status = stat_tag_name("C0004", "status")
    await wait_for(lambda: db.read(power).quality is Quality.GOOD, 2.0)
    # the gateway dies: connection refused → bad_comm within one period
    await gw.aclose()
    t = await wait_for(lambda: db.read(power).quality is Quality.BAD_COMM, 2.0)
    assert t < dev.period_s + 0.3  # refused at once by the next cycle; slack for a loaded machine
    assert db.read(status).value == 2
    await gw.start()  # same port
    await wait_for(lambda: db.read(status).value == 1, 3.0)
    # slow device: answers after 0.4 s with a 0.15 s timeout
    gw.set_comm_fault("C0004", "delay", delay_s=0.4)
    await wait_for(lambda: db.read(power).quality is Quality.BAD_COMM, 1.5)
    gw.set_comm_fault("C0004", None)
    await wait_for(lambda: db.read(power).quality is Quality.GOOD, 3.0)
    # garbled answers and a gateway that closes the connection: bad_comm, then recovery
    for kind in ("corrupt", "disconnect", "drop"):
        gw.set_comm_fault("C0004", kind)
        await wait_for(lambda: db.read(power).quality is Quality.BAD_COMM, 1.5)
        gw.set_comm_fault("C0004", None)
        await wait_for(lambda: db.read(power).quality is Quality.GOOD, 3.0)
    await poller.aclose()
    msgs = [r.getMessage() for r in caplog.records if r.name == "scada.poll" and r.levelno >= logging.WARNING]
    assert sum("lost" in m for m in msgs) == sum("recovered" in m for m in msgs) == 5, msgs


async def test_mbpoll_writes_what_the_driver_reads(gateway: Gateway) -> None:
    require_peer("mbpoll", "Debian package mbpoll")
    gw, _models, cfg = gateway
    dev = cfg.devices["C0005"]
    unit = str(dev.connection["unit"])
    proc = await asyncio.create_subprocess_exec(
        "mbpoll", "-m", "tcp", "-a", unit, "-p", str(gw.port), "-0", "-t", "4", "-r", "0", "-1", "127.0.0.1",
        "42", "600", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 0, out.decode()
    drv = ModbusTcpDriver(dev)
    await drv.connect()
    points = device_points(cfg, "C0005")
    got = by_tag(points, await drv.read(points))
    assert got["override_level"].value == 42
    assert got["override_remaining"].value in (600, 599)
    assert got["mode"].value == 1  # the cabinet follows the override
    await drv.aclose()
