"""The historian across a takeover (two in-process servers, real 3-member etcd, the simulator): the standby's
historian records the active's samples as they come on the replication stream (they go through its tag
database's own apply path, to which its historian is subscribed), so the new active's trends have no gap for
the time it was standby.

    main room ACTIVE (polls, records) ── stream ──► failover room STANDBY (records the streamed samples)
              t0 ── fed ── stream cut 5 s ── fed ── switchover ─── failover room ACTIVE (polls, records) ── t1
    query on the failover room's historian over [t0, t1]: the main room's points of [t0, switch] are there, those
    of the cut too (at the reconnection the active sends its stored points since the standby's newest sample)
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from tests.ha.conftest import EtcdCluster
from tests.ha.test_pair import until
from tests.ha.test_replication import ha_of, replicating_pair

TTL = 6


async def test_new_active_historian_has_no_gap_over_the_switch(
        tmp_path: Path, etcd3: EtcdCluster, sim: tuple[Any, Path]) -> None:
    simulator, tags = sim
    embedded: dict[str, Any] = {"historian.backend": "embedded"}
    async with replicating_pair(tmp_path, etcd3, simulator, tags, ttl=TTL, **embedded) as ((a, _ca), (b, _cb)):
        ha_a, ha_b = ha_of(a), ha_of(b)
        await until("the stream fresh", lambda: ha_b.follower is not None and ha_b.follower.fresh, timeout_s=20)
        await until("the main room polling", lambda: a.components["poll"].read_count()[0] > 0,  # type: ignore[attr-defined]
                    timeout_s=20)
        await asyncio.sleep(2.0)
        t0 = time.time_ns()
        await asyncio.sleep(3.0)  # the failover room is standby: it does not poll, the stream feeds it
        follower = ha_b.follower
        assert follower is not None
        await follower.aclose()  # the stream cut (the network between the rooms): the standby is not fed
        await asyncio.sleep(5.0)
        assert follower.state.backfilled == 0
        follower.start()
        await until("fed again", lambda: follower.fresh, timeout_s=10)
        await until("the cut filled from the main room's historian", lambda: follower.state.backfilled > 0,
                    timeout_s=10)
        await asyncio.sleep(3.0)
        assert b.components["poll"].read_count()[0] == 0  # type: ignore[attr-defined]
        t_switch = time.time_ns()
        assert await ha_a.switchover("sup")
        await until("failover room active", ha_b.feeds, timeout_s=TTL + 4)
        await until("failover room polling", lambda: b.components["poll"].read_count()[0] > 0,  # type: ignore[attr-defined]
                    timeout_s=10)
        await asyncio.sleep(3.0)
        t1 = time.time_ns()
        hist_a, hist_b = a.historian, b.historian
        assert hist_a is not None and hist_b is not None

        def stamps(hist: Any, tag: str, lo: int, hi: int) -> list[int]:
            return [int(p["t_ms"]) for p in hist.raw(tag, lo, hi, 100_000)]

        # the historians flush in the background: wait until the main room's points of the window are stored
        names = [d.name for d in a.tagdb.defs[:len(a.config.tags)]]
        moving = await until("points of the standby period on the main room", lambda: [
            (n, s) for n in names if len(s := stamps(hist_a, n, t0, t_switch)) >= 3], timeout_s=10)
        assert len(moving) >= 5, moving  # the demo field moves: several tags with points in the window
        missing: dict[str, list[int]] = {}
        for name, on_a in moving:
            on_b = set(stamps(hist_b, name, t0, t1))
            lost = [t for t in on_a if t not in on_b]
            if lost:
                missing[name] = lost
        # every point the old active stored while the new one was standby, the new one holds too (same source
        # timestamps: the stream carries them); at most the first stored point of a series may differ (each
        # recorder's compression started from its own first sample)
        assert all(len(v) <= 1 for v in missing.values()), {k: v[:5] for k, v in missing.items()}
        total = sum(len(s) for _, s in moving)
        print(f"historian over the switch: {len(moving)} moving tags, {total} points of the main room in the standby "
              f"period (5 s of it cut: {follower.state.backfilled} points backfilled), "
              f"{sum(len(v) for v in missing.values())} not on the new active")
        assert sum(len(v) for v in missing.values()) <= total // 10, (total, missing)
        # and the series goes on after the switch: the new active records its own polls
        after = [n for n, _ in moving if stamps(hist_b, n, t_switch, t1)]
        assert after, "no point recorded by the new active after the switch"
