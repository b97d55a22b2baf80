"""The explicit driver registry: protocol name → driver class, and the factory the poller uses.

    protocol        class                                   one driver object per
    ────────────    ─────────────────────────────────────   ──────────────────────────────────────
    modbus_tcp      drivers.modbus:ModbusTcpDriver          device (one TCP connection each)
    modbus_rtu      drivers.modbus:ModbusRtuDriver          serial bus (units share the port)
    opcua           drivers.opcua:OpcUaDriver               server (one session, one subscription)
    snmp            drivers.snmp:SnmpDriver                 agent (v2c: a socket per device; v3: one SnmpEngine)
    serial_ascii    drivers.serial_ascii:PanelBusDriver     serial bus (panel ASCII protocol)

Classes are imported on first use, so building a factory for a Modbus-only city never imports
asyncua or puresnmp. ``register(protocol, "module:Class")`` adds or replaces an entry (tests, plug-ins).

Building the drivers for a city and running the scheduler::

    config = load_city("tags.yaml", "alarms.yaml", endpoint_overrides=endpoints)
    factory = DriverFactory(config)             # holds shared resources (SNMP pool, serial buses)
    db = TagDatabase(config.tags + device_stat_tags(config))
    poller = Poller(config, factory, db)        # scada.poll: no protocol imports
    await poller.start(); ...; await poller.aclose(); await factory.aclose()
"""

from __future__ import annotations

import importlib

from drivers.base import Driver, DriverContext
from scada.config.model import CityConfig, DeviceDef
from scada.errors import ConfigError, ConfigProblem

REGISTRY: dict[str, str] = {
    "modbus_tcp": "drivers.modbus:ModbusTcpDriver",
    "modbus_rtu": "drivers.modbus:ModbusRtuDriver",
    "opcua": "drivers.opcua:OpcUaDriver",
    "snmp": "drivers.snmp:SnmpDriver",
    "serial_ascii": "drivers.serial_ascii:PanelBusDriver",
}

_loaded: dict[str, type[Driver]] = {}


def register(protocol: str, target: str | type[Driver]) -> None:
    """Add or replace the driver class of ``protocol`` (``"module:Class"`` or the class itself)."""
    _loaded.pop(protocol, None)
    if isinstance(target, str):
        REGISTRY[protocol] = target
    else:
        REGISTRY[protocol] = f"{target.__module__}:{target.__qualname__}"
        _loaded[protocol] = target


def driver_class(protocol: str) -> type[Driver]:
    """The driver class registered for ``protocol``; ConfigError if none."""
    cls = _loaded.get(protocol)
    if cls is not None:
        return cls
    target = REGISTRY.get(protocol)
    if target is None:
        raise ConfigError([ConfigProblem("", 0, f"protocol '{protocol}'",
                                         f"no driver registered; known: {', '.join(sorted(REGISTRY))}")])
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(cls, type) and issubclass(cls, Driver)):
        raise TypeError(f"{target} is not a Driver subclass")
    _loaded[protocol] = cls
    return cls


class DriverFactory:
    """``factory(device) → Driver`` for the poll scheduler; owns the shared driver resources."""

    def __init__(self, config: CityConfig | None = None, context: DriverContext | None = None) -> None:
        self.config = config
        self.context = context if context is not None else DriverContext()

    def __call__(self, device: DeviceDef) -> Driver:
        return driver_class(device.protocol)(device, self.context)

    async def aclose(self) -> None:
        """Close the shared resources (call after every driver was closed)."""
        await self.context.aclose()


def build_drivers(config: CityConfig, factory: DriverFactory | None = None) -> dict[str, Driver]:
    """One driver per configured device (not connected yet)."""
    factory = factory or DriverFactory(config)
    return {name: factory(dev) for name, dev in config.devices.items()}


__all__ = ["REGISTRY", "DriverFactory", "build_drivers", "driver_class", "register"]
