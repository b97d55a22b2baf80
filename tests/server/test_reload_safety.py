"""The safety configuration under change control, through the real API.

A reload that changes commands.yaml's safety content (compatibility matrices, verbs, interlocks, the
monitor's settings) is not applied: the server answers 202 with the change and a readable diff, and the
running configuration goes on (the field-safety monitor keeps its settings: a real conflicting green on the
simulator raises the P1). A layout the layer cannot use at all (every J004 pair compatible, which the
controller's own phaseConcurrency contradicts) is refused outright, nothing left pending. Only another account with one of approval.approver_roles can
approve it; the files are validated again at that moment and must be the ones shown. Rejection and the
approval window drop it. Every step is in the fail-safe audit log, the server's audit trail and the journal.
"""

from __future__ import annotations

import asyncio
import io
import shutil
from pathlib import Path
from typing import Any

import httpx

from tests.server.conftest import ROOT, login, running_server
from tests.server.test_e2e import field, until

__all__ = ["field"]  # the simulator fixture

ALL_PAIRS_J004 = "  J004: {phases: 4, permissive: [[1, 2], [1, 3], [1, 4], [2, 3], [2, 4], [3, 4]]}\n"


def _without_verb(text: str, type_name: str, verb: str) -> str:
    """commands.yaml without one verb (a round trip keeps everything else as written)."""
    from ruamel.yaml import YAML

    yaml = YAML()
    tree = yaml.load(text)
    del tree["types"][type_name]["verbs"][verb]
    out = io.StringIO()
    yaml.dump(tree, out)
    return out.getvalue()


def _journal_changes(rows: list[dict[str, Any]]) -> list[tuple[str, str | None, str]]:
    return [(r["outcome"], r["user"], r["detail"] or "") for r in rows if r["event"] == "config_change"]


async def test_weakening_the_monitor_needs_a_second_person(field: tuple[Any, Path], tmp_path: Path) -> None:
    sim, tags = field
    commands = tags.parent / "commands.yaml"
    async with running_server(tmp_path / "data", endpoints=sim.endpoints, tags=tags,
                              alarms=tags.parent / "alarms.yaml") as (server, url), \
            httpx.AsyncClient(base_url=url, timeout=60) as c:
        he, hs, ho = await login(c, "eng"), await login(c, "sup"), await login(c, "op")
        fs = server.failsafe()
        assert fs is not None and fs.monitor is not None
        monitor = fs.monitor
        await until("the monitor watching J004", lambda: getattr(monitor.view("J004"), "state", "") == "normal",
                    timeout=40)

        # one engineer declares every J004 phase pair compatible: the controller's own phaseConcurrency says
        # those pairs conflict, so the layer cannot use it: refused as a whole, nothing pending
        original = commands.read_text()
        commands.write_text(original.replace("  J004: cross4\n", ALL_PAIRS_J004))
        r = await c.post("/api/v1/config/reload", headers=he)
        assert r.status_code == 409, r.text
        assert any("J004" in p for p in r.json()["problems"]), r.json()
        assert server.config_generation == 1 and server.failsafe() is fs
        assert (await c.get("/api/v1/config/changes", params={"pending": "true"}, headers=ho)).json()["changes"] == []

        # weakening the monitor's settings (yellow no longer watched, later flash): 202, nothing applied
        commands.write_text(original.replace("conflict_colours: [green, yellow]", "conflict_colours: [green]", 1)
                            .replace("samples_before_flash: 4", "samples_before_flash: 6", 1))
        r = await c.post("/api/v1/config/reload", headers=he)
        assert r.status_code == 202, r.text
        change = r.json()["change"]
        assert r.json()["applied"] is False and r.json()["pending"] is True
        assert change["state"] == "awaiting_approval" and change["requester"] == "eng"
        assert change["diff"] == ["monitor: samples before flash 4 → 6",
                                  "monitor: conflict colours [green, yellow] → [green]"], change["diff"]
        assert server.config_generation == 1 and server.failsafe() is fs
        listed = (await c.get("/api/v1/config/changes", params={"pending": "true"}, headers=ho)).json()["changes"]
        assert [(x["id"], x["diff"]) for x in listed] == [(change["id"], change["diff"])]

        # the monitor still runs the old settings: a real 1+3 conflicting green on J004 raises the P1
        assert monitor.samples_before_flash == 4 and "yellow" in monitor.colours
        model = sim.models["J004"]
        model.inject("monitor_disabled")
        model.inject("conflicting_green", phases=(1, 3))
        aid = f"system.junction.conflicting_green:{server.config.equipment['J004'].tag_name('failsafe/conflicting_green')}"
        assert server.alarms is not None
        alarms = server.alarms
        await until("the conflicting-green P1 on J004",
                    lambda: any(a["id"] == aid and a["priority"] == 1 for a in alarms.active()[1]), timeout=30)
        model.clear()

        # the requester cannot approve; an operator has no approver role; the supervisor approves
        r = await c.post(f"/api/v1/config/changes/{change['id']}/approve", headers=he)
        assert r.status_code == 409 and "different user" in r.json()["why"], r.text
        r = await c.post(f"/api/v1/config/changes/{change['id']}/approve", headers=ho)
        assert r.status_code == 409 and "may not approve" in r.json()["why"], r.text
        assert server.config_generation == 1
        r = await c.post(f"/api/v1/config/changes/{change['id']}/approve", headers=hs)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["applied"] and body["generation"] == 2 and body["change"]["state"] == "applied"
        assert body["change"]["decided_by"] == "sup" and body["safety"] == change["diff"]
        new_fs = server.failsafe()
        assert new_fs is not None and new_fs is not fs and new_fs.monitor is not None
        assert new_fs.monitor.samples_before_flash == 6 and new_fs.monitor.colours == ("green",)
        health = (await c.get("/api/v1/health")).json()
        assert health["subsystems"]["failsafe"]["status"] == "ok"
        r = await c.post(f"/api/v1/config/changes/{change['id']}/approve", headers=hs)
        assert r.status_code == 409  # applied: no second approval

        # the record: fail-safe audit log, server audit trail, journal
        kinds = [e["kind"] for e in new_fs.audit.entries() if e.get("change") == change["id"]]
        assert kinds == ["config_change_request", "config_change_refusal", "config_change_refusal",
                         "config_change_approval", "config_change_applied"], kinds
        results = [(rec.type, rec.result) for rec in server.audit.query(category="configuration_change")]
        assert ("reload", "pending_approval") in results and ("change_approval", "ok") in results
        assert ("change_approval", "refused") in results and ("reload", "applied") in results
        rows = (await c.get("/api/v1/journal", params={"user": "eng", "limit": 500}, headers=he)).json()["entries"]
        journal = _journal_changes(rows)
        assert any(o == "done" and u == "eng" and d.startswith(f"pending approval (change {change['id']})")
                   and "samples before flash 4 → 6" in d for o, u, d in journal), journal
        assert any(o == "done" and f"change {change['id']} approved by sup" in d for o, u, d in journal), journal


async def test_approval_revalidates_and_window_reject_drop_changes(tmp_path: Path) -> None:
    city = tmp_path / "city"
    shutil.copytree(ROOT / "inventory", city / "inventory")
    for name in ("tags.yaml", "alarms.yaml"):
        shutil.copy(ROOT / name, city / name)
    commands = city / "commands.yaml"
    original = (ROOT / "commands.yaml").read_text().replace("window: 120s", "window: 3s", 1)
    commands.write_text(original)
    async with running_server(tmp_path / "d", tags=city / "tags.yaml", alarms=city / "alarms.yaml") as (server, url), \
            httpx.AsyncClient(base_url=url, timeout=60) as c:
        he, hs, ho, hadm = await login(c, "eng"), await login(c, "sup"), await login(c, "op"), await login(c, "admin")
        # an operator's pending selection of a junction's return_to_local (critical: selected, reserved)
        j = next(e for e in server.config.equipment.values() if e.template == "junction")
        r = await c.post("/api/v1/commands", json={"target": j.id, "verb": "return_to_local"}, headers=ho)
        assert r.status_code == 200 and r.json()["state"] == "selected", r.text
        ticket = r.json()["id"]

        # 1. the files change after the request: the approval is refused, nothing applied
        lowered = original.replace("level: {type: int, min: 0, max: 100}", "level: {type: int, min: 0, max: 80}")
        commands.write_text(lowered)
        r = await c.post("/api/v1/config/reload", headers=he)
        assert r.status_code == 202, r.text
        first = r.json()["change"]
        assert "verb lighting_cabinet.set_level: parameter level max 100 → 80" in first["diff"], first["diff"]
        commands.write_text(lowered.replace("max: 80}", "max: 70}"))
        r = await c.post(f"/api/v1/config/changes/{first['id']}/approve", headers=hs)
        assert r.status_code == 409 and "changed since the request" in r.json()["why"], r.text
        assert server.config_generation == 1
        assert (await c.get(f"/api/v1/config/changes/{first['id']}", headers=ho)).json()["state"] == "refused"

        # 2. rejected by a supervisor: dropped
        r = await c.post("/api/v1/config/reload", headers=he)
        second = r.json()["change"]
        assert r.status_code == 202 and "parameter level max 100 → 70" in " ".join(second["diff"]), r.text
        r = await c.post(f"/api/v1/config/changes/{second['id']}/reject", headers=ho)
        assert r.status_code == 409, r.text  # neither its requester nor an approver
        r = await c.post(f"/api/v1/config/changes/{second['id']}/reject", headers=hs)
        assert r.status_code == 200 and r.json()["state"] == "rejected", r.text
        assert (await c.post(f"/api/v1/config/changes/{second['id']}/approve", headers=hadm)).status_code == 409

        # 3. nobody approves within the vocabulary's window (3 s): expired
        r = await c.post("/api/v1/config/reload", headers=he)
        third = r.json()["change"]
        assert r.status_code == 202 and third["id"] not in (first["id"], second["id"])
        await asyncio.sleep(3.5)
        assert (await c.get(f"/api/v1/config/changes/{third['id']}", headers=ho)).json()["state"] == "expired"
        r = await c.post(f"/api/v1/config/changes/{third['id']}/approve", headers=hs)
        assert r.status_code == 409 and "expired" in r.json()["why"], r.text
        assert server.config_generation == 1

        # 4. a change removing the verb of the pending selection: approved, applied, the ticket cancelled with why
        commands.write_text(_without_verb(original, "junction", "return_to_local"))
        r = await c.post("/api/v1/config/reload", headers=he)
        assert r.status_code == 202, r.text
        fourth = r.json()["change"]
        assert "verb junction.return_to_local: removed" in fourth["diff"], fourth["diff"]
        r = await c.post(f"/api/v1/config/changes/{fourth['id']}/approve", headers=hadm)
        assert r.status_code == 200 and r.json()["generation"] == 2, r.text
        status = (await c.get(f"/api/v1/commands/{ticket}", headers=ho)).json()
        assert status["state"] == "cancelled" and "return_to_local no longer exists" in status["reason"], status
        fs = server.failsafe()
        assert fs is not None
        assert any(e["kind"] == "cancel" and e.get("ticket") == ticket and e.get("cancelled_by") == "configuration reload"
                   for e in fs.audit.entries())

        # every step journalled (config_change rows) and in the fail-safe audit log
        rows = (await c.get("/api/v1/journal", params={"text": "change", "limit": 500}, headers=he)).json()["entries"]
        details = " | ".join(d for _, _, d in _journal_changes(rows))
        for cid, state in ((second["id"], "rejected"), (third["id"], "expired")):
            assert f"change {cid} {state}" in details, details
        assert "refused: 1 problem(s); the configuration files changed since the request" in details
        kinds = {e["kind"] for e in fs.audit.entries() if str(e.get("kind", "")).startswith("config_change")}
        assert {"config_change_request", "config_change_refused", "config_change_rejected",
                "config_change_timeout", "config_change_approval", "config_change_applied"} <= kinds, kinds
