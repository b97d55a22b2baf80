"""A reload is all or nothing, and what is pending in the command gate survives it (real server, real API).

- A configuration the fail-safe layer cannot use (commands.yaml gone, or a vocabulary that does not load
  against the new city) is refused as a whole: 409 with every problem, the running layer untouched.
- A component that fails to switch after preparation: every component is applied back to the running
  configuration, a P1 system alarm says which, the API answers 409 reload_failed; the next reload works.
- /health says what runs after each reload (a layer that was unavailable and now runs is "ok").
- Against the simulator: a junction selection, a pending approval and the per-user rate window are carried
  into the new gate: operate, approve and the rate limit work as if no reload had happened.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx

from scada.config import CityConfig
from scada.tagdb import TagDatabase
from server.components.hub import HubComponent
from tests.server.conftest import ROOT, login, running_server
from tests.server.test_e2e import field, until

__all__ = ["field"]  # the simulator fixture


class HubFailingOnce(HubComponent):
    """The real hub component, whose first rebind fails (a component failing after preparation)."""

    failures = 0

    async def apply(self, old: CityConfig, new: CityConfig, tagdb: TagDatabase) -> dict[str, Any]:
        if self.failures == 0:
            self.failures += 1
            raise RuntimeError("cannot rebind the consoles")
        return await super().apply(old, new, tagdb)


def _city(tmp: Path) -> Path:
    city = tmp / "city"
    shutil.copytree(ROOT / "inventory", city / "inventory")
    for name in ("tags.yaml", "alarms.yaml"):
        shutil.copy(ROOT / name, city / name)
    return city


def _add_cabinet(city: Path) -> None:
    inv = (city / "inventory" / "demo.csv").read_text().splitlines()
    cab = next(line for line in inv if ",lighting_cabinet," in line)
    new_cab = cab.replace(cab.split(",")[0], "C9999", 1).replace(f",{cab.split(',')[10]},", ",199,", 1)
    (city / "inventory" / "demo.csv").write_text("\n".join([*inv, new_cab]) + "\n")


async def test_unusable_safety_configuration_and_failed_apply_change_nothing(tmp_path: Path) -> None:
    city = _city(tmp_path)
    commands = city / "commands.yaml"  # absent at start: the fail-safe layer is unavailable
    async with running_server(tmp_path / "d", tags=city / "tags.yaml", alarms=city / "alarms.yaml",
                              commands=commands) as (server, url), httpx.AsyncClient(base_url=url, timeout=60) as c:
        he, ho = await login(c, "eng"), await login(c, "op")
        assert (await c.get("/api/v1/health")).json()["subsystems"]["failsafe"]["status"] == "unavailable"

        # the vocabulary appears: nothing in force to weaken, it starts at once and /health says so
        shutil.copy(ROOT / "commands.yaml", commands)
        r = await c.post("/api/v1/config/reload", headers=he)
        assert r.status_code == 200 and r.json()["generation"] == 2, r.text
        assert (await c.get("/api/v1/health")).json()["subsystems"]["failsafe"]["status"] == "ok"
        fs = server.failsafe()
        assert fs is not None
        j = next(e for e in server.config.equipment.values() if e.template == "junction")
        r = await c.post("/api/v1/commands", json={"target": j.id, "verb": "select_plan", "params": {"plan": 2}},
                         headers=ho)
        assert r.status_code == 200 and r.json()["state"] == "selected", r.text
        ticket = r.json()["id"]

        # commands.yaml gone: refused as a whole, the running layer and its selection untouched
        commands.unlink()
        r = await c.post("/api/v1/config/reload", headers=he)
        assert r.status_code == 409, r.text
        assert any("commands.yaml" in p and "not found" in p for p in r.json()["problems"]), r.json()
        assert server.failsafe() is fs and fs.monitor is not None and server.config_generation == 2
        assert (await c.get(f"/api/v1/commands/{ticket}", headers=ho)).json()["state"] == "selected"
        assert (await c.get("/api/v1/health")).json()["subsystems"]["failsafe"]["status"] == "ok"

        # a vocabulary that does not load against the new city (its junction J004 removed from the inventory)
        shutil.copy(ROOT / "commands.yaml", commands)
        inventory = city / "inventory" / "demo.csv"
        kept = inventory.read_text()
        inventory.write_text("".join(line for line in kept.splitlines(keepends=True) if not line.startswith("J004,")))
        r = await c.post("/api/v1/config/reload", headers=he)
        assert r.status_code == 409, r.text
        assert any("J004" in p and "junction" in p for p in r.json()["problems"]), r.json()
        assert "J004" in server.config.equipment and server.failsafe() is fs
        inventory.write_text(kept)
        recs = server.audit.query(type_="reload")
        assert [rec.result for rec in recs[:3]] == ["refused", "refused", "applied"]

        # a component fails after preparation: every component rolled back, a P1 system alarm names it
        server.components["hub"] = HubFailingOnce(server)
        _add_cabinet(city)
        config, tagdb = server.config, server.tagdb
        devices = set(server.poller.devices)
        r = await c.post("/api/v1/config/reload", headers=he)
        assert r.status_code == 409, r.text
        assert r.json()["code"] == "reload_failed" and "reload failed in hub" in r.json()["why"], r.json()
        assert server.config is config and server.tagdb is tagdb and server.config_generation == 2
        assert "C9999" not in server.config.equipment and set(server.poller.devices) == devices
        rolled = server.failsafe()
        assert rolled is not None and rolled.city is config and rolled.gate.status(ticket) is not None
        assert getattr(server.alarms, "engine").db is tagdb  # noqa: B009  # the running AlarmService's engine
        assert server.hub.tagdb is tagdb
        listed = (await c.get("/api/v1/alarms", headers=ho)).json()["alarms"]
        p1 = [a for a in listed if a["rule"] == "system.server.reload_failed_hub"]
        assert p1 and p1[0]["priority"] == 1 and "reload failed in hub" in p1[0]["message"].lower(), listed[:3]
        health = (await c.get("/api/v1/health")).json()["subsystems"]
        assert all(health[s]["status"] == "ok" for s in ("failsafe", "alarms", "tagdb")), health
        rows = (await c.get("/api/v1/journal", params={"limit": 20}, headers=he)).json()["entries"]
        assert any(row["event"] == "config_change" and row["outcome"] == "refused"
                   and "reload failed in hub" in (row["detail"] or "") for row in rows)

        # the next reload goes through
        r = await c.post("/api/v1/config/reload", headers=he)
        assert r.status_code == 200 and r.json()["generation"] == 3, r.text
        assert "C9999" in server.config.equipment and server.hub.tagdb is server.tagdb


async def test_selection_approval_and_rate_window_survive_a_reload(field: tuple[Any, Path], tmp_path: Path) -> None:
    sim, tags = field
    commands = tags.parent / "commands.yaml"
    commands.write_text(commands.read_text().replace("per_user_per_minute: 10", "per_user_per_minute: 3", 1))
    alarms = tags.parent / "alarms.yaml"
    async with running_server(tmp_path / "data", endpoints=sim.endpoints, tags=tags, alarms=alarms) as (server, url), \
            httpx.AsyncClient(base_url=url, timeout=60) as c:
        he, hs, ho = await login(c, "eng"), await login(c, "sup"), await login(c, "op")
        await until("the first poll of every device", lambda: server.subsystems["poll"].status == "ok", timeout=60)
        # three commands by op (the per-user limit): a junction selection, a bollard lowering awaiting
        # approval, a second junction within the minute (mass: awaiting approval too)
        r = await c.post("/api/v1/commands", json={"target": "J003", "verb": "select_plan", "params": {"plan": 2}},
                         headers=ho)
        assert r.status_code == 200 and r.json()["state"] == "selected", r.text
        selected = r.json()["id"]
        r = await c.post("/api/v1/commands", json={"target": "BL01", "verb": "lower"}, headers=ho)
        assert r.status_code == 200 and r.json()["state"] == "awaiting_approval", r.text
        awaiting = r.json()["id"]
        r = await c.post("/api/v1/commands", json={"target": "J007", "verb": "select_plan", "params": {"plan": 2}},
                         headers=ho)
        assert r.status_code == 200 and r.json()["state"] == "awaiting_approval" and r.json()["mass"], r.text

        # an unrelated change (an alarm message): applied at once
        text = alarms.read_text()
        alarms.write_text(text.replace("communication lost, signal state unknown",
                                       "communication lost, signal state not known", 1))
        fs = server.failsafe()
        r = await c.post("/api/v1/config/reload", headers=he)
        assert r.status_code == 200 and r.json()["generation"] == 2, r.text
        assert r.json()["subsystems"]["failsafe"]["cancelled_tickets"] == []
        assert server.failsafe() is not fs  # a new layer, on the new configuration

        pending = {t["id"] for t in (await c.get("/api/v1/commands", params={"pending": "true"},
                                                 headers=ho)).json()["commands"]}
        assert {selected, awaiting} <= pending
        r = await c.post(f"/api/v1/commands/{selected}/operate", headers=ho)
        assert r.status_code == 200, r.text
        assert r.json()["outcome"] == "done", r.json()  # written to the simulated controller, confirmed
        assert sim.models["J003"].system_pattern_control == 2
        r = await c.post(f"/api/v1/commands/{awaiting}/approve", headers=hs)
        assert r.status_code == 200 and r.json()["state"] == "selected" and r.json()["approver"] == "sup", r.text
        # the rate window came along: op's fourth command within the minute is refused
        r = await c.post("/api/v1/commands", json={"target": "J009", "verb": "select_plan", "params": {"plan": 2}},
                         headers=ho)
        assert r.status_code == 409 and "rate_limit" in r.json()["why"], r.text
