"""System alarms (fail-safe layer, historian) are first-class ISA-18.2 alarms in the server.

Simulator + server: a junction whose cabinet monitor is disabled shows conflicting greens; the
field-safety monitor's P1 alarm reaches the alarm list and the WebSocket like any configured alarm,
cannot be shelved, is acknowledged, and its reset from the alarm list resets the monitor's latch;
the journal shows every step. A historian whose database does not answer raises its alarm the same
way, and it returns to normal by itself when the backend is back (steady condition).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import websockets

from scada.alarms.system import MONITOR_CODES, SYSTEM_ALARMS, parse_rule, rule_name, system_rules, system_tags
from scada.config import load_city
from tests.historian.servers import InfluxServer
from tests.peers import require_peer
from tests.server.conftest import ROOT, login, running_server
from tests.server.test_e2e import field, until

__all__ = ["field"]  # the simulator fixture


async def test_conflicting_green_is_an_acknowledgeable_journalled_p1_alarm(field: tuple[Any, Path],
                                                                         tmp_path: Path) -> None:
    sim, tags = field
    async with running_server(tmp_path / "data", endpoints=sim.endpoints, tags=tags,
                              alarms=tags.parent / "alarms.yaml") as (server, url), \
            httpx.AsyncClient(base_url=url, timeout=60) as c:
        fs = server.components["failsafe"].fs  # type: ignore[attr-defined]  # the running Failsafe façade
        jid = "J005"
        junction = server.config.equipment[jid]
        aid = f"system.junction.conflicting_green:{junction.tag_name('failsafe/conflicting_green')}"
        h, hm = await login(c, "op"), await login(c, "maint")
        await until("the monitor watching J005", lambda: fs.monitor.view(jid).state == "normal", timeout=40)
        ws_url = url.replace("http", "ws") + "/api/v1/ws"
        async with websockets.connect(ws_url, additional_headers=h, max_size=None) as ws:
            assert json.loads(await ws.recv())["type"] == "hello"
            await ws.send(json.dumps({"type": "subscribe", "equipment": [jid], "alarms": True}))
            assert json.loads(await ws.recv())["type"] == "snapshot"

            model = sim.models[jid]
            model.inject("monitor_disabled")
            model.inject("conflicting_green", phases=tuple(range(1, model.phases + 1)))
            pushed: dict[str, Any] = {}

            async def pushed_alarm() -> bool:
                msg = json.loads(await ws.recv())
                for a in msg.get("alarms", []):
                    if a["id"] == aid and a["active"]:
                        pushed.update(a)
                        return True
                return False

            await until("the conflicting-green alarm on the WebSocket", pushed_alarm, timeout=30, every=0)
        assert pushed["priority"] == 1 and pushed["state"] == "unack" and pushed["service"] == "traffic"
        assert pushed["equipment"] == jid and pushed["commune"] == junction.commune
        assert "conflicting green" in pushed["message"]
        assert "latched" in pushed["flags"]  # held by the monitor: the consoles offer Reset
        listed = (await c.get("/api/v1/alarms", params={"equipment": jid}, headers=h)).json()["alarms"]
        assert any(a["id"] == aid for a in listed)
        console = (await c.get("/api/v1/alarms/console", headers=h)).json()
        assert any(a["id"] == aid for a in console["critical"])  # priority 1 on top, never grouped away
        assert (await c.get("/api/v1/alarms/summary", headers=h)).json()["failsafe"] >= 1

        # the monitor then asks the controller for flash through the gate, and says the cabinet did not act
        await until("the flash request reaching the controller", lambda: model.system_pattern_control == 255)
        did_not_act = f"system.junction.monitor_did_not_act:{junction.tag_name('failsafe/monitor_did_not_act')}"
        assert server.alarms is not None
        await until("monitor did not act", lambda: any(a["id"] == did_not_act for a in server.alarms.active()[1]))

        # priority 1: cannot be shelved; the operator acknowledges; a maintainer resets (the monitor first)
        r = await c.post(f"/api/v1/alarms/{aid}/shelve", json={"duration_s": 600, "reason": "test"}, headers=h)
        assert r.status_code == 409 and "priority-1" in r.text, r.text
        r = await c.post("/api/v1/alarms/ack", json={"ids": [aid, did_not_act], "comment": "crew sent"}, headers=h)
        assert r.status_code == 200, r.text
        r = await c.post(f"/api/v1/alarms/{aid}/reset", json={}, headers=h)
        assert r.status_code == 403, r.text  # operators do not reset latched alarms
        model.clear()  # the crew repaired the cabinet; the reset waits for a sample without the conflict (the
        # monitor re-raises at once on a sample that still shows it: that is the conservative choice)
        greens = junction.tag_name("phase_greens")
        await until("a clean sample", lambda: server.tagdb.read(greens).value != (1 << model.phases) - 1)
        r = await c.post(f"/api/v1/alarms/{aid}/reset", json={"comment": "load switch replaced"}, headers=hm)
        assert r.status_code == 200, r.text
        assert server.tagdb.read(junction.tag_name("failsafe/conflicting_green")).value == 0  # monitor reset
        assert fs.monitor.view(jid).state != "conflict"
        assert not any(a["id"] == aid for a in server.alarms.active()[1])  # acknowledged + reset → normal

        rows = (await c.get("/api/v1/journal", params={"equipment": jid, "limit": 100}, headers=h)).json()["entries"]
        events = [(r["event"], r["user"]) for r in rows if r["alarm"] == aid]
        assert ("condition_on", None) in events and ("acknowledge", "op") in events and ("reset", "maint") in events
        assert ("shelve", "op") in [(r["event"], r["user"]) for r in rows if r["outcome"] == "refused"]


async def test_historian_backend_down_is_a_system_alarm(tmp_path: Path) -> None:
    """The server starts before its InfluxDB (Debian's influxd): the buffer takes the values and a P3
    system alarm says so; when influxd starts, the buffer replays and the alarm returns by itself."""
    require_peer("influxd", "Debian package influxdb")
    influx = InfluxServer(tmp_path / "influxd")  # its port is chosen now, the server starts later
    try:
        async with running_server(tmp_path / "data", **{"historian.backend": "influxdb",
                                                        "historian.influxdb": {"url": influx.url, "bucket": "scada",
                                                                               "version": 1}}) \
                as (server, url), httpx.AsyncClient(base_url=url, timeout=30) as c:
            h = await login(c, "op")
            aid = "system.historian.backend_down:system/historian/backend_down"

            async def listed() -> dict[str, Any] | None:
                alarms = (await c.get("/api/v1/alarms", headers=h)).json()["alarms"]
                return next((a for a in alarms if a["id"] == aid), None)

            alarm = await until("the historian alarm", listed, timeout=30)
            assert alarm["priority"] == 3 and alarm["service"] == "system" and alarm["area"] == "system"
            assert alarm["state"] == "unack" and "unavailable" in alarm["message"]
            r = await c.post("/api/v1/alarms/ack", json={"ids": [aid]}, headers=h)
            assert r.status_code == 200, r.text
            await asyncio.to_thread(influx.start)  # the database comes back
            await until("the alarm returning to normal", lambda: server.tagdb.read(
                "system/historian/backend_down").value == 0, timeout=60)
            assert await listed() is None  # acknowledged and cleared → normal
            rows = (await c.get("/api/v1/journal", params={"limit": 500}, headers=h)).json()["entries"]
            assert {r["event"] for r in rows if r["alarm"] == aid} == {"condition_on", "acknowledge", "condition_off"}
    finally:
        influx.stop()


def test_every_system_alarm_has_a_tag_and_a_rule_in_the_city() -> None:
    config = load_city(ROOT / "tags.yaml", ROOT / "alarms.yaml")
    names = {t.name for t in system_tags(config)}
    rules = {r.name: r for r in system_rules(config)}
    junctions = [e for e in config.equipment.values() if e.template == "junction"]
    for code in MONITOR_CODES:
        assert all(j.tag_name(f"failsafe/{code}") in names for j in junctions)
        assert rules[f"system.junction.{code}"].latched and rules[f"system.junction.{code}"].priority == 1
    cabinet = next(e for e in config.equipment.values() if e.template == "lighting_cabinet")
    assert cabinet.tag_name("failsafe/command_not_confirmed") in names
    assert rules["system.lighting_cabinet.command_not_confirmed"].service == "lighting"
    camera = next(e for e in config.equipment.values() if e.template == "camera")
    assert camera.tag_name("failsafe/command_failed") not in names  # nothing to command on a camera
    for a in SYSTEM_ALARMS:
        if a.scope == "system":
            assert a.tag() in names and rule_name(a) in rules
            assert parse_rule(rule_name(a)) is a
