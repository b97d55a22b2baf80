"""ModbusGateway over real TCP: pymodbus AsyncModbusTcpClient and Debian's mbpoll against the models."""

from __future__ import annotations

import asyncio
import random
import re
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusIOException

from sim.bollard import CMD_LOWER, CMD_RAISE, DOWN, UP, Bollard
from sim.lighting import MODE_OVERRIDE, MODE_SCHEDULE, PARIS, LightingCabinet
from sim.modbus_server import ModbusGateway
from tests.peers import require_peer

NIGHT = datetime(2026, 12, 21, 23, 0, tzinfo=PARIS).timestamp()
MBPOLL = shutil.which("mbpoll") or "/usr/bin/mbpoll"


@dataclass
class Rig:
    gw: ModbusGateway
    cab: LightingCabinet
    cab2: LightingCabinet
    bollard: Bollard
    host: str
    port: int
    now: float = NIGHT

    def step(self, dt: float) -> None:
        self.now += dt
        for model in (self.cab, self.cab2, self.bollard):
            model.step(self.now)

    def client(self, timeout: float = 1.0) -> AsyncModbusTcpClient:
        return AsyncModbusTcpClient(self.host, port=self.port, timeout=timeout, retries=0)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    cab = LightingCabinet("C0001", 30, rng=random.Random(1), nominal_w=100.0)
    cab2 = LightingCabinet("C0002", 4, rng=random.Random(2), nominal_w=60.0)
    bollard = Bollard("BL01", passages_per_hour=0.0, rng=random.Random(3))
    for model in (cab, cab2, bollard):
        model.step(NIGHT)
    gw = ModbusGateway({1: cab, 2: cab2, 13: bollard})
    await gw.start()
    host, port = gw.endpoint.split(":")
    try:
        yield Rig(gw, cab, cab2, bollard, host, int(port))
    finally:
        await gw.aclose()


async def test_endpoint_is_os_assigned_and_unit_ids_are_checked() -> None:
    gw = ModbusGateway({})
    with pytest.raises(RuntimeError):
        _ = gw.endpoint
    await gw.start()
    try:
        host, port = gw.endpoint.split(":")
        assert host == "127.0.0.1" and int(port) > 0
    finally:
        await gw.aclose()
    with pytest.raises(ValueError):
        ModbusGateway({0: Bollard("x")})


async def test_reads_serve_the_live_register_maps(rig: Rig) -> None:
    rig.cab.inject("lamp_failure", index=2)
    async with rig.client() as c:
        di = await c.read_discrete_inputs(0, count=3, device_id=1)
        assert di.bits[:3] == [True, True, False]
        ir = await c.read_input_registers(0, count=8, device_id=1)
        assert ir.registers[:2] == [30, 1] and ir.registers[6:] == [70, MODE_SCHEDULE]
        power = c.convert_from_registers(ir.registers[2:4], c.DATATYPE.FLOAT32)
        energy = c.convert_from_registers(ir.registers[4:6], c.DATATYPE.FLOAT32)
        assert power == pytest.approx(29 * 70.0) and energy == pytest.approx(rig.cab.energy, rel=1e-6)
        lamps = await c.read_input_registers(100, count=120, device_id=1)
        assert lamps.registers[0:3] == [70, 0, 700] and lamps.registers[4:7] == [70, 1, 0]
        hr = await c.read_holding_registers(0, count=3, device_id=1)
        assert hr.registers == [100, 0, 0]
        # the other cabinet and the bollard are separate units on the same gateway
        assert (await c.read_input_registers(0, count=1, device_id=2)).registers == [4]
        assert (await c.read_input_registers(0, count=1, device_id=13)).registers == [UP]
        assert (await c.read_discrete_inputs(0, count=2, device_id=13)).bits[:2] == [False, False]
        # values are read from the model at request time
        rig.step(3600)  # 00:00 → 50 %
        assert (await c.read_input_registers(6, count=1, device_id=1)).registers == [50]


async def test_write_override_then_lease_expiry(rig: Rig) -> None:
    async with rig.client() as c:
        rr = await c.write_registers(0, [85, 30, 1], device_id=1)
        assert not rr.isError()
        assert rig.cab.mode == MODE_OVERRIDE and rig.cab.levels[0] == 85
        assert (await c.read_input_registers(7, count=1, device_id=1)).registers == [MODE_OVERRIDE]
        rig.step(10)
        assert (await c.read_holding_registers(0, count=3, device_id=1)).registers == [85, 20, 1]
        rr = await c.write_register(2, 2, device_id=1)  # heartbeat
        assert not rr.isError()
        rig.step(20)
        assert (await c.read_holding_registers(1, count=1, device_id=1)).registers == [0]
        assert (await c.read_input_registers(6, count=2, device_id=1)).registers == [70, MODE_SCHEDULE]
        # bollard: lower with a lease
        assert not (await c.write_registers(0, [CMD_LOWER, 60, 1], device_id=13)).isError()
        rig.step(5)
        assert (await c.read_input_registers(0, count=1, device_id=13)).registers == [DOWN]


@pytest.mark.parametrize(
    ("unit", "address", "values", "code"),
    [
        (1, 0, [150], 3),  # override level out of range: ILLEGAL DATA VALUE
        (1, 0, [101, 60, 1], 3),
        (1, 0, [0, 600, 1], 3),  # off at night: refused
        (1, 3, [1], 2),  # not in the map: ILLEGAL DATA ADDRESS
        (13, 0, [7], 3),
        (99, 0, [1], 11),  # nobody behind the gateway: GATEWAY TARGET FAILED TO RESPOND
    ],
)
async def test_refused_writes_answer_exceptions(
    rig: Rig, unit: int, address: int, values: list[int], code: int
) -> None:
    before = rig.cab.modbus_read("hr", 0, 3)
    async with rig.client() as c:
        rr = await (
            c.write_register(address, values[0], device_id=unit)
            if len(values) == 1
            else c.write_registers(address, values, device_id=unit)
        )
        assert rr.isError() and rr.exception_code == code
    assert rig.cab.modbus_read("hr", 0, 3) == before


async def test_bollard_interlock_and_fault_over_modbus(rig: Rig) -> None:
    async with rig.client() as c:
        await c.write_registers(0, [CMD_LOWER, 60, 1], device_id=13)
        rig.step(5)
        rig.bollard.inject("presence")
        assert (await c.read_discrete_inputs(0, count=1, device_id=13)).bits[0] is True
        rr = await c.write_registers(0, [CMD_RAISE, 60, 2], device_id=13)
        assert rr.isError() and rr.exception_code == 3  # a raise is refused while a vehicle is on the loop
        rig.bollard.clear("presence")
        rig.bollard.inject("bollard_fault")
        rr = await c.write_registers(0, [CMD_RAISE, 60, 3], device_id=13)
        assert rr.isError() and rr.exception_code == 4
        assert (await c.read_input_registers(99, count=1, device_id=13)).exception_code == 2


async def test_comm_faults(rig: Rig) -> None:
    async def read(unit: int, timeout: float = 0.4) -> list[int] | None:
        async with rig.client(timeout=timeout) as c:
            try:
                rr = await c.read_input_registers(0, count=2, device_id=unit)
            except ModbusIOException:
                return None
            return None if rr.isError() else list(rr.registers)

    assert await read(1) == [30, 0]
    rig.gw.set_comm_fault("C0001", "drop")
    t0 = time.perf_counter()
    assert await read(1) is None and time.perf_counter() - t0 >= 0.35
    assert await read(2) == [4, 0]  # the other units on the gateway still answer
    rig.gw.set_comm_fault("C0001", "delay", delay_s=0.25)
    t0 = time.perf_counter()
    assert await read(1, timeout=1.0) == [30, 0]
    assert time.perf_counter() - t0 >= 0.25
    rig.gw.set_comm_fault("C0001", "corrupt")
    assert await read(1) is None
    rig.gw.set_comm_fault("C0001", "disconnect")
    assert await read(1) is None
    rig.gw.set_comm_fault("C0001", None)
    assert await read(1) == [30, 0]
    with pytest.raises(KeyError):
        rig.gw.set_comm_fault("nope", "drop")
    with pytest.raises(ValueError):
        rig.gw.set_comm_fault("C0001", "teleport")
    with pytest.raises(ValueError):
        rig.gw.set_comm_fault("C0001", "delay", delay_s=-1)


async def test_corrupt_bitflip_gives_a_wrong_but_valid_answer(rig: Rig) -> None:
    rig.gw.set_comm_fault("C0002", "corrupt", mode="bitflip")
    async with rig.client() as c:
        rr = await c.read_input_registers(100, count=16, device_id=2)
        assert not rr.isError() and rr.registers != rig.cab2.modbus_read("ir", 100, 16)


async def _mbpoll(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        MBPOLL, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=10)
    return proc.returncode or 0, out.decode(errors="replace")


def _values(out: str) -> dict[int, int]:
    return {int(m[1]): int(m[2]) for m in re.finditer(r"^\[(\d+)\]:\s+(-?\d+)", out, re.MULTILINE)}


async def test_mbpoll_reads_and_writes(rig: Rig) -> None:
    require_peer("mbpoll", "Debian package mbpoll")
    base = ["-m", "tcp", "-p", str(rig.port), "-0", "-1"]
    rc, out = await _mbpoll(*base, "-a", "1", "-t", "3", "-r", "0", "-c", "8", rig.host)
    assert rc == 0, out
    values = _values(out)
    assert [values[i] for i in range(8)] == rig.cab.modbus_read("ir", 0, 8)
    rc, out = await _mbpoll(*base, "-a", "1", "-t", "3:float", "-B", "-r", "2", "-c", "1", rig.host)
    assert rc == 0 and re.search(r"\[2\]:\s+2100\b", out), out  # 30 × 100 W × 70 %
    rc, out = await _mbpoll(*base, "-a", "13", "-t", "1", "-r", "0", "-c", "2", rig.host)
    assert rc == 0 and _values(out) == {0: 0, 1: 0}, out
    # write: override 75 % for 300 s with a heartbeat, then the model shows it
    rc, out = await _mbpoll(*base, "-a", "1", "-t", "4", "-r", "0", rig.host, "75", "300", "1")
    assert rc == 0 and "Written 3 references" in out, out
    assert rig.cab.mode == MODE_OVERRIDE and rig.cab.levels == [75] * 30
    rc, out = await _mbpoll(*base, "-a", "1", "-t", "4", "-r", "0", "-c", "3", rig.host)
    assert _values(out) == {0: 75, 1: 300, 2: 1}, out
    # an out-of-range level is refused by the cabinet, mbpoll reports it
    rc, out = await _mbpoll(*base, "-a", "1", "-t", "4", "-r", "0", rig.host, "175")
    assert rc != 0 and "Illegal data value" in out, out
    assert rig.cab.levels[0] == 75
