"""A full edge store-and-forward and the replayed history, with the real server, an edge, Mosquitto, the simulator.

The broker away, the edge's bounded store drops the oldest (counted); back, the server's ``system/edge/store_full``
alarm names the edge (its text in the journal), /health says how many; the replayed values older than live are
written into the historian with their source timestamps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from drivers.sparkplug import codec
from historian.service import Historian
from scada.config.partitions import Broker
from tests.edge.conftest import Mosquitto, assert_in_historian
from tests.edge.test_edge_commands import room
from tests.server.test_e2e import until


async def test_full_store_alarm_and_history_into_the_historian(tmp_path: Path, mosquitto: Mosquitto) -> None:
    async with room(tmp_path, mosquitto, max_stored=8, settings={"historian.backend": "embedded"}) as r:
        node = r.node(mosquitto)
        await until("the edge's data good on the server", r.good, 60)
        await until("the edge's store empty", lambda: len(r.edge.store) == 0, 30)
        # (it may have overflowed already while the server's host was starting: that is reported as well)
        dropped = r.edge.store.dropped
        await mosquitto.stop()
        await until("the edge's store full and dropping", lambda: r.edge.store.dropped > dropped, 40)
        kept = [raw for _i, _t, raw in r.edge.store.oldest(100)]
        assert len(kept) == 8  # bounded, the newest kept
        assert all(m.name for raw in kept for m in codec.decode(raw).metrics)  # by tag name: aliases are a session's
        # what the host hands to the historian (replayed values older than live): (tag, source ns, value)
        host = r.component.hosts[Broker.parse(r.source)]
        past: list[tuple[str, int, float]] = []
        to_historian = host.on_history
        assert to_historian is not None

        def seen(indices: Any, readings: Any) -> None:
            past.extend((r.server.tagdb.names[i], src, v) for i, src, v in
                        zip(indices.tolist(), readings.source_ns.tolist(), readings.values.tolist(), strict=True)
                        if v == v)  # (NaN: no value)
            to_historian(indices, readings)

        host.on_history = seen
        births = node.births
        await mosquitto.start()
        await until("a new birth", lambda: node.births > births, 30)
        await until("the store replayed", lambda: len(r.edge.store) == 0, 30)
        full = r.server.tagdb.index["system/edge/store_full"]
        alarms = (await r.client.get("/api/v1/alarms", headers=r.headers)).json()["alarms"]
        alarm = next(a for a in alarms if a["tag"] == "system/edge/store_full")  # in the list until acknowledged
        assert alarm["priority"] == 2 and alarm["state"] in ("unack", "returned_unack", "rtn_unack"), alarm
        # the journal says which edge and how much (the text of the condition when it came)
        rows = (await r.client.get("/api/v1/journal", params={"limit": 500}, headers=r.headers)).json()["entries"]
        said = [json.dumps(e) for e in rows if e["alarm"] == alarm["id"] and e["event"] == "condition_on"]
        assert any("lighting" in t and "dropped" in t for t in said), said
        assert node.dropped == r.edge.store.dropped > 0  # the count reached the server
        health = (await r.client.get("/api/v1/health", headers=r.headers)).json()["subsystems"]["edge"]
        state = health["stats"][mosquitto.url]["nodes"]["lighting"]
        assert state["dropped"] == node.dropped and state["capacity"] == 8
        await until("the alarm returns once the store is drained", lambda: r.server.tagdb.value_of(full) == "", 10)

        # the replayed values older than live: in the historian with their source timestamps
        hist = r.server.historian
        assert isinstance(hist, Historian)
        await until("history backfilled", lambda: r.component.backfilled > 0, 10)
        assert past, "no replayed value older than live"
        print(f"{len(past)} replayed values older than live, {r.component.backfilled} written into the historian")
        assert all(src < int(r.server.tagdb.source_ns[r.server.tagdb.index[name]]) + 1 for name, src, _v in past)

        await assert_in_historian(hist, past, 15, 0.5)
