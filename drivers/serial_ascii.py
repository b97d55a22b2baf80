"""Info-panel bus driver: the panel ASCII protocol (drivers.panel_framing) over a serial port.

    connection: {port: /dev/ttyUSB0, baudrate: 9600, bytesize: 8, parity: N, stopbits: 1}
    tags:       address = field (MSG, STATUS, BRIGHT), unit = the panel's bus address (01..99)

One driver (so one poll task) per bus. The port is opened with pyserial-asyncio-fast; a reader task
feeds every received byte to a FrameDecoder and queues what comes out (frames and framing errors)::

    master (this driver)                         panels on the RS-485 line
    ── @03RD MSG STATUS BRIGHT*cs ──────────────▶  only panel 03 answers
    ◀───────────── #03RD MSG=... STATUS=0 BRIGHT=80*cs ──

    per panel (one request at a time, half duplex):
      stale input is discarded before the request (a late answer to a timed-out request must not
      be taken for this one); then wait ≤ device.timeout_s for the reply from that address:
        reply RD       → GOOD samples (STATUS outside its enum → bad_device)
        reply NK       → bad_device (unknown field → bad_config)
        bad checksum / malformed frame from that address → garbled answer: bad_comm for that
                         panel at once (an unreadable frame of unknown origin only ends the wait
                         as bad_comm if no good answer follows before the timeout)
        garbage bytes, truncated frames, other addresses → skipped: the decoder resynchronises on
                         the next start byte and the wait goes on
        nothing        → bad_comm for that panel; the other panels are still polled
      the port itself failing (unplugged adapter, closed pty) → every point bad_comm, not connected

write(MSG) sends ``@aaWR MSG=<text>``, checks the WR reply (the text now displayed), then reads MSG
back with RD and compares. Only the fail-safe command gate may call write().
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Sequence

import serial_asyncio_fast

from drivers.base import Driver, DriverContext, describe, engineering
from drivers.panel_framing import (
    FIELDS,
    MSG_MAX_CHARS,
    BadChecksum,
    Command,
    Frame,
    FrameDecoder,
    FrameError,
    MalformedFrame,
    NakCode,
    read_request,
    write_request,
)
from scada.config.model import DeviceDef, TagDef
from scada.errors import CommError, DeviceError, WriteNotAllowed
from scada.quality import Quality, Sample, Value

log = logging.getLogger(__name__)


class _Garbled(Exception):
    """The reply from the addressed panel arrived unreadable (checksum/grammar)."""


class PanelBusDriver(Driver):
    protocol = "serial_ascii"

    def __init__(self, device: DeviceDef, context: DriverContext | None = None) -> None:
        super().__init__(device, context)
        conn = device.connection
        self.port = str(conn.get("port"))
        self.baudrate = int(conn.get("baudrate", 9600))
        self.default_address = int(conn.get("unit", 1) or 1)
        self.framing_errors = 0
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._rx_task: asyncio.Task[None] | None = None
        self._queue: asyncio.Queue[Frame | FrameError | None] = asyncio.Queue()
        self._decoder = FrameDecoder()
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------------ connection
    async def connect(self) -> None:
        await self._close_port()
        conn = self.device.connection
        try:
            reader, writer = await asyncio.wait_for(serial_asyncio_fast.open_serial_connection(
                url=self.port, baudrate=self.baudrate, bytesize=int(conn.get("bytesize", 8)),
                parity=str(conn.get("parity", "N")), stopbits=int(conn.get("stopbits", 1))), self.device.timeout_s * 4)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - pyserial raises undocumented exceptions: translated to DriverError at the boundary
            raise self.fail(CommError(f"{self.name}: cannot open {self.port}: {describe(exc)}")) from None
        self._reader, self._writer = reader, writer
        self._decoder = FrameDecoder()
        self._queue = asyncio.Queue()
        self._rx_task = asyncio.create_task(self._receive(reader), name=f"serial-rx:{self.name}")
        self._connected = True

    async def _receive(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                chunk = await reader.read(4096)
                if not chunk:
                    break
                for item in self._decoder.feed(chunk):
                    self._queue.put_nowait(item)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever ends the reader ends the port: recorded as a CommError, requests woken
            self.last_error = CommError(f"{self.name}: {self.port}: {describe(exc)}")
        finally:
            self._connected = False
            self._queue.put_nowait(None)  # wake a waiting request: the port is gone

    async def _close_port(self) -> None:
        self._connected = False
        task, self._rx_task = self._rx_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        writer, self._writer = self._writer, None
        self._reader = None
        if writer is not None:
            with contextlib.suppress(Exception):  # closing a port that is already gone must not raise
                writer.close()

    async def aclose(self) -> None:
        await self._close_port()

    # ------------------------------------------------------------------ one transaction
    def _discard_stale(self) -> None:
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is None:
                self._queue.put_nowait(None)
                return

    async def _transact(self, address: int, request: bytes) -> Frame:
        """Send ``request`` and return the reply of panel ``address`` (CommError / _Garbled otherwise)."""
        writer = self._writer
        if writer is None or not self._connected:
            raise CommError(f"{self.name}: {self.port} is not open")
        self._discard_stale()
        self.requests += 1
        try:
            writer.write(request)
            await writer.drain()
        except Exception as exc:  # noqa: BLE001 - a closed transport raises more than OSError: translated to CommError here
            self._connected = False
            raise CommError(f"{self.name}: {self.port}: write failed: {describe(exc)}") from None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.device.timeout_s
        garbled: FrameError | None = None
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                if garbled is not None:
                    raise _Garbled(f"{self.name}: panel {address:02d}: garbled answer ({garbled.detail})")
                raise CommError(f"{self.name}: panel {address:02d}: no answer within {self.device.timeout_s:g} s")
            try:
                item = await asyncio.wait_for(self._queue.get(), remaining)
            except TimeoutError:
                continue
            if item is None:
                self._queue.put_nowait(None)
                raise CommError(f"{self.name}: {self.port} closed")
            if isinstance(item, FrameError):
                self.framing_errors += 1
                if isinstance(item, BadChecksum | MalformedFrame):
                    garbled = item
                    head = item.raw[1:3]
                    if item.raw[:1] == b"#" and head.isdigit() and int(head) == address:
                        raise _Garbled(f"{self.name}: panel {address:02d}: garbled answer ({item.detail})")
                continue  # noise, truncated or unreadable frames: resynchronise on the next start byte
            if not item.is_reply or item.addr != address:
                continue  # our own echo, or a late answer of another panel
            return item

    # ------------------------------------------------------------------ read
    async def read(self, points: Sequence[TagDef]) -> list[Sample]:
        if not self._connected:
            return self.all_bad(points)
        by_address: dict[int, list[int]] = defaultdict(list)
        out: list[Sample | None] = [None] * len(points)
        for i, p in enumerate(points):
            if p.address not in FIELDS:
                out[i] = Sample.bad(Quality.BAD_CONFIG)
                continue
            by_address[p.unit if p.unit is not None else self.default_address].append(i)
        async with self._lock:
            for address, indices in by_address.items():
                if not self._connected:
                    break
                fields = list(dict.fromkeys(points[i].address for i in indices))
                try:
                    reply = await self._transact(address, read_request(address, fields))
                except (_Garbled, CommError) as exc:
                    self.last_error = CommError(str(exc))
                    continue  # this panel's points stay bad_comm
                self._fill(points, indices, reply, out)
        bad = Sample.bad(Quality.BAD_COMM)
        return [s if s is not None else bad for s in out]

    def _fill(self, points: Sequence[TagDef], indices: list[int], reply: Frame, out: list[Sample | None]) -> None:
        now = time.time_ns()
        if reply.command == Command.NAK:
            code = reply.nak
            self.last_error = DeviceError(f"{self.name}: panel {reply.addr:02d} refused: "
                                          f"{code.name if code else 'NAK'} {reply.nak_field or ''}".rstrip())
            for i in indices:
                q = Quality.BAD_CONFIG if code is NakCode.UNKNOWN_FIELD and reply.nak_field in (
                    None, points[i].address) else Quality.BAD_DEVICE
                out[i] = Sample(None, q, now, now)
            return
        for i in indices:
            raw = reply.value(points[i].address)
            if raw is None:
                out[i] = Sample(None, Quality.BAD_DEVICE, now, now)
                continue
            value, quality = engineering(points[i], raw)
            out[i] = Sample(value, quality, now, now)

    # ------------------------------------------------------------------ write
    async def write(self, point: TagDef, value: Value, *, tolerance: float | None = None) -> Sample:
        """Write MSG and read it back. Only the fail-safe command gate may call this."""
        self.check_writable(point)
        spec = FIELDS.get(point.address)
        if spec is None or not spec.writable:
            raise WriteNotAllowed(f"{point.name}: panel field {point.address} is not writable")
        text = "" if value is None else str(value)
        if len(text) > MSG_MAX_CHARS:
            raise WriteNotAllowed(f"{point.name}: {len(text)} characters, a panel shows at most {MSG_MAX_CHARS}")
        address = point.unit if point.unit is not None else self.default_address
        if not self._connected:
            raise self.fail(CommError(f"{self.name}: {self.port} is not open"))
        async with self._lock:
            try:
                reply = await self._transact(address, write_request(address, text))
                if reply.command == Command.NAK:
                    code = reply.nak
                    raise self.fail(DeviceError(f"{point.name}: panel {address:02d} refused the write "
                                                f"({code.name if code else 'NAK'})"))
                back = await self._transact(address, read_request(address, [point.address]))
            except _Garbled as exc:
                raise self.fail(CommError(str(exc))) from None
            except CommError as exc:
                raise self.fail(exc) from None
        out: list[Sample | None] = [None]
        self._fill([point], [0], back, out)
        if out[0] is None:  # _fill answers every index it is given; say so loudly if that ever changes
            raise self.fail(DeviceError(f"{point.name}: the read-back after the write decoded to nothing"))
        return self.confirm(point, text, out[0], tolerance)


__all__ = ["PanelBusDriver"]
