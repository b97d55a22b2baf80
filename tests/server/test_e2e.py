"""End to end: the simulator (real Modbus/SNMP/OPC UA/serial servers) + the server, in one test.

A lamp failure injected in the simulator reaches a console over the WebSocket as an alarm; an operator
acknowledges it; the journal shows both. A lighting override goes through the fail-safe gate and the
simulated cabinet shows the new level; its lease expires and the cabinet returns to its schedule.
Scan classes are shortened (1 s) so that the test takes seconds, not minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from scada.config import load_city
from tests.server.conftest import ROOT, login, running_server

NIGHT = 1768510800.0  # 2026-01-15 22:00 Europe/Paris: the schedule lights the streets


def fast_city(tmp: Path, normal: str = "1s") -> Path:
    """The shipped demo city in ``tmp/city`` with short scans (``normal``, slow 5 s)."""
    city = tmp / "city"
    city.mkdir()
    text = (ROOT / "tags.yaml").read_text()
    text = text.replace("normal: 10s", f"normal: {normal}").replace("slow: 60s", "slow: 5s")
    text = text.replace("file: inventory/demo.csv", f"file: {ROOT / 'inventory' / 'demo.csv'}")
    (city / "tags.yaml").write_text(text)
    shutil.copy(ROOT / "alarms.yaml", city / "alarms.yaml")
    shutil.copy(ROOT / "commands.yaml", city / "commands.yaml")
    return city / "tags.yaml"


@contextlib.asynccontextmanager
async def demo_field(tmp_path: Path, normal: str = "1s") -> AsyncIterator[tuple[Any, Path]]:
    """The simulator serving :func:`fast_city` on port 0 at a winter night: (simulator, tags.yaml)."""
    from sim.runner import Simulator  # tests may import sim; the core never does

    tags = fast_city(tmp_path, normal)
    config = load_city(tags, tags.parent / "alarms.yaml")
    # seed 42: commands.yaml lists the junction layouts the simulator draws for the demo city with that seed
    sim = Simulator(config, seed=42, speed=1.0, ports="test", state_dir=tmp_path / "sim", start_time=NIGHT,
                    control_port=None)
    await sim.start()
    try:
        yield sim, tags
    finally:
        await sim.aclose()


@pytest.fixture
async def field(tmp_path: Path) -> AsyncIterator[tuple[Any, Path]]:
    async with demo_field(tmp_path) as got:
        yield got


async def until(what: str, check: Callable[[], Any], timeout: float = 30.0, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if asyncio.iscoroutine(got):
            got = await got
        if got:
            return got
        await asyncio.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.mark.parametrize("poll_thread", [False, pytest.param(True, marks=pytest.mark.slow)])
async def test_lamp_failure_alarm_ack_journal_and_lighting_override(field: tuple[Any, Path], tmp_path: Path,
                                                                    poll_thread: bool) -> None:
    sim, tags = field
    async with running_server(tmp_path / "data", endpoints=sim.endpoints, tags=tags, poll_thread=poll_thread,
                              alarms=tags.parent / "alarms.yaml") as (server, url), \
            httpx.AsyncClient(base_url=url, timeout=60) as c:
        cab = next(e for e in server.config.equipment.values() if e.template == "lighting_cabinet")
        h = await login(c, "op")
        ws_url = url.replace("http", "ws") + "/api/v1/ws"
        async with websockets.connect(ws_url, additional_headers=h, max_size=None) as ws:
            assert json.loads(await ws.recv())["type"] == "hello"
            await ws.send(json.dumps({"type": "subscribe", "equipment": [cab.id], "alarms": True}))
            assert json.loads(await ws.recv())["type"] == "snapshot"
            # the cabinet is polled: its tags become good
            await until("the cabinet's tags", lambda: server.tagdb.read(cab.tag_name("mode")).quality.is_good)

            # 1. a lamp failure in the field → an alarm on the console
            sim.inject(cab.id, "lamp_failure", index=3)
            lamp_tag = cab.tag_name("lamp_03/status")
            alarm: dict[str, Any] = {}

            async def alarm_seen() -> bool:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 30))
                for a in msg.get("alarms", []):
                    if a["tag"] == lamp_tag and a["active"]:
                        alarm.update(a)
                        return True
                return False

            await until("the lamp alarm on the WebSocket", alarm_seen, timeout=40, every=0)
            assert alarm["rule"] == "lamp_failed" and alarm["state"] == "unack" and alarm["equipment"] == cab.id

            # 2. the operator acknowledges it; the console sees the new state
            r = await c.post("/api/v1/alarms/ack", json={"ids": [alarm["id"]], "comment": "crew sent"}, headers=h)
            assert r.status_code == 200, r.text
            assert r.json()["results"] == [{"alarm": alarm["id"], "outcome": "done"}]

            async def acked_seen() -> bool:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 30))
                return any(a["id"] == alarm["id"] and a["state"] == "acked" for a in msg.get("alarms", []))

            await until("the acknowledgement on the WebSocket", acked_seen, timeout=10, every=0)

        # 3. the journal shows both
        rows = (await c.get("/api/v1/journal", params={"equipment": cab.id}, headers=h)).json()["entries"]
        events = [(r["event"], r["user"]) for r in rows if r["alarm"] == alarm["id"]]
        assert ("condition_on", None) in events and ("acknowledge", "op") in events
        sheet = (await c.get(f"/api/v1/equipment/{cab.id}", headers=h)).json()
        assert any(r["alarm"] == alarm["id"] for r in sheet["alarm_history"])

        # 4. a lighting override through the gate: the simulated cabinet shows the new level
        model = sim.models[cab.id]
        assert model.mode == 0  # following its schedule at night
        r = await c.post("/api/v1/commands", json={"target": cab.id, "verb": "set_level", "params": {"level": 100},
                                                   "lease_s": 6}, headers=h)
        assert r.status_code == 200, r.text
        cmd = r.json()
        assert cmd["outcome"] == "done", cmd
        assert model.mode == 1 and model.override_level == 100
        assert all(level == 100 for i, level in enumerate(model.levels) if i != 2)
        status = (await c.get(f"/api/v1/commands/{cmd['id']}", headers=h)).json()
        assert status["state"] == "finished" and status["outcome"] == "done"

        # 5. the lease expires: the cabinet returns to its schedule by itself
        await until("the cabinet back on its schedule", lambda: model.mode == 0, timeout=30)
        await until("the server seeing it", lambda: server.tagdb.read(cab.tag_name("mode")).value == 0, timeout=10)
        # 6. the other alarm actions, each with its role, on a real alarm (bollard fault, priority 2)
        bollard = next(e for e in server.config.equipment.values() if e.template == "bollard")
        bid = f"bollard_fault:{bollard.tag_name('fault')}"
        sim.inject(bollard.id, "bollard_fault")

        async def bollard_alarm() -> dict[str, Any] | None:
            items = (await c.get("/api/v1/alarms", params={"equipment": bollard.id}, headers=h)).json()["alarms"]
            return next((a for a in items if a["id"] == bid), None)

        assert (await until("the bollard alarm", bollard_alarm, timeout=20))["state"] == "unack"
        summary = (await c.get("/api/v1/alarms/summary", headers=h)).json()
        assert summary["unacked"] >= 1 and summary["by_priority"]["2"] >= 1
        console = (await c.get("/api/v1/alarms/console", params={"grouped": "true"}, headers=h)).json()
        assert any(bid in g["alarms"] for g in console["groups"]) and console["total"] >= 1
        hs, hm = await login(c, "sup"), await login(c, "maint")

        async def act(path: str, body: dict[str, Any], headers: dict[str, str], status: int = 200) -> None:
            r = await c.post(f"/api/v1/alarms/{bid}/{path}", json=body, headers=headers)
            assert r.status_code == status, (path, r.text)

        await act("shelve", {"duration_s": 600, "reason": "crew on site"}, h)
        assert "shelved_timed" in (await bollard_alarm())["flags"]  # type: ignore[index]
        assert not any(a["id"] == bid for a in (await c.get(
            "/api/v1/alarms", params={"state": "unack"}, headers=h)).json()["alarms"] if not a["flags"])
        await act("unshelve", {}, h)
        await act("suppress", {"reason": "known"}, h, 403)  # operators do not suppress
        await act("suppress", {"reason": "known fault, crew on site"}, hs)
        await act("unsuppress", {}, hs)
        # out of service names an open work order of the bollard (one click from the alarm makes it)
        await act("out-of-service", {"work_order": "WO-4711"}, hm, 404)
        r = await c.post("/api/v1/workorders/from-alarm", json={"alarm_id": bid}, headers=hm)
        assert r.status_code == 200, r.text
        wo = r.json()["id"]
        await act("out-of-service", {"work_order": wo}, hm)
        assert (await bollard_alarm())["work_order"] == wo  # type: ignore[index]
        await act("return-to-service", {}, hm)
        await act("reset", {}, hm, 409)  # not a latched alarm: refused with the reason, nothing changes
        rows = (await c.get("/api/v1/journal", params={"equipment": bollard.id, "limit": 50},
                            headers=h)).json()["entries"]
        events = {r["event"] for r in rows}
        assert {"condition_on", "shelve", "unshelve", "suppress", "unsuppress", "remove_from_service",
                "return_to_service"} <= events, events
        history = (await c.get("/api/v1/commands", params={"equipment": cab.id}, headers=h)).json()["commands"]
        kinds = [e.get("kind") for e in history]
        assert "outcome" in kinds or "select" in kinds, kinds
        health = (await c.get("/api/v1/health")).json()
        assert health["subsystems"]["poll"]["status"] in ("ok", "degraded")
        assert health["subsystems"]["alarms"]["status"] == "ok"


def _spawn_server(tags: Path, endpoints: Path, data: Path) -> Any:
    import os
    import subprocess
    import sys

    env = {**os.environ, "SCADA_ADMIN_PASSWORD": "Kill-Nine-Test-77", "SCADA_ADMIN_USER": "chief"}
    cmd = [sys.executable, "-m", "cli", "server", "--tags", str(tags), "--alarms", str(tags.parent / "alarms.yaml"),
           "--endpoints", str(endpoints), "--data-dir", str(data), "--port", "0", "--historian", "none",
           "--log-level", "WARNING"]
    with contextlib_suppress():
        (data / "server.json").unlink()
    return subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=open(data.parent / f"server-{time.monotonic_ns()}.log", "wb"))


def contextlib_suppress() -> Any:
    import contextlib

    return contextlib.suppress(FileNotFoundError)


async def _url_of(proc: Any, data: Path) -> str:
    async def ready() -> str | None:
        assert proc.poll() is None, "the server process died"
        try:
            state = json.loads((data / "server.json").read_text())
        except (OSError, ValueError):
            return None
        return str(state["url"]) if state.get("pid") == proc.pid else None

    return str(await until("the server's URL", ready, timeout=60))


async def test_kill_9_restart_keeps_acknowledged_alarms(field: tuple[Any, Path], tmp_path: Path) -> None:
    import signal

    sim, tags = field
    data = tmp_path / "data"
    data.mkdir()
    endpoints = tmp_path / "sim" / "endpoints.json"
    bollard = next(e for e in sim.config.equipment.values() if e.template == "bollard")
    alarm_id = f"bollard_fault:{bollard.tag_name('fault')}"
    proc = _spawn_server(tags, endpoints, data)
    try:
        url = await _url_of(proc, data)
        async with httpx.AsyncClient(base_url=url, timeout=30) as c:
            r = await c.post("/api/v1/auth/login", json={"user": "chief", "password": "Kill-Nine-Test-77"})
            h = {"Authorization": f"Bearer {r.json()['token']}"}
            sim.inject(bollard.id, "bollard_fault")

            async def active() -> dict[str, Any] | None:
                alarms = (await c.get("/api/v1/alarms", params={"equipment": bollard.id}, headers=h)).json()
                return next((a for a in alarms.get("alarms", []) if a["id"] == alarm_id), None)

            # the server's warm-up reads every device first (dead ones time out): generous under a loaded machine
            first = await until("the bollard alarm", active, timeout=60)
            assert first["state"] == "unack"
            r = await c.post("/api/v1/alarms/ack", json={"ids": [alarm_id]}, headers=h)
            assert r.status_code == 200, r.text
        proc.send_signal(signal.SIGKILL)  # no clean stop: nothing flushed by a shutdown path
        proc.wait(10)
        proc = _spawn_server(tags, endpoints, data)
        url = await _url_of(proc, data)
        async with httpx.AsyncClient(base_url=url, timeout=30) as c:
            r = await c.post("/api/v1/auth/login", json={"user": "chief", "password": "Kill-Nine-Test-77"})
            h = {"Authorization": f"Bearer {r.json()['token']}"}
            health = (await c.get("/api/v1/health")).json()
            assert "restored" in health["subsystems"]["alarms"]["detail"]
            again = await active()
            assert again is not None and again["state"] == "acked", again  # acknowledged stays acknowledged
        proc.send_signal(signal.SIGTERM)  # clean stop
        assert proc.wait(30) == 0
        assert not (data / "server.json").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
