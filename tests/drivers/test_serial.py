"""Serial drivers against the simulator's pty buses (sim.serial_server): panels (ASCII) and Modbus RTU."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from drivers.base import DriverContext
from drivers.modbus import ModbusRtuDriver
from drivers.serial_ascii import PanelBusDriver
from scada.config import CityConfig
from scada.errors import CommError, DeviceError, WriteNotAllowed
from scada.poll import Poller, device_stat_tags, stat_tag_name
from scada.quality import Quality
from scada.tagdb import TagDatabase
from sim.panel import InfoPanel
from sim.parking import ParkingCounter
from sim.serial_server import SerialBus
from tests.drivers.conftest import demo_city, device_points, wait_for


def bus_models(config: CityConfig, template: str, cls: Any) -> dict[int, Any]:
    now = time.time()
    out: dict[int, Any] = {}
    for eq in config.equipment.values():
        if eq.template == template:
            m = cls.from_equipment(eq, random.Random(eq.id))
            m.step(now)
            out[int(eq.params["unit"])] = m
    return out


@pytest.fixture
async def panels() -> AsyncIterator[tuple[SerialBus, dict[int, InfoPanel], CityConfig]]:
    models = bus_models(demo_city(), "panel", InfoPanel)
    bus = SerialBus("panel_ascii", models)
    await bus.start()
    yield bus, models, demo_city(panels_bus_1=bus.endpoint)
    await bus.aclose()


async def test_panels_read_write_and_refusals(panels: tuple[SerialBus, dict[int, InfoPanel], CityConfig]) -> None:
    _bus, models, cfg = panels
    drv = PanelBusDriver(cfg.devices["panels-bus-1"])
    await drv.connect()
    points = device_points(cfg, "panels-bus-1")
    samples = await drv.read(points)
    assert all(s.quality is Quality.GOOD for s in samples), drv.last_error
    assert drv.requests == len(models)  # one RD per panel, all its fields at once
    got = {p.name: s.value for p, s in zip(points, samples, strict=True)}
    p1 = cfg.equipment["P01"].prefix
    fields = models[1].fields()
    assert got[f"{p1}/message"] == fields["MSG"] and got[f"{p1}/brightness"] == fields["BRIGHT"]
    assert got[f"{p1}/status"] == fields["STATUS"] == 0
    msg = next(p for p in points if p.name == f"{p1}/message")
    back = await drv.write(msg, "Route barrée — déviation *=@#")
    assert back.value == "Route barrée — déviation *=@#" == models[1].fields()["MSG"]
    with pytest.raises(WriteNotAllowed):
        await drv.write(msg, "x" * 101)
    with pytest.raises(WriteNotAllowed):
        await drv.write(next(p for p in points if p.name == f"{p1}/brightness"), 50)
    models[1].inject("power_fault")  # the panel refuses writes (DEVICE_FAULT), still answers reads
    with pytest.raises(DeviceError, match="DEVICE_FAULT"):
        await drv.write(msg, "hello")
    status = next(p for p in points if p.name == f"{p1}/status")
    assert (await drv.read([status]))[0].value == 2
    await drv.aclose()
    with pytest.raises(CommError):
        await drv.write(msg, "hello")


async def test_panels_one_silent_panel_garbage_and_resync(
        panels: tuple[SerialBus, dict[int, InfoPanel], CityConfig]) -> None:
    bus, _models, cfg = panels
    dev = cfg.devices["panels-bus-1"]
    dev.timeout_s = 0.2
    drv = PanelBusDriver(dev)
    await drv.connect()
    points = device_points(cfg, "panels-bus-1")
    p2 = cfg.equipment["P02"].prefix
    bus.set_comm_fault("P02", "drop")
    samples = dict(zip([p.name for p in points], await drv.read(points), strict=True))
    assert all(s.quality is Quality.BAD_COMM for k, s in samples.items() if k.startswith(p2 + "/"))
    assert all(s.quality is Quality.GOOD for k, s in samples.items() if not k.startswith(p2 + "/"))
    # garbled answers (checksum) → bad_comm for that panel, no waiting for the timeout
    bus.set_comm_fault("P02", "corrupt")
    t0 = time.monotonic()
    samples = dict(zip([p.name for p in points], await drv.read(points), strict=True))
    assert time.monotonic() - t0 < 0.2 * 2
    assert all(s.quality is Quality.BAD_COMM for k, s in samples.items() if k.startswith(p2 + "/"))
    assert drv.framing_errors >= 1
    # a late answer (slower than the timeout) is not taken for the next panel's answer
    bus.set_comm_fault("P02", "delay", delay_s=0.3)
    for _ in range(2):
        samples = dict(zip([p.name for p in points], await drv.read(points), strict=True))
        assert all(s.quality is Quality.GOOD for k, s in samples.items() if not k.startswith(p2 + "/"))
    bus.set_comm_fault("P02", None)
    await asyncio.sleep(0.35)
    # line noise before an answer: the decoder resynchronises on the next start byte
    assert bus._master is not None
    os.write(bus._master, b"\x00\xffnoise#7*ZZ\r@@")
    samples = await drv.read(points)
    assert all(s.quality is Quality.GOOD for s in samples), drv.last_error
    await drv.aclose()


async def test_panels_silent_then_bus_restarted_through_poller(tmp_path: Path) -> None:
    models = bus_models(demo_city(), "panel", InfoPanel)
    bus = SerialBus("panel_ascii", models, link=tmp_path / "panels-bus-1")
    await bus.start()
    cfg = demo_city(panels_bus_1=str(tmp_path / "panels-bus-1"))
    dev = cfg.devices["panels-bus-1"]
    dev.period_s, dev.timeout_s = 0.3, 0.15
    db = TagDatabase(cfg.tags + device_stat_tags(cfg, ["panels-bus-1"]))
    poller = Poller(cfg, lambda d: PanelBusDriver(d), db, devices=["panels-bus-1"], max_backoff_s=0.3)
    await poller.start()
    tag = cfg.equipment["P03"].prefix + "/brightness"
    await wait_for(lambda: db.read(tag).quality is Quality.GOOD, 2.0)
    for p in models:
        bus.set_comm_fault(models[p].id, "disconnect")
    await wait_for(lambda: db.read(stat_tag_name("panels-bus-1", "status")).value == 2, 1.5)
    assert db.read(tag).quality is Quality.BAD_COMM
    for p in models:
        bus.set_comm_fault(models[p].id, None)
    await wait_for(lambda: db.read(stat_tag_name("panels-bus-1", "status")).value == 1, 2.0)
    assert db.read(tag).quality is Quality.GOOD
    # the bus goes away (the pty closes under the open port), then comes back on the same link
    await bus.aclose()
    await wait_for(lambda: db.read(tag).quality is Quality.BAD_COMM, 1.5)
    await bus.start()
    await wait_for(lambda: db.read(tag).quality is Quality.GOOD, 3.0)
    assert db.read(stat_tag_name("panels-bus-1", "status")).value == 1
    await poller.aclose()
    await bus.aclose()


async def test_modbus_rtu_parking_bus() -> None:
    models = bus_models(demo_city(), "parking", ParkingCounter)
    bus = SerialBus("modbus_rtu", models)
    await bus.start()
    ctx = DriverContext()
    try:
        cfg = demo_city(parking_bus_1=bus.endpoint)
        dev = cfg.devices["parking-bus-1"]
        dev.timeout_s = 0.3
        drv = ModbusRtuDriver(dev, ctx)
        await drv.connect()
        points = device_points(cfg, "parking-bus-1")
        samples = await drv.read(points)
        assert all(s.quality is Quality.GOOD for s in samples), drv.last_error
        assert drv.requests == len(models)  # one FC4 read per unit
        for p, s in zip(points, samples, strict=True):
            m = models[p.unit or 0]
            assert s.value == {"capacity": m.capacity, "occupied": m.occupied, "overstays": m.overstays}[p.tag]
        # one silent unit: only its points are bad_comm, the bus goes on
        pk2 = cfg.equipment["PK02"]
        bus.set_comm_fault("PK02", "drop")
        samples = await drv.read(points)
        for p, s in zip(points, samples, strict=True):
            assert s.quality is (Quality.BAD_COMM if p.equipment == "PK02" else Quality.GOOD), p.name
        # a corrupted CRC is a garbled answer: bad_comm for that unit
        bus.set_comm_fault("PK02", "corrupt")
        samples = await drv.read(points)
        assert all(s.quality is Quality.BAD_COMM for p, s in zip(points, samples, strict=True)
                   if p.equipment == pk2.id)
        bus.set_comm_fault("PK02", None)
        await asyncio.sleep(0.35)
        samples = await drv.read(points)
        assert all(s.quality is Quality.GOOD for s in samples), drv.last_error
        # the shared bus: a second driver on the same port reuses the same client
        again = ModbusRtuDriver(dev, ctx)
        assert again._bus is drv._bus
        await drv.aclose()
    finally:
        await ctx.aclose()
        await bus.aclose()
