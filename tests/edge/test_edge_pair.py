"""A failover pair as the Sparkplug host: two real servers (in-process, tests/ha's pair) on a real etcd, a real
Mosquitto, an edge node in this process and the simulator.

    main room (active) ── STATE online t1, epoch 2**32 + r1 ──► edge: born to it, obeys r1
    failover room (standby) ── off the broker: no STATE, no will, no NCMD
    switchover ─► main room: STATE offline t1 (older: the edge ignores it), off the broker
                  failover room: the key won at revision r2 > r1 ─► STATE online t2 > t1 ─► the edge born again,
                  obeys 2**32 + r2 ─► its command reaches the field; a DCMD of the former epoch is refused
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import numpy as np

from drivers.sparkplug.edge import EdgeNode
from drivers.sparkplug.topics import default_host_id, state_topic
from scada.config import load_city
from scada.quality import Quality
from server.components.edge import PAIR_EPOCH_BASE, EdgeComponent
from tests.edge.conftest import Mosquitto
from tests.edge.test_edge_commands import former_host_command
from tests.edge.test_edge_host import partitioned
from tests.ha.conftest import EtcdCluster
from tests.ha.test_pair import command, pair
from tests.server.conftest import login
from tests.server.test_e2e import demo_field, until


@contextlib.asynccontextmanager
async def state_watch(broker: Mosquitto, host_id: str) -> AsyncIterator[list[tuple[bool, int]]]:
    """Every STATE message on the host's topic, in order, as (online, timestamp)."""
    seen: list[tuple[bool, int]] = []

    async def watch() -> None:
        async with aiomqtt.Client("127.0.0.1", broker.port, identifier="state-watch") as c:
            await c.subscribe(state_topic(host_id), qos=1)
            async for m in c.messages:
                got = json.loads(m.payload if isinstance(m.payload, bytes) else b"{}")
                seen.append((bool(got["online"]), int(got["timestamp"])))

    task = asyncio.create_task(watch())
    try:
        yield seen
    finally:
        task.cancel()
        await asyncio.wait({task})


async def retained_state(broker: Mosquitto, host_id: str) -> tuple[bool, int]:
    """The STATE a newly connecting edge reads (the retained one)."""
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="state-late") as c:
        await c.subscribe(state_topic(host_id), qos=1)
        async with asyncio.timeout(5):
            async for m in c.messages:
                got = json.loads(m.payload if isinstance(m.payload, bytes) else b"{}")
                return bool(got["online"]), int(got["timestamp"])
    raise AssertionError("no retained STATE")


async def test_pair_only_the_active_is_the_host_and_the_epoch_rises_at_takeover(tmp_path: Path,
                                                                                 mosquitto: Mosquitto) -> None:
    etcd = EtcdCluster(tmp_path, 1).start()
    try:
        async with demo_field(tmp_path) as (sim, tags):
            partitioned(tags, mosquitto.url)
            config = load_city(tags, tags.parent / "alarms.yaml", endpoint_overrides=sim.endpoints)
            host_id = default_host_id(config.site)
            cab = next(config.equipment[e] for d in config.partitions["lighting"].devices
                       for e in config.devices[d].equipment)
            model = sim.models[cab.id]
            async with state_watch(mosquitto, host_id) as states, \
                    pair(tmp_path, etcd, sim, tags) as ((a, ca), (b, cb)):
                ea, eb = a.components["edge"], b.components["edge"]
                assert isinstance(ea, EdgeComponent) and isinstance(eb, EdgeComponent)
                edge = EdgeNode(config, "lighting", mosquitto.broker, tmp_path / "edge" / "store.sqlite",
                                host_id=host_id)
                edge.start()
                try:
                    data = [a.tagdb.index[t] for d in config.partitions["lighting"].devices
                            for t in config.devices[d].tags]

                    # 1. the main room is the primary host: its term's epoch, obeyed by the edge; the standby silent
                    await until("the main room's epoch obeyed", lambda: ea.primary and edge.epoch == ea.epoch, 30)
                    epoch_a = ea.epoch
                    assert epoch_a > PAIR_EPOCH_BASE and eb.epoch == 0 and not eb.primary
                    await until("the edge's data good on the main room",
                                lambda: bool(np.all(a.tagdb.qualities[data] == int(Quality.GOOD))), 30)
                    host_a = next(iter(ea.hosts.values()))
                    assert not any(h.connected for h in eb.hosts.values())  # off the broker
                    assert states and all(s == (True, host_a.session_ms) for s in states), states
                    ha_, hb_ = await login(ca, "op"), await login(cb, "op")
                    await until("the main room writing", lambda: a.components["ha"].may_write(), 20)  # type: ignore[attr-defined]
                    r = await command(ca, ha_, cab.id, 100)
                    assert r.status_code == 200 and r.json()["outcome"] == "done", r.text
                    assert model.override_level == 100

                    # 2. switchover: the main room says offline (older) and leaves; the failover room takes over
                    r = await ca.post("/api/v1/ha/switchover", headers=await login(ca, "sup"))
                    assert r.status_code == 200, r.text
                    await until("the failover room's epoch obeyed", lambda: eb.primary and edge.epoch == eb.epoch, 40)
                    host_b = next(iter(eb.hosts.values()))
                    assert eb.epoch > epoch_a and host_b.session_ms > host_a.session_ms
                    await until("the main room off the broker", lambda: not host_a.connected, 10)
                    assert not ea.primary
                    assert (False, host_a.session_ms) in states and (True, host_b.session_ms) in states, states
                    assert edge.stats.host_online  # the main room's offline was older than the failover room's online
                    assert await retained_state(mosquitto, host_id) == (True, host_b.session_ms)
                    await until("the edge's data good on the failover room",
                                lambda: bool(np.all(b.tagdb.qualities[data] == int(Quality.GOOD))), 30)

                    # 3. the new active commands the field through the edge; the former active's epoch is refused
                    await until("the failover room writing", lambda: b.components["ha"].may_write(), 20)  # type: ignore[attr-defined]
                    r = await command(cb, hb_, cab.id, 30)
                    assert r.status_code == 200 and r.json()["outcome"] == "done", r.text
                    assert model.override_level == 30
                    outcome, why = await former_host_command(mosquitto, config, cab.device,
                                                             f"{cab.prefix}/override_level", 7, epoch_a)
                    assert outcome == "rejected" and "stale host epoch" in why, why
                    assert model.override_level == 30
                    health = (await cb.get("/api/v1/health", headers=hb_)).json()["subsystems"]["edge"]
                    assert health["stats"]["host"]["epoch"] == eb.epoch and health["stats"]["host"]["primary"]
                    standby = (await ca.get("/api/v1/health", headers=ha_)).json()["subsystems"]["edge"]
                    assert standby["status"] == "ok" and "standby" in standby["detail"], standby
                finally:
                    await edge.aclose()
    finally:
        etcd.stop()
