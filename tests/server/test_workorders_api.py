"""Work orders end to end: the simulator's real Modbus cabinets + the real server, over HTTP.

A lamp failure injected in the simulator raises ``lamp_failed`` (``work_order: auto``) → the server opens a
work order linked to the alarm (and says so in the alarm journal) → an operator assigns the lighting crew →
the crew, logged in with the ``crew`` role, sees only its own mission and reports on its way and on site →
the fault is cleared in the field → the alarm returns to normal → the crew presses "done" (retried with the
same idempotency key: recorded once) → the order is resolved; a supervisor closes it. Roles are checked on
the way; an order past its SLA raises the system alarm (and clears it once cancelled); the KPIs answer.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.server.conftest import ROOT, login, running_server
from tests.server.test_e2e import demo_field, until

CREW_USER, CREW_PASSWORD = "crew.lighting-day", "Ladder-Truck-5150"


@pytest.fixture
async def field(tmp_path: Path) -> AsyncIterator[tuple[Any, Path]]:
    async with demo_field(tmp_path) as (sim, tags):
        # the shipped crews (read by the server, started by each test), with a one-second SLA for the
        # buildings' priority 1: a breach within the test
        text = (ROOT / "crews.yaml").read_text(encoding="utf-8")
        (tags.parent / "crews.yaml").write_text(text.replace("sla: {1: 2h, 2: 8h, 3: 2d, 4: 5d}",
                                                             "sla: {1: 1s, 2: 8h, 3: 2d, 4: 5d}"), encoding="utf-8")
        yield sim, tags


async def _not(x: Any) -> bool:
    return not await x


async def test_lamp_failure_to_resolved_work_order(field: tuple[Any, Path], tmp_path: Path) -> None:
    sim, tags = field
    async with running_server(tmp_path / "data", endpoints=sim.endpoints, tags=tags,
                              alarms=tags.parent / "alarms.yaml") as (server, url), \
            httpx.AsyncClient(base_url=url, timeout=60) as c:
        server.users.add(CREW_USER, "crew", CREW_PASSWORD)
        cab = next(e for e in server.config.equipment.values() if e.template == "lighting_cabinet")
        op, sup, view = await login(c, "op"), await login(c, "sup"), await login(c, "view")
        r = await c.post("/api/v1/auth/login", json={"user": CREW_USER, "password": CREW_PASSWORD})
        crew = {"Authorization": f"Bearer {r.json()['token']}"}
        await until("the cabinet's tags", lambda: server.tagdb.read(cab.tag_name("mode")).quality.is_good)
        assert (await c.get("/api/v1/workorders", headers=op)).json()["total"] == 0
        # an order by hand, due in a second (this test's crews.yaml): its SLA breach is a system alarm
        r = await c.post("/api/v1/workorders", json={"equipment": "B001", "what": "fire panel fault", "priority": 1},
                         headers=op)
        assert r.status_code == 200 and r.json()["service"] == "buildings", r.text
        late = r.json()["id"]

        async def sla_alarm() -> dict[str, Any] | None:
            rows = (await c.get("/api/v1/alarms", headers=op)).json()["alarms"]
            return next((a for a in rows if a["rule"] == "system.workorders.sla_breach" and a["active"]), None)

        # 1. the lamp fails in the field: the alarm opens a work order by itself, linked to it
        sim.inject(cab.id, "lamp_failure", index=3)
        alarm_id = f"lamp_failed:{cab.tag_name('lamp_03/status')}"

        async def auto_order() -> dict[str, Any] | None:
            rows = (await c.get("/api/v1/workorders", params={"equipment": cab.id}, headers=op)).json()["orders"]
            return rows[0] if rows else None

        order = await until("the automatic work order", auto_order, timeout=40)
        oid = order["id"]
        assert (order["source"], order["status"], order["service"], order["priority"]) == ("auto", "new",
                                                                                           "lighting", 4)
        assert order["alarms"] == [alarm_id] and order["commune"] == cab.commune and order["lat"] == cab.lat
        journal = (await c.get("/api/v1/journal", params={"text": oid}, headers=op)).json()["entries"]
        assert any(e["event"] == "work_order" and alarm_id in e["detail"] for e in journal), journal
        # one click from the same alarm joins the open order instead of making another
        r = await c.post("/api/v1/workorders/from-alarm", json={"alarm_id": alarm_id}, headers=op)
        assert r.status_code == 200 and r.json()["id"] == oid, r.text

        # 2. roles: a viewer cannot create, a crew cannot assign nor read the alarms; the operator assigns
        r = await c.post("/api/v1/workorders", json={"equipment": cab.id, "what": "x"}, headers=view)
        assert r.status_code == 403
        assert (await c.get("/api/v1/alarms", headers=crew)).status_code == 403
        async with websockets.connect(url.replace("http", "ws") + "/api/v1/ws", additional_headers=crew) as ws:
            msg = json.loads(await ws.recv())  # nor the live city over the WebSocket
            assert (msg["type"], msg["code"]) == ("error", "forbidden")
        r = await c.post(f"/api/v1/workorders/{oid}/assign", json={"crew": "lighting-day"}, headers=crew)
        assert r.status_code == 403
        assert (await c.get("/api/v1/workorders", headers=crew)).json()["total"] == 0  # not its mission yet
        r = await c.post(f"/api/v1/workorders/{oid}/assign", json={"crew": "lighting-day"}, headers=op)
        assert r.status_code == 200 and r.json()["vehicle"] == "V006", r.text
        r = await c.post(f"/api/v1/workorders/{oid}/done", json={}, headers=crew)
        assert r.status_code == 409 and r.json()["code"] == "work_order_refused"  # not on site yet

        # 3. the crew sees its mission and reports
        mine = (await c.get("/api/v1/workorders", headers=crew)).json()
        assert [o["id"] for o in mine["orders"]] == [oid]
        for step in ("en-route", "on-site"):
            r = await c.post(f"/api/v1/workorders/{oid}/{step}", json={}, headers=crew)
            assert r.status_code == 200, r.text

        # 4. the fault is cleared in the field; the alarm returns to normal
        sim.clear(cab.id, "lamp_failure")

        async def alarm_normal() -> bool:
            rows = (await c.get("/api/v1/alarms", params={"equipment": cab.id, "diagnostic": "true"},
                                headers=op)).json()["alarms"]
            return not any(a["id"] == alarm_id and a["active"] for a in rows)

        await until("the lamp alarm back to normal", alarm_normal, timeout=30)

        # 5. the crew presses "done" (the tablet retries it with the same key): resolved, recorded once
        body = {"note": "lamp 3 replaced", "cause": "lamp end of life", "action": "lamp replaced",
                "idempotency_key": "tablet-0001-done"}
        for _ in range(2):
            r = await c.post(f"/api/v1/workorders/{oid}/done", json=body, headers=crew)
            assert r.status_code == 200, r.text
            assert r.json()["status"] == "resolved"
        history = (await c.get(f"/api/v1/workorders/{oid}/history", headers=op)).json()
        actions = [h["action"] for h in history]
        assert actions == ["create", "link", "assign", "en_route", "on_site", "done", "resolve"], actions
        assert history[0]["user"] == "system" and history[2]["user"] == "op" and history[5]["user"] == CREW_USER

        # 6. closing is a supervisor's
        close = {"cause": "lamp end of life", "action": "lamp replaced"}
        assert (await c.post(f"/api/v1/workorders/{oid}/close", json=close, headers=op)).status_code == 403
        r = await c.post(f"/api/v1/workorders/{oid}/close", json=close, headers=sup)
        assert r.status_code == 200 and r.json()["status"] == "closed", r.text
        r = await c.post(f"/api/v1/workorders/{oid}/note", json={"text": "late"}, headers=op)
        assert r.status_code == 409  # a closed order takes nothing more

        # 7. the SLA breach of the other order is an alarm saying which; cancelled, it clears
        alarm = await until("the SLA-breach alarm", sla_alarm, timeout=20)
        assert late in alarm["message"] and "B001" in alarm["message"] and alarm["priority"] == 3
        r = await c.post(f"/api/v1/workorders/{late}/cancel", json={"reason": "test order"}, headers=op)
        assert r.status_code == 200, r.text
        await until("the SLA-breach alarm cleared", lambda: _not(sla_alarm()), timeout=20)

        kpi = (await c.get("/api/v1/workorders/kpi", headers=op)).json()
        assert kpi["total"]["orders"] == 2 and kpi["total"]["to_repair"]["count"] == 1
        assert kpi["total"]["backlog"] == 0 and kpi["total"]["sla_breaches"] == 0  # cancelled: never a breach
        assert [g["service"] for g in kpi["by_service"]] == ["buildings", "lighting"]
        assert (await c.get("/api/v1/workorders/kpi", headers=crew)).status_code == 403
        health = (await c.get("/api/v1/health")).json()
        assert health["subsystems"]["workorders"]["status"] == "ok"
