"""The real server (`running_server`) as Sparkplug host, an edge node in this process, a real Mosquitto, the simulator.

Commands: an operator's command on a cabinet polled by the edge goes through the server's fail-safe gate (the
API, the gate, its DriverWriter) and leaves as a DCMD; the edge writes with its own Modbus driver, the simulated
cabinet takes it, the gate's read-back confirms it (done). A DCMD of a former active host (a lower epoch), one
without an epoch, one for a tag that is not writable and one for another device's tag are refused by the edge,
answered ``rejected`` with the reason, and nothing reaches the field; the server hears the refusals.

:func:`room` (the simulator, the server, the edge) is shared by test_edge_config.py, test_edge_store_full.py and
test_tls.py.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import numpy as np

from drivers.sparkplug import codec
from drivers.sparkplug.edge import EdgeNode
from drivers.sparkplug.host import NodeState
from drivers.sparkplug.topics import default_host_id, device_topic, node_topic
from scada.config import CityConfig, load_city
from scada.config.partitions import Broker
from scada.quality import Quality
from server.app import ScadaServer
from server.components.edge import EdgeComponent
from tests.edge.conftest import Mosquitto
from tests.edge.test_edge_host import partitioned
from tests.server.conftest import login, running_server
from tests.server.test_e2e import demo_field, until


@dataclass
class Room:
    sim: Any
    tags: Path
    config: CityConfig
    server: ScadaServer
    client: httpx.AsyncClient
    headers: dict[str, str]
    edge: EdgeNode
    source: str

    @property
    def component(self) -> EdgeComponent:
        comp = self.server.components["edge"]
        assert isinstance(comp, EdgeComponent)
        return comp

    def node(self, broker: Mosquitto) -> NodeState:
        return self.component.hosts[Broker.parse(self.source)].nodes["lighting"]

    def data(self) -> list[int]:
        return [self.server.tagdb.index[t] for d in self.config.partitions["lighting"].devices
                for t in self.server.config.devices[d].tags]

    def good(self) -> bool:
        return bool(np.all(self.server.tagdb.qualities[self.data()] == int(Quality.GOOD)))


@asynccontextmanager
async def room(tmp_path: Path, broker: Mosquitto, *, edge_tags: Path | None = None, max_stored: int = 1_000_000,
               settings: dict[str, Any] | None = None, source: str | None = None,
               edge_options: dict[str, Any] | None = None) -> AsyncIterator[Room]:
    """The simulator, `scada server` (in this process) with the lighting cabinets as an edge partition, and the
    edge. ``edge_tags``: the edge's own tags.yaml (default: the server's file); it reads it again on a reload.
    ``source``: the partition's broker URL (default the broker's mqtt://); ``edge_options``: EdgeNode's own."""
    source = source or broker.url
    async with demo_field(tmp_path) as (sim, tags):
        partitioned(tags, source)
        own = edge_tags or tags
        if edge_tags is not None and not edge_tags.exists():
            shutil.copy(tags, edge_tags)

        def load() -> CityConfig:
            return load_city(own, tags.parent / "alarms.yaml", endpoint_overrides=sim.endpoints)

        config = load()
        async with running_server(tmp_path / "data", endpoints=sim.endpoints, tags=tags,
                                  alarms=tags.parent / "alarms.yaml", **(settings or {})) as (server, url), \
                httpx.AsyncClient(base_url=url, timeout=60) as client:
            edge = EdgeNode(config, "lighting", Broker.parse(source), tmp_path / "edge" / "store.sqlite",
                            host_id=default_host_id(config.site), loader=load, max_stored=max_stored,
                            **(edge_options or {}))
            edge.start()
            try:
                yield Room(sim, tags, config, server, client, await login(client, "op"), edge, source)
            finally:
                await edge.aclose()


async def former_host_command(broker: Mosquitto, config: CityConfig, device: str, tag: str, value: float,
                              epoch: int | None) -> tuple[str, str]:
    """A DCMD from another MQTT client (a former active host, ``epoch`` None: no epoch at all), and the edge's
    answer (outcome, reason) as the NDATA that carries its Command/Id."""
    group, cid = config.site, f"former-{time.monotonic_ns()}"
    t = config.tag_by_name()[tag]
    raw = codec.command_request(tag, codec.DATATYPES[t.dtype], value, None, epoch=epoch if epoch is not None else 0,
                                command_id=cid, tolerance=None, timestamp_ns=time.time_ns())
    if epoch is None:  # the same DCMD without its Host/Epoch metric
        payload = codec.decode(raw)
        kept = [m for m in payload.metrics if m.name != codec.EPOCH]
        del payload.metrics[:]
        payload.metrics.extend(kept)
        raw = payload.SerializeToString()
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier=cid) as c:
        await c.subscribe(node_topic(group, "NDATA", "lighting"), qos=1)
        await c.publish(device_topic(group, "DCMD", "lighting", device), raw, qos=1)
        async with asyncio.timeout(15):
            async for message in c.messages:
                got = codec.named(codec.decode(message.payload if isinstance(message.payload, bytes) else b""))
                if got.get(codec.COMMAND_ID) == cid:
                    return str(got[codec.COMMAND_OUTCOME]), str(got[codec.COMMAND_REASON])
    raise AssertionError("no answer")


async def test_commands_through_the_gate_as_dcmd_and_the_edge_refusals(tmp_path: Path, mosquitto: Mosquitto) -> None:
    async with room(tmp_path, mosquitto) as r:
        node = r.node(mosquitto)
        await until("the edge's data good on the server", r.good, 60)
        assert r.component.epoch >= 1 and node.fingerprint == node.expected and not node.config_refused
        await until("the server's epoch announced to the edge", lambda: r.edge.epoch == r.component.epoch, 10)
        cab = next(r.config.equipment[e] for d in r.config.partitions["lighting"].devices
                   for e in r.config.devices[d].equipment)
        model = r.sim.models[cab.id]
        assert model.mode == 0 and cab.device not in r.server.poller.stats  # the server does not poll it

        # 1. an operator's command: API → gate → DriverWriter → DCMD → the edge's Modbus driver → the cabinet
        started = time.monotonic()
        res = await r.client.post("/api/v1/commands", json={"target": cab.id, "verb": "set_level",
                                                            "params": {"level": 100}, "lease_s": 8},
                                  headers=r.headers)
        took = time.monotonic() - started
        assert res.status_code == 200, res.text
        cmd = res.json()
        assert cmd["outcome"] == "done", cmd
        assert model.mode == 1 and model.override_level == 100
        assert r.edge.stats.commands >= 2 and r.edge.stats.refused == 0 and node.commands >= 2  # level, lease
        assert r.server.tagdb.read(cab.tag_name("override_level")).value == 100  # the written value, by DDATA
        print(f"set_level through the gate and the edge, written and confirmed: {took:.2f} s")
        history = (await r.client.get("/api/v1/commands", params={"equipment": cab.id},
                                      headers=r.headers)).json()["commands"]
        assert any(e.get("kind") == "outcome" for e in history), history

        # 2. refusals at the edge: nothing reaches the cabinet, the sender gets "rejected" and why
        level = f"{cab.prefix}/override_level"
        outcome, why = await former_host_command(mosquitto, r.config, cab.device, level, 7, r.component.epoch - 1)
        assert outcome == "rejected" and "stale host epoch" in why, why
        outcome, why = await former_host_command(mosquitto, r.config, cab.device, level, 7, None)
        assert outcome == "rejected" and codec.EPOCH in why, why
        outcome, why = await former_host_command(mosquitto, r.config, cab.device, f"{cab.prefix}/power", 7,
                                                 r.component.epoch)
        assert outcome == "rejected" and "allow-list" in why, why
        other = next(d for d in r.config.partitions["lighting"].devices if d != cab.device)
        outcome, why = await former_host_command(mosquitto, r.config, other, level, 7, r.component.epoch)
        assert outcome == "rejected" and f"belongs to device {cab.device}" in why, why
        assert model.override_level == 100 and r.edge.stats.refused == 4
        # the server hears the refusals of commands that were not its own (a former active host still trying)
        await until("the refusals seen by the server", lambda: node.foreign_refusals == 4, 10)
        health = (await r.client.get("/api/v1/health", headers=r.headers)).json()["subsystems"]["edge"]
        seen = health["stats"][mosquitto.url]["nodes"]["lighting"]
        assert seen["foreign_refusals"] == 4 and seen["last_refusal"]
        assert health["stats"]["host"]["epoch"] == r.component.epoch

        # the edge remembers the epoch it obeys and says it in its births (a rebirth asked by a sequence gap)
        births = node.births
        assert node.seq is not None
        node.seq = (node.seq + 5) % 256
        await until("a rebirth", lambda: node.births > births and node.online, 30)
        assert node.edge_epoch == r.component.epoch == r.edge.store.epoch()

        # 3. the command's lease ends (8 s): the cabinet goes back to its schedule (the edge refreshes nothing itself)
        await until("the cabinet back on its schedule", lambda: model.mode == 0, 30)
        await until("the server seeing it", lambda: r.server.tagdb.read(cab.tag_name("mode")).value == 0, 15)
