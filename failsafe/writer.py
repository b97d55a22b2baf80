"""The Writer port over real drivers, without importing them (the server hands the drivers in).

    gate / leases ──write(tag, value, tolerance)──► DriverWriter ──► drivers[tag.device].write(...)
                                                     │  refuses before any packet:
                                                     │   - tags not declared access rw
                                                     │   - SNMP SETs outside SNMP_SET_ALLOW_LIST
                                                     │  connects the driver if needed; one write at a
                                                     │  time per device and event loop (an asyncio.Lock each)
                                                     └─ may_write() just before the send (failover fence:
                                                        NotLeaseholder, injected by the server; None = always)

Built from the drivers that poll the devices::

    writer = DriverWriter(config, lambda device: poller.drivers.get(device))   # drivers on this loop
    writer = DriverWriter(config, lookup, call=run_there)   # drivers on other loops/threads (the server:
        # a junction's driver from the field-safety thread, a LoopDriver that runs each call on that loop;
        # the others from the poll scheduler, ``call`` running them on the poll loop)

so the gate writes through the same connection the poller reads with (the drivers serialise their
own requests). Anything that is not a DriverError coming out of a driver is turned into one, so the
gate always gets an outcome (failed) rather than an exception.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from failsafe.vocabulary import SNMP_SET_ALLOW_LIST
from scada.config.model import CityConfig, TagDef
from scada.errors import CommError, DriverError, NotLeaseholder, WriteNotAllowed
from scada.quality import Sample, Value

log = logging.getLogger(__name__)
T = TypeVar("T")


class DriverLike(Protocol):
    """The part of drivers.base.Driver the writer uses."""

    @property
    def connected(self) -> bool: ...

    async def connect(self) -> None: ...

    async def read(self, points: Sequence[TagDef]) -> list[Sample]: ...

    async def write(self, point: TagDef, value: Value, *, tolerance: float | None = None) -> Sample: ...


class DriverWriter:
    """Writer port (failsafe.types.Writer) over protocol drivers looked up by device name."""

    def __init__(self, city: CityConfig,
                 drivers: Mapping[str, DriverLike] | Callable[[str], DriverLike | None], *,
                 call: Callable[[Coroutine[Any, Any, Any]], Awaitable[Any]] | None = None,
                 may_write: Callable[[], bool] | None = None) -> None:
        """``call`` runs a driver coroutine where the drivers live (e.g. the poll loop's thread) and awaits
        its result here; default: await it in this loop. ``may_write``: the failover pair's fence, asked
        immediately before every send (False: NotLeaseholder, nothing sent); None: a single server."""
        self.city = city
        self._lookup: Callable[[str], DriverLike | None] = drivers.get if isinstance(drivers, Mapping) else drivers
        self._call = call
        self._locks: dict[str, asyncio.Lock] = {}
        self._may_write = may_write
        self.writes = 0
        self.fenced = 0  # writes refused because this server did not hold the pair's lease

    def check(self, tag: TagDef) -> None:
        """Raise WriteNotAllowed for anything the fail-safe policy never writes."""
        if not tag.writable:
            raise WriteNotAllowed(f"{tag.name}: not declared writable (access {tag.access!r})")
        device = self.city.devices.get(tag.device)
        if device is not None and device.protocol == "snmp" and tag.address.strip(".") not in SNMP_SET_ALLOW_LIST:
            raise WriteNotAllowed(f"{tag.name}: SNMP SET of {tag.address} is outside the allow-list "
                                  f"({', '.join(SNMP_SET_ALLOW_LIST.values())})")

    async def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._call is None:
            return await coro
        return await self._call(coro)  # type: ignore[no-any-return]

    async def _driver(self, tag: TagDef) -> DriverLike:
        driver = self._lookup(tag.device)
        if driver is None:
            raise CommError(f"{tag.device}: no driver for this device")
        if not driver.connected:
            try:
                await self._run(driver.connect())
            except DriverError:
                raise
            except Exception as exc:  # a driver that did not translate: never let a library error reach the gate
                raise CommError(f"{tag.device}: connect failed: {exc!r}") from exc
        return driver

    async def write(self, tag: TagDef, value: Value, *, tolerance: float | None = None) -> None:
        self.check(tag)
        # one lock per device AND loop: an asyncio.Lock must not be awaited from two loops (the field-safety
        # monitor writes to a junction from its own loop, operators from the main one); the driver serialises
        # its own requests across them
        lock = self._locks.setdefault(f"{tag.device}@{id(asyncio.get_running_loop())}", asyncio.Lock())
        async with lock:
            driver = await self._driver(tag)
            # the failover fence, after every wait (lock, connect) and as close to the send as this layer
            # gets: the residual window (this check → the driver's packet) is bounded in docs/ha.md
            if self._may_write is not None and not self._may_write():
                self.fenced += 1
                raise NotLeaseholder(f"write {tag.name}", "this server does not hold the failover pair's "
                                                          "field-write lease (it is standby, or etcd is unreachable)")
            try:
                await self._run(driver.write(tag, value, tolerance=tolerance))
            except DriverError:
                raise
            except Exception as exc:  # a driver must translate; never let a library error reach the gate
                log.exception("%s: driver write raised a non-DriverError", tag.name)
                raise CommError(f"{tag.name}: write failed: {exc!r}") from exc
            self.writes += 1

    async def read(self, tag: TagDef) -> Sample:
        driver = await self._driver(tag)
        try:
            samples = await self._run(driver.read([tag]))
        except DriverError:
            raise
        except Exception as exc:  # a driver that did not translate: never let a library error reach the gate
            raise CommError(f"{tag.name}: read failed: {exc!r}") from exc
        return samples[0]
