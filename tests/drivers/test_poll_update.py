"""Poller.update / add_devices / remove_devices (configuration reload) against the simulator's real servers:
a Modbus TCP gateway (lighting cabinets, bollards) and an SNMP agent (junctions)."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from drivers.base import DriverContext
from drivers.registry import DriverFactory
from scada.config import CityConfig
from scada.poll import OK, Poller, device_stat_tags, stat_tag_name
from scada.quality import Quality
from scada.tagdb import TagDatabase
from sim.bollard import Bollard
from sim.junction import JunctionController
from sim.lighting import LightingCabinet
from sim.modbus_server import ModbusGateway
from sim.snmp_agent import SnmpAgent
from tests.drivers.conftest import demo_city, models_for, wait_for

FIRST = ["C0001", "C0002", "BL01", "J001", "J002"]


#: a winter night in Dijon (2026-01-15 22:00 UTC): the cabinets' schedule lights every lamp
NIGHT = 1768514400.0


@pytest.fixture
async def servers() -> AsyncIterator[dict[str, str]]:
    cfg = demo_city()
    now = time.time()
    units: dict[int, Any] = {}
    for eq in cfg.equipment.values():
        cls = {"lighting_cabinet": LightingCabinet, "bollard": Bollard}.get(eq.template)
        if cls is not None and eq.params.get("endpoint") == "modbus-1":
            model = cls.from_equipment(eq, random.Random(eq.id))
            model.step(NIGHT)  # lamps lit whatever the hour the test runs: the power read below is not 0
            units[int(eq.params["unit"])] = model
    juncs = models_for(cfg, "junction", JunctionController.from_equipment)
    for m in juncs.values():
        m.step(now)
    gw, agent = ModbusGateway(units), SnmpAgent(juncs)
    await gw.start()
    await agent.start()
    yield {"modbus_1": gw.endpoint, "snmp_traffic": agent.endpoint}
    await gw.aclose()
    await agent.aclose()


def city(endpoints: dict[str, str]) -> CityConfig:
    cfg = demo_city(**endpoints)
    for d in cfg.devices.values():
        d.period_s = 0.3  # fast scans: the test runs in seconds
    return cfg


def tagdb(cfg: CityConfig, devices: list[str]) -> TagDatabase:
    return TagDatabase(cfg.tags + device_stat_tags(cfg, devices))


def good(db: TagDatabase, cfg: CityConfig, device: str) -> bool:
    return all(db.read(t).quality is Quality.GOOD for t in cfg.devices[device].tags[:5])


async def test_update_restarts_only_what_changed(servers: dict[str, str]) -> None:
    cfg_a = city(servers)
    db_a = tagdb(cfg_a, FIRST)
    factory = DriverFactory(cfg_a, DriverContext())
    poller = Poller(cfg_a, factory, db_a, devices=FIRST, max_backoff_s=0.5)
    await poller.start()
    try:
        await wait_for(lambda: all(good(db_a, cfg_a, n) for n in FIRST), 5.0)
        drivers_before = poller.drivers
        stats_before = poller.stats

        # the new configuration: J002 gone, J003 new, C0002 re-addressed (a read-relevant change: scale of
        # one tag), BL01 only re-described (not read-relevant), C0001 and J001 unchanged
        cfg_b = city(servers)
        power = next(t for t in cfg_b.tags if t.device == "C0002" and t.tag == "power")
        power.scale = 2.0
        next(t for t in cfg_b.tags if t.device == "BL01").description = "renamed in the HMI only"
        second = ["C0001", "C0002", "BL01", "J001", "J003"]
        db_b = tagdb(cfg_b, second)
        result = await poller.update(cfg_b, db_b, devices=second)
        assert result.as_dict() == {"started": ["J003"], "stopped": ["J002"], "restarted": ["C0002"],
                                    "kept": ["BL01", "C0001", "J001"]}
        assert sorted(poller.devices) == sorted(second)
        drivers_after = poller.drivers
        for n in ("C0001", "J001", "BL01"):  # same driver, same connection, same counters going on
            assert drivers_after[n] is drivers_before[n] and drivers_after[n].connected
            assert poller.stats[n] is stats_before[n]
        assert drivers_after["C0002"] is not drivers_before["C0002"]
        assert not drivers_before["J002"].connected and not drivers_before["C0002"].connected  # closed
        # every device of the new set fills the NEW database within a scan or two
        await wait_for(lambda: all(good(db_b, cfg_b, n) for n in second), 5.0)
        await wait_for(lambda: all(db_b.read(stat_tag_name(n, "status")).value == OK for n in second), 2.0)
        before = db_a.read(power.name).value  # the models are not stepped: the raw value does not move
        assert isinstance(before, float) and before > 0
        assert db_b.read(power.name).value == pytest.approx(2 * before)  # read by the new driver, new scale
        cycles = poller.stats["C0001"].cycles
        await wait_for(lambda: poller.stats["C0001"].cycles >= cycles + 2, 3.0)
        assert poller.stats["J003"].overruns == 0  # joined the running grid: no ticks counted before its start
        # the old database no longer receives anything
        stamp = db_a.read(cfg_a.devices["C0001"].tags[0]).receive_ns
        await wait_for(lambda: poller.stats["C0001"].cycles >= cycles + 4, 3.0)
        assert db_a.read(cfg_a.devices["C0001"].tags[0]).receive_ns == stamp
        # an identical configuration: nothing restarts
        again = await poller.update(cfg_b, db_b, devices=second)
        assert again.started == again.stopped == again.restarted == [] and len(again.kept) == 5
    finally:
        await poller.aclose()
        await factory.aclose()


async def test_add_and_remove_devices_while_running(servers: dict[str, str]) -> None:
    cfg = city(servers)
    everything = ["C0001", "C0003", "J004", "J005"]
    db = tagdb(cfg, everything)
    factory = DriverFactory(cfg, DriverContext())
    poller = Poller(cfg, factory, db, devices=["C0001", "J004"], max_backoff_s=0.5)
    await poller.start()
    try:
        await wait_for(lambda: good(db, cfg, "C0001") and good(db, cfg, "J004"), 5.0)
        t0 = time.monotonic()
        added = await poller.add_devices(["C0003", "J005", "J004"])
        assert time.monotonic() - t0 < 0.5  # returns at once; the warm-up cycle runs in the device's task
        assert added.started == ["C0003", "J005"] and added.kept == ["J004"]
        await wait_for(lambda: good(db, cfg, "C0003") and good(db, cfg, "J005"), 5.0)
        j4 = poller.drivers["J004"]
        removed = await poller.remove_devices(["J004", "nope"])
        assert removed.stopped == ["J004"] and "J004" not in poller.devices and not j4.connected
        stamp = db.read(cfg.devices["J004"].tags[0]).receive_ns
        cycles = poller.stats["J005"].cycles
        await wait_for(lambda: poller.stats["J005"].cycles >= cycles + 3, 3.0)
        assert db.read(cfg.devices["J004"].tags[0]).receive_ns == stamp  # no longer polled, last value kept
        with pytest.raises(KeyError, match="unknown device"):
            await poller.add_devices(["NOPE"])
        assert sorted(poller.devices) == ["C0001", "C0003", "J005"]
    finally:
        await poller.aclose()
        await factory.aclose()


async def test_update_before_start_only_changes_the_set(servers: dict[str, str]) -> None:
    cfg = city(servers)
    db = tagdb(cfg, ["C0001", "J001", "J002"])
    factory = DriverFactory(cfg, DriverContext())
    poller = Poller(cfg, factory, db, devices=["C0001", "J001"])
    result = await poller.update(cfg, db, devices=["J001", "J002"])
    assert result.started == ["J002"] and result.stopped == ["C0001"] and result.kept == ["J001"]
    assert all(d.task is None for d in poller._devices.values())  # nothing runs before start()
    await poller.start()
    try:
        await wait_for(lambda: good(db, cfg, "J001") and good(db, cfg, "J002"), 5.0)
    finally:
        await poller.aclose()
        await factory.aclose()
