"""The broker down 60 s under the real server (embedded historian), an edge, Mosquitto and the simulator (slow step).

    broker stopped ──► the server: the partition's tags bad_comm, a comm-loss alarm per cabinet
                   ──► the edge: every change stored (SQLite), 60 s of them
    broker back    ──► births (live), then the store replayed oldest first (is_historical)
                   ──► every change the edge made reached the server (applied live, or older than live and handed
                       to the historian), in order per tag; each of those in the historian at its source time;
                       the tags good and the comm-loss alarms cleared right after
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from historian.service import Historian
from scada.alarms.system import BY_KEY, rule_name
from scada.config.partitions import Broker
from tests.edge.conftest import Mosquitto, assert_in_historian
from tests.edge.test_edge_commands import room
from tests.edge.test_store_forward import EdgeRecorder
from tests.server.test_e2e import until

OUTAGE_S = 60


@pytest.mark.slow
async def test_broker_down_60s_zero_loss_order_history_and_alarms(tmp_path: Path) -> None:
    async with Mosquitto(tmp_path / "broker", lifetime_s=300) as mosquitto, \
            room(tmp_path, mosquitto, settings={"historian.backend": "embedded"}) as r:
        node = r.node(mosquitto)
        host = r.component.hosts[Broker.parse(r.source)]
        await until("the edge's data good on the server", r.good, 60)
        await until("the edge's store empty", lambda: len(r.edge.store) == 0, 30)
        cabinets = [r.config.equipment[e] for d in r.config.partitions["lighting"].devices
                    for e in r.config.devices[d].equipment]
        comm = BY_KEY[("poll", "comm_lost")]
        alarm_ids = {f"{rule_name(comm, e.template)}:{e.tag_name('poll/comm_lost')}" for e in cabinets}

        async def active_comm_loss() -> set[str]:
            alarms = (await r.client.get("/api/v1/alarms", headers=r.headers)).json()["alarms"]
            return {a["id"] for a in alarms if a["active"] and a["id"] in alarm_ids}

        # what reaches the server's host: applied live (tag, source ms) and handed to the historian (in order)
        names = r.server.tagdb.names
        received: set[tuple[str, int]] = set()
        history: list[tuple[str, int, float]] = []
        apply, to_historian = host.apply, host.on_history
        assert to_historian is not None

        def seen_live(indices: Any, readings: Any) -> None:
            received.update((names[i], src // 1_000_000 * 1_000_000)
                            for i, src in zip(indices.tolist(), readings.source_ns.tolist(), strict=True))
            apply(indices, readings)

        def seen_past(indices: Any, readings: Any) -> None:
            for i, src, v in zip(indices.tolist(), readings.source_ns.tolist(), readings.values.tolist(), strict=True):
                received.add((names[i], src // 1_000_000 * 1_000_000))
                history.append((names[i], src, v))
            to_historian(indices, readings)

        host.apply, host.on_history = seen_live, seen_past
        recorder = EdgeRecorder(r.edge)
        await mosquitto.stop()
        await until("the partition bad_comm on the server", lambda: not node.online, 10)

        async def all_raised() -> bool:
            return await active_comm_loss() == alarm_ids

        await until("a comm-loss alarm per cabinet", all_raised, 15, every=0.2)
        await until("the edge stores", lambda: r.edge.stats.stored > 0, 15)
        await asyncio.sleep(OUTAGE_S)
        stored = r.edge.stats.stored
        births = node.births
        await mosquitto.start()
        back = time.monotonic()
        await until("a new birth", lambda: node.births > births, 30)
        await until("the store replayed", lambda: len(r.edge.store) == 0 and node.backlog == 0, 60)
        await until("the tags good again", r.good, 15)

        async def cleared() -> bool:
            return not await active_comm_loss()

        await until("the comm-loss alarms cleared", cleared, 15, every=0.2)
        to_clear = time.monotonic() - back
        recorder.unsubscribe()

        # zero loss: every change the edge made reached the server, live or as history, the broker's stop instant
        # included (its database and the host's persistent session, the edge's store until the PUBACK)
        lost = [c for c in recorder.changes if c not in received]
        assert stored > 0 and not lost, f"{len(lost)} of {len(recorder.changes)} changes lost, e.g. {lost[:5]}"
        # order kept: the replayed values of each tag came oldest first
        by_tag: dict[str, list[int]] = {}
        for name, src, _v in history:
            by_tag.setdefault(name, []).append(src)
        assert history and all(ts == sorted(ts) for ts in by_tag.values())
        # in the historian at their source timestamps
        hist = r.server.historian
        assert isinstance(hist, Historian)
        past = [(n, s, v) for n, s, v in history if v == v]  # (NaN: no value)

        await assert_in_historian(hist, past, 30, 1.0)
        print(f"broker down {OUTAGE_S} s: {stored} messages stored, {len(recorder.changes)} changes, "
              f"{len(past)} to the historian; tags good and comm-loss alarms cleared {to_clear:.1f} s after")
