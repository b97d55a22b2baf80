"""Edge node and host application, in this process, through a real Mosquitto, on the simulator's field.

The demo city is split: the lighting cabinets (Modbus TCP) are an edge partition, everything else stays in
the server. The edge polls the simulator with the server's own poller and drivers and publishes Sparkplug B;
the host applies it into a tag database built as the server builds its own.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np

from drivers.sparkplug.edge import EdgeNode
from drivers.sparkplug.host import SparkplugHost
from scada.config import CityConfig, load_city
from scada.poll import LOST, OK, device_stat_tags, stat_tag_name
from scada.quality import Quality
from scada.tagdb import I64, Readings, TagDatabase
from tests.edge.conftest import Mosquitto
from tests.server.test_e2e import demo_field, until

HOST_ID = "scada-test"


def partitioned(tags: Path, source: str) -> Path:
    """The city's tags.yaml with the lighting cabinets as an edge partition consumed from ``source``."""
    text = tags.read_text()
    text += (f"\npartitions:\n  - name: lighting\n    templates: [lighting_cabinet]\n    source: {source}\n"
             "  - name: central\n    rest: true\n")
    tags.write_text(text)
    return tags


class Central:
    """What the server holds for an edge partition: its tag database and the host application feeding it."""

    def __init__(self, config: CityConfig, broker: Any) -> None:
        self.config = config
        self.db = TagDatabase([*config.tags, *device_stat_tags(config)])
        self.applied: list[int] = []
        self.history: list[tuple[str, int, float]] = []
        self.received: set[tuple[str, int]] = set()
        part = config.partitions["lighting"]
        nodes = {"lighting": {d: [*config.devices[d].tags, *(t.name for t in device_stat_tags(config, [d]))]
                              for d in part.devices}}
        # a persistent session, as the server's (server.components.edge): the broker keeps what it queued for us
        self.host = SparkplugHost(broker, HOST_ID, config.site, nodes, self.db.index, self._apply,
                                  lambda idx: self.db.source_ns[idx], client_id=f"{HOST_ID}-central")
        self.host.on_history = self._history

    def _apply(self, indices: I64, readings: Readings) -> None:
        self.applied.append(len(indices))
        self._note(indices, readings)
        self.db.apply_readings(indices, readings)

    def _history(self, indices: I64, readings: Readings) -> None:
        self._note(indices, readings)
        for i, v, src in zip(indices.tolist(), readings.values.tolist(), readings.source_ns.tolist(), strict=True):
            self.history.append((self.db.names[i], src, v))

    def _note(self, indices: I64, readings: Readings) -> None:
        """Every (tag, source time) that reached the server, live or replayed older than live."""
        for i, src in zip(indices.tolist(), readings.source_ns.tolist(), strict=True):
            self.received.add((self.db.names[i], src))


@asynccontextmanager
async def field_and_edge(tmp_path: Path, broker: Mosquitto, *, host: bool = True,
                         host_id: str | None = HOST_ID) -> AsyncIterator[tuple[Any, CityConfig, EdgeNode, Central]]:
    async with demo_field(tmp_path) as (sim, tags):
        config = load_city(partitioned(tags, broker.url), tags.parent / "alarms.yaml", endpoint_overrides=sim.endpoints)
        central = Central(config, broker.broker)
        if host:
            central.host.start()
        edge = EdgeNode(config, "lighting", broker.broker, tmp_path / "edge" / "store.sqlite", host_id=host_id)
        edge.start()
        try:
            yield sim, config, edge, central
        finally:
            await edge.aclose()
            await central.host.aclose()


def disagreements(edge: EdgeNode, central: Central) -> list[str]:
    """Every tag of the partition whose value or quality differs between the edge and the server.

    A device the edge has declared dead (DDEATH: on a loaded machine a cycle may time out) publishes nothing
    until its next birth: the server must show it lost, its data tags bad_comm; its other tags are not compared.
    """
    out = []
    skip: set[int] = set()
    node = central.host.nodes["lighting"]
    for name, dev in edge.devices.items():
        if dev.dead:
            skip.update(dev.indices.tolist())
            if node.devices[name].status != LOST:
                out.append(f"{name}: dead at the edge, {node.devices[name].status} on the server")
    for i, name in enumerate(edge.db.names):
        if i in skip:
            continue
        j = central.db.index[name]
        a, b = edge.db.value_of(i), central.db.value_of(j)
        qa, qb = int(edge.db.qualities[i]), int(central.db.qualities[j])
        same = a == b or (isinstance(a, float) and isinstance(b, float) and math.isclose(a, b, rel_tol=1e-12))
        if not same or qa != qb:
            out.append(f"{name}: edge {a!r} ({Quality(qa).label}) vs server {b!r} ({Quality(qb).label})")
    return out


async def test_edge_and_server_agree_on_every_value_of_the_partition(tmp_path: Path, mosquitto: Mosquitto) -> None:
    async with field_and_edge(tmp_path, mosquitto) as (_sim, config, edge, central):
        devices = config.partitions["lighting"].devices
        assert devices and all(config.devices[d].protocol == "modbus_tcp" for d in devices)
        await until("the edge's devices read", lambda: all(s.status == OK for s in edge.poller.stats.values()), 30)
        # the cabinets' tags good on the server, through the broker
        data_tags = [central.db.index[t] for d in devices for t in config.devices[d].tags]
        await until("the partition's tags good on the server",
                    lambda: bool(np.all(central.db.qualities[data_tags] == int(Quality.GOOD))), 30)
        # every value and quality the same on both sides (values move: wait for one consistent instant)
        await until("edge and server agree", lambda: not disagreements(edge, central), 20, every=0.05)
        node = central.host.nodes["lighting"]
        assert node.online and node.births >= 1 and node.seq_gaps == 0 and node.unknown_metrics == 0
        assert all(ds.status == OK for ds in node.devices.values())
        assert edge.status()["published"] > len(devices)  # births, then data by exception
        # the server's devices outside the partition were never touched by the host
        outside = [central.db.index[t.name] for t in config.tags if t.device not in devices]
        assert bool(np.all(central.db.receive_ns[outside] == 0))


async def test_rebirth_request_and_sequence_gap(tmp_path: Path, mosquitto: Mosquitto) -> None:
    async with field_and_edge(tmp_path, mosquitto) as (_sim, _config, edge, central):
        await until("first birth", lambda: central.host.nodes["lighting"].births >= 1, 30)
        await until("edge and server agree", lambda: not disagreements(edge, central), 30, every=0.05)
        node = central.host.nodes["lighting"]
        births = node.births
        # a gap: the host's idea of the sequence is off by one → it asks for a rebirth, the edge answers with one
        assert node.seq is not None
        node.seq = (node.seq + 5) % 256
        await until("a rebirth after the gap", lambda: node.births > births, 30)
        assert node.seq_gaps >= 1 and node.rebirths_asked >= 1 and edge.stats.rebirth_requests >= 1
        await until("edge and server agree again", lambda: not disagreements(edge, central), 20, every=0.05)


async def test_device_death_marks_its_tags_bad_comm(tmp_path: Path, mosquitto: Mosquitto) -> None:
    async with field_and_edge(tmp_path, mosquitto) as (sim, config, edge, central):
        await until("edge and server agree", lambda: not disagreements(edge, central), 40, every=0.05)
        device = config.partitions["lighting"].devices[0]
        node = central.host.nodes["lighting"]
        cab = config.devices[device].equipment[0]
        await sim.comm_fault(cab, "drop")
        await until(f"{device} lost at the edge", lambda: edge.poller.stats[device].status == LOST, 20)
        await until(f"{device} DDEATH at the server", lambda: node.devices[device].status == LOST, 10)
        tags = [central.db.index[t] for t in config.devices[device].tags]
        assert bool(np.all(central.db.qualities[tags] == int(Quality.BAD_COMM)))
        status = central.db.read(stat_tag_name(device, "status"))  # as the poller's own status tag says it
        assert status.value == LOST and status.quality is Quality.GOOD
        # back: a DBIRTH, the tags good again
        await sim.comm_fault(cab, None)
        await until(f"{device} reborn at the server", lambda: node.devices[device].status == OK, 30)
        await until("its tags good again", lambda: bool(np.all(central.db.qualities[tags] == int(Quality.GOOD))), 10)
