"""Modbus TCP gateway serving simulated field equipment (pymodbus 3.16.1), one unit id per model.

    AsyncModbusTcpClient / mbpoll ──TCP──▶ _GatewayServer (pymodbus ModbusTcpServer)
                                               │ one _FaultyHandler per connection
                                               │   comm faults per unit: drop / delay / corrupt / disconnect
                                               ▼
                                           ModelStore (a pymodbus SimCore subclass: the datastore)
                                               │ fc 1/5/15 "co", 2 "di", 3/6/16/22/23 "hr", 4 "ir"
                                               ▼
                          units[unit_id].modbus_read(table, address, count)   ← at request time
                          units[unit_id].modbus_write(table, address, values) ← validated by the model
                          ModbusRefusal(code) → exception response (2 address, 3 value, 4 device failure)

No register copy is kept anywhere: every read asks the model for its current values, every write goes
to the model, which refuses what a real controller would refuse (an out-of-range override level →
exception 3 ILLEGAL DATA VALUE; a raise while a vehicle is on the loop → 3; a faulty bollard → 4).
A unit id that the gateway does not serve is answered with exception 0x0B (gateway target device
failed to respond), like a real TCP/RS-485 gateway.

Communication faults (``set_comm_fault(equipment_id, kind, **params)``, kind None clears):
    drop        requests for that unit get no answer (the client times out)
    delay       answers come delay_s seconds late (other units are not held up)
    corrupt     the answer is garbled on the wire: mode="garble" (default; the function code byte is
                replaced by an invalid one and the data scrambled, so the client cannot decode it) or
                mode="bitflip" (one data bit flipped: a plausible but wrong value)
    disconnect  the gateway closes the TCP connection on which a request for that unit arrives

ModelStore is also what sim.serial_server.SerialBus uses for Modbus RTU on a pty.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.server import ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.simulator.simcore import SimCore

from sim.modbus_map import ModbusModel, ModbusRefusal, Table

__all__ = ["COMM_KINDS", "CommFault", "ModbusGateway", "ModelStore", "answer", "apply_comm_fault", "corrupt_bytes"]

log = logging.getLogger(__name__)

COMM_KINDS = ("drop", "delay", "corrupt", "disconnect")
WRITE_FUNCTIONS = frozenset({5, 6, 15, 16, 22, 23})  # the Modbus function codes that change a device


@dataclass(frozen=True, slots=True)
class WriteRecord:
    """One write request that reached the simulated devices: the simulator's own record of field writes, so a
    test can say who wrote what and when (the failover pair: never the server without the lease)."""

    ts_ns: int   # time.time_ns() when the request was answered
    peer: tuple[str, int]  # the client connection's (host, port)
    unit: int
    function: int
    address: int
_FC_TABLE: dict[int, Table] = {
    1: "co",
    5: "co",
    15: "co",
    2: "di",
    3: "hr",
    6: "hr",
    16: "hr",
    22: "hr",
    23: "hr",
    4: "ir",
}


@dataclass(frozen=True, slots=True)
class CommFault:
    kind: str
    delay_s: float = 0.0
    mode: str = "garble"

    @classmethod
    def build(cls, kind: str, params: Mapping[str, Any]) -> CommFault:
        if kind not in COMM_KINDS:
            raise ValueError(f"comm fault kind must be one of {', '.join(COMM_KINDS)}, got {kind!r}")
        unknown = set(params) - {"delay_s", "mode"}
        if unknown:
            raise ValueError(f"comm fault {kind}: unknown parameter(s) {', '.join(sorted(unknown))}")
        delay_s = float(params.get("delay_s", 1.0))
        if delay_s < 0:
            raise ValueError(f"comm fault delay: delay_s must be >= 0, got {delay_s}")
        mode = str(params.get("mode", "garble"))
        if mode not in ("garble", "bitflip"):
            raise ValueError(f"comm fault corrupt: mode must be garble or bitflip, got {mode!r}")
        return cls(kind, delay_s, mode)


def apply_comm_fault(faults: dict[int, CommFault], keys: Iterable[int], kind: str | None,
                     params: Mapping[str, Any]) -> None:
    """Set the comm fault ``kind`` (built from ``params``) on every key (unit id, bus address), or clear it (None)."""
    fault = None if kind is None else CommFault.build(kind, params)
    for key in keys:
        if fault is None:
            faults.pop(key, None)
        else:
            faults[key] = fault


class ModelStore(SimCore):
    """pymodbus datastore whose registers are the models' live values (no copy)."""

    def __init__(self, units: Mapping[int, ModbusModel], missing: ExcCodes | None = ExcCodes.GATEWAY_NO_RESPONSE):
        # SimCore.__init__ would build register blocks from SimDevice definitions; we have none.
        self.devices = {}
        self.units = units
        self.missing = missing

    def device_ids(self) -> list[int]:
        return sorted(self.units)

    def _target(self, device_id: int, func_code: int) -> tuple[ModbusModel, Table] | ExcCodes:
        model = self.units.get(device_id)
        if model is None:
            return self.missing or ExcCodes.GATEWAY_NO_RESPONSE
        table = _FC_TABLE.get(func_code)
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        return model, table

    async def async_getValues(
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> list[int] | list[bool] | ExcCodes:
        target = self._target(device_id, func_code)
        if isinstance(target, ExcCodes):
            return target
        model, table = target
        try:
            values = model.modbus_read(table, address, count)
        except ModbusRefusal as exc:
            log.debug("%s", exc)
            return ExcCodes(exc.code)
        if table in ("co", "di"):
            return [bool(v) for v in values]
        return values

    async def async_setValues(
        self, device_id: int, func_code: int, address: int, values: list[int] | list[bool]
    ) -> ExcCodes | None:
        target = self._target(device_id, func_code)
        if isinstance(target, ExcCodes):
            return target
        model, table = target
        try:
            model.modbus_write(table, address, [int(v) for v in values])
        except ModbusRefusal as exc:
            log.info("%s (exception %d)", exc, exc.code)
            return ExcCodes(exc.code)
        return None


async def answer(store: ModelStore, pdu: ModbusPDU) -> ModbusPDU:
    """Run one decoded request against the store; any failure becomes an exception response."""
    try:
        response: ModbusPDU = await pdu.datastore_update(store, pdu.dev_id)  # type: ignore[arg-type]
    except Exception as exc:  # noqa: BLE001 - an unsupported function (diagnostics...) raises anything: answer 01
        log.warning("unit %d: function %d not served (%s)", pdu.dev_id, pdu.function_code, exc)
        response = ExceptionResponse(pdu.function_code, ExcCodes.ILLEGAL_FUNCTION)
    response.transaction_id = pdu.transaction_id
    response.dev_id = pdu.dev_id
    return response


def corrupt_bytes(packet: bytes, start: int, mode: str, rng: random.Random) -> bytes:
    """Garble ``packet[start:]`` (start = index of the function code byte)."""
    data = bytearray(packet)
    if len(data) <= start:
        return bytes(data)
    if mode == "bitflip" and len(data) > start + 2:
        i = rng.randrange(start + 2, len(data))  # a data byte, after function code and byte count
        data[i] ^= 1 << rng.randrange(8)
        return bytes(data)
    data[start] = 0x7F  # no such function code (and not an exception reply: bit 7 clear)
    for i in range(start + 1, len(data)):
        data[i] ^= 0xA5
    return bytes(data)


class _FaultyHandler(ServerRequestHandler):
    """One client connection; applies the gateway's comm faults per unit before answering."""

    server: _GatewayServer

    async def handle_request(self) -> None:
        pdu, addr = self.last_pdu, self.last_addr
        if pdu is None:
            return
        gateway = self.server.gateway
        fault = gateway.fault_for_unit(pdu.dev_id)
        if fault is not None:
            if fault.kind == "drop":
                return
            if fault.kind == "disconnect":
                log.info("unit %d: comm fault disconnect, closing the connection", pdu.dev_id)
                self.close()
                return
            if fault.kind == "delay":
                await asyncio.sleep(fault.delay_s)
        if pdu.function_code in WRITE_FUNCTIONS:
            peer = self.transport.get_extra_info("peername") if self.transport is not None else None
            gateway.write_log.append(WriteRecord(time.time_ns(), tuple(peer[:2]) if peer else ("", 0), pdu.dev_id,
                                                 pdu.function_code, int(getattr(pdu, "address", -1))))
        response = await answer(gateway.store, pdu)
        if fault is not None and fault.kind == "corrupt":
            packet = self.framer.buildFrame(response)
            self.send(corrupt_bytes(packet, 7, fault.mode, gateway.rng), addr)  # MBAP header is 7 bytes
            return
        self.server_send(response, addr)  # type: ignore[no-untyped-call]


class _GatewayServer(ModbusTcpServer):
    def __init__(self, gateway: ModbusGateway, host: str, port: int) -> None:
        placeholder = SimDevice(id=0, simdata=SimData(0, count=1, values=0, datatype=DataType.REGISTERS))
        super().__init__([placeholder], address=(host, port))
        self.gateway = gateway
        self.context = gateway.store

    def callback_new_connection(self) -> _FaultyHandler:
        return _FaultyHandler(self, self.trace_packet, self.trace_pdu, self.trace_connect)  # type: ignore[no-untyped-call]


class ModbusGateway:
    """Modbus TCP server for many models (lighting cabinets, bollards...), one unit id each.

    ``units`` maps unit id → model (anything with ``id``, ``modbus_read``, ``modbus_write``).
    Create and use inside a running event loop: ``await gw.start()``, ``gw.endpoint`` →
    "127.0.0.1:PORT", ``await gw.aclose()``.
    """

    def __init__(self, units: Mapping[int, ModbusModel], host: str = "127.0.0.1", port: int = 0) -> None:
        for unit in units:
            if not 1 <= unit <= 247:
                raise ValueError(f"modbus unit ids must be 1..247, got {unit}")
        self.units = dict(units)
        self.host = host
        self.port = port
        self.store = ModelStore(self.units)
        self.rng = random.Random(0)
        self._faults: dict[int, CommFault] = {}
        self._server: _GatewayServer | None = None
        self.write_log: deque[WriteRecord] = deque(maxlen=10_000)  # every write request served, oldest first

    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise RuntimeError("ModbusGateway: not started")
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        if self._server is not None:
            return
        server = _GatewayServer(self, self.host, self.port)
        await server.serve_forever(background=True)
        sockets = getattr(server.transport, "sockets", None) or []
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        self._server = server
        log.info("modbus gateway listening on %s:%d (%d units)", self.host, self.port, len(self.units))

    async def aclose(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()  # type: ignore[no-untyped-call]
            log.info("modbus gateway %s:%d closed", self.host, self.port)

    async def __aenter__(self) -> ModbusGateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ---------------------------------------------------------------------------------- comm faults
    def units_of(self, equipment_id: str) -> list[int]:
        units = [u for u, m in self.units.items() if getattr(m, "id", None) == equipment_id]
        if not units:
            raise KeyError(f"{equipment_id}: not served by this gateway")
        return units

    def set_comm_fault(self, equipment_id: str, kind: str | None, **params: Any) -> None:
        """Set (drop/delay/corrupt/disconnect) or clear (None) a communication fault for one equipment."""
        apply_comm_fault(self._faults, self.units_of(equipment_id), kind, params)
        log.info("%s: comm fault %s %s", equipment_id, kind or "cleared", params or "")

    def fault_for_unit(self, unit: int) -> CommFault | None:
        return self._faults.get(unit)
