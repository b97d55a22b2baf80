"""What the server's command path does now that it drives the fail-safe layer through its own façade.

Simulator (real Modbus / SNMP servers) + the real server, through the API only:

1. a ``group:<commune slug>/<template>`` target reaches every such equipment of the commune, and no other;
2. approve-then-run: a non-critical command that needs a second person runs when a supervisor approves it;
3. one write at a time per device: two operators' concurrent commands to one cabinet reach it one after
   the other (write + read-back of one before the other's write), seen in the simulated cabinet's record;
4. the SNMP SET allow-list is checked again at write time: a verb that writes an OID outside it is
   refused before any packet (no SET reaches the simulated controller) and the API says why.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from failsafe.vocabulary import SNMP_SET_ALLOW_LIST
from scada.config.units import slug
from tests.server.conftest import login, running_server
from tests.server.test_e2e import field, until

__all__ = ["field"]  # the simulator fixture


async def test_a_group_target_reaches_every_equipment_of_the_commune(field: tuple[Any, Path],
                                                                   tmp_path: Path) -> None:
    sim, tags = field
    async with running_server(tmp_path / "data", endpoints=sim.endpoints, tags=tags,
                              alarms=tags.parent / "alarms.yaml") as (server, url), \
            httpx.AsyncClient(base_url=url, timeout=60) as c:
        cabinets = [e for e in server.config.equipment.values() if e.template == "lighting_cabinet"]
        dijon = sorted(e.id for e in cabinets if slug(e.commune) == "dijon")
        others = [e.id for e in cabinets if slug(e.commune) != "dijon"]
        assert len(dijon) > 1 and others
        await until("the cabinets polled", lambda: all(server.tagdb.read(e.tag_name("mode")).quality.is_good
                                                       for e in cabinets), timeout=40)
        h = await login(c, "op")
        r = await c.post("/api/v1/commands", json={"target": "group:dijon/lighting_cabinet", "verb": "set_level",
                                                   "params": {"level": 100}, "lease_s": 60}, headers=h)
        assert r.status_code == 200, r.text
        cmd = r.json()
        assert cmd["targets"] == dijon and cmd["outcome"] == "done", cmd
        assert all(sim.models[i].mode == 1 and sim.models[i].override_level == 100 for i in dijon)
        assert all(sim.models[i].mode == 0 for i in others)  # the other communes' cabinets follow their schedule
        r = await c.post("/api/v1/commands", json={"target": "group:nowhere/lighting_cabinet", "verb": "set_level",
                                                   "params": {"level": 100}}, headers=h)
        assert r.status_code == 409 and r.json()["code"] == "command_rejected", r.text
        assert "unknown equipment" in r.json()["why"]


async def test_an_approved_non_critical_command_runs_at_once(field: tuple[Any, Path], tmp_path: Path) -> None:
    sim, tags = field
    async with running_server(tmp_path / "data", endpoints=sim.endpoints, tags=tags,
                              alarms=tags.parent / "alarms.yaml") as (server, url), \
            httpx.AsyncClient(base_url=url, timeout=60) as c:
        cab = next(e for e in server.config.equipment.values() if e.template == "lighting_cabinet")
        model = sim.models[cab.id]
        await until("the cabinet polled", lambda: server.tagdb.read(cab.tag_name("mode")).quality.is_good)
        h, hs = await login(c, "op"), await login(c, "sup")
        full = (await c.post("/api/v1/commands", json={"target": cab.id, "verb": "set_level",
                                                       "params": {"level": 100}, "lease_s": 120}, headers=h)).json()
        assert full["outcome"] == "done" and model.override_level == 100, full
        # dimming a cabinet held at full light reduces safety: a second person must approve it
        r = await c.post("/api/v1/commands", json={"target": cab.id, "verb": "set_level", "params": {"level": 40},
                                                   "lease_s": 120}, headers=h)
        assert r.status_code == 200, r.text
        dim = r.json()
        assert dim["state"] == "awaiting_approval" and dim["safety"] == "reducing", dim
        await asyncio.sleep(1.0)
        assert model.override_level == 100  # nothing written while waiting
        r = await c.post(f"/api/v1/commands/{dim['id']}/approve", headers=hs)
        assert r.status_code == 200, r.text
        done = r.json()
        assert done["state"] == "finished" and done["outcome"] == "done", done
        assert done["approver"] == "sup" and done["user"] == "op"
        assert model.mode == 1 and model.override_level == 40  # it ran for its requester, no operate needed
        status = (await c.get(f"/api/v1/commands/{dim['id']}", headers=h)).json()
        assert status["outcome"] == "done" and status["leases"][0]["ticket"] == dim["id"], status


async def test_concurrent_commands_to_one_device_are_written_one_after_the_other(
        field: tuple[Any, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sim, tags = field
    delay_s = 0.5
    # slow answers must not read as a lost device: a 10 s scan and a 5 s timeout for the cabinets
    city = tmp_path / "slow"
    city.mkdir()
    text = tags.read_text().replace("normal: 1s", "normal: 10s")
    timeout = "    timeout: 1s\n    retries: 1\n    description: street-lighting cabinet"
    assert timeout in text
    (city / "tags.yaml").write_text(text.replace(timeout, timeout.replace("1s", "5s")))
    (city / "alarms.yaml").write_text((tags.parent / "alarms.yaml").read_text())
    (city / "commands.yaml").write_text((tags.parent / "commands.yaml").read_text())
    async with running_server(tmp_path / "data", endpoints=sim.endpoints, tags=city / "tags.yaml",
                              alarms=city / "alarms.yaml") as (server, url), \
            httpx.AsyncClient(base_url=url, timeout=60) as c:
        cab = next(e for e in server.config.equipment.values() if e.template == "lighting_cabinet")
        model = sim.models[cab.id]
        await until("the cabinet polled", lambda: server.tagdb.read(cab.tag_name("mode")).quality.is_good)
        h1, h2 = await login(c, "op"), await login(c, "op2")
        level_writes: list[float] = []  # when the simulated cabinet received a write of its override level
        original = model.modbus_write

        def recording_write(table: Any, address: int, values: Any) -> None:
            if table == "hr" and address == 0:
                level_writes.append(time.monotonic())
            original(table, address, values)

        monkeypatch.setattr(model, "modbus_write", recording_write)
        # every answer of this cabinet comes late: a write and its read-back take two delays each
        await sim.comm_fault(cab.id, "delay", delay_s=delay_s)
        body = {"target": cab.id, "verb": "set_level", "params": {"level": 100}, "lease_s": 60}
        r1, r2 = await asyncio.gather(c.post("/api/v1/commands", json=body, headers=h1),
                                      c.post("/api/v1/commands", json=body, headers=h2))
        await sim.comm_fault(cab.id, None)
        assert r1.status_code == r2.status_code == 200, (r1.text, r2.text)
        assert r1.json()["outcome"] == r2.json()["outcome"] == "done", (r1.json(), r2.json())
        assert len(level_writes) >= 2, level_writes
        # the second write waited for the first one's answer and read-back (2 delays), never sent alongside it
        assert level_writes[1] - level_writes[0] >= 1.5 * delay_s, level_writes
        assert model.override_level == 100


OMIT_OID = "1.3.6.1.4.1.1206.4.2.1.1.5.1.2.1"  # NTCIP phaseControlGroupPhaseOmit: not for the supervisory side


async def test_a_set_outside_the_allow_list_is_refused_before_any_packet(
        field: tuple[Any, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    sim, tags = field
    city = tmp_path / "variant"
    city.mkdir()
    text = tags.read_text()
    anchor = "      - {name: unit_backup_time,"
    assert anchor in text
    (city / "tags.yaml").write_text(text.replace(
        anchor, f"      - {{name: aux_control, type: int, address: {OMIT_OID}, access: rw}}\n{anchor}", 1))
    (city / "alarms.yaml").write_text((tags.parent / "alarms.yaml").read_text())
    commands = (tags.parent / "commands.yaml").read_text()
    anchor = "\n  lighting_cabinet:"
    assert anchor in commands
    (city / "commands.yaml").write_text(commands.replace(anchor, "\n      set_aux:\n        lease: end\n"
                                                                 "        writes:\n"
                                                                 "          - {tag: aux_control, value: 255}\n"
                                                                 "        confirm:\n"
                                                                 "          - {tag: aux_control, equals: 255}\n"
                                                         + anchor, 1))
    # the vocabulary is checked against the allow-list when it is loaded: let this one through the load, as a
    # vocabulary checked against an older allow-list would be; the writer checks again at write time
    monkeypatch.setitem(SNMP_SET_ALLOW_LIST, OMIT_OID, "phaseOmit (this test only, while loading)")
    async with running_server(tmp_path / "data", endpoints=sim.endpoints, tags=city / "tags.yaml",
                              alarms=city / "alarms.yaml") as (server, url), \
            httpx.AsyncClient(base_url=url, timeout=60) as c:
        monkeypatch.delitem(SNMP_SET_ALLOW_LIST, OMIT_OID)
        junction = next(e for e in server.config.equipment.values() if e.template == "junction")
        await until("the junction polled", lambda: server.tagdb.read(
            junction.tag_name("coord_pattern_status")).quality.is_good, timeout=40)
        h = await login(c, "op")
        caplog.set_level(logging.INFO, logger="sim.snmp_agent")
        r = await c.post("/api/v1/commands", json={"target": junction.id, "verb": "set_aux"}, headers=h)
        assert r.status_code == 200 and r.json()["state"] == "selected", r.text
        r = await c.post(f"/api/v1/commands/{r.json()['id']}/operate", headers=h)
        assert r.status_code == 409, r.text
        refusal = r.json()
        assert refusal["code"] == "command_rejected" and "outside the allow-list" in refusal["why"], refusal
        sets = [rec.getMessage() for rec in caplog.records if rec.name == "sim.snmp_agent" and "SET" in rec.getMessage()]
        assert not any(junction.id in m for m in sets), sets  # nothing reached the controller
        history = (await c.get("/api/v1/commands", params={"equipment": junction.id}, headers=h)).json()["commands"]
        outcome = next(e for e in history if e.get("kind") == "outcome")
        assert outcome["outcome"] == "rejected" and outcome["results"][0]["outcome"] == "rejected", outcome
