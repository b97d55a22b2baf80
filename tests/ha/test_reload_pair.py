"""A configuration reload on the active reaches the standby: never two configurations silently (two in-process
servers, real 3-member etcd, the simulator).

    main room ACTIVE reloads (its files changed) ── "config" frame ──► failover room STANDBY: not fed any more,
      P2 ha/not_in_sync "the active server reloaded its configuration", /health "replication stale"
    the standby's next hello carries the configuration it runs ──► refused "the configurations differ": P2 on
      the active too, until the standby runs the same files (a restart; a live reload of a replicating
      standby is not done: docs/ha.md)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.ha.conftest import EtcdCluster
from tests.ha.test_pair import until
from tests.ha.test_replication import ha_of, replicating_pair
from tests.server.conftest import login

TTL = 6


async def test_reload_on_the_active_refuses_the_standby_with_a_p2_on_both(
        tmp_path: Path, etcd3: EtcdCluster, sim: tuple[Any, Path]) -> None:
    simulator, tags = sim
    async with replicating_pair(tmp_path, etcd3, simulator, tags, ttl=TTL) as ((a, _ca), (b, cb)):
        ha_a, ha_b = ha_of(a), ha_of(b)
        await until("the stream fresh", lambda: ha_b.follower is not None and ha_b.follower.fresh, timeout_s=20)
        assert ha_a.fingerprint() == ha_b.fingerprint()
        before = ha_a.fingerprint()

        # the engineers change tags.yaml (both rooms read these files) and reload the active only
        tags.write_text(tags.read_text() + "\n# reviewed by the night engineer\n")
        result = await a.reload("sup", "test")
        assert result["applied"], result
        assert ha_a.fingerprint() != before

        def not_in_sync(server: Any) -> str:
            return str(server.tagdb.read("system/ha/not_in_sync").value or "")

        follower = ha_b.follower
        assert follower is not None
        await until("the standby told", lambda: "reloaded its configuration" in not_in_sync(b), timeout_s=10)
        assert not follower.fresh
        h = await login(cb, "op")
        health = (await cb.get("/api/v1/health", headers=h)).json()["subsystems"]["ha"]
        assert health["status"] == "degraded" and "reloaded its configuration" in health["detail"], health
        # its next hello (the configuration it runs) is refused: the active says so too
        await until("the active's P2", lambda: "configurations differ" in not_in_sync(a), timeout_s=15)
        assert "configurations differ" in not_in_sync(b) or "reloaded" in not_in_sync(b)
        assert not follower.fresh  # not fed: its values are not the new layout's under the old one's indices
