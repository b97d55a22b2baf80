"""The election against a real 3-member etcd: one active, fence, takeover, switchover, etcd lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from server.ha.election import Election, HaOptions, Role
from tests.ha.conftest import EtcdCluster

TTL = 2
MARGIN = 0.5


def pair(cluster: EtcdCluster) -> tuple[Election, Election]:
    a = Election(HaOptions("main room", tuple(cluster.urls), lease_ttl_s=TTL, margin_s=MARGIN,
                           no_coordination_after_s=TTL))
    b = Election(HaOptions("failover room", tuple(reversed(cluster.urls)), lease_ttl_s=TTL, margin_s=MARGIN,
                           no_coordination_after_s=TTL))
    return a, b


async def until(cond: Callable[[], bool], timeout_s: float) -> float:
    """Seconds until ``cond()`` holds; AssertionError after ``timeout_s``."""
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout_s, f"not within {timeout_s} s"
        await asyncio.sleep(0.05)
    return time.monotonic() - t0


async def test_one_active_fenced_then_takeover_when_the_active_stops(etcd3: EtcdCluster) -> None:
    a, b = pair(etcd3)
    await a.round()
    await b.round()
    a.start()
    b.start()
    try:
        assert (a.role, b.role) == (Role.ACTIVE, Role.STANDBY)
        assert (a.leader, b.leader) == ("main room", "main room")
        # the new active waits TTL + margin before its first write; the standby never writes
        assert not a.may_write() and not b.may_write()
        waited = await until(a.may_write, TTL + MARGIN + 1)
        assert waited > TTL + MARGIN - 0.5
        for _ in range(10):
            await asyncio.sleep(0.2)
            assert [a.may_write(), b.may_write()].count(True) == 1
        # the active's process stops refreshing (as a SIGSTOP or a kill -9 would): no revoke, no step-down
        for task in (a._task, a._watch):
            assert task is not None
            task.cancel()
        t_stop = time.monotonic()
        took = await until(lambda: b.role is Role.ACTIVE, TTL + MARGIN + 2)
        # the stopped one's own deadline ran out before the other could win the key
        assert not a.may_write()
        assert a.deadline <= t_stop + TTL
        assert b.leader == "failover room" and took <= TTL + MARGIN + 2
        await until(b.may_write, TTL + MARGIN + 1)
        # the stopped one resumes: its lease is gone, it becomes standby and never writes
        await a.round()
        assert a.role is Role.STANDBY and a.leader == "failover room" and not a.may_write()
    finally:
        await a.aclose()
        await b.aclose()


async def test_switchover_hands_the_lease_to_the_standby(etcd3: EtcdCluster) -> None:
    a, b = pair(etcd3)
    events: list[tuple[str, str]] = []
    a.listeners.append(lambda e, d: events.append((e, str(d.get("role", "")))))
    await a.round()
    await b.round()
    a.start()
    b.start()
    try:
        assert a.role is Role.ACTIVE
        assert await a.switchover()
        assert not a.may_write() and a.state()["role"] == "standby"
        took = await until(lambda: b.role is Role.ACTIVE, 2.0)  # the watch wakes the standby: well under a TTL
        assert took < TTL
        await asyncio.sleep(1.0)
        assert a.state()["role"] == "standby" and a.leader == "failover room"
        assert ("switchover", "") in events and ("role", "standby") in events
        assert not await a.switchover()  # only the active resigns
    finally:
        await a.aclose()
        await b.aclose()


async def test_etcd_lost_nobody_writes_and_coordination_is_reported(etcd3: EtcdCluster) -> None:
    a, b = pair(etcd3)
    seen: list[tuple[str, object]] = []
    a.listeners.append(lambda e, d: seen.append((e, d.get("ok"))))
    await a.round()
    await b.round()
    a.start()
    b.start()
    try:
        await until(a.may_write, TTL + MARGIN + 1)
        etcd3.kill_all()
        t_kill = time.monotonic()
        await until(lambda: not a.may_write(), TTL)  # the lease deadline: at most TTL − margin after the last refresh
        assert time.monotonic() - t_kill <= TTL
        await until(lambda: ("coordination", False) in seen, TTL + 3)
        assert a.no_coordination and b.no_coordination
        for _ in range(5):
            await asyncio.sleep(0.3)
            assert not a.may_write() and not b.may_write()
        # break-glass: a supervisor forces one side (the other confirmed down)
        b.force_active("sup")
        assert b.may_write() and b.role is Role.FORCED and not a.may_write()
    finally:
        await a.aclose(resign=False)
        await b.aclose(resign=False)
