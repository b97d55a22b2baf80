"""The citizen intake's own listener (settings ``intake.listen``: server.components.intake_http) against a real
server: a report is answered while the main event loop is blocked, the listener serves the channels' routes and
nothing else, and a listener that cannot listen or stops by itself is loud (/health ``intake`` down, the P2
system alarm ``system.workorders.intake_down``) while the main API still takes reports."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from scada.errors import ConfigError
from server.settings import load_settings
from tests.server.conftest import login, running_server
from tests.server.test_e2e import fast_city
from tests.workorders.test_intake import INTAKE_YAML, TOKEN, metres_north

BLOCK_S = 1.5  # the main loop blocked that long; a report through the intake listener answers within a third
RULE = "system.workorders.intake_down"


def city_with_intake(tmp_path: Path) -> Path:
    tags = fast_city(tmp_path)
    (tags.parent / "intake.yaml").write_text(INTAKE_YAML, encoding="utf-8")
    return tags


async def until(what: str, check: Callable[[], Awaitable[Any]], timeout_s: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = await check()
        if got:
            return got
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout_s} s")


async def test_a_report_is_answered_while_the_main_loop_is_blocked(tmp_path: Path) -> None:
    tags = city_with_intake(tmp_path)
    listen = {"intake.listen.host": "127.0.0.1", "intake.listen.port": 0}
    async with running_server(tmp_path / "data", tags=tags, alarms=tags.parent / "alarms.yaml", **listen) as \
            (server, url), httpx.AsyncClient(base_url=url, timeout=30) as c:
        health = (await c.get("/api/v1/health")).json()["subsystems"]["intake"]
        assert health["status"] == "ok" and health["detail"].startswith("http://127.0.0.1:"), health
        intake_url = health["detail"]
        assert intake_url != url
        cab = server.config.equipment["C0001"]
        body = {"category": "lamp_out", "text": "dark since yesterday", "lat": metres_north(cab.lat, 80),
                "lon": cab.lon, "contact": {"phone": "+33 6 00 00 00 01"}}
        seen: dict[str, Any] = {}
        blocking = threading.Event()

        def citizen() -> None:
            """Another thread (the test's loop is the server's, and it is about to be blocked)."""
            with httpx.Client(timeout=30) as h:
                blocking.wait(10)
                t0 = time.monotonic()
                r = h.post(f"{intake_url}/api/v1/reports", json=body, headers={"X-Intake-Token": TOKEN})
                seen["report"] = (r.status_code, r.json(), time.monotonic() - t0, time.monotonic())
                f = h.get(f"{intake_url}/api/v1/reports/{r.json()['reference']}")
                seen["follow"] = (f.status_code, f.json(), time.monotonic())
                # the same report through the main API: it must wait for the blocked loop (the block is real)
                m = h.post(f"{url}/api/v1/reports", json=body, headers={"X-Intake-Token": TOKEN})
                seen["main"] = (m.status_code, time.monotonic())

        def block() -> None:
            """What a stalled main loop is: nothing else runs on it for BLOCK_S."""
            seen["block_start"] = time.monotonic()
            blocking.set()
            time.sleep(BLOCK_S)
            seen["block_end"] = time.monotonic()

        t = threading.Thread(target=citizen, name="citizen")
        t.start()
        asyncio.get_running_loop().call_soon(block)
        await asyncio.sleep(0)  # the loop runs block() now: blocked for BLOCK_S
        await asyncio.to_thread(t.join, 30)
        status, receipt, took, answered = seen["report"]
        assert status == 200 and receipt["located"] and not receipt["absorbed"], receipt
        # answered in well under the block, and while the main loop was still blocked
        assert took < BLOCK_S / 3 and answered < seen["block_end"], (took, answered, seen)
        f_status, follow, followed = seen["follow"]
        assert f_status == 200 and follow["status"] == "received" and followed < seen["block_end"], follow
        m_status, main_done = seen["main"]
        assert m_status == 200 and main_done >= seen["block_end"]  # the main API did wait for its loop
        # the order it opened is the work-order store's like any other (the operators' list is the main API's)
        admin = await login(c, "admin")
        orders = (await c.get("/api/v1/workorders", params={"equipment": "C0001"}, headers=admin)).json()["orders"]
        assert len(orders) == 1 and orders[0]["source"] == "citizen", orders
        listed = (await c.get("/api/v1/reports", params={"order": orders[0]["id"]}, headers=admin)).json()
        assert listed["total"] == 2 and {r["ref"] for r in listed["reports"]} >= {receipt["reference"]}

        async with httpx.AsyncClient(base_url=intake_url, timeout=30) as direct:
            # the channels' routes only: no operator list, no login, no other area
            assert (await direct.get("/api/v1/reports", headers=admin)).status_code in (404, 405)
            assert (await direct.post("/api/v1/auth/login", json={"user": "admin", "password": "x"})).status_code \
                == 404
            assert (await direct.get("/api/v1/tags", headers=admin)).status_code == 404
            assert (await direct.get("/openapi.json")).status_code == 404
            # the API's refusals, error bodies, hardening headers and body limit
            r = await direct.post("/api/v1/reports", json=body, headers={"X-Intake-Token": "wrong"})
            assert r.status_code == 401 and r.json()["code"] == "unauthorized", r.text
            assert r.headers["x-content-type-options"] == "nosniff"
            r = await direct.post("/api/v1/reports", json={"category": "lamp_out", "text": "x"},
                                  headers={"X-Intake-Token": TOKEN})
            assert r.status_code == 422 and "position" in r.json()["why"], r.text
            r = await direct.post("/api/v1/reports", content=b"{" + b" " * (2 << 20) + b"}",
                                  headers={"X-Intake-Token": TOKEN, "Content-Type": "application/json"})
            assert r.status_code == 413, r.text
            # a photo of a report no equipment matched: refused, in the server's language on request
            lost = await direct.post("/api/v1/reports", json={"category": "other", "address": "nowhere street 99"},
                                     headers={"X-Intake-Token": TOKEN})
            assert lost.status_code == 200 and not lost.json()["located"], lost.text
            at = f"/api/v1/reports/{lost.json()['reference']}/photos"
            r = await direct.post(at, content=b"\xff\xd8\xff", headers={"X-Intake-Token": TOKEN})
            assert r.status_code == 422 and "not located" in r.json()["why"], r.text
            r = await direct.post(at, params={"lang": "fr"}, content=b"\xff\xd8\xff", headers={"X-Intake-Token": TOKEN})
            assert r.status_code == 422 and "n'est pas localisé" in r.json()["why"], r.text

        # the listener stops by itself: loud, and the main API still takes reports
        comp: Any = server.components["workorders"]
        comp.listener.web.should_exit = True

        async def down() -> Any:
            rows = (await c.get("/api/v1/alarms", headers=admin)).json()["alarms"]
            return next((a for a in rows if a["rule"] == RULE and a["active"]), None)

        alarm = await until("the intake_down alarm", down)
        assert alarm["priority"] == 2 and "stopped by itself" in str(alarm), alarm
        assert server.status("intake").status == "down"
        reasons = (await c.get("/api/v1/health")).json()["reasons"]
        assert any(r.startswith("intake down: ") for r in reasons), reasons
        r = await c.post("/api/v1/reports", json={**body, "category": "other"}, headers={"X-Intake-Token": TOKEN})
        assert r.status_code == 200, r.text
    # stopped with the server: nothing listens there any more
    host, port = intake_url.removeprefix("http://").split(":")
    with socket.socket() as s:
        assert s.connect_ex((host, int(port))) != 0


async def test_a_taken_address_is_loud_and_the_main_api_takes_reports(tmp_path: Path) -> None:
    tags = city_with_intake(tmp_path)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        listen = {"intake.listen.host": "127.0.0.1", "intake.listen.port": port}
        async with running_server(tmp_path / "data", tags=tags, alarms=tags.parent / "alarms.yaml", **listen) as \
                (server, url), httpx.AsyncClient(base_url=url, timeout=30) as c:
            health = (await c.get("/api/v1/health")).json()
            assert health["subsystems"]["intake"]["status"] == "down", health
            assert f"cannot listen on 127.0.0.1:{port}" in health["subsystems"]["intake"]["detail"]
            assert health["subsystems"]["workorders"]["status"] == "ok"
            op = await login(c, "op")
            rows = (await c.get("/api/v1/alarms", headers=op)).json()["alarms"]
            assert any(a["rule"] == RULE and a["active"] for a in rows), [a["rule"] for a in rows]
            cab = server.config.equipment["C0001"]
            r = await c.post("/api/v1/reports", json={"category": "lamp_out", "lat": cab.lat, "lon": cab.lon},
                             headers={"X-Intake-Token": TOKEN})
            assert r.status_code == 200 and r.json()["located"], r.text


def test_plain_http_off_loopback_is_refused() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(None, {"intake.listen.host": "0.0.0.0", "intake.listen.port": 8481})
    assert "intake.listen.host '0.0.0.0' is not a loopback address" in str(err.value)
    settings = load_settings(None, {"intake.listen.host": "127.0.0.1", "intake.listen.port": 8481})
    assert settings.intake is not None and settings.intake.listen.port == 8481
    assert load_settings(None, {}).intake is None  # the default: the main API only
