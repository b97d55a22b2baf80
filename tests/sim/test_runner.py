"""The Simulator in-process on the demo city (port 0): endpoints.json, one read per protocol, faults, scenarios.

One simulator is shared by the module (starting the two OPC UA servers costs ~4 s); every test touches its
own equipment. The clock is manual (``autostep=False``): time moves only through ``advance()``, so
everything here is deterministic for the seed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from asyncua import Client, ua

from scada.config import load_city
from sim.runner import MODEL_CLASSES, Simulator, plan_endpoints
from sim.scenarios import load_scenario

ROOT = Path(__file__).resolve().parents[2]
START = dt.datetime(2026, 2, 10, 10, 0, tzinfo=dt.UTC).timestamp()  # a Tuesday, 11:00 in Dijon

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sim(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Simulator]:
    config = load_city(ROOT / "tags.yaml", ROOT / "alarms.yaml")
    state = tmp_path_factory.mktemp("sim-state")
    async with Simulator(config, seed=7, ports="test", state_dir=state, start_time=START, autostep=False) as s:
        yield s


async def http(url: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    data = json.dumps(body).encode() if body is not None else b""
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload)


async def opcua_read(sim: Simulator, endpoint: str, ns: str, node: str) -> Any:
    url = f"opc.tcp://{sim.endpoints[endpoint]}{sim.plans[endpoint].connection['path']}"
    async with Client(url, timeout=5) as client:
        idx = await client.get_namespace_index(ns)
        return await client.get_node(ua.NodeId(node, idx)).read_value()


async def test_plan_endpoints_groups_equipment_by_logical_endpoint() -> None:
    config = load_city(ROOT / "tags.yaml")
    plans = plan_endpoints(config)
    assert set(plans) == {"snmp-traffic", "snmp-cctv", "modbus-1", "opcua-bms", "opcua-fleet", "panels-bus-1",
                          "parking-bus-1"}
    assert plans["opcua-bms"].protocol == "opcua" and plans["opcua-bms"].connection["path"] == "/city/bms"
    assert plans["opcua-fleet"].address == "127.0.0.1:14841"
    assert sorted(plans["modbus-1"].equipment)[:2] == ["BL01", "BL02"]
    assert len(plans["snmp-traffic"].equipment) == 24
    assert plans["panels-bus-1"].address == "/tmp/scada-sim/panels-bus-1"


async def test_endpoints_json_is_what_load_city_takes(sim: Simulator) -> None:
    written = json.loads((sim.state_dir / "endpoints.json").read_text())
    assert written == sim.endpoints
    assert {"opcua-bms", "opcua-fleet"} <= set(written)
    for name, address in written.items():
        if not address.startswith("/"):
            host, port = address.split(":")
            assert host == "127.0.0.1" and int(port) > 0, name
    overridden = load_city(ROOT / "tags.yaml", ROOT / "alarms.yaml", endpoint_overrides=written)
    assert overridden.devices["bms-1"].connection["port"] == sim.servers["opcua-bms"].port
    control = json.loads((sim.state_dir / "control.json").read_text())
    assert control["url"] == sim.control_url and control["seed"] == 7
    # everything the config describes is either served or reported as skipped
    for plan in sim.plans.values():
        assert plan.name in sim.endpoints or plan.name in sim.skipped


async def test_models_follow_the_simulation_clock(sim: Simulator) -> None:
    assert sim.now == START
    before = sim.models["V001"].values()
    await sim.advance(1800)
    assert sim.now == START + 1800
    assert sim.models["V001"]._t == START + 1800
    assert sim.models["V001"].values() != before or sim.models["V001"].values()["status"] == 2


async def test_opcua_servers_answer_and_follow_injected_faults(sim: Simulator) -> None:
    assert await opcua_read(sim, "opcua-bms", "urn:city:bms", "B002/fire/zone1") == 0
    sim.inject("B002", "fire_alarm", zone=1)
    await sim.advance(1)
    assert await opcua_read(sim, "opcua-bms", "urn:city:bms", "B002/fire/zone1") == 1
    sim.clear("B002", "fire_alarm")
    await sim.advance(1)
    assert await opcua_read(sim, "opcua-bms", "urn:city:bms", "B002/fire/zone1") == 0
    team = await opcua_read(sim, "opcua-fleet", "urn:city:fleet", "V002/team")
    assert team == sim.models["V002"].team
    await sim.comm_fault("B002", "drop")
    with pytest.raises(ua.UaStatusCodeError):
        await opcua_read(sim, "opcua-bms", "urn:city:bms", "B002/fire/zone1")
    await sim.comm_fault("B002", None)
    await sim.advance(1)
    assert await opcua_read(sim, "opcua-bms", "urn:city:bms", "B002/fire/zone1") == 0
    with pytest.raises(KeyError, match="unknown equipment"):
        sim.inject("B999", "fire_alarm")


async def test_snmp_agent_answers(sim: Simulator) -> None:
    if "snmp-traffic" not in sim.endpoints:
        pytest.skip("sim.snmp_agent not available")
    from pysnmp.hlapi.v3arch.asyncio import (
        CommunityData,
        ContextData,
        ObjectIdentity,
        ObjectType,
        SnmpEngine,
        UdpTransportTarget,
        get_cmd,
    )

    host, port = sim.endpoints["snmp-traffic"].split(":")
    engine = SnmpEngine()
    target = await UdpTransportTarget.create((host, int(port)), timeout=2, retries=1)
    err, status, _, vbs = await get_cmd(engine, CommunityData("public-J003", mpModel=1), target, ContextData(),
                                        ObjectType(ObjectIdentity("1.3.6.1.4.1.1206.4.2.1.3.6.0")),
                                        lookupMib=False)
    engine.close_dispatcher()
    assert err is None and not status
    assert int(vbs[0][1]) in range(1, 9)  # unitFlashStatus


async def test_modbus_gateway_answers(sim: Simulator) -> None:
    if "modbus-1" not in sim.endpoints:
        pytest.skip("sim.modbus_server not available")
    from pymodbus.client import AsyncModbusTcpClient

    host, port = sim.endpoints["modbus-1"].split(":")
    client = AsyncModbusTcpClient(host, port=int(port), timeout=2)
    await client.connect()
    try:
        unit = sim.config.equipment["C0001"].params["unit"]
        rr = await client.read_input_registers(0, count=1, device_id=unit)
        assert not rr.isError()
        assert rr.registers[0] == sim.config.equipment["C0001"].params["luminaires"]
    finally:
        client.close()


async def test_panel_bus_answers(sim: Simulator) -> None:
    if "panels-bus-1" not in sim.endpoints:
        pytest.skip("sim.serial_server not available")
    import serial  # type: ignore[import-untyped]

    from drivers.panel_framing import FrameDecoder, read_request

    path = sim.endpoints["panels-bus-1"]
    assert os.path.exists(path)
    unit = sim.config.equipment["P01"].params["unit"]

    def exchange() -> list[Any]:
        with serial.Serial(path, 9600, timeout=1.0) as port:
            port.write(read_request(unit))
            decoder = FrameDecoder()
            frames: list[Any] = []
            while not frames:
                chunk = port.read_until(b"\r")
                if not chunk:
                    break
                frames = [f for f in decoder.feed(chunk) if not isinstance(f, Exception)]
            return frames

    frames = await asyncio.to_thread(exchange)
    assert frames and frames[0].value("STATUS") is not None


async def test_parking_bus_answers(sim: Simulator) -> None:
    if "parking-bus-1" not in sim.endpoints:
        pytest.skip("sim.serial_server not available")
    from pymodbus.client import AsyncModbusSerialClient

    client = AsyncModbusSerialClient(sim.endpoints["parking-bus-1"], baudrate=19200, timeout=1)
    await client.connect()
    try:
        unit = sim.config.equipment["PK01"].params["unit"]
        rr = await client.read_input_registers(0, count=3, device_id=unit)
        assert not rr.isError()
        assert rr.registers[0] > 0  # capacity
    finally:
        client.close()


async def test_control_api(sim: Simulator) -> None:
    assert sim.control_url is not None
    status, body = await http(sim.control_url, "GET", "/status")
    assert status == 200 and body["seed"] == 7 and body["endpoints"] == sim.endpoints
    status, body = await http(sim.control_url, "POST", "/fault",
                              {"equipment": "B005", "fault": "fire_alarm", "params": {"zone": 1}})
    assert status == 200 and body == {"ok": True, "equipment": ["B005"]}
    assert sim.models["B005"].values()["fire/zone1"] == 1
    status, body = await http(sim.control_url, "GET", "/equipment/B005")
    assert status == 200 and body["values"]["fire/zone1"] == 1 and body["endpoint"] == sim.endpoints["opcua-bms"]
    status, body = await http(sim.control_url, "POST", "/clear", {"equipment": ["B005"], "fault": "fire_alarm"})
    assert status == 200 and sim.models["B005"].values()["fire/zone1"] == 0
    status, body = await http(sim.control_url, "POST", "/comm", {"equipment": "B005", "kind": "corrupt"})
    assert status == 200
    status, body = await http(sim.control_url, "POST", "/comm", {"equipment": "B005", "kind": None})
    assert status == 200
    now = sim.now
    status, body = await http(sim.control_url, "POST", "/advance", {"seconds": 60})
    assert status == 200 and body["sim_time"] == now + 60
    # errors are answers, not crashes
    assert (await http(sim.control_url, "POST", "/fault", {"equipment": "B005", "fault": "flood"}))[0] == 400
    assert (await http(sim.control_url, "POST", "/fault", {"equipment": "B999", "fault": "fire_alarm"}))[0] == 404
    assert (await http(sim.control_url, "POST", "/fault", {"fault": "fire_alarm"}))[0] == 400
    assert (await http(sim.control_url, "GET", "/nothing"))[0] == 404
    assert (await http(sim.control_url, "POST", "/comm", {"equipment": "B005", "kind": "cut"}))[0] == 400


async def test_a_scenario_drives_faults_at_their_offsets(sim: Simulator, tmp_path: Path) -> None:
    path = tmp_path / "fire.yaml"
    path.write_text(
        "name: test_fire\n"
        "actions:\n"
        "  - {at: 30s, do: inject, fault: fire_alarm, equipment: B007, params: {zone: 2}}\n"
        "  - {at: 45s, do: inject, fault: dispatch, select: {template: vehicle, near: B007, count: 1},"
        " params: {to: B007}}\n"
        "  - {at: 1min, do: comm_fault, kind: drop, equipment: B008}\n"
        "  - {at: 5min, do: clear, fault: fire_alarm, equipment: B007}\n"
        "  - {at: 6min, do: clear_comm, equipment: B008}\n",
        encoding="utf-8")
    scenario = load_scenario(path, sim.config)
    assert sim.play(scenario) == 5
    await sim.advance(29)
    assert sim.models["B007"].values()["fire/zone2"] == 0
    await sim.advance(2)
    assert sim.models["B007"].values()["fire/zone2"] == 1
    assert await opcua_read(sim, "opcua-bms", "urn:city:bms", "B007/fire/zone2") == 1
    await sim.advance(40)  # t+71 s: the nearest vehicle is on its way, B008 has dropped off
    nearest = scenario.resolve(sim.config, sim.seed)[1].equipment
    assert len(nearest) == 1 and sim.models[nearest[0]].values()["status"] == 1  # busy
    with pytest.raises(ua.UaStatusCodeError):
        await opcua_read(sim, "opcua-bms", "urn:city:bms", "B008/intrusion/armed")
    assert sim.pending_actions == 2
    await sim.advance(600)
    await sim.wait_scenario(1.0)
    assert sim.pending_actions == 0
    assert sim.models["B007"].values()["fire/zone2"] == 0
    assert await opcua_read(sim, "opcua-bms", "urn:city:bms", "B008/intrusion/armed") in (True, False)


async def test_shipped_scenarios_run_against_the_demo_city(sim: Simulator) -> None:
    scenario = load_scenario("storm", sim.config)
    sim.play(scenario)
    await sim.advance(scenario.duration_s + 1)
    assert sim.pending_actions == 0
    assert sim.step_errors == 0


async def test_model_classes_cover_every_template() -> None:
    config = load_city(ROOT / "tags.yaml")
    assert set(MODEL_CLASSES) == set(config.templates)


async def test_autostep_clock_runs_accelerated(tmp_path: Path) -> None:
    config = load_city(ROOT / "tags.yaml")
    # only the vehicles: the cheapest server to start
    config.equipment = {k: v for k, v in config.equipment.items() if v.template == "vehicle"}
    async with Simulator(config, seed=1, speed=600, ports="test", state_dir=tmp_path, start_time=START,
                         tick_s=0.05, control_port=None) as s:
        assert set(s.endpoints) == {"opcua-fleet"} and s.control_url is None
        await asyncio.sleep(0.5)
        assert s.steps >= 3
        assert START + 100 < s.now < START + 600  # ~0.5 s × 600
