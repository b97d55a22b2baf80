"""The API on a real server (uvicorn, 127.0.0.1, port 0): auth flow, refusals, tags, equipment, reload."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import websockets

from scada.errors import ConfigError
from scada.quality import Quality
from server.app import ScadaServer
from server.settings import load_settings
from tests.peers import require_peer
from tests.server.conftest import PASSWORDS, ROOT, login, running_server


def assert_error(r: httpx.Response, status: int) -> dict[str, str]:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["what"] and body["why"] and body["code"], body
    return body


async def test_login_flow_and_refusals(live: tuple[ScadaServer, httpx.AsyncClient]) -> None:
    server, c = live
    assert_error(await c.get("/api/v1/tags", params={"pattern": "*"}), 401)
    assert_error(await c.get("/api/v1/tags", params={"pattern": "*"}, headers={"Authorization": "Bearer nope"}), 401)
    body = assert_error(await c.post("/api/v1/auth/login", json={"user": "op", "password": "wrong"}), 401)
    assert "wrong password" in body["why"]
    h = await login(c, "op")
    me = (await c.get("/api/v1/auth/me", headers=h)).json()
    assert me["role"] == "operator" and "alarm.ack" in me["permissions"] and "config.reload" not in me["permissions"]
    # a viewer cannot acknowledge: 403 with the reason, audited
    hv = await login(c, "view")
    body = assert_error(await c.post("/api/v1/alarms/ack", json={"ids": ["x"]}, headers=hv), 403)
    assert "viewer" in body["why"] and "alarm.ack" in body["why"]
    # logout revokes the token
    assert (await c.post("/api/v1/auth/logout", headers=h)).status_code == 204
    assert_error(await c.get("/api/v1/auth/me", headers=h), 401)
    records = server.audit.query(limit=50)
    kinds = {(r.category, r.type, r.result) for r in records}
    assert ("access_control", "login", "failure") in kinds
    assert ("access_control", "login", "success") in kinds
    assert ("request_error", "permission_denied", "refused") in kinds
    assert ("access_control", "logout", "ok") in kinds
    dump = json.dumps([r.as_dict() for r in records])
    assert PASSWORDS["op"] not in dump and "wrong" not in dump


async def test_login_rate_limited(live: tuple[ScadaServer, httpx.AsyncClient]) -> None:
    server, c = live
    for _ in range(5):
        assert_error(await c.post("/api/v1/auth/login", json={"user": "sup", "password": "bad-guess"}), 401)
    r = await c.post("/api/v1/auth/login", json={"user": "sup", "password": PASSWORDS["sup"]})
    body = assert_error(r, 429)  # even the right password is refused while locked out
    assert int(r.headers["Retry-After"]) > 0 and "try again" in body["why"]
    assert any(rec.result == "locked_out" for rec in server.audit.query(type_="login"))


async def test_token_expiry(tmp_path: Path) -> None:
    async with running_server(tmp_path / "d", token_ttl=0.5) as (_server, url), httpx.AsyncClient(base_url=url) as c:
        h = await login(c, "view")
        assert (await c.get("/api/v1/auth/me", headers=h)).status_code == 200
        await asyncio.sleep(0.7)
        body = assert_error(await c.get("/api/v1/auth/me", headers=h), 401)
        assert "expired" in body["why"]


async def test_tags_and_equipment(live: tuple[ScadaServer, httpx.AsyncClient]) -> None:
    server, c = live
    h = await login(c, "view")
    assert_error(await c.get("/api/v1/tags", headers=h), 400)
    eq = next(e for e in server.config.equipment.values() if e.template == "lighting_cabinet")
    name = eq.tag_name("power")
    server.tagdb.apply_samples([(name, __import__("scada.quality").quality.Sample(1234.5, Quality.GOOD, 10**18, 10**18))])
    r = (await c.get("/api/v1/tags", params={"pattern": f"*/{eq.id}/power"}, headers=h)).json()
    assert r["total"] == 1 and r["tags"][0]["value"] == 1234.5 and r["tags"][0]["quality"] == "good"
    r = (await c.get("/api/v1/tags", params={"equipment": eq.id, "limit": 5}, headers=h)).json()
    assert r["total"] == len(server.tagdb.equipment_indices(eq.id)) and len(r["tags"]) == 5
    r = (await c.get("/api/v1/tags", params={"area": eq.commune, "domain": "lighting"}, headers=h)).json()
    assert r["total"] > 0 and all(t["equipment"] in server.config.equipment for t in r["tags"])
    detail = (await c.get(f"/api/v1/tags/{name}", headers=h)).json()
    assert detail["address"] == "ir:2" and detail["units"] == "W"
    assert_error(await c.get("/api/v1/tags/no/such/tag", headers=h), 404)
    page = (await c.get("/api/v1/equipment", params={"domain": "lighting"}, headers=h)).json()
    assert page["total"] == sum(1 for e in server.config.equipment.values() if e.domain == "lighting")
    sheet = (await c.get(f"/api/v1/equipment/{eq.id}", headers=h)).json()
    assert sheet["commune"] == eq.commune and sheet["device_protocol"] == "modbus_tcp"
    assert any(t["name"] == name and t["value"] == 1234.5 for t in sheet["tags"])
    assert "manufacturer" in sheet["identity"]
    assert_error(await c.get("/api/v1/equipment/NOPE", headers=h), 404)


async def test_health_and_config(live: tuple[ScadaServer, httpx.AsyncClient]) -> None:
    server, c = live
    public = (await c.get("/api/v1/health")).json()
    assert public["subsystems"]["tagdb"]["status"] == "ok" and "stats" not in public["subsystems"]["tagdb"]
    health = (await c.get("/api/v1/health", headers=await login(c, "view"))).json()
    assert health["subsystems"]["tagdb"]["status"] == "ok" and health["subsystems"]["tagdb"]["stats"]["tags"] > 0
    assert health["subsystems"]["api"]["status"] == "ok"
    assert health["process"]["rss_mb"] > 0
    for name, sub in health["subsystems"].items():
        assert sub["status"] in ("ok", "degraded", "down", "unavailable", "starting"), (name, sub)
    h = await login(c, "view")
    cfg = (await c.get("/api/v1/config", headers=h)).json()
    assert cfg["tags"] == len(server.config.tags) and "Dijon" in cfg["areas"]


async def test_users_api(live: tuple[ScadaServer, httpx.AsyncClient]) -> None:
    server, c = live
    ha = await login(c, "admin")
    ho = await login(c, "op")
    assert_error(await c.get("/api/v1/users", headers=ho), 403)
    r = await c.post("/api/v1/users", json={"name": "newbie", "role": "viewer", "password": "short"}, headers=ha)
    assert "too short" in assert_error(r, 409)["why"]
    assert server.users.get("newbie") is None
    r = await c.post("/api/v1/users", json={"name": "newbie", "role": "viewer", "password": "long-enough-passphrase"},
                     headers=ha)
    assert r.status_code == 201
    hn = await login_pw(c, "newbie", "long-enough-passphrase")
    # a refused change changes nothing (weak password + role change in one request)
    r = await c.patch("/api/v1/users/newbie", json={"role": "operator", "password": "x"}, headers=ha)
    assert_error(r, 409)
    assert server.users.get("newbie").role == "viewer"  # type: ignore[union-attr]
    assert (await c.get("/api/v1/auth/me", headers=hn)).status_code == 200
    r = await c.patch("/api/v1/users/newbie", json={"disabled": True}, headers=ha)
    assert r.status_code == 200 and r.json()["disabled"]
    assert_error(await c.get("/api/v1/auth/me", headers=hn), 401)  # sessions revoked
    assert_error(await c.delete("/api/v1/users/admin", headers=ha), 409)  # last administrator
    assert (await c.delete("/api/v1/users/newbie", headers=ha)).status_code == 204
    audit = (await c.get("/api/v1/audit", params={"category": "configuration_change"}, headers=ha)).json()
    assert {r["type"] for r in audit["records"]} >= {"user_added", "user_changed", "user_removed"}


async def login_pw(c: httpx.AsyncClient, name: str, pw: str) -> dict[str, str]:
    r = await c.post("/api/v1/auth/login", json={"user": name, "password": pw})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


async def test_missing_subsystem_is_503_with_reason(live: tuple[ScadaServer, httpx.AsyncClient]) -> None:
    server, c = live
    h = await login(c, "sup")
    saved = server.historian
    server.historian = None
    try:
        r = await c.get("/api/v1/history/raw", params={"tag": server.config.tags[0].name}, headers=h)
        assert "historian" in assert_error(r, 503)["why"]
    finally:
        server.historian = saved


async def test_websocket_snapshot_then_deltas(live: tuple[ScadaServer, httpx.AsyncClient]) -> None:
    server, c = live
    h = await login(c, "view")
    url = str(c.base_url).replace("http", "ws") + "/api/v1/ws"
    eq = next(e for e in server.config.equipment.values() if e.template == "lighting_cabinet")
    async with websockets.connect(url) as ws:  # no token: refused
        await ws.send(json.dumps({"type": "subscribe", "tags": ["*"]}))
        msg = json.loads(await ws.recv())
        assert msg["type"] == "error" and msg["code"] == "unauthenticated"
    async with websockets.connect(url, additional_headers=h) as ws:
        hello = json.loads(await ws.recv())
        assert hello["type"] == "hello" and hello["role"] == "viewer" and hello["batch_ms"] == 100
        await ws.send(json.dumps({"type": "subscribe", "equipment": [eq.id], "alarms": True}))
        snap = json.loads(await ws.recv())
        assert snap["type"] == "snapshot" and snap["seq"] == 1
        assert len(snap["tags"]) == len(server.tagdb.equipment_indices(eq.id))
        idx = server.tagdb.indices([eq.tag_name("power"), eq.tag_name("failed_count")])
        for k in range(3):  # three batches within 100 ms coalesce into one delta with the last values
            server.tagdb.apply(idx, np.array([100.0 + k * 10, float(k)]), np.zeros(2, dtype=np.uint8), 10**18)
        other = next(e for e in server.config.equipment.values() if e.template == "junction")
        server.tagdb.apply(server.tagdb.indices([other.tag_name("phase_greens")]), np.array([3.0]),
                           np.zeros(1, dtype=np.uint8), 10**18)
        delta = json.loads(await asyncio.wait_for(ws.recv(), 2))
        assert delta["type"] == "delta" and delta["seq"] == 2
        rows = {r[0]: r for r in delta["tags"]}
        assert rows == {eq.tag_name("power"): [eq.tag_name("power"), 120.0, "good", 10**12],
                        eq.tag_name("failed_count"): [eq.tag_name("failed_count"), 2, "good", 10**12]}
        await ws.send(json.dumps({"type": "subscribe", "areas": ["Nowhere"]}))
        msgs = [json.loads(await ws.recv()) for _ in range(2)]
        assert {m["type"] for m in msgs} == {"snapshot", "error"}
        await ws.send("not json")
        err = json.loads(await ws.recv())
        assert err["type"] == "error" and err["code"] == "invalid_message"
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await ws.recv())["type"] == "pong"
    # first-message authentication works too
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": h["Authorization"][7:]}))
        assert json.loads(await ws.recv())["type"] == "hello"


async def test_reload_validated_first(tmp_path: Path) -> None:
    city = tmp_path / "city"
    shutil.copytree(ROOT / "inventory", city / "inventory")
    shutil.copy(ROOT / "tags.yaml", city / "tags.yaml")
    shutil.copy(ROOT / "alarms.yaml", city / "alarms.yaml")
    async with running_server(tmp_path / "d", tags=city / "tags.yaml", alarms=city / "alarms.yaml") as (server, url), \
            httpx.AsyncClient(base_url=url, timeout=60) as c:
        he = await login(c, "eng")
        ho = await login(c, "op")
        assert_error(await c.post("/api/v1/config/reload", headers=ho), 403)
        before = len(server.config.tags)
        # break the file: refused with every problem, nothing changes
        text = (city / "tags.yaml").read_text()
        (city / "tags.yaml").write_text(text.replace("scan: fast", "scan: quick", 1))
        r = await c.post("/api/v1/config/reload", headers=he)
        body = assert_error(r, 409)
        assert any("quick" in p for p in body["problems"]) and body["code"] == "config_invalid"
        assert len(server.config.tags) == before and server.config_generation == 1
        # add one cabinet (a new device) and remove a camera: applied, journalled
        inv = (city / "inventory" / "demo.csv").read_text().splitlines()
        cab = next(line for line in inv if ",lighting_cabinet," in line)
        cam = next(line for line in inv if ",camera," in line)
        new_cab = cab.replace(cab.split(",")[0], "C9999", 1).replace(f",{cab.split(',')[10]},", ",199,", 1)
        inv = [line for line in inv if line != cam] + [new_cab]
        (city / "inventory" / "demo.csv").write_text("\n".join(inv) + "\n")
        (city / "tags.yaml").write_text(text)
        old_name = server.config.tags[0].name
        server.tagdb.apply_samples([(old_name, __import__("scada.quality").quality.Sample.good(1))])
        r = await c.post("/api/v1/config/reload", headers=he)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["applied"] and body["generation"] == 2
        assert "C9999" in body["changes"]["devices_added"]
        assert cam.split(",")[0] in body["changes"]["devices_removed"]
        assert "C9999" in server.config.equipment and server.tagdb.read(old_name).value == 1  # value carried over
        recs = server.audit.query(type_="reload")
        assert [r.result for r in recs[:2]] == ["applied", "refused"]
        # and in the alarm journal, where maintenance reads: who, when, what changed, what was refused
        rows = (await c.get("/api/v1/journal", params={"limit": 50}, headers=he)).json()["entries"]
        changes = [r for r in rows if r["event"] == "config_change"]
        assert [(r["outcome"], r["user"]) for r in changes] == [("done", "eng"), ("refused", "eng")]
        assert "+C9999" in changes[0]["detail"] and f"-{cam.split(',')[0]}" in changes[0]["detail"]
        assert "quick" in changes[1]["detail"] and changes[1]["detail"].startswith("refused: ")


def test_settings_refuse_plain_http_off_loopback(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="plain HTTP is only served on loopback"):
        load_settings(None, {"listen.host": "0.0.0.0"})
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(None, {"listen.host": "0.0.0.0", "tls.cert": tmp_path / "c.pem", "tls.key": tmp_path / "k.pem"})
    assert load_settings(None, {"listen.host": "::1"}).listen.host == "::1"


async def test_invalid_city_refuses_to_start(tmp_path: Path) -> None:
    bad = tmp_path / "tags.yaml"
    bad.write_text((ROOT / "tags.yaml").read_text().replace("scan: fast", "scan: quick", 1)
                   .replace("inventory/demo.csv", str(ROOT / "inventory/demo.csv")))
    with pytest.raises(ConfigError) as info:
        async with running_server(tmp_path / "d", tags=bad):
            pass
    assert any("quick" in str(p) for p in info.value.problems)


async def test_history_queries_embedded(tmp_path: Path) -> None:
    async with running_server(tmp_path / "d", **{"historian.backend": "embedded"}) as (server, url), \
            httpx.AsyncClient(base_url=url, timeout=30) as c:
        assert server.subsystems["historian"].status == "ok", server.subsystems["historian"]
        h = await login(c, "view")
        eq = next(e for e in server.config.equipment.values() if e.template == "lighting_cabinet")
        name = eq.tag_name("mode")  # an enum: every change is stored
        Sample = __import__("scada.quality").quality.Sample
        import time as _t
        now = _t.time_ns()
        for k in range(5):
            server.tagdb.apply_samples([(name, Sample(k % 2, Quality.GOOD, now - (5 - k) * 10**9, now))])
        for _ in range(50):
            r = (await c.get("/api/v1/history/raw", params={"tag": name}, headers=h)).json()
            good = [p["value"] for p in r["points"] if p["quality"] == "good"]  # the poller may add bad_comm
            if len(good) >= 5:
                break
            await asyncio.sleep(0.1)
        assert good[:5] == [0, 1, 0, 1, 0]
        agg = (await c.get("/api/v1/history/aggregate", params={"tag": name, "interval_s": 3600,
                                                                "functions": "min,max,count"}, headers=h)).json()
        assert any(p["count"] for p in agg["points"]) and max(p["max"] or 0 for p in agg["points"]) == 1
        dec = (await c.get("/api/v1/history/decimated", params={"tag": name, "pixels": 10}, headers=h)).json()
        assert dec["points"]
        assert_error(await c.get("/api/v1/history/raw", params={"tag": "nope"}, headers=h), 404)
        r = await c.get("/api/v1/history/raw", params={"tag": name, "start": "2030-01-01T00:00:00Z",
                                                        "end": "2029-01-01T00:00:00Z"}, headers=h)
        assert_error(r, 422)
        health = (await c.get("/api/v1/health", headers=h)).json()
        assert "buffer_fill_percent" in health["subsystems"]["historian"]["stats"]


async def test_commands_through_the_gate_without_field(live: tuple[ScadaServer, httpx.AsyncClient]) -> None:
    server, c = live
    ho, ho2, hs, hv = (await login(c, "op")), (await login(c, "op2")), (await login(c, "sup")), (await login(c, "view"))
    voc = (await c.get("/api/v1/commands/vocabulary", headers=hv)).json()
    assert voc["types"]["junction"]["critical"] and "select_plan" in voc["types"]["junction"]["verbs"]
    j = next(e for e in server.config.equipment.values() if e.template == "junction")
    body = {"target": j.id, "verb": "select_plan", "params": {"plan": 2}}
    assert_error(await c.post("/api/v1/commands", json=body, headers=hv), 403)  # viewers do not command
    r = await c.post("/api/v1/commands", json=body, headers=ho)
    assert r.status_code == 200, r.text
    ticket = r.json()
    assert ticket["state"] == "selected" and ticket["user"] == "op"  # select-before-operate: reserved for op
    pending = (await c.get("/api/v1/commands", params={"pending": "true"}, headers=hv)).json()["commands"]
    assert [t["id"] for t in pending] == [ticket["id"]]
    # another operator cannot operate op's selection; the refusal names why and changes nothing
    why = assert_error(await c.post(f"/api/v1/commands/{ticket['id']}/operate", headers=ho2), 409)["why"]
    assert "selected by op" in why
    assert (await c.get(f"/api/v1/commands/{ticket['id']}", headers=hv)).json()["state"] == "selected"
    assert_error(await c.post(f"/api/v1/commands/{ticket['id']}/approve", headers=hs), 409)  # not awaiting approval
    r = await c.post(f"/api/v1/commands/{ticket['id']}/cancel", headers=ho)
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    assert_error(await c.post("/api/v1/commands/nope/operate", headers=ho), 404)
    assert_error(await c.get("/api/v1/commands/nope", headers=ho), 404)
    r = await c.post("/api/v1/commands", json={"target": "NOPE", "verb": "flash"}, headers=ho)
    assert "NOPE" in assert_error(r, 409)["why"]
    r = await c.post("/api/v1/commands", json={"target": j.id, "verb": "select_plan", "params": {"plan": 999}},
                     headers=ho)
    assert_error(r, 409)
    history = (await c.get("/api/v1/commands", params={"equipment": j.id}, headers=hv)).json()["commands"]
    assert history and all(j.id in (e.get("target") or []) for e in history)
    # crisis plans: listed for everyone, run by supervisors only
    plans = (await c.get("/api/v1/crisis/plans", headers=hv)).json()["plans"]
    if plans:
        name = plans[0]["name"]
        assert_error(await c.post(f"/api/v1/crisis/plans/{name}/dry-run", headers=ho), 403)
        r = await c.post(f"/api/v1/crisis/plans/{name}/dry-run", headers=hs)
        assert r.status_code == 200, r.text
        assert len(r.json()["steps"]) == len(plans[0]["steps"])
    assert_error(await c.post("/api/v1/crisis/plans/nope/dry-run", headers=hs), 404)


async def test_audit_categories_cr_2_8(live: tuple[ScadaServer, httpx.AsyncClient]) -> None:
    """AC-SEC-08: login success/failure, refused command, configuration change, backup, audit-log events,
    each with timestamp, source, category, type, event id and result."""
    _server, c = live
    await c.post("/api/v1/auth/login", json={"user": "op", "password": "nope"})
    ho, ha = await login(c, "op"), await login(c, "admin")
    await c.post("/api/v1/commands", json={"target": "NOPE", "verb": "flash"}, headers=ho)
    await c.post("/api/v1/users", json={"name": "temp", "role": "viewer", "password": "Visitor-Pass-77"}, headers=ha)
    assert_error(await c.post("/api/v1/backup", headers=ho), 403)
    r = await c.post("/api/v1/backup", headers=ha)
    assert r.status_code == 200 and "users.sqlite" in r.json()["files"] and "audit.sqlite" in r.json()["files"]
    records = (await c.get("/api/v1/audit", params={"limit": 500}, headers=ha)).json()["records"]
    seen = {(r["category"], r["type"], r["result"]) for r in records}
    for expected in [("access_control", "login", "success"), ("access_control", "login", "failure"),
                     ("control_system", "command", "refused"), ("configuration_change", "user_added", "ok"),
                     ("backup_restore", "backup", "ok"), ("audit_log", "opened", "ok"),
                     ("request_error", "permission_denied", "refused")]:
        assert expected in seen, expected
    for r in records:
        assert r["id"] > 0 and r["ts_ns"] > 0 and r["category"] and r["type"] and r["result"]
    assert all(r["source"] for r in records if r["category"] == "access_control")


async def test_history_on_influxdb_v1(tmp_path: Path) -> None:
    """historian.backend: influxdb — the same API queries against a real influxd 1.x."""
    from tests.historian.servers import InfluxServer

    require_peer("influxd", "Debian package influxdb")
    influx = InfluxServer(tmp_path / "influxd")
    await asyncio.to_thread(influx.start)
    try:
        opts = {"historian.backend": "influxdb", "historian.influxdb": {"url": influx.url, "bucket": "scada_test",
                                                                         "version": 1}}
        async with running_server(tmp_path / "d", **opts) as (server, url), \
                httpx.AsyncClient(base_url=url, timeout=30) as c:
            assert server.subsystems["historian"].status == "ok", server.subsystems["historian"]
            assert "influxdb-v1" in server.subsystems["historian"].detail
            h = await login(c, "view")
            eq = next(e for e in server.config.equipment.values() if e.template == "lighting_cabinet")
            name = eq.tag_name("mode")
            Sample = __import__("scada.quality").quality.Sample
            import time as _t
            now = _t.time_ns()
            for k in range(3):
                server.tagdb.apply_samples([(name, Sample(k, Quality.GOOD, now - (3 - k) * 10**9, now))])
            good: list[object] = []
            for _ in range(60):
                r = (await c.get("/api/v1/history/raw", params={"tag": name}, headers=h)).json()
                # before the first write lands, influxd answers "database not found": a 503 with the reason
                good = [p["value"] for p in r.get("points", []) if p["quality"] == "good"]
                if len(good) >= 3:
                    break
                await asyncio.sleep(0.2)
            assert good[:3] == [0, 1, 2]
    finally:
        await asyncio.to_thread(influx.stop)


async def test_an_unanswered_selection_expires_and_frees_its_target(tmp_path: Path) -> None:
    """Select-before-operate in the server: no operate within the select window → the ticket expires by
    itself (journalled select_timeout), leaves the pending list and the junction can be selected again."""
    commands = tmp_path / "commands.yaml"
    commands.write_text((ROOT / "commands.yaml").read_text().replace("select_timeout: 15s", "select_timeout: 1s", 1))
    async with running_server(tmp_path / "d", commands=commands) as (server, url), \
            httpx.AsyncClient(base_url=url, timeout=30) as c:
        ho, ho2 = await login(c, "op"), await login(c, "op2")
        j = next(e for e in server.config.equipment.values() if e.template == "junction")
        body = {"target": j.id, "verb": "select_plan", "params": {"plan": 2}}
        ticket = (await c.post("/api/v1/commands", json=body, headers=ho)).json()
        assert ticket["state"] == "selected"
        # measured from the gate's own select time (the request's trip through a loaded server is not the window)
        selected_at = ticket["created"]
        assert ticket["deadline"] == pytest.approx(selected_at + 1.0)
        await asyncio.sleep(3.0)  # nobody touches the gate: the server's sweeper expires the selection on time
        history = (await c.get("/api/v1/commands", params={"equipment": j.id}, headers=ho)).json()["commands"]
        expiry = next((e for e in history if e.get("kind") == "select_timeout"), None)
        assert expiry is not None, "the selection was not expired by the server itself"
        # 1 s window, then the sweeper wakes at the deadline (+ slack for a loaded machine)
        assert 1.0 <= expiry["ts"] - selected_at < 1.0 + 1.5, expiry
        print(f"select_timeout stamped {(expiry['ts'] - selected_at - 1.0) * 1000:.0f} ms after the deadline")
        deadline = time.monotonic() + 10
        while (await c.get(f"/api/v1/commands/{ticket['id']}", headers=ho)).json()["state"] == "selected":
            assert time.monotonic() < deadline, "the selection never expired"
            await asyncio.sleep(0.2)
        status = (await c.get(f"/api/v1/commands/{ticket['id']}", headers=ho)).json()
        assert status["state"] == "expired" and "select" in status["reason"]
        assert (await c.get("/api/v1/commands", params={"pending": "true"}, headers=ho)).json()["commands"] == []
        again = (await c.post("/api/v1/commands", json=body, headers=ho2)).json()
        assert again["state"] == "selected" and again["user"] == "op2"
        history = (await c.get("/api/v1/commands", params={"equipment": j.id}, headers=ho)).json()["commands"]
        assert any(e.get("kind") == "select_timeout" for e in history)
