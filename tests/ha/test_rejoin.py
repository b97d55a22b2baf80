"""An old active rejoins as a standby by itself (two in-process servers, real 3-member etcd, the simulator):

    main room ACTIVE ─ stream ─► failover room STANDBY         the stream cut (the standby's follower closed)
    main room journals rows the failover room never gets       (a bollard fault: its alarm's rows)
    switchover: failover room ACTIVE, its own rows take those ids (the role change, its re-derived alarms)
    main room STANDBY: its hello is "diverged" → its rows after the common point go aside (journal.standby-*.sqlite,
      kept), the active's rows are copied after it (same ids), it stops polling, /health says so, and the
      active journals what was set aside with the P2 ha/set_aside (count, file)
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

from scada.alarms.states import Event
from tests.ha.conftest import EtcdCluster
from tests.ha.test_pair import until
from tests.ha.test_replication import ha_of, journal_rows, replicating_pair

TTL = 6


def rows_of(path: Path) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute("SELECT id, ts_ms, ref, event, state, flags, user FROM journal ORDER BY id").fetchall()


async def test_old_active_rejoins_as_standby_its_own_rows_set_aside(
        tmp_path: Path, etcd3: EtcdCluster, sim: tuple[Any, Path]) -> None:
    simulator, tags = sim
    async with replicating_pair(tmp_path, etcd3, simulator, tags, ttl=TTL) as ((a, ca), (b, cb)):
        ha_a, ha_b = ha_of(a), ha_of(b)
        # the main room follows the failover room once it is the standby (both know each other)
        ha_a.settings = ha_a.settings.model_copy(update={"peer_url": str(cb.base_url).rstrip("/")})
        await until("the stream fresh", lambda: ha_b.follower is not None and ha_b.follower.fresh, timeout_s=20)
        await until("the main room polling", lambda: a.components["poll"].read_count()[0] > 0,  # type: ignore[attr-defined]
                    timeout_s=20)
        await until("the copy complete", lambda: journal_rows(b.data_dir) == journal_rows(a.data_dir), timeout_s=10)
        common = journal_rows(a.data_dir)[-1][0]

        # the stream cut: the main room goes on journalling rows the failover room never gets
        follower = ha_b.follower
        assert follower is not None
        await follower.aclose()
        bollard = next(e for e in a.config.equipment.values() if e.template == "bollard")
        simulator.inject(bollard.id, "bollard_fault")
        await until("the main room's own rows", lambda: any(
            r[0] > common and r[3] == int(Event.CONDITION_ON) for r in journal_rows(a.data_dir)), timeout_s=20)
        own = [r for r in journal_rows(a.data_dir) if r[0] > common]
        assert journal_rows(b.data_dir)[-1][0] == common

        # switchover: the failover room goes on after the common point with rows of its own (same ids)
        assert await ha_a.switchover("sup")
        await until("failover room active", ha_b.feeds, timeout_s=TTL + 4)
        await until("the main room a replicating standby", lambda: ha_a.follower is not None, timeout_s=10)
        await until("the main room rejoined", lambda: ha_a.rejoined is not None and ha_a.follower is not None
                    and ha_a.follower.fresh, timeout_s=20)
        info = ha_a.rejoined
        assert info is not None and info["after"] == common and info["rows"] == len(own), (info, own)
        aside = Path(info["file"])
        assert aside.parent == a.data_dir and aside.name.startswith("journal.standby-") and aside.exists()
        # kept for the record: the whole old file, the main room's own rows after the common point included
        assert [r for r in rows_of(aside) if r[0] > common] == own
        # the active's rows copied after the common point: the same journal on both, no gap, no duplicate
        await until("the copy caught up", lambda: journal_rows(a.data_dir) == journal_rows(b.data_dir),
                    timeout_s=10)
        ids = [r[0] for r in journal_rows(a.data_dir)]
        assert ids == list(range(1, len(ids) + 1))
        assert journal_rows(a.data_dir)[common:] != own  # the failover room's rows, not the main room's own

        # the active journalled what was set aside, with the P2 naming the count and the file
        def said() -> list[tuple[Any, ...]]:
            with contextlib.closing(sqlite3.connect(b.data_dir / "journal.sqlite")) as db:
                return db.execute("SELECT event, value, detail FROM journal WHERE detail LIKE ? OR value LIKE ?",
                                  ("%set aside%", "%set aside%")).fetchall()

        got = await until("the set-aside journalled on the active", said, timeout_s=10)
        assert any(r[0] == int(Event.CONFIG_CHANGE) and f"{len(own)} rows" in r[2] and aside.name in r[2]
                   for r in got), got
        assert any(r[0] == int(Event.CONDITION_ON) and f"{len(own)} rows" in str(r[1]) for r in got), got
        def copied() -> bool:
            with contextlib.closing(sqlite3.connect(a.data_dir / "journal.sqlite")) as db:
                return bool(db.execute("SELECT 1 FROM journal WHERE value LIKE ?", ("%set aside%",)).fetchall())

        await until("the P2's row copied to the standby", copied, timeout_s=10)

        # the old active no longer polls the field; /health says so
        poll_a = a.components["poll"]
        assert poll_a.poller.devices == [] and poll_a.safety.poller.devices == []  # type: ignore[attr-defined]
        health = (await ca.get("/api/v1/health")).json()["subsystems"]["ha"]
        assert "rejoined as standby, not polling" in health["detail"] and aside.name in health["detail"], health
