"""Modbus TCP and RTU drivers (pymodbus 3.16.1), reading through the pure planner (modbus_plan).

    ModbusTcpDriver   one device = one TCP connection      connection: {host, port, unit,
                                                                        max_gap, max_gap_bits}
    ModbusRtuDriver   one serial bus = one port, shared    connection: {port, baudrate, parity,
                      by its units (tag.unit)                           bytesize, stopbits, max_gap}

    read(points) ─► plan (one per layout, shared by the Modbus drivers of a DriverContext and retargeted
                     │ per unit: 1,100 cabinets of 3 layouts plan 3 times) ─► one request per planned block
                     │ response           → decode → scale → GOOD (NaN / unknown enum → bad_device)
                     │ exception code 2   → the merged block spans registers the device lacks:
                     │  (illegal address)   read its points one by one from now on; a point that
                     │                      still fails is bad_device
                     │ other exception    → bad_device for the block's points
                     │ no answer / garbled→ bad_comm. TCP: the connection is dropped (a late answer
                     │                      must not be taken for the next one) and the remaining
                     │                      blocks are bad_comm. RTU: only that unit's remaining
                     │                      blocks are bad_comm; other units on the bus go on.
    write(point, v) ─► FC 5 (coil) / FC 6 (one register) / FC 16 (several) ─► read back ─► compare

pymodbus is used with retries=0 and no automatic reconnect: the poll scheduler owns retries,
timeouts (device.timeout_s per request) and backoff. ``unit`` is the Modbus device id
(``device_id=`` in pymodbus 3.16). Only the fail-safe command gate may call write().
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerType

from drivers.base import Driver, DriverContext, EngineeringColumns, describe, engineering, raw_number
from drivers.modbus_plan import (
    DEFAULT_MAX_GAP_BITS,
    DEFAULT_MAX_GAP_REGISTERS,
    ColumnDecoder,
    Plan,
    ReadRequest,
    decode_request,
    encode_registers,
    layout_key,
    plan_reads,
    point_spec,
    retarget,
    split_request,
)
from scada.config.model import DeviceDef, TagDef
from scada.errors import CommError, DeviceError, WriteNotAllowed
from scada.quality import Quality, Sample, Value
from scada.tagdb import Readings

log = logging.getLogger(__name__)

# pymodbus logs every timeout and reconnect at ERROR/WARNING; the poller logs a loss once instead.
_pymodbus_log = logging.getLogger("pymodbus")
if _pymodbus_log.level == logging.NOTSET:
    _pymodbus_log.setLevel(logging.CRITICAL)

#: DriverContext key of the plans shared by the Modbus drivers of one process (unit and layout → Plan, see
#: _ModbusDriver.plan); bounded by _MAX_PLANS (a retry reads a subset of a device's points: a new layout), well
#: above a city's (full Dijon: 3 layouts + 326 unit/layout pairs)
_PLANS = "modbus:plans"
_MAX_PLANS = 16_384

EXCEPTION_NAMES = {1: "illegal function", 2: "illegal data address", 3: "illegal data value",
                   4: "server device failure", 5: "acknowledge", 6: "server device busy",
                   10: "gateway path unavailable", 11: "gateway target failed to respond"}
ILLEGAL_ADDRESS = 2
# a gateway saying "target failed to respond" means the field device is unreachable: a comm loss
_COMM_EXCEPTIONS = {10, 11}


def _forget(plans: dict[tuple[Any, ...], Plan]) -> None:
    plans.clear()


class ModbusExceptionResponse(DeviceError):
    """The device answered with a Modbus exception response."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class _PlanColumns:
    """What the column read path derives once from a plan: a decoder per request, the vectorised
    engineering conversion of the points, the bad_config positions and the string points."""

    def __init__(self, points: Sequence[TagDef], plan: Plan) -> None:
        self.decoders = [ColumnDecoder(r) for r in plan.requests]
        self.eng = EngineeringColumns(points)
        self.invalid = np.array(sorted(plan.invalid), dtype=np.int64)
        self.strings = np.flatnonzero(self.eng.string).tolist()
        self._kinds: dict[int, str] = {}
        for r in plan.requests:
            for s in r.items:
                if self.eng.string[s.index]:
                    self._kinds[s.index] = "bit" if r.bits else s.encoding

    def typed_raw(self, k: int, raw: float) -> int | float | bool:
        """The raw number of string point ``k`` as ``decode_request`` types it (for ``engineering``)."""
        kind = self._kinds.get(k, "")
        if kind == "bit":
            return raw != 0
        return raw if kind.startswith("float") else int(raw)


class _ModbusDriver(Driver):
    """Reading/writing over a pymodbus async client (subclasses make the client)."""

    stateful_connection = True  # TCP: drop the connection after a timeout

    def __init__(self, device: DeviceDef, context: DriverContext | None = None) -> None:
        super().__init__(device, context)
        conn = device.connection
        self.default_unit = int(conn.get("unit", 1) or 1)
        self.max_gap = int(conn.get("max_gap", DEFAULT_MAX_GAP_REGISTERS))
        self.max_gap_bits = int(conn.get("max_gap_bits", DEFAULT_MAX_GAP_BITS))
        self._plans: dict[tuple[Any, ...], Plan] = self.context.shared(_PLANS, dict, _forget)
        self._last_points: list[TagDef] | None = None
        self._last_plan: Plan | None = None
        self._split: set[tuple[int, str, int, int]] = set()  # blocks read point by point

    # ------------------------------------------------------------------ client plumbing
    def _client(self) -> Any:
        raise NotImplementedError

    def _lock(self) -> asyncio.Lock | None:
        return None

    async def _call(self, fc: str, address: int, **kw: Any) -> Any:
        """One request; returns the response PDU or raises CommError / ModbusExceptionResponse."""
        client = self._client()
        if client is None or not client.connected:
            self._connected = False
            raise CommError(f"{self.name}: not connected")
        self.requests += 1
        try:
            rr = await getattr(client, fc)(address, **kw)
        except asyncio.CancelledError:
            self._on_comm_error()
            raise
        except (TimeoutError, ModbusException, OSError) as exc:
            self._on_comm_error()
            raise CommError(f"{self.name}: unit {kw.get('device_id')}: {fc} {address}: {describe(exc)}") from None
        if rr is None:
            raise CommError(f"{self.name}: unit {kw.get('device_id')}: {fc} {address}: no response")
        if rr.isError():
            code = int(getattr(rr, "exception_code", 0))
            text = EXCEPTION_NAMES.get(code, f"exception {code}")
            if code in _COMM_EXCEPTIONS:
                raise CommError(f"{self.name}: unit {kw.get('device_id')}: {fc} {address}: {text}")
            raise ModbusExceptionResponse(f"{self.name}: unit {kw.get('device_id')}: {fc} {address}: {text}", code)
        return rr

    def _on_comm_error(self) -> None:
        if self.stateful_connection:
            client = self._client()
            self._connected = False
            if client is not None:
                client.close()

    async def _read_block(self, req: ReadRequest) -> list[Any]:
        fc = {"coil": "read_coils", "di": "read_discrete_inputs", "hr": "read_holding_registers",
              "ir": "read_input_registers"}[req.table]
        rr = await self._call(fc, req.start, count=req.count, device_id=req.unit)
        data = rr.bits if req.bits else rr.registers
        if len(data) < req.count:
            self._on_comm_error()
            raise CommError(f"{self.name}: unit {req.unit}: {fc} {req.start}: short answer "
                            f"({len(data)} of {req.count})")
        return list(data)

    # ------------------------------------------------------------------ read
    def plan(self, points: Sequence[TagDef]) -> Plan:
        if points is self._last_points and self._last_plan is not None:
            return self._last_plan  # the poller hands the same list every cycle: no key to build
        # a plan (and its derived columns) depends on the points' layout, not their names: devices of one
        # template share it, whatever unit they are on (at full Dijon: 1,126 cabinets, ~200 units, 3
        # layouts). Building one per device was ~40 % of the Modbus warm-up's CPU.
        gaps = (self.max_gap, self.max_gap_bits)
        units = {self.default_unit if p.unit is None else p.unit for p in points}
        if len(units) != 1:  # an RTU bus's units, or no points: planned as they are
            key: tuple[Any, ...] = ("units", self.default_unit, gaps, layout_key(points))
            plan = self._plans.get(key)
            if plan is None:
                plan = self._keep(key, plan_reads(points, default_unit=self.default_unit, max_gap=self.max_gap,
                                                  max_gap_bits=self.max_gap_bits))
        else:
            unit = units.pop()
            layout = layout_key(points, units=False)
            key = (unit, gaps, layout)
            plan = self._plans.get(key)
            if plan is None:
                base = self._plans.get((None, gaps, layout))  # the layout's plan, on the unit of its first device
                if base is None:
                    base = self._keep((None, gaps, layout), plan_reads(points, default_unit=unit, max_gap=self.max_gap,
                                                                       max_gap_bits=self.max_gap_bits))
                plan = self._keep(key, base if all(r.unit == unit for r in base.requests) else retarget(base, unit))
        if isinstance(points, list):
            self._last_points, self._last_plan = points, plan
        return plan

    def _keep(self, key: tuple[Any, ...], plan: Plan) -> Plan:
        if len(self._plans) >= _MAX_PLANS:  # bounded: a retry reads a subset of a device's points (a new layout)
            self._plans.clear()
        self._plans[key] = plan
        return plan

    @staticmethod
    def _columns(points: Sequence[TagDef], plan: Plan) -> _PlanColumns:
        cols = plan.cache.get("columns")
        if cols is None:
            cols = plan.cache["columns"] = _PlanColumns(points, plan)
        return cols  # type: ignore[no-any-return,unused-ignore]

    async def read(self, points: Sequence[TagDef]) -> list[Sample]:
        return (await self.read_readings(points)).samples(points)

    async def read_readings(self, points: Sequence[TagDef]) -> Readings:
        """One reading per point as columns (see the module docstring for the qualities)."""
        out = Readings(len(points))
        if not self._connected:
            out.stamp_unset(time.time_ns())
            return out
        plan = self.plan(points)
        cols = self._columns(points, plan)
        raw = np.full(len(points), np.nan)
        have = np.zeros(len(points), dtype=bool)
        lock = self._lock()
        if lock is not None:
            async with lock:
                await self._read_plan(plan, cols, raw, have, out)
        else:
            await self._read_plan(plan, cols, raw, have, out)
        now = time.time_ns()
        if cols.invalid.size:
            out.set_bad(cols.invalid, Quality.BAD_CONFIG, now)
        sel = np.flatnonzero(have & ~cols.eng.string)
        cols.eng.convert(raw[sel], sel, out)
        if cols.strings:
            for k in cols.strings:
                if have[k]:
                    value, quality = engineering(points[k], cols.typed_raw(k, float(raw[k])))
                    out.qualities[k] = int(quality)
                    if isinstance(value, str):
                        out.texts[k] = value
        out.stamp_unset(now)
        return out

    async def _read_plan(self, plan: Plan, cols: _PlanColumns, raw: npt.NDArray[np.float64],
                         have: npt.NDArray[np.bool_], out: Readings) -> None:
        dead_units: set[int] = set()
        for req, decoder in zip(plan.requests, cols.decoders, strict=True):
            if req.unit in dead_units or not self._connected:
                continue  # stays bad_comm
            blocks: list[tuple[ReadRequest, ColumnDecoder]] = [(req, decoder)]
            if (req.unit, req.table, req.start, req.count) in self._split:
                blocks = [(b, ColumnDecoder(b)) for b in split_request(req)]
            for block, dec in blocks:
                try:
                    data = await self._read_block(block)
                except ModbusExceptionResponse as exc:
                    if exc.code == ILLEGAL_ADDRESS and len(block.items) > 1:
                        key = (req.unit, req.table, req.start, req.count)
                        log.info("%s: unit %d %s:%d+%d answered illegal address; reading its %d points one by one",
                                 self.name, req.unit, req.table, req.start, req.count, len(block.items))
                        self._split.add(key)
                        for part in split_request(block):
                            await self._read_into(part, raw, have, out, dead_units)
                        continue
                    self.last_error = exc
                    self._mark(out, dec, Quality.BAD_DEVICE)
                    continue
                except CommError as exc:
                    self.last_error = exc
                    dead_units.add(req.unit)
                    break
                self._decode_into(dec, data, raw, have, out)

    async def _read_into(self, block: ReadRequest, raw: npt.NDArray[np.float64], have: npt.NDArray[np.bool_],
                         out: Readings, dead_units: set[int]) -> None:
        if block.unit in dead_units:
            return
        dec = ColumnDecoder(block)
        try:
            data = await self._read_block(block)
        except ModbusExceptionResponse as exc:
            self.last_error = exc
            self._mark(out, dec, Quality.BAD_DEVICE)
            return
        except CommError as exc:
            self.last_error = exc
            dead_units.add(block.unit)
            return
        self._decode_into(dec, data, raw, have, out)

    @staticmethod
    def _mark(out: Readings, dec: ColumnDecoder, quality: Quality) -> None:
        out.set_bad(dec.positions, quality, time.time_ns())

    @staticmethod
    def _decode_into(dec: ColumnDecoder, data: list[Any], raw: npt.NDArray[np.float64], have: npt.NDArray[np.bool_],
                     out: Readings) -> None:
        now = time.time_ns()
        dec.decode(data, raw)
        pos = dec.positions
        have[pos] = True
        out.source_ns[pos] = now
        out.receive_ns[pos] = now

    @staticmethod
    def _decode(points: Sequence[TagDef], block: ReadRequest, data: list[Any], out: list[Sample | None]) -> None:
        """One Sample per point of ``block`` (the write read-back)."""
        now = time.time_ns()
        for index, raw in decode_request(block, data):
            value, quality = engineering(points[index], raw)
            out[index] = Sample(value, quality, now, now)

    # ------------------------------------------------------------------ write
    async def write(self, point: TagDef, value: Value, *, tolerance: float | None = None) -> Sample:
        """Write one value and read it back. Only the fail-safe command gate may call this."""
        self.check_writable(point)
        try:
            spec = point_spec(0, point, self.default_unit)
        except ValueError as exc:
            raise WriteNotAllowed(f"{point.name}: {exc}") from None
        if spec.table not in ("coil", "hr"):
            raise WriteNotAllowed(f"{point.name}: {spec.table} is a read-only Modbus table")
        number = raw_number(point, value)
        if not self._connected:
            raise self.fail(CommError(f"{self.name}: not connected"))
        lock = self._lock()
        try:
            if lock is not None:
                async with lock:
                    sample = await self._write_and_read(point, spec, number)
            else:
                sample = await self._write_and_read(point, spec, number)
        except (CommError, DeviceError) as exc:
            raise self.fail(exc) from None
        return self.confirm(point, value, sample, tolerance)

    async def _write_and_read(self, point: TagDef, spec: Any, number: float) -> Sample:
        if spec.table == "coil":
            await self._call("write_coil", spec.offset, value=bool(number), device_id=spec.unit)
        else:
            try:
                regs = encode_registers(number if spec.encoding.startswith("float") else round(number),
                                        spec.encoding, spec.word_order, spec.byte_order)
            except ValueError as exc:
                raise WriteNotAllowed(f"{point.name}: {exc}") from None
            if len(regs) == 1:
                await self._call("write_register", spec.offset, value=regs[0], device_id=spec.unit)
            else:
                await self._call("write_registers", spec.offset, values=regs, device_id=spec.unit)
        block = ReadRequest(spec.unit, spec.table, spec.offset, spec.width, [spec])
        data = await self._read_block(block)
        out: list[Sample | None] = [None]
        self._decode([point], block, data, out)
        if out[0] is None:  # _decode fills every point it is given; say so loudly if that ever changes
            raise self.fail(DeviceError(f"{point.name}: the read-back after the write decoded to nothing"))
        return out[0]


class ModbusTcpDriver(_ModbusDriver):
    """One Modbus TCP device (a cabinet controller, a bollard) over its own connection."""

    protocol = "modbus_tcp"

    def __init__(self, device: DeviceDef, context: DriverContext | None = None) -> None:
        super().__init__(device, context)
        conn = device.connection
        self.host = str(conn.get("host", "127.0.0.1"))
        self.port = int(conn.get("port", 502))
        self._tcp: AsyncModbusTcpClient | None = None

    def _client(self) -> Any:
        return self._tcp

    async def connect(self) -> None:
        if self._tcp is not None:
            self._tcp.close()
        client = AsyncModbusTcpClient(self.host, port=self.port, timeout=self.device.timeout_s, retries=0,
                                      reconnect_delay=0, name=self.name)
        self._tcp = client
        try:
            ok = await client.connect()
        except asyncio.CancelledError:
            client.close()
            raise
        except Exception as exc:  # noqa: BLE001 - pymodbus raises undocumented exceptions: translated to DriverError at the boundary
            client.close()
            raise self.fail(CommError(f"{self.name}: connect {self.host}:{self.port}: {describe(exc)}")) from None
        if not ok:
            client.close()
            raise self.fail(CommError(f"{self.name}: connect {self.host}:{self.port}: refused or timed out"))
        self._connected = True

    async def aclose(self) -> None:
        self._connected = False
        if self._tcp is not None:
            self._tcp.close()
            self._tcp = None


class _RtuBus:
    """One serial port shared by every driver (and unit) on it: one client, one lock."""

    def __init__(self, port: str, conn: dict[str, Any], timeout: float, name: str) -> None:
        self.port = port
        self.conn = conn
        self.timeout = timeout
        self.name = name
        self.lock = asyncio.Lock()
        self.client: AsyncModbusSerialClient | None = None  # made in the running loop (pymodbus needs one)

    async def ensure(self) -> bool:
        if self.client is None:
            conn = self.conn
            self.client = AsyncModbusSerialClient(
                self.port, framer=FramerType.RTU, baudrate=int(conn.get("baudrate", 19200)),
                bytesize=int(conn.get("bytesize", 8)), parity=str(conn.get("parity", "N")),
                stopbits=int(conn.get("stopbits", 1)), timeout=self.timeout, retries=0, reconnect_delay=0,
                name=self.name)
        if self.client.connected:
            return True
        return bool(await self.client.connect())

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.connected

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


class ModbusRtuDriver(_ModbusDriver):
    """A Modbus RTU serial bus: the units of its tags share one port (one request at a time)."""

    protocol = "modbus_rtu"
    stateful_connection = False  # a silent unit does not mean the bus is gone

    def __init__(self, device: DeviceDef, context: DriverContext | None = None) -> None:
        super().__init__(device, context)
        conn = device.connection
        self.port_path = str(conn.get("port"))
        self._bus: _RtuBus = self.context.shared(
            f"modbus_rtu:{self.port_path}",
            lambda: _RtuBus(self.port_path, conn, device.timeout_s, device.name),
            lambda bus: bus.close())

    def _client(self) -> Any:
        return self._bus.client

    def _lock(self) -> asyncio.Lock | None:
        return self._bus.lock

    async def connect(self) -> None:
        try:
            ok = await self._bus.ensure()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - pyserial/pymodbus raise undocumented exceptions: a DriverError at the boundary
            raise self.fail(CommError(f"{self.name}: open {self.port_path}: {describe(exc)}")) from None
        if not ok:
            raise self.fail(CommError(f"{self.name}: cannot open serial port {self.port_path}"))
        self._connected = True

    async def read(self, points: Sequence[TagDef]) -> list[Sample]:
        if self._connected and not self._bus.connected:
            self._connected = False  # the port went away (pty closed, USB adapter unplugged)
        return await super().read(points)

    async def aclose(self) -> None:
        self._connected = False  # the port itself is closed with the shared context (factory.aclose)
        if self.owns_context:
            await self.context.aclose()


__all__ = ["ModbusExceptionResponse", "ModbusRtuDriver", "ModbusTcpDriver"]
