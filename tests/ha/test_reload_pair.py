"""A configuration reload on the active reaches the standby: never two configurations silently, and the standby
follows live once it has the same files (two in-process servers, each with its own copy of the files, real 3-member
etcd, the simulator).

    main room ACTIVE reloads (its tags.yaml changed) ── "config" frame ──► failover room STANDBY: not fed any more,
      P2 ha/not_in_sync "the active server reloaded its configuration", /health "replication stale"
    the standby's next hello carries the configuration it runs ──► refused "the configurations differ": P2 on
      the active too
    a reload of the standby on its old files ──► refused (409): a standby reloads onto the active's files only
    the engineers copy the active's tags.yaml to the failover room; POST /config/reload there (or the standby
      reloads by itself at its next refused hello: its files now match) ──► applied live, no safety approval
      asked (the active's stands), reconnected at once: both P2s clear, the stream is fed again (rows copied)
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tests.ha.conftest import EtcdCluster
from tests.ha.test_pair import until
from tests.ha.test_replication import ha_of, replicating_pair
from tests.server.conftest import login

TTL = 6


def not_in_sync(server: Any) -> str:
    return str(server.tagdb.read("system/ha/not_in_sync").value or "")


async def test_reload_on_the_active_refuses_the_standby_until_it_reloads_the_same_files_live(
        tmp_path: Path, etcd3: EtcdCluster, sim: tuple[Any, Path]) -> None:
    simulator, tags = sim
    own = tmp_path / "city-failover"
    shutil.copytree(tags.parent, own)  # the failover room's own copy of the files
    async with replicating_pair(tmp_path, etcd3, simulator, tags, ttl=TTL, standby_tags=own / "tags.yaml") as (
            (a, _ca), (b, cb)):
        ha_a, ha_b = ha_of(a), ha_of(b)
        await until("the stream fresh", lambda: ha_b.follower is not None and ha_b.follower.fresh, timeout_s=20)
        assert ha_a.fingerprint() == ha_b.fingerprint()  # the same files by name and content, elsewhere
        before = ha_a.fingerprint()

        # the engineers change the main room's tags.yaml and reload the active
        tags.write_text(tags.read_text() + "\n# reviewed by the night engineer\n")
        result = await a.reload("sup", "test")
        assert result["applied"], result
        assert ha_a.fingerprint() != before

        follower = ha_b.follower
        assert follower is not None
        await until("the standby told", lambda: "reloaded its configuration" in not_in_sync(b), timeout_s=10)
        assert not follower.fresh
        eng_b = await login(cb, "eng")
        health = (await cb.get("/api/v1/health", headers=eng_b)).json()["subsystems"]["ha"]
        assert health["status"] == "degraded" and "reloaded its configuration" in health["detail"], health
        # the same, structured (the console translates each part: hmi.failover.detail_text)
        assert [m["key"] for m in health["messages"]] == ["{server}: {role}, active: {active}",
                                                          "replication stale ({why})"], health
        assert "; ".join(m["key"].format(**m["params"]) for m in health["messages"]) == health["detail"]
        # its next hello (the configuration it runs) is refused: the active says so too
        await until("the active's P2", lambda: "configurations differ" in not_in_sync(a), timeout_s=15)
        assert not follower.fresh  # not fed: its values are not the new layout's under the old one's indices

        # the standby reloads onto the active's files only: another tags.yaml is refused, nothing changes
        (own / "tags.yaml").write_text((own / "tags.yaml").read_text() + "\n# a different edit\n")
        r = await cb.post("/api/v1/config/reload", headers=eng_b)
        assert r.status_code == 409 and "active server's files only" in r.text, r.text
        generation = b.config_generation

        # the active's tags.yaml copied to the failover room, then its reload: applied live
        shutil.copy(tags, own / "tags.yaml")
        r = await cb.post("/api/v1/config/reload", headers=eng_b)
        assert r.status_code == 200 and r.json()["applied"], r.text
        assert b.config_generation > generation
        assert ha_b.fingerprint() == ha_a.fingerprint()
        assert ha_b.follower is follower  # still the standby, still detached: its engine evaluates nothing
        assert b.components["alarms"].engine.journal is None  # type: ignore[attr-defined]

        # reconnected at once: fed again, both P2s clear, the rows the active wrote meanwhile copied
        await until("fed again", lambda: follower.fresh, timeout_s=10)
        await until("the standby's P2 cleared", lambda: not_in_sync(b) == "", timeout_s=10)
        await until("the active's P2 cleared", lambda: not_in_sync(a) == "", timeout_s=10)
        journal_a = ha_a.sink.journal()
        assert journal_a is not None
        last = journal_a.last_id()  # the active's reload row among them, journalled while the standby was refused
        await until("the journal copied", lambda: follower.state.applied_id >= last, timeout_s=10)
        assert ha_a.feed is not None and not ha_a.feed.refused
