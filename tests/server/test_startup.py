"""Start-up states: what the API says while the city is read for the first time (issue 21).

The simulator (real Modbus TCP gateway, SNMP agent, OPC UA servers, serial buses) serves the demo city
with scan classes shortened (normal 3 s, slow 5 s: a bollard's grace is two periods, 6 s); one bollard
is silenced before the server starts (the gateway drops its requests: reads time out). Sampled every
20 ms from the moment the server is up until the bollard is declared lost:

- the silent bollard is ``starting`` (never ``lost``) until its grace of two scan periods is over, then
  ``lost``; its tags meanwhile are ``uncertain`` with the reason ``not read yet`` (API /tags), then
  ``bad_comm``;
- no comm-loss alarm is raised during the grace (for it or anything else), and its own is raised
  after it (the grace is bounded);
- /health says ``starting (n/N devices read)`` while a device is starting, n counting up;
- the junctions (the field-safety monitor's) are read before any other device.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from scada.alarms.system import BY_KEY, rule_name
from scada.config import load_city
from scada.poll import DeviceStats
from server.app import ScadaServer
from tests.server.conftest import login, running_server
from tests.server.test_e2e import demo_field, until

READ = re.compile(r"^starting \((\d+)/(\d+) devices read\)$")


@pytest.fixture
async def field(tmp_path: Path) -> AsyncIterator[tuple[Any, Path]]:
    """The demo city with shorter scans (normal 3 s, slow 5 s): a grace of seconds, not a minute."""
    async with demo_field(tmp_path, normal="3s") as got:
        yield got


def device_stats(server: ScadaServer) -> dict[str, DeviceStats]:
    """Every polled device's statistics: the main poller's and the field-safety thread's (junctions)."""
    poll = server.components["poll"]
    return {**poll.poller.stats, **poll.safety.stats}  # type: ignore[attr-defined]


def comm_lost_active(server: ScadaServer) -> set[str]:
    assert server.alarms is not None
    return {a["id"] for a in server.alarms.active(diagnostic=True)[1]
            if a["active"] and a["id"].split(":", 1)[0].endswith((".comm_lost", ".device_comm_lost"))}


async def test_not_read_yet_is_starting_uncertain_never_lost_in_the_grace_and_junctions_first(
        field: tuple[Any, Path], tmp_path: Path) -> None:
    sim, tags = field
    config = load_city(tags, tags.parent / "alarms.yaml")
    bollard = next(e for e in config.equipment.values() if e.template == "bollard")
    await sim.comm_fault(bollard.id, "drop")  # silent from before the server starts
    period = config.devices[bollard.device].period_s
    polled = set(config.devices[bollard.device].tags)  # its read tags (not its comm-loss alarm's, set by the server)
    comm = BY_KEY[("poll", "comm_lost")]
    its_alarm = f"{rule_name(comm, 'bollard')}:{bollard.tag_name('poll/comm_lost')}"
    loop = asyncio.get_running_loop()
    async with running_server(tmp_path / "data", endpoints=sim.endpoints, tags=tags,
                              alarms=tags.parent / "alarms.yaml") as (server, url), \
            httpx.AsyncClient(base_url=url, timeout=30) as c:
        hs = await login(c, "op")
        st = device_stats(server)[bollard.device]
        # its polling begins after the junctions' warm-up read: from then on, a grace of at most two periods
        await until("the bollard's polling", lambda: st.grace_until < float("inf"), every=0.01)
        assert loop.time() < st.grace_until <= loop.time() + 2 * period, (loop.time(), st.grace_until)
        statuses: list[tuple[float, str]] = []
        health_read: list[tuple[int, int]] = []
        qualities: set[tuple[str, str]] = set()
        alarms_in_grace: set[str] = set()
        while loop.time() < st.grace_until + 4 * period and st.status_label != "lost":
            now = loop.time()
            statuses.append((now, st.status_label))
            if st.status_label == "starting":
                alarms_in_grace |= comm_lost_active(server)
                rows = (await c.get("/api/v1/tags", params={"equipment": bollard.id}, headers=hs)).json()
                if st.status_label == "starting":  # still (it never returns to starting): read while starting
                    qualities |= {(r["quality"], r["reason"]) for r in rows["tags"] if r["name"] in polled}
                h = (await c.get("/api/v1/health")).json()
                if h["status"] == "starting" and (m := READ.match(h["reasons"][0])):
                    health_read.append((int(m[1]), int(m[2])))
            await asyncio.sleep(0.02)
        lost_at = loop.time()

        assert statuses and statuses[0][1] == "starting", statuses[:3]
        assert st.status_label == "lost", statuses[-3:]  # declared lost once the grace was over: bounded
        assert all(label == "starting" for t, label in statuses if t < st.grace_until), statuses
        assert lost_at >= st.grace_until
        assert st.first_read_ns == 0 and st.failures_in_row >= 1  # it was tried, and failed, in its grace
        assert qualities == {("uncertain", "not read yet")}, qualities
        assert alarms_in_grace == set(), alarms_in_grace  # no comm-loss alarm while a device is starting
        total = len(device_stats(server))  # the devices polled (a protocol without its driver is not)
        assert health_read and all(n_total == total for _, n_total in health_read), health_read
        assert health_read[-1][0] == total - 1  # every other device read; the silent bollard is not
        assert [n for n, _ in health_read] == sorted(n for n, _ in health_read)  # counting up

        # after the grace: bad_comm, its comm-loss alarm (commwatch: two periods from when it first saw it)
        rows = (await c.get("/api/v1/tags", params={"equipment": bollard.id}, headers=hs)).json()["tags"]
        assert {r["quality"] for r in rows if r["name"] in polled} == {"bad_comm"}
        await until("the bollard's comm-loss alarm", lambda: its_alarm in comm_lost_active(server),
                    timeout=2 * period + 3)
        others = comm_lost_active(server) - {its_alarm}
        # another device's comm loss after the grace is allowed only where its reads really failed (a 1 s
        # junction cycle can time out on a loaded 2-core machine: the alarm is then right, not a start-up leak)
        stats = device_stats(server)
        by_tag = {e.tag_name("poll/comm_lost"): e.device for e in config.equipment.values()}
        assert all(stats[by_tag[a.split(":", 1)[1]]].errors > 0 for a in others), others
        h = (await c.get("/api/v1/health")).json()
        assert h["status"] == "degraded" and h["devices_lost"]["names"] == [bollard.device], h
        assert server.status("poll").status == "ok"  # nothing starting any more: settled

        # the junctions (the field-safety monitor's grace is two of their 1 s periods) were read before the rest
        junctions = {e.device for e in config.equipment.values() if e.template == "junction"}
        first = {n: s.first_read_ns for n, s in device_stats(server).items() if n != bollard.device}
        assert junctions <= set(first) and all(first.values()), first
        assert max(first[n] for n in junctions) <= min(t for n, t in first.items() if n not in junctions)

