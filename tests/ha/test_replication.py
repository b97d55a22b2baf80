"""The replication stream between two real servers (in-process, each its own API on loopback), one real
3-member etcd and the simulator:

    the standby does not poll the field and holds the active's tag values, alarm states and journal rows
    (same ids); an acknowledgement is answered only once the standby has its row; a broken stream makes the
    standby's field-safety monitor blind (P1) and its /health say so; after a takeover the journal goes on
    after the copied rows (no gap, no duplicate), the acknowledged alarm is not annunciated again, and the new
    active polls the field.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from scada.alarms.states import Event
from server.app import ScadaServer
from server.components.ha import HaComponent
from tests.ha.conftest import EtcdCluster
from tests.ha.test_pair import until
from tests.server.conftest import login, running_server

TTL = 3


def ha_of(server: ScadaServer) -> HaComponent:
    comp = server.components["ha"]
    assert isinstance(comp, HaComponent)
    return comp


def journal_rows(data_dir: Path) -> list[tuple[Any, ...]]:
    """(id, ts_ms, ref, event, state, flags, user) of every row, read from the file (what a takeover keeps)."""
    with contextlib.closing(sqlite3.connect(data_dir / "journal.sqlite")) as db:
        return db.execute("SELECT id, ts_ms, ref, event, state, flags, user FROM journal ORDER BY id").fetchall()


@contextlib.asynccontextmanager
async def replicating_pair(tmp_path: Path, etcd: EtcdCluster, sim: Any, tags: Path, ttl: int = TTL,
                           standby_tags: Path | None = None, **opts: Any) -> AsyncIterator[tuple[tuple[ScadaServer, httpx.AsyncClient],
                                                    tuple[ScadaServer, httpx.AsyncClient]]]:
    """Two servers replicating, sharing one audit key (as the pair is provisioned: $SCADA_AUDIT_KEY here);
    ``standby_tags``: the failover room's own copy of the files (tags.yaml, alarms.yaml, commands.yaml beside it;
    default: both read ``tags``'s); ``opts``: more settings for both."""
    secret = tmp_path / "pair.secret"
    secret.write_text("a-long-random-pair-secret-for-the-test\n")
    secret.chmod(0o600)
    common: dict[str, Any] = {"tags": tags, "alarms": tags.parent / "alarms.yaml", "ha.etcd": etcd.urls,
                              "ha.lease_ttl_s": ttl, "ha.secret_file": secret, **opts}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SCADA_AUDIT_KEY", "the-pair-s-one-audit-key-for-this-test")
        async with _pair(tmp_path, sim, common, standby_tags) as got:
            yield got


@contextlib.asynccontextmanager
async def _pair(tmp_path: Path, sim: Any, common: dict[str, Any], standby_tags: Path | None = None
                ) -> AsyncIterator[tuple[tuple[ScadaServer, httpx.AsyncClient], tuple[ScadaServer, httpx.AsyncClient]]]:
    async with running_server(tmp_path / "main", endpoints=sim.endpoints,
                              **{**common, "ha.name": "main room", "ha.role": "primary"}) as (a, url_a):
        await until("main room active", lambda: ha_of(a).feeds(), timeout_s=20)
        own = {"tags": standby_tags, "alarms": standby_tags.parent / "alarms.yaml"} if standby_tags else {}
        async with running_server(tmp_path / "failover", endpoints=sim.endpoints,
                                  **{**common, **own, "ha.name": "failover room", "ha.role": "standby",
                                     "ha.peer_url": url_a}) as (b, url_b), \
                httpx.AsyncClient(base_url=url_a, timeout=30) as ca, httpx.AsyncClient(base_url=url_b, timeout=30) as cb:
            yield (a, ca), (b, cb)


async def test_standby_fed_by_the_stream_synchronous_ack_stale_then_takeover(
        tmp_path: Path, etcd3: EtcdCluster, sim: tuple[Any, Path]) -> None:
    simulator, tags = sim
    async with replicating_pair(tmp_path, etcd3, simulator, tags) as ((a, ca), (b, cb)):
        ha_a, ha_b = ha_of(a), ha_of(b)
        h_a, h_b = await login(ca, "op"), await login(cb, "op")
        await until("the stream fresh", lambda: ha_b.follower is not None and ha_b.follower.fresh, timeout_s=20)
        cab = next(e for e in a.config.equipment.values() if e.template == "lighting_cabinet")
        mode = cab.tag_name("mode")
        await until("the cabinet polled by the active", lambda: a.tagdb.read(mode).quality.is_good)
        # the standby holds the active's values without polling the field itself
        await until("the cabinet on the standby", lambda: b.tagdb.read(mode).quality.is_good, timeout_s=10)
        assert b.tagdb.read(mode).value == a.tagdb.read(mode).value
        assert b.components["poll"].read_count()[0] == 0  # type: ignore[attr-defined]
        health = (await cb.get("/api/v1/health")).json()["subsystems"]
        assert "not polling" in health["poll"]["detail"] and "replicating" in health["ha"]["detail"], health

        # a field alarm on the active reaches the standby's alarm states through the copied journal rows
        bollard = next(e for e in a.config.equipment.values() if e.template == "bollard")
        bid = f"bollard_fault:{bollard.tag_name('fault')}"
        simulator.inject(bollard.id, "bollard_fault")

        async def state_on(c: httpx.AsyncClient, h: dict[str, str]) -> str | None:
            items = (await c.get("/api/v1/alarms", params={"equipment": bollard.id}, headers=h)).json()["alarms"]
            return next((x["state"] for x in items if x["id"] == bid), None)

        await until("the bollard alarm on the active", lambda: state_on(ca, h_a), timeout_s=20)
        assert await until("the bollard alarm on the standby", lambda: state_on(cb, h_b), timeout_s=5) == "unack"

        # the acknowledgement is answered only once the standby holds its row: read right after the answer
        r = await ca.post("/api/v1/alarms/ack", json={"ids": [bid], "comment": "crew sent"}, headers=h_a)
        assert r.status_code == 200, r.text
        ack_a = [row for row in journal_rows(a.data_dir) if row[3] == int(Event.ACKNOWLEDGE)]
        ack_b = [row for row in journal_rows(b.data_dir) if row[3] == int(Event.ACKNOWLEDGE)]
        assert ack_a and ack_b == ack_a  # same id, time, definition, state and user: a copy
        assert await state_on(cb, h_b) == "acked"
        assert b.tagdb.read("system/ha/not_in_sync").value in (None, "")

        # the stream broken (the active no longer knows the secret): stale, the standby's monitor goes blind (P1)
        secret, ha_a.secret = ha_a.secret, b"not-the-pair-secret"
        junction = next(e for e in b.config.equipment.values() if e.template == "junction")
        blind = f"{junction.tag_name('failsafe/monitor_blind')}"
        feed = ha_a.feed
        assert feed is not None
        feed.drop()  # the active ends the connection it serves (as a network cut would); reconnections refused
        await until("the standby's monitor blind", lambda: b.tagdb.read(blind).value == 1, timeout_s=15)
        health = (await cb.get("/api/v1/health")).json()["subsystems"]["ha"]
        assert health["status"] == "degraded" and "replication stale" in health["detail"], health
        # an operator action meanwhile: answered after the bounded wait, with the P2
        t0 = time.monotonic()
        r = await ca.post(f"/api/v1/alarms/{bid}/shelve", json={"duration_s": 600, "reason": "crew on site"},
                          headers=h_a)
        assert r.status_code == 200, r.text
        assert time.monotonic() - t0 < 5
        assert "standby" in str(a.tagdb.read("system/ha/not_in_sync").value)
        ha_a.secret = secret  # the stream back: the copy catches up, the P2 and the P1 clear
        await until("the stream fresh again", lambda: ha_b.follower is not None and ha_b.follower.fresh, timeout_s=10)
        await until("P2 cleared", lambda: a.tagdb.read("system/ha/not_in_sync").value in (None, ""), timeout_s=10)
        await until("the standby's monitor sees again", lambda: b.tagdb.read(blind).value == 0, timeout_s=10)
        assert "shelved_timed" in next(x for x in (await cb.get("/api/v1/alarms", params={"equipment": bollard.id},
                                                               headers=h_b)).json()["alarms"] if x["id"] == bid)["flags"]
        copied = journal_rows(a.data_dir)
        await until("the copy complete", lambda: journal_rows(b.data_dir)[-1][0] >= copied[-1][0], timeout_s=5)

        # takeover (switchover: the main room resigns): the failover room goes on after the copied rows
        assert await ha_a.switchover("sup")
        t_switch = time.monotonic()
        await until("failover room active", lambda: ha_b.feeds(), timeout_s=TTL + 2)
        await until("failover room polling", lambda: b.components["poll"].read_count()[0] > 0,  # type: ignore[attr-defined]
                    timeout_s=10)
        print(f"switchover → new active polling: {time.monotonic() - t_switch:.2f} s")
        assert ha_b.attached and ha_b.follower is None
        await until("the role change journalled", lambda: any(
            row[3] == int(Event.CONFIG_CHANGE) and row[0] > copied[-1][0] for row in journal_rows(b.data_dir)), timeout_s=10)
        rows_b = journal_rows(b.data_dir)
        ids = [row[0] for row in rows_b]
        assert ids == list(range(1, len(ids) + 1))  # no gap, no duplicate
        assert [row for row in rows_b if row[0] <= copied[-1][0]] == copied  # the copy, unchanged
        ref = next(row[2] for row in copied if row[3] == int(Event.ACKNOWLEDGE))
        after = [row for row in rows_b if row[0] > copied[-1][0] and row[2] == ref]
        assert not any(row[3] == int(Event.CONDITION_ON) for row in after), after  # no second annunciation
        assert await state_on(cb, h_b) == "acked"
        r = await cb.post(f"/api/v1/alarms/{bid}/unshelve", json={}, headers=h_b)  # the new active acts
        assert r.status_code == 200, r.text
