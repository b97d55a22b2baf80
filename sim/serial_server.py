"""RS-485-style serial bus on a pseudo-terminal: info panels (ASCII protocol) or Modbus RTU devices.

    driver (pyserial / pymodbus serial client)            simulator (this module)
      opens endpoint ─────────────▶ /dev/pts/N  ══ pty ══  master fd ◀── loop.add_reader
      (also reachable through the symlink ``link``)            │
                                                               │ kind "panel_ascii": FrameDecoder
                                                               │   (drivers.panel_framing) → the
                                                               │   addressed InfoPanel.handle(frame)
                                                               │ kind "modbus_rtu": pymodbus FramerRTU
                                                               │   → ModelStore (sim.modbus_server) →
                                                               ▼   the unit's modbus_read/modbus_write
                                                        reply bytes written back to the master fd

One master, many addressed devices, one answer per request, like a real half-duplex RS-485 line:
a request for an address nobody has, a broadcast, or a frame with a bad checksum/CRC gets no answer
(the master times out). The pty is created with os.openpty() (no socat process); the simulator keeps
the slave side open so the line survives drivers closing and reopening it. A pty ignores the baud rate.

Communication faults (``set_comm_fault(equipment_id, kind, **params)``, kind None clears):
    drop / disconnect   that device stays silent (unplugged from the bus)
    delay               its answers come delay_s seconds late
    corrupt             its answers are garbled on the wire: mode="garble" (default: one byte flipped,
                        so the checksum/CRC no longer matches) or mode="bitflip" (RTU: a data bit
                        flipped and the CRC recomputed, a plausible but wrong value)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import termios
import time
import tty
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

from pymodbus.exceptions import ModbusIOException
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU, ModbusPDU

from drivers.panel_framing import Frame, FrameDecoder, FrameError
from sim.modbus_server import CommFault, ModelStore, answer, apply_comm_fault

__all__ = ["BusKind", "PanelDevice", "SerialBus"]

log = logging.getLogger(__name__)

BusKind = Literal["panel_ascii", "modbus_rtu"]
RTU_GAP_S = 0.05  # silence that ends an RTU frame; a later byte starts a new one (t3.5 on a real line)


class PanelDevice(Protocol):
    id: str

    def handle(self, frame: Frame) -> bytes | None: ...


class SerialBus:
    """A simulated serial bus of addressed devices, served on a pty (``endpoint`` = the device path)."""

    def __init__(self, kind: BusKind, devices: Mapping[int, Any], link: Path | None = None) -> None:
        if kind not in ("panel_ascii", "modbus_rtu"):
            raise ValueError(f"serial bus kind must be panel_ascii or modbus_rtu, got {kind!r}")
        limit = 99 if kind == "panel_ascii" else 247
        for address in devices:
            if not 1 <= address <= limit:
                raise ValueError(f"{kind} bus addresses must be 1..{limit}, got {address}")
        self.kind: BusKind = kind
        self.devices = dict(devices)
        self.link = Path(link) if link is not None else None
        self.rng = random.Random(0)
        self.store = ModelStore(self.devices, missing=None)
        self.requests = 0  # frames received (any address)
        self.errors = 0  # frames dropped for framing errors (bad checksum/CRC, garbage, truncation)
        self._faults: dict[int, CommFault] = {}
        self._master: int | None = None
        self._slave: int | None = None
        self._path: str | None = None
        self._decoder = FrameDecoder()
        self._framer = FramerRTU(DecodePDU(True))
        self._rtu_buf = b""
        self._rtu_last = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------------------------ lifecycle
    @property
    def endpoint(self) -> str:
        if self._path is None:
            raise RuntimeError("SerialBus: not started")
        return self._path

    async def start(self) -> None:
        if self._master is not None:
            return
        self._loop = asyncio.get_running_loop()
        master, slave = os.openpty()
        tty.setraw(slave, termios.TCSANOW)  # no echo, no CR/LF translation until the driver configures it
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self._path = os.ttyname(slave)
        if self.link is not None:
            self.link.parent.mkdir(parents=True, exist_ok=True)
            if self.link.is_symlink():
                self.link.unlink()
            elif self.link.exists():
                os.close(master)
                os.close(slave)
                self._master = self._slave = None
                raise FileExistsError(f"serial bus link {self.link} exists and is not a symlink")
            self.link.symlink_to(self._path)
        self._loop.add_reader(master, self._on_readable)
        log.info(
            "%s bus on %s%s (%d devices)",
            self.kind,
            self._path,
            f" (link {self.link})" if self.link else "",
            len(self.devices),
        )

    async def aclose(self) -> None:
        master, slave = self._master, self._slave
        self._master = self._slave = None
        if master is None:
            return
        if self._loop is not None:
            self._loop.remove_reader(master)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        os.close(master)
        if slave is not None:
            os.close(slave)
        if self.link is not None and self.link.is_symlink() and os.readlink(self.link) == self._path:
            self.link.unlink()
        log.info("%s bus on %s closed", self.kind, self._path)

    async def __aenter__(self) -> SerialBus:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ---------------------------------------------------------------------------------- comm faults
    def addresses_of(self, equipment_id: str) -> list[int]:
        found = [a for a, d in self.devices.items() if getattr(d, "id", None) == equipment_id]
        if not found:
            raise KeyError(f"{equipment_id}: not on this {self.kind} bus")
        return found

    def set_comm_fault(self, equipment_id: str, kind: str | None, **params: Any) -> None:
        apply_comm_fault(self._faults, self.addresses_of(equipment_id), kind, params)
        log.info("%s: comm fault %s %s", equipment_id, kind or "cleared", params or "")

    # -------------------------------------------------------------------------------------- receive
    def _on_readable(self) -> None:
        if self._master is None:
            return
        try:
            data = os.read(self._master, 4096)
        except BlockingIOError:
            return
        except OSError as exc:  # EIO: nobody holds the slave (cannot happen while we keep it open)
            log.warning("%s bus %s: read error %s", self.kind, self._path, exc)
            return
        if not data:
            return
        if self.kind == "panel_ascii":
            self._panel_bytes(data)
        else:
            self._rtu_bytes(data)

    def _panel_bytes(self, data: bytes) -> None:
        for item in self._decoder.feed(data):
            if isinstance(item, FrameError):
                self.errors += 1
                log.debug("%s bus: %s", self.kind, item)
                continue
            self.requests += 1
            if item.is_reply:
                continue  # another master's traffic (or our own echo): not for a device
            device = self.devices.get(item.addr)
            if device is None:
                continue
            reply = device.handle(item)
            if reply is not None:
                self._reply(item.addr, reply, checksum_at=len(reply) - 3)

    def _rtu_bytes(self, data: bytes) -> None:
        now = time.monotonic()
        if self._rtu_buf and now - self._rtu_last > RTU_GAP_S:
            self.errors += 1  # a silence ended an incomplete frame
            self._rtu_buf = b""
        self._rtu_last = now
        self._rtu_buf += data
        while self._rtu_buf:
            try:
                used, pdu = self._framer.handleFrame(self._rtu_buf, 0, 0)
            except ModbusIOException:
                used, pdu = len(self._rtu_buf), None
                self.errors += 1
            if not used:
                return  # need more bytes
            self._rtu_buf = self._rtu_buf[used:]
            if pdu is None:
                self.errors += 1
                continue
            self.requests += 1
            if pdu.dev_id in self.devices:
                self._spawn(self._rtu_answer(pdu))

    async def _rtu_answer(self, pdu: ModbusPDU) -> None:
        response = await answer(self.store, pdu)
        raw = self._framer.buildFrame(response)
        fault = self._faults.get(pdu.dev_id)
        if fault is not None and fault.kind == "corrupt" and fault.mode == "bitflip" and len(raw) > 5:
            body = bytearray(raw[:-2])  # flip a data bit (after address, function, byte count), valid CRC
            body[self.rng.randrange(3, len(body))] ^= 1 << self.rng.randrange(8)
            self._write(bytes(body) + FramerRTU.compute_CRC(bytes(body)).to_bytes(2, "big"))
            return
        self._reply(pdu.dev_id, raw, checksum_at=len(raw) - 2)

    # ----------------------------------------------------------------------------------------- send
    def _reply(self, address: int, raw: bytes, checksum_at: int) -> None:
        fault = self._faults.get(address)
        if fault is not None:
            if fault.kind in ("drop", "disconnect"):
                return
            if fault.kind == "corrupt":
                raw = self._garble(raw, checksum_at)
            elif fault.kind == "delay":
                self._spawn(self._later(fault.delay_s, raw))
                return
        self._write(raw)

    def _garble(self, raw: bytes, checksum_at: int) -> bytes:
        """Change one body byte (after the address/start byte, before the checksum): the LRC/CRC fails."""
        data = bytearray(raw)
        i = self.rng.randrange(1, max(2, checksum_at))
        if self.kind == "panel_ascii":
            data[i] = 0x3F if data[i] != 0x3F else 0x21  # stays printable: a "?" where a byte was lost
        else:
            data[i] ^= 1 << self.rng.randrange(8)
        return bytes(data)

    async def _later(self, delay_s: float, raw: bytes) -> None:
        await asyncio.sleep(delay_s)
        self._write(raw)

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _write(self, raw: bytes) -> None:
        if self._master is None:
            return
        try:
            os.write(self._master, raw)
        except OSError as exc:  # the driver stopped reading and the pty buffer is full
            log.warning("%s bus %s: write failed (%s)", self.kind, self._path, exc)
