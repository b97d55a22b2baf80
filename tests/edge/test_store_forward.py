"""Store-and-forward: the primary host or the broker away, the edge stores; back, it replays in order.

Zero values lost (every change the edge's tag database made reaches the server, live or as history), the
replay in order per tag, and the live values, not the replayed ones, on the server afterwards.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np

from drivers.sparkplug.edge import EdgeNode
from scada.quality import Quality
from tests.edge.conftest import Mosquitto
from tests.edge.test_edge_host import Central, disagreements, field_and_edge
from tests.server.test_e2e import until


class EdgeRecorder:
    """Every change the edge's tag database made while recording: (tag, source time in ms as on the wire)."""

    def __init__(self, edge: EdgeNode) -> None:
        self.edge = edge
        self.changes: list[tuple[str, int]] = []
        self.unsubscribe = edge.db.subscribe(self._record)

    def _record(self, event: Any) -> None:
        names = self.edge.db.names
        self.changes.extend((names[i], src // 1_000_000 * 1_000_000)
                            for i, src in zip(event.indices.tolist(), event.source_ns.tolist(), strict=True))


def assert_none_lost(recorder: EdgeRecorder, central: Central) -> None:
    """Zero loss: every change the edge made reached the server, live or replayed, the instant the broker stopped
    included (a message the broker acknowledged is in its database and the host's persistent session; one it did
    not is in the edge's store; one the host had received is handled before it marks the node lost)."""
    lost = [c for c in recorder.changes if c not in central.received]
    assert not lost, f"{len(lost)} of {len(recorder.changes)} changes lost, e.g. {lost[:5]}"


async def outage_then_replay(edge: EdgeNode, central: Central, outage: Any, back: Any, seconds: float) -> None:
    """Agree, record at the edge, ``outage()`` for ``seconds``, ``back()``; then: zero values lost, the replay
    in order per tag, and the live values (not the replayed ones) on the server."""
    await until("first birth", lambda: central.host.nodes["lighting"].births >= 1, 30)
    await until("edge and server agree", lambda: not disagreements(edge, central), 20, every=0.05)
    recorder = EdgeRecorder(edge)
    await outage()
    await until("the edge stores", lambda: edge.stats.stored > 0, seconds + 5)
    await asyncio.sleep(seconds)
    await back()
    await until("the store replayed", lambda: edge.stats.replayed >= edge.stats.stored and len(edge.store) == 0, 30)
    node = central.host.nodes["lighting"]
    await until("the backlog reported empty", lambda: node.backlog == 0, 10)
    await until("edge and server agree after the replay", lambda: not disagreements(edge, central), 20, every=0.05)
    recorder.unsubscribe()
    assert edge.stats.stored > 0 and node.historical >= edge.stats.replayed > 0
    assert_none_lost(recorder, central)
    # order kept: the replayed values of each tag arrived oldest first
    by_tag: dict[str, list[int]] = {}
    for name, src, _v in central.history:
        by_tag.setdefault(name, []).append(src)
    assert central.history and all(ts == sorted(ts) for ts in by_tag.values())


async def test_host_offline_buffers_then_replays_in_order_without_overwriting_live(tmp_path: Path,
                                                                                   mosquitto: Mosquitto) -> None:
    """The primary host's STATE goes offline: the edge stores; back online: births (live), then the history."""
    async with field_and_edge(tmp_path, mosquitto) as (_sim, _config, edge, central):
        async def back() -> None:
            central.host.start()

        async def offline() -> None:
            await central.host.aclose()

        await outage_then_replay(edge, central, offline, back, 3)


async def test_broker_down_10s_buffered_replayed_zero_loss(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """The broker itself goes away for 10 s: both sides lose it, the edge stores, everything is replayed."""
    async with field_and_edge(tmp_path, mosquitto) as (_sim, config, edge, central):
        async def down() -> None:
            await mosquitto.stop()
            node = central.host.nodes["lighting"]
            # the room is blind to the partition meanwhile: its tags bad_comm on the server
            await until("the partition bad_comm on the server", lambda: not node.online, 10)
            tags = [central.db.index[t] for d in config.partitions["lighting"].devices
                    for t in config.devices[d].tags]
            assert bool(np.all(central.db.qualities[tags] == int(Quality.BAD_COMM)))

        await outage_then_replay(edge, central, down, mosquitto.start, 10)
        assert edge.stats.sessions >= 2 and central.host.nodes["lighting"].births >= 2


async def test_broker_stopped_with_a_message_in_flight_three_times_zero_loss(tmp_path: Path,
                                                                             mosquitto: Mosquitto) -> None:
    """The instant that used to lose data: the broker stopped while the edge has a message on its way (queued,
    sent or not yet acknowledged), three times in a row; every change the edge made reaches the server."""
    async with field_and_edge(tmp_path, mosquitto) as (_sim, _config, edge, central):
        await until("first birth", lambda: central.host.nodes["lighting"].births >= 1, 30)
        await until("edge and server agree", lambda: not disagreements(edge, central), 20, every=0.05)
        node = central.host.nodes["lighting"]
        recorder = EdgeRecorder(edge)
        in_flight = []
        for _ in range(3):
            births = node.births
            await until("a message on its way", lambda: bool(edge.queue) and edge.client is not None
                        and node.online, 20, every=0.001)
            in_flight.append(len(edge.queue))
            await mosquitto.stop()
            await asyncio.sleep(0.5)
            await mosquitto.start()
            await until("born again", lambda: node.births > births, 30)  # noqa: B023 - awaited in this iteration
            await until("the store replayed", lambda: len(edge.store) == 0 and node.backlog == 0, 30)
        await until("edge and server agree after the replays", lambda: not disagreements(edge, central), 20,
                    every=0.05)
        recorder.unsubscribe()
        assert_none_lost(recorder, central)
        print(f"3 stops with {in_flight} messages on their way: {len(recorder.changes)} changes, none lost; "
              f"duplicates dropped {node.duplicates}, delivered after the restart {node.suspended}")
