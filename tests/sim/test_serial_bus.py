"""SerialBus on a real pty: pyserial client speaking the panel protocol, pymodbus/mbpoll speaking Modbus RTU."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import serial
from pymodbus.client import AsyncModbusSerialClient
from pymodbus.exceptions import ModbusIOException

from drivers.panel_framing import (
    BadChecksum,
    Frame,
    FrameDecoder,
    NakCode,
    parse_frame,
    read_request,
    write_request,
)
from sim.panel import InfoPanel
from sim.parking import ParkingCounter
from sim.serial_server import SerialBus
from tests.peers import require_peer

T0 = 1_790_000_000.0


def transact(path: str, request: bytes, timeout: float = 0.3, chunks: int = 1) -> bytes:
    """One request/answer with pyserial (blocking: run it in a thread)."""
    with serial.Serial(path, 9600, timeout=timeout) as port:
        port.reset_input_buffer()  # a late answer to an earlier request must not pass for this one
        step = max(1, len(request) // chunks)
        for i in range(0, len(request), step):
            port.write(request[i : i + step])
            port.flush()
            if chunks > 1:
                time.sleep(0.005)
        return bytes(port.read_until(b"\r"))


@pytest.fixture
async def panels(tmp_path: Path) -> AsyncIterator[tuple[SerialBus, dict[int, InfoPanel]]]:
    devices = {a: InfoPanel(f"P0{a}", a, message=f"Panneau {a}") for a in (1, 2, 5)}
    for p in devices.values():
        p.step(T0)
    bus = SerialBus("panel_ascii", devices, link=tmp_path / "scada-sim" / "panels-bus-1")
    await bus.start()
    try:
        yield bus, devices
    finally:
        await bus.aclose()


async def ask(bus: SerialBus, request: bytes, **kw: float) -> bytes:
    return await asyncio.to_thread(transact, bus.endpoint, request, **kw)


async def test_pty_endpoint_and_link(tmp_path: Path) -> None:
    link = tmp_path / "bus"
    bus = SerialBus("panel_ascii", {}, link=link)
    with pytest.raises(RuntimeError):
        _ = bus.endpoint
    await bus.start()
    assert bus.endpoint.startswith("/dev/pts/") and link.resolve() == Path(bus.endpoint)
    await bus.aclose()
    assert not link.exists() and not link.is_symlink()
    with pytest.raises(ValueError):
        SerialBus("panel_ascii", {100: InfoPanel("x", 1)})
    with pytest.raises(ValueError):
        SerialBus("can_bus", {})  # type: ignore[arg-type]


async def test_panel_read_and_write_through_the_link(panels: tuple[SerialBus, dict[int, InfoPanel]]) -> None:
    bus, devices = panels
    assert bus.link is not None
    link = str(bus.link)
    reply = parse_frame(await asyncio.to_thread(transact, link, read_request(2)))
    assert reply.addr == 2 and reply.typed_values() == {
        "MSG": "Panneau 2",
        "STATUS": 0,
        "BRIGHT": devices[2].brightness,
    }
    text = "Travaux rue de la Liberté : déviation"
    reply = parse_frame(await ask(bus, write_request(5, text)))
    assert reply.command == "WR" and reply.value("MSG") == text
    assert devices[5].message == text and devices[1].message == "Panneau 1"
    assert parse_frame(await ask(bus, read_request(5, ["MSG"]))).value("MSG") == text
    # a request written in small pieces is reassembled by the device's decoder
    assert parse_frame(await ask(bus, read_request(1), chunks=6)).value("MSG") == "Panneau 1"
    refused = parse_frame(await ask(bus, bytes(Frame(False, 1, "WR", (("BRIGHT", "5"),)).encode())))
    assert refused.nak is NakCode.READ_ONLY


async def test_silence_for_absent_addresses_and_bad_frames(panels: tuple[SerialBus, dict[int, InfoPanel]]) -> None:
    bus, _ = panels
    assert await ask(bus, read_request(9)) == b""  # nobody at address 9
    corrupted = read_request(1)[:-3] + b"00\r"
    assert await ask(bus, corrupted) == b""  # bad checksum: not answered
    assert await ask(bus, b"garbage\x00\xff" + read_request(1)) != b""  # resync on the start byte
    assert bus.errors >= 2


async def test_panel_comm_faults(panels: tuple[SerialBus, dict[int, InfoPanel]]) -> None:
    bus, _ = panels
    bus.set_comm_fault("P01", "drop")
    assert await ask(bus, read_request(1)) == b""
    assert await ask(bus, read_request(2)) != b""  # the other panels still answer
    bus.set_comm_fault("P01", "corrupt")
    out = FrameDecoder().feed(await ask(bus, read_request(1)))
    assert len(out) == 1 and isinstance(out[0], BadChecksum)
    bus.set_comm_fault("P01", "delay", delay_s=0.3)
    t0 = time.perf_counter()
    assert await ask(bus, read_request(1), timeout=1.0) != b""
    assert time.perf_counter() - t0 >= 0.3
    assert await ask(bus, read_request(1), timeout=0.15) == b""  # the master gave up before the answer
    await asyncio.sleep(0.25)  # the late answer lands in the input buffer; the next request flushes it
    bus.set_comm_fault("P01", "disconnect")
    assert await ask(bus, read_request(1)) == b""
    bus.set_comm_fault("P01", None)
    assert parse_frame(await ask(bus, read_request(1))).addr == 1
    with pytest.raises(KeyError):
        bus.set_comm_fault("P09", "drop")


@pytest.fixture
async def parking_bus(tmp_path: Path) -> AsyncIterator[tuple[SerialBus, dict[int, ParkingCounter]]]:
    devices = {u: ParkingCounter(f"PK0{u}", 40 * u, rng=random.Random(u)) for u in (1, 2)}
    for d in devices.values():
        d.step(T0)
    bus = SerialBus("modbus_rtu", devices, link=tmp_path / "parking-bus-1")
    await bus.start()
    try:
        yield bus, devices
    finally:
        await bus.aclose()


async def test_modbus_rtu_read_with_pymodbus(parking_bus: tuple[SerialBus, dict[int, ParkingCounter]]) -> None:
    bus, devices = parking_bus
    async with AsyncModbusSerialClient(bus.endpoint, baudrate=19200, timeout=0.4, retries=0) as c:
        for unit, model in devices.items():
            rr = await c.read_input_registers(0, count=3, device_id=unit)
            assert not rr.isError() and rr.registers == [model.capacity, model.occupied, model.overstays]
        rr = await c.read_input_registers(0, count=4, device_id=1)
        assert rr.isError() and rr.exception_code == 2
        rr = await c.write_register(0, 1, device_id=1)
        assert rr.isError() and rr.exception_code == 2  # nothing writable on a counter
        bus.set_comm_fault("PK01", "corrupt")
        with pytest.raises(ModbusIOException):
            await c.read_input_registers(0, count=3, device_id=1)  # CRC error → no valid answer
        bus.set_comm_fault("PK01", "corrupt", mode="bitflip")
        rr = await c.read_input_registers(0, count=3, device_id=1)
        assert not rr.isError() and rr.registers != devices[1].modbus_read("ir", 0, 3)
        bus.set_comm_fault("PK01", None)
        with pytest.raises(ModbusIOException):
            await c.read_input_registers(0, count=3, device_id=7)  # absent unit: silence
        rr = await c.read_input_registers(1, count=1, device_id=2)
        assert rr.registers == [devices[2].occupied]


async def test_mbpoll_reads_rtu_over_the_pty(parking_bus: tuple[SerialBus, dict[int, ParkingCounter]]) -> None:
    require_peer("mbpoll", "Debian package mbpoll")
    bus, devices = parking_bus
    proc = await asyncio.create_subprocess_exec(
        "mbpoll", "-m", "rtu", "-b", "19200", "-P", "none", "-a", "2", "-0", "-t", "3", "-r", "0", "-c", "3", "-1",
        bus.endpoint, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=10)
    text = out.decode()
    assert proc.returncode == 0, text
    assert f"[0]: \t{devices[2].capacity}" in text and f"[1]: \t{devices[2].occupied}" in text
