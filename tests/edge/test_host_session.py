"""The host's side of "no message lost at a broker's stop" (docs/sparkplug.md), through a real Mosquitto.

    a test client plays the edge ``lighting``: NBIRTH, DBIRTH, DDATA X (live) ──► applied once
        X again, replayed as history (another seq: its PUBACK was lost)           ──► dropped (a duplicate)
        X again with the same seq (the broker redelivering it)                    ──► dropped, no rebirth asked
        Y                                                                         ──► applied
    the broker restarted (persistent) while the host is cut off, the edge's session queued for the host
        ──► delivered to its persistent session when it is back, handed to the historian, not applied live
"""

from __future__ import annotations

import time
from pathlib import Path

import aiomqtt
import numpy as np

from drivers.sparkplug import codec
from drivers.sparkplug.topics import device_topic, node_topic
from scada.config import load_city
from tests.edge.conftest import Mosquitto
from tests.edge.test_edge_host import Central, partitioned
from tests.server.test_e2e import fast_city, until


class PlayedEdge:
    """Sparkplug messages of edge node ``lighting``, one device, built with the product's codec."""

    def __init__(self, central: Central, group: str) -> None:
        self.group = group
        node = central.host.nodes["lighting"]
        self.device = next(iter(node.devices))
        ds = node.devices[self.device]
        self.defs = [codec.MetricDef.of(central.config.tag_by_name()[central.db.names[i]], k)
                     for k, i in enumerate(ds.data.tolist())]
        self.numeric = [d for d in self.defs if d.datatype == codec.DATATYPES["float"]][:2]  # what DDATA carry
        assert len(self.numeric) == 2
        self.seq = 0

    def birth(self, now: int) -> list[tuple[str, bytes]]:
        nbirth = codec.encode_node([codec.node_metric_bd_seq(0, now), codec.node_metric_rebirth(now)],
                                   timestamp_ns=now, seq=0)
        n = len(self.defs)
        dbirth = codec.build_metrics(self.defs, np.zeros(n), np.zeros(n, dtype=np.uint8),
                                     np.full(n, now, dtype=np.int64), {}, timestamp_ns=now, seq=1, birth=True)
        self.seq = 1
        return [(node_topic(self.group, "NBIRTH", "lighting"), nbirth),
                (device_topic(self.group, "DBIRTH", "lighting", self.device), dbirth.SerializeToString())]

    def data(self, value: float, src: int) -> tuple[str, bytes]:
        """A live DDATA of the two numeric tags, the next seq."""
        self.seq = (self.seq + 1) % 256
        payload = codec.build_metrics(self.numeric, np.full(2, value), np.zeros(2, dtype=np.uint8),
                                      np.full(2, src, dtype=np.int64), {}, timestamp_ns=src, seq=self.seq)
        return device_topic(self.group, "DDATA", "lighting", self.device), payload.SerializeToString()


async def test_a_message_sent_again_is_applied_once(tmp_path: Path, mosquitto: Mosquitto) -> None:
    config = load_city(partitioned(fast_city(tmp_path), mosquitto.url))
    central = Central(config, mosquitto.broker)
    central.host.start()
    edge = PlayedEdge(central, config.site)
    node = central.host.nodes["lighting"]
    try:
        await until("the host online", lambda: central.host.connected, 10)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="played-edge") as client:
            now = time.time_ns()
            for topic, raw in edge.birth(now):
                await client.publish(topic, raw, qos=1)
            await until("born", lambda: node.online and node.seq == 1, 10)
            applied = len(central.applied)
            x = edge.data(41.0, now + 1_000_000)
            await client.publish(*x, qos=1)
            await until("X applied", lambda: len(central.applied) == applied + 1, 10)
            # X replayed as history (its PUBACK lost: the edge's store sends it again, with the next seq)
            topic, raw = x
            stored = codec.decode(raw)
            names = [d.name for d in edge.defs]  # (the edge's alias → tag name)
            again = codec.replayed(codec.for_store(stored, names), edge.seq + 1, {n: k for k, n in enumerate(names)})[0]
            edge.seq += 1
            await client.publish(topic, again, qos=1)
            await until("the replayed copy seen", lambda: node.duplicates == 1, 10)
            # the broker redelivering the last message (same seq)
            await client.publish(topic, again, qos=1)
            await until("the redelivered copy seen", lambda: node.duplicates == 2, 10)
            y = edge.data(420.0, now + 2_000_000)
            await client.publish(*y, qos=1)
            await until("Y applied", lambda: len(central.applied) == applied + 2, 10)
        assert central.history == []  # X's copies never reached the historian either
        assert node.seq_gaps == 0 and node.rebirths_asked == 0
        assert central.db.read(edge.numeric[0].name).value == 420.0
    finally:
        await central.host.aclose()


async def test_queued_for_the_host_across_a_broker_restart(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """The host's connection is cut (another connection under its client id) while the played edge goes on
    publishing; the broker restarts (its database) before the host is back: the host's persistent session delivers
    what was queued, handed to the historian in order, not applied live (the tags stay bad_comm until a birth)."""
    config = load_city(partitioned(fast_city(tmp_path), mosquitto.url))
    central = Central(config, mosquitto.broker)
    central.host.start()
    edge = PlayedEdge(central, config.site)
    node = central.host.nodes["lighting"]
    try:
        await until("the host online", lambda: central.host.connected, 10)
        now = time.time_ns()
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="played-edge") as client:
            for topic, raw in edge.birth(now):
                await client.publish(topic, raw, qos=1)
            await until("born", lambda: node.online and node.seq == 1, 10)
            # cut off: the broker closes a client's connection when another connects under its id (the session kept)
            assert central.host.client_id is not None
            async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier=central.host.client_id,
                                      clean_session=False):
                await until("the host cut off", lambda: not central.host.connected, 10, every=0.01)
                allowed = False
                central.host.active = lambda: allowed  # kept off the broker until we say (as a pair's standby)
            assert not node.online and node.seq == 1  # its seq and aliases kept (the broker connection lost)
            sent = [edge.data(100.0 * v, now + v * 1_000_000) for v in range(1, 6)]
            for topic, raw in sent:
                await client.publish(topic, raw, qos=1)  # acknowledged by the broker: queued for the host's session
        await mosquitto.stop()  # a clean stop: Mosquitto writes its database (queued messages included)
        await mosquitto.start()
        allowed = True
        await until("the queued messages delivered", lambda: node.suspended == 5, 15)
        assert [v for n, _src, v in central.history if n == edge.numeric[0].name] == [100.0, 200.0, 300.0, 400.0,
                                                                                      500.0]
        assert node.seq_gaps == 0 and not node.online
        assert central.db.read(edge.numeric[0].name).value != 500.0  # history, not live
    finally:
        await central.host.aclose()
