"""The simulator's OPC UA server against an independent client: node-opcua (tests/peers/opcua_client.js).

The whole demo city runs (``Simulator``, real clock at speed ×1, ticking every 0.1 s), so the start-up
takes seconds, as in the demo: what a client sees of the BMS server after that::

    node-opcua client ── ONE Write of several nodes, one of them refused by the building
                      ── a subscription: the source timestamp of a fire alarm injected through the
                         simulator's control API (HTTP) against the wall time of the injection
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from scada.config import load_city
from sim.building import DEFAULT_LEASE_S, REQ_ARM, REQ_DISARM, Building
from sim.runner import Simulator
from tests.peers import NodeScript, require_node_opcua

ROOT = Path(__file__).resolve().parents[2]
BMS = "urn:city:bms"

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sim(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Simulator]:
    require_node_opcua()  # before the city starts: a missing peer costs nothing
    config = load_city(ROOT / "tags.yaml", ROOT / "alarms.yaml")
    state = tmp_path_factory.mktemp("sim-state")
    async with Simulator(config, seed=7, ports="test", state_dir=state, tick_s=0.1) as s:
        yield s


def bms_url(sim: Simulator) -> str:
    return f"opc.tcp://{sim.endpoints['opcua-bms']}{sim.plans['opcua-bms'].connection['path']}"


def buildings(sim: Simulator) -> list[str]:
    return sorted(k for k, m in sim.models.items() if isinstance(m, Building))


async def post(url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """One request to the simulator's control API (HTTP/1.1, one request per connection)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    data = json.dumps(body).encode()
    writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    assert head.split()[1] == b"200", raw
    answer: dict[str, Any] = json.loads(payload)
    return answer


async def test_a_multi_node_write_gets_one_status_per_node(sim: Simulator) -> None:
    """Defect: one bad value failed the whole Write with a ServiceFault after applying the nodes before it."""
    first, second = buildings(sim)[:2]
    sim.models[first].write("intrusion/arm_request", 0)  # both start from the building's own schedule
    sim.models[second].write("intrusion/arm_request", 0)
    items = [
        {"id": f"{first}/intrusion/arm_request", "type": "Int32", "value": REQ_DISARM},   # good
        {"id": f"{first}/intrusion/arm_lease", "type": "UInt32", "value": 70_000},        # > LEASE_MAX_S
        {"id": f"{second}/intrusion/arm_request", "type": "Int32", "value": REQ_ARM},      # good, after the bad one
        {"id": f"{second}/intrusion/armed", "type": "Boolean", "value": False},           # read-only node
        {"id": f"{second}/intrusion/arm_lease", "type": "Int32", "value": 600},           # wrong data type
    ]
    async with NodeScript("opcua_client.js", "write", bms_url(sim), BMS, json.dumps(items), "--lifetime", "30") as peer:
        answer = peer.ready
    assert "error" not in answer, answer  # the service itself succeeded: no ServiceFault
    assert answer["statuses"] == ["Good", "BadOutOfRange", "Good", "BadUserAccessDenied", "BadTypeMismatch"]
    # the good ones were applied, each refused one left as it was
    a, b = sim.models[first], sim.models[second]
    assert (a.arm_request, b.arm_request) == (REQ_DISARM, REQ_ARM)
    assert a.lease.remaining(sim.now) == pytest.approx(DEFAULT_LEASE_S, abs=2)  # not 70000: refused
    assert b.lease.remaining(sim.now) == pytest.approx(DEFAULT_LEASE_S, abs=2)  # not 600: refused
    assert answer["values"][0] == REQ_DISARM and answer["values"][2] == REQ_ARM
    assert DEFAULT_LEASE_S - 5 <= answer["values"][1] <= DEFAULT_LEASE_S  # the lease counting down, not 70000


async def test_source_timestamps_follow_the_wall_clock_of_an_injected_change(sim: Simulator) -> None:
    """Defect: the runner paired a wall time read before start-up with a monotonic time read after it,
    so every change was stamped the start-up time (seconds) before it happened."""
    assert sim.start_seconds > 0.5  # the demo city's start-up: longer than the tolerance checked below
    building = buildings(sim)[2]
    watched = f"{building}/fire/zone1"
    assert sim.control_url is not None
    async with NodeScript("opcua_client.js", "watch", bms_url(sim), BMS, watched, "--lifetime", "60") as peer:
        assert peer.ready == {"ready": True}
        first = await peer.line()
        assert first["value"] == 0 and first["status"] == "Good"
        await asyncio.sleep(0.3)
        before = time.time()
        await post(sim.control_url, "/fault", {"equipment": building, "fault": "fire_alarm", "params": {"zone": 1}})
        after = time.time()
        change = await peer.line()
        while change["value"] != 1:
            change = await peer.line()
    source = change["source_ms"] / 1000
    # stamped by the simulator's first step after the injection: never before it, at most a tick or so after
    assert before - 0.05 <= source <= after + 0.5, (before, source, after)
    assert source <= change["received_ms"] / 1000 + 0.05
    sim.clear(building, "fire_alarm")
