"""The server as Sparkplug host with a real edge process (`scada edge`), a real Mosquitto and the simulator.

The lighting cabinets are an edge partition: the server does not poll them, it applies what the edge
publishes. ``kill -9`` of the edge: the broker publishes its NDEATH will, the cabinets' tags go bad_comm and
their comm-loss alarms rise within a scan period + 2 s; the edge restarted: a new birth, the tags good, the
alarms clear. /health shows the edge node.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import numpy as np

from scada.alarms.system import BY_KEY, rule_name
from scada.config import load_city
from scada.quality import Quality
from server.components.edge import EdgeComponent
from tests.edge.conftest import Mosquitto
from tests.edge.test_edge_host import partitioned
from tests.server.conftest import login, running_server
from tests.server.test_e2e import demo_field, until

SCADA = [sys.executable, "-m", "cli"]


@asynccontextmanager
async def edge_process(tags: Path, endpoints: Path, store: Path, log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """`scada edge` for the lighting partition (bounded: killed at exit if still running)."""
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            *SCADA, "edge", "--config", str(tags), "--partition", "lighting", "--endpoints", str(endpoints),
            "--store", str(store), "--duration", "120", stdout=out, stderr=out, cwd=Path(__file__).parents[2],
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_kill_edge_comm_loss_then_restart_rebirth(tmp_path: Path, mosquitto: Mosquitto) -> None:
    async with demo_field(tmp_path) as (sim, tags):
        partitioned(tags, mosquitto.url)
        config = load_city(tags, tags.parent / "alarms.yaml", endpoint_overrides=sim.endpoints)
        devices = config.partitions["lighting"].devices
        endpoints = tmp_path / "endpoints.json"
        endpoints.write_text(json.dumps(sim.endpoints))
        store, log = tmp_path / "edge" / "forward.sqlite", tmp_path / "edge.log"
        async with running_server(tmp_path / "data", endpoints=sim.endpoints, tags=tags,
                                  alarms=tags.parent / "alarms.yaml") as (server, url), \
                httpx.AsyncClient(base_url=url, timeout=60) as c:
            h = await login(c, "op")
            cfg = server.config
            assert not set(devices) & set(server.poller.stats)  # the server does not poll the edge's devices
            data = [server.tagdb.index[t] for d in devices for t in cfg.devices[d].tags]
            comm = BY_KEY[("poll", "comm_lost")]
            cabinets = [cfg.equipment[e] for d in devices for e in cfg.devices[d].equipment]
            alarm_ids = {f"{rule_name(comm, e.template)}:{e.tag_name('poll/comm_lost')}" for e in cabinets}

            async def active_comm_loss() -> set[str]:
                alarms = (await c.get("/api/v1/alarms", headers=h)).json()["alarms"]
                return {a["id"] for a in alarms if a["active"] and a["id"] in alarm_ids}

            def good() -> bool:
                return bool(np.all(server.tagdb.qualities[data] == int(Quality.GOOD)))

            async with edge_process(tags, endpoints, store, log) as proc:
                try:
                    await until("the edge's data good on the server", good, 60)
                except AssertionError:
                    raise AssertionError(log.read_text()[-3000:]) from None
                await until("edge status ok", lambda: server.status("edge").status == "ok", 10)
                health = (await c.get("/api/v1/health", headers=h)).json()["subsystems"]["edge"]
                node = health["stats"][mosquitto.url]["nodes"]["lighting"]
                assert health["status"] == "ok" and node["online"] and node["births"] >= 1, health
                assert node["seq_gaps"] == 0 and node["last_birth_ms"] > 0 and "backlog" in node
                await asyncio.sleep(3)  # past the comm watch's grace (two scan periods)
                assert not await active_comm_loss()

                os.kill(proc.pid, signal.SIGKILL)
                killed = time.monotonic()
                await until("bad_comm", lambda: bool(np.all(server.tagdb.qualities[data] == int(Quality.BAD_COMM))),
                            10, every=0.05)
                to_bad = time.monotonic() - killed

                async def all_raised() -> bool:
                    return await active_comm_loss() == alarm_ids

                await until("a comm-loss alarm per cabinet", all_raised, 10, every=0.1)
                to_alarm = time.monotonic() - killed
            scan = max(cfg.devices[d].period_s for d in devices)
            assert to_bad < scan + 2 and to_alarm < scan + 2, (to_bad, to_alarm)
            assert server.status("edge").status == "degraded"

            component = server.components["edge"]
            assert isinstance(component, EdgeComponent)
            node_state = component.hosts[mosquitto.broker].nodes["lighting"]
            births = node_state.births
            async with edge_process(tags, endpoints, store, log):
                await until("a rebirth", lambda: node_state.births > births, 60)
                await until("the tags good again", good, 30)

                async def cleared() -> bool:
                    return not await active_comm_loss()

                await until("the comm-loss alarms cleared", cleared, 15, every=0.2)
                await until("edge status ok", lambda: server.status("edge").status == "ok", 10)
    print(f"kill -9 → bad_comm {to_bad:.2f} s, comm-loss alarms {to_alarm:.2f} s (scan {scan:g} s)")
