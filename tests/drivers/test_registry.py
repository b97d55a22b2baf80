"""The explicit driver registry and the shared pieces of the driver interface."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from drivers.base import Driver, DriverContext, WriteNotConfirmed
from drivers.registry import REGISTRY, DriverFactory, build_drivers, driver_class, register
from scada.config.model import DeviceDef, TagDef
from scada.errors import ConfigError, WriteNotAllowed
from scada.quality import Quality, Sample, Value
from tests.drivers.conftest import demo_city


def test_every_protocol_of_the_schema_has_a_driver() -> None:
    from scada.config.schema import PROTOCOLS

    assert set(PROTOCOLS) <= set(REGISTRY)
    for protocol in PROTOCOLS:
        cls = driver_class(protocol)
        assert issubclass(cls, Driver) and cls.protocol == protocol


def test_unknown_protocol_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no driver registered"):
        driver_class("bacnet")


class EchoDriver(Driver):
    protocol = "echo"

    async def connect(self) -> None:
        self._connected = True

    async def read(self, points: Sequence[TagDef]) -> list[Sample]:
        return [Sample.good(1) for _ in points]

    async def write(self, point: TagDef, value: Value, *, tolerance: float | None = None) -> Sample:
        self.check_writable(point)
        return self.confirm(point, value, Sample.good(7), tolerance)

    async def aclose(self) -> None:
        self._connected = False


async def test_register_factory_and_confirm() -> None:
    register("echo", EchoDriver)
    try:
        dev = DeviceDef("E1", "echo", {}, "normal", 1.0, 1.0, 1)
        factory = DriverFactory()
        drv = factory(dev)
        assert isinstance(drv, EchoDriver) and drv.context is factory.context
        rw = TagDef("e/x", "E", "x", "x", "E1", "X", "int", access="rw")
        ro = TagDef("e/y", "E", "y", "y", "E1", "Y", "int")
        other = TagDef("e/z", "E", "z", "z", "E2", "Z", "int", access="rw")
        assert (await drv.write(rw, 7)).value == 7
        with pytest.raises(WriteNotConfirmed) as info:
            await drv.write(rw, 8)  # the device reports 7: never claimed as done
        assert info.value.sample.value == 7 and drv.last_error is info.value
        with pytest.raises(WriteNotAllowed):
            await drv.write(ro, 7)
        with pytest.raises(WriteNotAllowed, match="belongs to device"):
            await drv.write(other, 7)
        with pytest.raises(WriteNotConfirmed, match="read-back failed"):
            drv.confirm(rw, 7, Sample.bad(Quality.BAD_COMM), None)
        await factory.aclose()
    finally:
        REGISTRY.pop("echo", None)


def test_build_drivers_for_the_demo_city() -> None:
    config = demo_city()
    drivers = build_drivers(config)
    assert set(drivers) == set(config.devices)
    assert {type(d).__name__ for d in drivers.values()} == {
        "ModbusTcpDriver", "ModbusRtuDriver", "OpcUaDriver", "SnmpDriver", "PanelBusDriver"}
    assert not any(d.connected for d in drivers.values())


async def test_context_closes_shared_resources_once() -> None:
    closed: list[str] = []
    ctx = DriverContext()
    a = ctx.shared("k", lambda: "res", closed.append)
    b = ctx.shared("k", lambda: "other", closed.append)
    assert a == b == "res"
    await ctx.aclose()
    await ctx.aclose()
    assert closed == ["res"]
