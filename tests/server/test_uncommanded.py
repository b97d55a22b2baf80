"""What the field does that this system did not command is an alarm (failsafe/watch.py), end to end.

The real simulator and the real server; each "outside" write is made by a tool that is not ours, straight to
the simulator, as an intruder or a contractor's laptop on the field network would:

    junction pattern, unitBackupTime   Debian snmpset (net-snmp), community public-<id>
    lighting override, bollard command  Debian mbpoll (Modbus TCP)
    building arming request             a second OPC UA client (asyncua, in the test process)
    panel message                       a raw panel frame (drivers/panel_framing.py) written on the serial bus

Each: the alarm appears on /api/v1/alarms with the value read and the commands that end it (``remedies``);
``return_to_local`` (or the type's equivalent) or ``adopt`` through the API clears it. A command through our
gate and a lease running out raise nothing; a technician's local manual control is a P3 "local control".
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path
from typing import Any

import httpx
from asyncua import Client, ua

from drivers.panel_framing import write_request
from tests.peers import require_peer
from tests.server.conftest import login, running_server
from tests.server.test_e2e import field, until

__all__ = ["field"]  # the simulator fixture

PATTERN_OID = "1.3.6.1.4.1.1206.4.2.1.4.14.0"  # systemPatternControl
BACKUP_OID = "1.3.6.1.4.1.1206.4.2.1.3.3.0"  # unitBackupTime


async def run(*argv: str) -> str:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT, env={**os.environ, "MIBS": ""})
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=20)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, f"{argv[0]} failed: {text}"
    return text


async def snmpset(sim: Any, junction: str, *varbinds: str) -> None:
    exe = require_peer("snmpset", "Debian package snmp (net-snmp)")
    await run(exe, "-v2c", "-c", f"public-{junction}", "-t", "2", "-r", "1", sim.endpoints["snmp-traffic"], *varbinds)


async def mbpoll(sim: Any, unit: int, *values: str) -> None:
    exe = require_peer("mbpoll", "Debian package mbpoll")
    host, port = sim.endpoints["modbus-1"].rsplit(":", 1)
    # -o 5: a 5 s answer timeout (mbpoll's default 1 s is short for a gateway sharing 2 loaded cores)
    out = await run(exe, "-m", "tcp", "-p", port, "-o", "5", "-0", "-1", "-a", str(unit), "-t", "4", "-r", "0", host,
                    *values)
    assert re.search(r"Written \d+ reference", out), out


async def alarm(c: httpx.AsyncClient, h: dict[str, str], eq: str, code: str) -> dict[str, Any] | None:
    """The active system alarm ``code`` of ``eq`` on /api/v1/alarms, if any."""
    rows: list[dict[str, Any]] = (await c.get("/api/v1/alarms", params={"equipment": eq}, headers=h)).json()["alarms"]
    return next((a for a in rows if a["rule"].endswith(f".{code}") and a["active"]), None)


async def command(c: httpx.AsyncClient, h: dict[str, str], target: str, verb: str,
                  approver: dict[str, str] | None = None, **params: Any) -> dict[str, Any]:
    """Submit through the API; approve (second person) and operate (select-before-operate) as the ticket asks."""
    r = await c.post("/api/v1/commands", json={"target": target, "verb": verb, "params": params}, headers=h)
    assert r.status_code == 200, r.text
    rec: dict[str, Any] = r.json()
    if rec["state"] == "awaiting_approval":
        assert approver is not None, rec
        r = await c.post(f"/api/v1/commands/{rec['id']}/approve", headers=approver)
        assert r.status_code == 200, r.text
        rec = r.json()
    if rec["state"] == "selected":
        r = await c.post(f"/api/v1/commands/{rec['id']}/operate", headers=h)
        assert r.status_code == 200, r.text
        rec = r.json()
    assert rec["outcome"] == "done", rec
    return rec


async def raised(c: httpx.AsyncClient, h: dict[str, str], eq: str, code: str, text: str) -> dict[str, Any]:
    async def seen() -> dict[str, Any] | None:
        a = await alarm(c, h, eq, code)
        return a if a is not None and text in a["message"] else None

    return await until(f"{code} at {eq} ({text})", seen, timeout=40)


async def cleared(c: httpx.AsyncClient, h: dict[str, str], eq: str, code: str) -> None:
    async def gone() -> bool:
        return await alarm(c, h, eq, code) is None

    await until(f"{code} at {eq} clearing", gone, timeout=40)


async def journalled(c: httpx.AsyncClient, h: dict[str, str], eq: str, alarm_id: str, text: str) -> None:
    rows = (await c.get("/api/v1/journal", params={"equipment": eq, "limit": 200}, headers=h)).json()["entries"]
    assert any(r["alarm"] == alarm_id and r["event"] == "condition_on" and text in str(r["value"]) for r in rows), rows


async def test_snmpset_flash_is_an_uncommanded_change_until_return_to_local(field: tuple[Any, Path],
                                                                         tmp_path: Path) -> None:
    sim, tags = field
    async with running_server(tmp_path / "data", endpoints=sim.endpoints, tags=tags,
                              alarms=tags.parent / "alarms.yaml") as (server, url), \
            httpx.AsyncClient(base_url=url, timeout=60) as c:
        h = await login(c, "op")
        await until("J005 polled", lambda: server.tagdb.read(
            server.config.equipment["J005"].tag_name("system_pattern_control")).quality.is_good)
        await snmpset(sim, "J005", PATTERN_OID, "i", "255")
        a = await raised(c, h, "J005", "uncommanded_change", "pattern flash, no lease from this system")
        assert a["priority"] == 2 and a["value"] == "pattern flash, no lease from this system"
        assert a["message"].startswith("Uncommanded change at J005") and a["remedies"] == ["return_to_local", "adopt"]
        await journalled(c, h, "J005", a["id"], "pattern flash")
        await command(c, h, "J005", "return_to_local")
        await cleared(c, h, "J005", "uncommanded_change")
        assert sim.models["J005"].system_pattern_control == 0


async def test_snmpset_backup_time_zero_and_a_plan_until_adopted(field: tuple[Any, Path], tmp_path: Path) -> None:
    sim, tags = field
    async with running_server(tmp_path / "data", endpoints=sim.endpoints, tags=tags,
                              alarms=tags.parent / "alarms.yaml") as (server, url), \
            httpx.AsyncClient(base_url=url, timeout=60) as c:
        h = await login(c, "op")
        await until("J006 polled", lambda: server.tagdb.read(
            server.config.equipment["J006"].tag_name("unit_backup_time")).quality.is_good)
        await snmpset(sim, "J006", BACKUP_OID, "i", "0", PATTERN_OID, "i", "2")
        zero = await raised(c, h, "J006", "backup_time_zero", "unitBackupTime 0 at J006")
        assert zero["priority"] == 2 and "would never fall back to local" in zero["message"]
        change = await raised(c, h, "J006", "uncommanded_change", "pattern 2, no lease from this system")
        assert change["remedies"] == ["return_to_local", "adopt"]
        rec = await command(c, h, "J006", "adopt", pattern=2)  # hold plan 2 under our lease (backup time restored)
        assert rec["lease_end"] is not None
        await cleared(c, h, "J006", "uncommanded_change")
        await cleared(c, h, "J006", "backup_time_zero")
        assert sim.models["J006"].unit_backup_time == 30 and sim.models["J006"].system_pattern_control == 2


async def test_mbpoll_lighting_override_until_adopted(field: tuple[Any, Path], tmp_path: Path) -> None:
    sim, tags = field
    async with running_server(tmp_path / "data", endpoints=sim.endpoints, tags=tags,
                              alarms=tags.parent / "alarms.yaml") as (server, url), \
            httpx.AsyncClient(base_url=url, timeout=60) as c:
        h = await login(c, "op")
        cab = server.config.equipment["C0001"]
        await until("C0001 polled", lambda: server.tagdb.read(cab.tag_name("mode")).quality.is_good)
        await mbpoll(sim, int(cab.params.get("unit") or cab.identity.get("unit") or 1), "80", "600")
        a = await raised(c, h, "C0001", "uncommanded_change", "override level 80 %, no lease from this system")
        assert a["remedies"] == ["return_to_schedule", "adopt"]
        await command(c, h, "C0001", "adopt", level=80)
        await cleared(c, h, "C0001", "uncommanded_change")
        assert server.components["failsafe"].fs.leases.active("C0001") is not None  # type: ignore[attr-defined]


async def test_mbpoll_bollard_command_until_return_to_local(field: tuple[Any, Path], tmp_path: Path) -> None:
    sim, tags = field
    async with running_server(tmp_path / "data", endpoints=sim.endpoints, tags=tags,
                              alarms=tags.parent / "alarms.yaml") as (server, url), \
            httpx.AsyncClient(base_url=url, timeout=60) as c:
        h = await login(c, "op")
        bl = server.config.equipment["BL01"]
        await until("BL01 polled", lambda: server.tagdb.read(bl.tag_name("command")).quality.is_good)
        await mbpoll(sim, int(bl.params.get("unit") or bl.identity.get("unit") or 13), "1")  # lower
        a = await raised(c, h, "BL01", "uncommanded_change", "command lower")
        assert "no lease from this system" in a["value"] and a["remedies"] == ["return_to_local", "adopt"]
        await command(c, h, "BL01", "return_to_local")
        await cleared(c, h, "BL01", "uncommanded_change")
        assert sim.models["BL01"].command == 0


async def test_second_opcua_client_disarming_a_building_until_return_to_local(field: tuple[Any, Path],
                                                                              tmp_path: Path) -> None:
    sim, tags = field
    async with running_server(tmp_path / "data", endpoints=sim.endpoints, tags=tags,
                              alarms=tags.parent / "alarms.yaml") as (server, url), \
            httpx.AsyncClient(base_url=url, timeout=60) as c:
        h = await login(c, "op")
        b = server.config.equipment["B001"]
        await until("B001 polled", lambda: server.tagdb.read(b.tag_name("intrusion_arm_request")).quality.is_good)
        async with Client(f"opc.tcp://{sim.endpoints['opcua-bms']}/city/bms", timeout=5) as client:
            idx = await client.get_namespace_index("urn:city:bms")
            await client.get_node(ua.NodeId("B001/intrusion/arm_request", idx)).write_value(
                ua.Variant(2, ua.VariantType.Int32))
            await client.get_node(ua.NodeId("B001/intrusion/arm_lease", idx)).write_value(
                ua.Variant(600, ua.VariantType.UInt32))
        a = await raised(c, h, "B001", "uncommanded_change", "arming request disarm, no lease from this system")
        assert a["priority"] == 2
        await command(c, h, "B001", "return_to_local")
        await cleared(c, h, "B001", "uncommanded_change")


async def test_raw_panel_frame_on_the_bus_until_return_to_local(field: tuple[Any, Path], tmp_path: Path) -> None:
    sim, tags = field
    async with running_server(tmp_path / "data", endpoints=sim.endpoints, tags=tags,
                              alarms=tags.parent / "alarms.yaml") as (server, url), \
            httpx.AsyncClient(base_url=url, timeout=60) as c:
        h = await login(c, "op")
        p = server.config.equipment["P01"]
        watch = server.components["failsafe"].watch  # type: ignore[attr-defined]
        msg = p.tag_name("message")
        await until("P01 polled", lambda: server.tagdb.read(msg).quality.is_good)
        await asyncio.sleep(1.5)  # the watch took the panel's own text ("Bienvenue à ...") as local
        assert "P01" not in watch.findings()
        fd = os.open(sim.endpoints["panels-bus-1"], os.O_WRONLY | os.O_NOCTTY)
        try:  # one write: a second master on the RS-485 line, the bytes of one frame together
            os.write(fd, write_request(int(p.params.get("unit") or p.identity.get("unit") or 1), "ROUTE FERMEE"))
        finally:
            os.close(fd)
        a = await raised(c, h, "P01", "uncommanded_change", "message 'ROUTE FERMEE', no lease from this system")
        assert a["remedies"] == ["return_to_local", "adopt"]
        await command(c, h, "P01", "return_to_local")
        await cleared(c, h, "P01", "uncommanded_change")
        assert sim.models["P01"].message == ""


async def test_our_commands_and_a_lease_running_out_raise_nothing_and_local_manual_is_p3(
        field: tuple[Any, Path], tmp_path: Path) -> None:
    sim, tags = field
    async with running_server(tmp_path / "data", endpoints=sim.endpoints, tags=tags,
                              alarms=tags.parent / "alarms.yaml") as (server, url), \
            httpx.AsyncClient(base_url=url, timeout=60) as c:
        h = await login(c, "op")
        watch = server.components["failsafe"].watch  # type: ignore[attr-defined]
        cab = server.config.equipment["C0002"]
        await until("polled", lambda: all(server.tagdb.read(server.config.equipment[e].tag_name(t)).quality.is_good
                                          for e, t in (("J003", "system_pattern_control"), ("C0002", "mode"),
                                                       ("C0004", "mode"))))
        await command(c, h, "J003", "select_plan", plan=2)
        r = await c.post("/api/v1/commands", json={"target": "C0002", "verb": "set_level", "params": {"level": 90},
                                                   "lease_s": 3}, headers=h)
        assert r.status_code == 200 and r.json()["outcome"] == "done", r.text
        await until("the cabinet back on its schedule", lambda: sim.models["C0002"].mode != 1, timeout=20)
        await until("the end of the lease polled", lambda: server.tagdb.read(cab.tag_name("mode")).value != 1)
        await asyncio.sleep(2)
        # far past every grace window: J003's plan is ours by its lease, C0002 is back to local
        watch.check(now=time.time() + 120)
        assert watch.findings() == {}
        for eq in ("J003", "C0002"):
            assert await alarm(c, h, eq, "uncommanded_change") is None
        # a technician switches C0004 to local manual at the cabinet: local control (P3), not uncommanded
        sim.inject("C0004", "local_manual", level=40)
        local = await raised(c, h, "C0004", "local_control", "local control")
        assert local["priority"] == 3
        assert await alarm(c, h, "C0004", "uncommanded_change") is None
