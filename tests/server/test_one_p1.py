"""One annunciation per condition at a junction: comm loss is one P1, a stalled safety loop is another.

Real simulator (SNMP junctions, in a thread of its own: tests/server/test_isolation.py) + real server.
A junction whose controller stops answering is two conditions: its comm loss (``poll/comm_lost``, P1 for
a junction, server.components.commwatch) and the field-safety monitor blind at it (``failsafe/monitor_blind``,
P1, the safety watch). Both are raised and journalled, but /alarms annunciates one P1 for the junction —
comm_lost — and lists monitor_blind as active and suppressed by design behind it (scada.alarms.system).
When the monitor is blind for another reason — its own loop stalled while the junctions still answer —
monitor_blind is annunciated.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from scada.alarms.system import BY_KEY, SystemAlarm, rule_name
from server.app import ScadaServer
from tests.server.conftest import login, running_server
from tests.server.test_comm_loss import annunciated
from tests.server.test_e2e import until
from tests.server.test_isolation import ThreadSim, safety_of, threaded_sim

COMM = BY_KEY[("poll", "comm_lost")]
BLIND = BY_KEY[("failsafe", "monitor_blind")]


def alarm_id(server: ScadaServer, alarm: SystemAlarm, junction: str) -> str:
    return f"{rule_name(alarm, 'junction')}:{server.config.equipment[junction].tag_name(alarm.local_tag)}"


def suppressed(alarm: dict[str, Any]) -> bool:
    return any(f.startswith("suppressed") for f in alarm["flags"])


async def listed(c: httpx.AsyncClient, h: dict[str, str]) -> dict[str, dict[str, Any]]:
    r = await c.get("/api/v1/alarms", headers=h, params={"limit": 5000})
    assert r.status_code == 200, r.text
    return {a["id"]: a for a in r.json()["alarms"]}


def active(alarms: dict[str, dict[str, Any]], alarm: str) -> bool:
    return bool(alarms.get(alarm, {}).get("active"))


def p1_shown_at(alarms: dict[str, dict[str, Any]], junction: str) -> list[str]:
    """The P1 alarms an operator sees for ``junction`` (active, not suppressed, shelved or out of service)."""
    return sorted(a["id"] for a in annunciated(list(alarms.values()))
                  if a["equipment"] == junction and a["priority"] == 1)


async def test_comm_loss_is_one_p1_and_a_stalled_loop_still_says_blind(tmp_path: Any) -> None:
    async with threaded_sim(tmp_path) as (sim, tags):
        await _scenario(sim, tags, tmp_path)


async def _scenario(sim: ThreadSim, tags: Any, tmp_path: Any) -> None:
    async with running_server(tmp_path / "data", endpoints=sim.endpoints, tags=tags,
                              alarms=tags.parent / "alarms.yaml") as (server, url), \
            httpx.AsyncClient(base_url=url, timeout=60) as c:
        h = await login(c, "op")
        safety = safety_of(server)
        await until("every junction checked", lambda: safety.checking() and all(safety.checking().values()),
                    timeout=60)
        await until("the main warm-up", lambda: server.status("poll").status != "starting", timeout=60)
        await asyncio.sleep(1.0)
        jid = "J003"
        comm_id, blind_id = alarm_id(server, COMM, jid), alarm_id(server, BLIND, jid)

        async def quiet() -> bool:
            """J003 read and checked, nothing active for it. On a loaded machine a start-up stall can have made
            the monitor blind there for a moment: that alarm may still be listed (cleared, unacknowledged)."""
            if not safety.checking().get(jid):
                return False
            got = await listed(c, h)  # the alarms not in their normal state
            return not (active(got, comm_id) or active(got, blind_id) or p1_shown_at(got, jid))

        await until(f"nothing active at {jid} before the fault", quiet, timeout=30, every=0.3)

        # ---- SNMP disconnect: both conditions present, one P1 annunciated (comm_lost), the other suppressed
        await sim.comm_fault(jid, "disconnect")
        started = time.monotonic()
        first_seen: dict[str, float] = {}

        async def both_present() -> dict[str, dict[str, Any]] | None:
            got = await listed(c, h)
            for key in (comm_id, blind_id):
                if active(got, key):
                    first_seen.setdefault(key, time.monotonic() - started)
            return got if active(got, comm_id) and active(got, blind_id) else None

        alarms = await until("comm_lost and monitor_blind both raised", both_present, timeout=30, every=0.1)
        assert p1_shown_at(alarms, jid) == [comm_id], [alarms[a] for a in p1_shown_at(alarms, jid)]
        assert alarms[comm_id]["priority"] == 1 and not suppressed(alarms[comm_id])
        assert alarms[blind_id]["priority"] == 1 and suppressed(alarms[blind_id]), alarms[blind_id]
        # the other junctions are seen: nothing annunciated for them
        others = [a for a in annunciated(list(alarms.values()))
                  if a["rule"] in (rule_name(COMM, "junction"), rule_name(BLIND, "junction"))]
        assert [a["equipment"] for a in others] == [jid], others
        print(f"after the disconnect: comm_lost at {first_seen.get(comm_id, 0):.1f} s, monitor_blind at "
              f"{first_seen.get(blind_id, 0):.1f} s")

        await sim.comm_fault(jid, None)

        async def both_cleared() -> bool:
            got = await listed(c, h)
            return not active(got, comm_id) and not active(got, blind_id)

        await until("both cleared", both_cleared, timeout=60, every=0.3)
        await until("the monitor sees it again", lambda: not safety.blind, timeout=30)

        # ---- the safety loop stalls (the junctions still answer): monitor_blind is annunciated, no comm loss
        assert safety.loop is not None
        safety.loop.call_soon_threadsafe(time.sleep, 3.0)

        async def blind_shown() -> dict[str, dict[str, Any]] | None:
            got = await listed(c, h)
            return got if blind_id in p1_shown_at(got, jid) else None

        alarms = await until("monitor_blind annunciated during the stall", blind_shown, timeout=5, every=0.1)
        assert not active(alarms, comm_id), alarms.get(comm_id)  # the junction's communication is intact
        assert not suppressed(alarms[blind_id])
        assert p1_shown_at(alarms, jid) == [blind_id]
        await until("stall over", lambda: not safety.blind, timeout=20)

        # ---- a stall shorter than the blind limit (1.5 s: server.components.safety), just after the monitor decided
        # on J003: it still decides in time, so nothing is raised for J003 (the 1 s heartbeat only names the cause
        # of a blindness, it is not one)
        db = safety.db
        assert db is not None
        await until("J003 checked", lambda: safety.checking().get(jid), timeout=20)
        last = db.checked_ns.get(jid, 0)
        await until("a fresh decision on J003", lambda: db.checked_ns.get(jid, 0) != last, timeout=10, every=0.005)
        safety.loop.call_soon_threadsafe(time.sleep, 1.05)
        seen_blind: list[str] = []
        end = time.monotonic() + 2.5
        while time.monotonic() < end:
            if jid in safety.blind:
                seen_blind.append(safety.blind[jid])
            await asyncio.sleep(0.05)
        assert not seen_blind, seen_blind[:1]
