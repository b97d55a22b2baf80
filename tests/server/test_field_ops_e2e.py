"""Field operations end to end, the real server against the simulator running fast (× 20):

a lamp fails in a cabinet → the automatic work order → a citizen's report 100 m away is matched to the same
cabinet and absorbed → the candidates: the lighting crews ranked by ETA from their vehicles' live positions →
dispatch of the first → the mission goes through the command gate to the vehicle's OPC UA ``mission`` node
→ the vehicle drives (sim.fleet) → "on site" by the 50 m geofence → the simulated crew repairs (sim.crews:
the fault cleared) → the alarm returns to normal → the crew presses "done" → resolved.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from scada.config import load_city
from scada.geo import M_PER_DEG_LAT
from scada.workorders.intake import hash_token
from tests.server.conftest import ROOT, login, running_server
from tests.server.test_e2e import NIGHT, fast_city, until

CREW_USER, CREW_PASSWORD = "crew.lighting-night", "Ladder-Truck-5150"
TOKEN = "call-centre-token-e2e-0123456789abcdef"
SPEED = 20.0


@pytest.fixture
async def field(tmp_path: Path) -> AsyncIterator[tuple[Any, Path]]:
    from sim.runner import Simulator  # tests may import sim; the core never does

    tags = fast_city(tmp_path)
    # the shipped crews without their shifts: the ranking must not depend on the hour the test runs at
    crews = "\n".join(line for line in (ROOT / "crews.yaml").read_text(encoding="utf-8").splitlines()
                      if "shifts:" not in line and "{days:" not in line)
    (tags.parent / "crews.yaml").write_text(crews, encoding="utf-8")
    (tags.parent / "intake.yaml").write_text(
        f"radius_m: 150\nchannels:\n  call_centre: {{token_sha256: {hash_token(TOKEN)}}}\n", encoding="utf-8")
    config = load_city(tags, tags.parent / "alarms.yaml")
    sim = Simulator(config, seed=42, speed=SPEED, ports="test", state_dir=tmp_path / "sim", start_time=NIGHT,
                    control_port=None)
    await sim.start()
    assert sim.crews is not None
    sim.crews.repair_s = 120.0  # two simulated minutes on site: 6 s here
    try:
        yield sim, tags
    finally:
        await sim.aclose()


def metres(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    return math.hypot((lat2 - lat1) * M_PER_DEG_LAT, (lon2 - lon1) * 111_320 * math.cos(math.radians(lat1)))


@pytest.mark.timeout(120)
async def test_lamp_failure_dispatch_geofence_repair_resolved(field: tuple[Any, Path], tmp_path: Path) -> None:
    sim, tags = field
    async with running_server(tmp_path / "data", endpoints=sim.endpoints, tags=tags,
                              alarms=tags.parent / "alarms.yaml") as (server, url), \
            httpx.AsyncClient(base_url=url, timeout=60) as c:
        server.users.add(CREW_USER, "crew", CREW_PASSWORD)
        cab = server.config.equipment["C0001"]
        op = await login(c, "op")
        r = await c.post("/api/v1/auth/login", json={"user": CREW_USER, "password": CREW_PASSWORD})
        crew = {"Authorization": f"Bearer {r.json()['token']}"}
        lighting = [v for cid in ("lighting-day", "lighting-night") for v in server.components["workorders"]
                    .orders.crews.crews[cid].vehicles]  # type: ignore[attr-defined]
        await until("the fleet's positions", lambda: all(
            server.tagdb.read(server.config.equipment[v].tag_name("lat")).quality.is_good for v in lighting),
            timeout=30)

        # 1. the lamp fails: the automatic work order
        sim.inject(cab.id, "lamp_failure", index=3)
        alarm_id = f"lamp_failed:{cab.tag_name('lamp_03/status')}"

        async def auto_order() -> dict[str, Any] | None:
            rows = (await c.get("/api/v1/workorders", params={"equipment": cab.id}, headers=op)).json()["orders"]
            return rows[0] if rows else None

        order = await until("the automatic work order", auto_order, timeout=30)
        oid = order["id"]
        # 2. a citizen reports it 100 m away: matched to the same cabinet, absorbed
        r = await c.post("/api/v1/reports", headers={"X-Intake-Token": TOKEN}, json={
            "category": "lamp_out", "lat": cab.lat + 100 / M_PER_DEG_LAT, "lon": cab.lon,
            "contact": {"phone": "+33 6 11 22 33 44"}})
        assert r.status_code == 200 and r.json()["absorbed"] and r.json()["located"], r.text
        listed = (await c.get("/api/v1/reports", params={"order": oid}, headers=op)).json()
        assert listed["total"] == 1 and listed["reports"][0]["equipment"] == cab.id
        assert (await c.get("/api/v1/workorders", params={"equipment": cab.id}, headers=op)).json()["total"] == 1

        # 3. the candidates: lighting crews only, from their vehicles' live positions, available first by ETA
        cands = (await c.get(f"/api/v1/workorders/{oid}/candidates", headers=op)).json()
        assert {x["crew"] for x in cands} == {"lighting-day", "lighting-night"}
        assert all(x["available"] and x["eta_s"] is not None for x in cands), cands
        assert [x["eta_s"] for x in cands] == sorted(x["eta_s"] for x in cands)
        for x in cands:  # the ETA is the documented estimate over the tag database's position
            lat = server.tagdb.read(server.config.equipment[x["vehicle"]].tag_name("lat")).value
            assert x["eta_s"] == pytest.approx(x["distance_m"] * 1.3 / (25 / 3.6), rel=1e-3)
            assert isinstance(lat, float) and abs(lat - x["lat"]) < 0.01
        best = cands[0]
        # make the crew user the dispatched crew's account (the crew role sees only its own missions)
        if best["crew"] == "lighting-day":
            server.users.add("crew.lighting-day", "crew", CREW_PASSWORD)
            r = await c.post("/api/v1/auth/login", json={"user": "crew.lighting-day", "password": CREW_PASSWORD})
            crew = {"Authorization": f"Bearer {r.json()['token']}"}

        # 4. dispatch: assigned, the mission through the command gate to the vehicle, en route
        r = await c.post(f"/api/v1/workorders/{oid}/dispatch", json={"crew": best["crew"]}, headers=op)
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["mission_error"] is None, out
        assert out["order"]["status"] == "en_route" and out["order"]["vehicle"] == best["vehicle"]
        assert out["mission"]["outcome"] == "done"
        vehicle = server.config.equipment[best["vehicle"]]
        assert out["mission"]["results"][0]["requested"]["mission"].startswith(f"{oid};")
        await until("the mission read back from the vehicle", lambda: str(
            server.tagdb.read(vehicle.tag_name("mission")).value).startswith(f"{oid};"), timeout=10)
        audit = (await c.get("/api/v1/commands", params={"equipment": vehicle.id}, headers=op)).json()["commands"]
        assert any(a.get("verb") == "mission" for a in audit), audit

        # 5. the vehicle drives; within 50 m of the cabinet the order goes on site by itself
        async def status() -> str:
            return str((await c.get(f"/api/v1/workorders/{oid}", headers=op)).json()["status"])

        await until("on site by the geofence", lambda: _is(status(), "on_site"), timeout=60)
        vlat, vlon = (server.tagdb.read(vehicle.tag_name(t)).value for t in ("lat", "lon"))
        assert isinstance(vlat, float) and isinstance(vlon, float)
        d = metres(vlat, vlon, cab.lat, cab.lon)
        assert d <= 50.0, d
        history = (await c.get(f"/api/v1/workorders/{oid}/history", headers=op)).json()
        on_site = next(h for h in history if h["action"] == "on_site")
        assert on_site["user"] == "system" and "geofence" in on_site["data"]["text"]

        # 6. the simulated crew repairs: the fault cleared, the alarm back to normal
        async def alarm_normal() -> bool:
            rows = (await c.get("/api/v1/alarms", params={"equipment": cab.id, "diagnostic": "true"},
                                headers=op)).json()["alarms"]
            return not any(a["id"] == alarm_id and a["active"] for a in rows)

        await until("the lamp repaired and its alarm normal", alarm_normal, timeout=40)
        assert sim.crews.repaired and sim.crews.repaired[-1][1:] == (vehicle.id, cab.id)

        # 7. the crew presses done: resolved at once (the alarm is normal)
        r = await c.post(f"/api/v1/workorders/{oid}/done", json={"note": "lamp 3 replaced",
                                                                 "idempotency_key": "tablet-e2e-done-1"},
                         headers=crew)
        assert r.status_code == 200 and r.json()["status"] in ("done", "resolved"), r.text
        # resolved once none of the cabinet's alarms is active (the order's own, or another of the cabinet's)
        rows = (await c.get("/api/v1/alarms", params={"equipment": cab.id, "diagnostic": "true"}, headers=op)).json()
        active = [a["id"] for a in rows["alarms"] if a["active"]]
        await until(f"resolved (active alarms of {cab.id}: {active})", lambda: _is(status(), "resolved"), timeout=30)
        follow = (await c.get(f"/api/v1/reports/{listed['reports'][0]['ref']}")).json()
        assert follow["status"] == "repaired"
        # the vehicle's mission is over: back to its depot, its mission node empty again
        await until("the mission node cleared", lambda: server.tagdb.read(vehicle.tag_name("mission")).value == "",
                    timeout=20)


async def _is(value: Any, expected: str) -> bool:
    return bool(await value == expected)
