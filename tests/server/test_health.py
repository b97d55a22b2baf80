"""/health tells the truth, and what blinds the fail-safe layer is a P1 alarm within a second.

Real servers (uvicorn on port 0), the real API, real files:

- ``starting`` during the first reads (the junctions' SNMP endpoint is a UDP socket that never answers:
  every read times out), then ``degraded`` naming the lost devices once their start-up grace is over;
- ``failed`` when the fail-safe component cannot start (its folder is a file), with the P1
  ``system.server.failsafe_down`` alarm on /alarms;
- ``failed`` + P1 within 1 s when the lease store or the audit log stops being writable at run time, and
  back within 1 s when it is writable again, also after a command's append failed meanwhile (the gate is
  re-armed by the store probe with a real ``audit_writable_again`` entry). Tests run as root, where permission bits stop nothing: the store is
  replaced by a directory, which really fails for root too (open for writing: EISDIR; rename over it:
  EISDIR).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from scada.alarms.system import BY_KEY, rule_name
from server.app import ScadaServer
from tests.server.conftest import login, nowhere_endpoints, running_server
from tests.server.test_e2e import until


def system_alarm_id(source: str, code: str) -> str:
    a = BY_KEY[(source, code)]
    return f"{rule_name(a)}:{a.tag()}"


def active_ids(server: ScadaServer) -> set[str]:
    assert server.alarms is not None
    return {a["id"] for a in server.alarms.active()[1] if a["active"]}


async def within(what: str, check: Callable[[], bool], seconds: float) -> float:
    """How long ``check`` took to hold (polled every 10 ms); fails past ``seconds``."""
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > seconds:
            raise AssertionError(f"{what}: not within {seconds} s")
        await asyncio.sleep(0.01)
    return time.monotonic() - t0


async def test_starting_then_degraded_with_the_lost_devices_named(tmp_path: Path) -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # an SNMP agent that never answers
    silent.bind(("127.0.0.1", 0))
    endpoints = {**nowhere_endpoints(), "snmp-traffic": f"127.0.0.1:{silent.getsockname()[1]}"}
    try:
        async with running_server(tmp_path / "data", endpoints=endpoints) as (server, url), \
                httpx.AsyncClient(base_url=url, timeout=30) as c:
            first = (await c.get("/api/v1/health")).json()
            assert first["status"] == "starting", first  # the warm-up read waits for the junctions' timeouts
            assert first["subsystems"]["poll"]["status"] == "starting"

            async def degraded() -> dict[str, Any] | None:
                h = dict((await c.get("/api/v1/health")).json())
                return h if h["status"] == "degraded" and h["devices_lost"]["count"] > 0 else None

            h = await until("/health degraded", degraded, timeout=60)
            junctions = sorted(e.device for e in server.config.equipment.values() if e.template == "junction")
            assert set(junctions) <= set(h["devices_lost"]["names"]), h["devices_lost"]
            assert any("device(s) lost" in r for r in h["reasons"])
            assert "stats" not in h["subsystems"]["poll"]  # no token: the per-subsystem status, not the stats
            hs = await login(c, "op")
            full = (await c.get("/api/v1/health", headers=hs)).json()
            assert full["subsystems"]["poll"]["stats"]["by_status"].get("lost", 0) >= len(junctions)
            # and the field going silent is on the alarm list: a junction's comm loss is P1
            j = server.config.equipment[junctions[0]]
            aid = f"{rule_name(BY_KEY[('poll', 'comm_lost')], 'junction')}:{j.tag_name('poll/comm_lost')}"
            listed = {a["id"]: a for a in (await c.get("/api/v1/alarms", headers=hs)).json()["alarms"]}
            assert listed[aid]["priority"] == 1 and listed[aid]["active"]
    finally:
        silent.close()


async def test_a_failsafe_component_that_cannot_start_is_failed_and_a_p1_alarm(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "failsafe").write_text("not a folder\n")  # the layer cannot create its stores
    async with running_server(data) as (server, url), httpx.AsyncClient(base_url=url, timeout=30) as c:
        assert server.status("failsafe").status == "down"
        h = (await c.get("/api/v1/health")).json()
        assert h["status"] == "failed", h
        assert any(r.startswith("failsafe down") for r in h["reasons"]), h["reasons"]
        aid = system_alarm_id("server", "failsafe_down")
        await within("the failsafe_down alarm", lambda: aid in active_ids(server), 1.0)
        listed = {a["id"]: a for a in (await c.get("/api/v1/alarms", headers=await login(c, "op"))).json()["alarms"]}
        assert listed[aid]["priority"] == 1 and listed[aid]["state"] == "unack"


def newest_audit_file(path: Path) -> Path:
    """The file the audit log appends to: the log itself, or the newest segment of a segmented log."""
    return sorted(path.glob("*.log"))[-1] if path.is_dir() else path


async def test_stores_that_stop_being_writable_are_p1_within_a_second_and_failed(tmp_path: Path) -> None:
    async with running_server(tmp_path / "data") as (server, url), httpx.AsyncClient(base_url=url, timeout=30) as c:
        await until("the fail-safe layer", lambda: server.status("failsafe").status == "ok")
        fs = server.components["failsafe"].fs  # type: ignore[attr-defined]  # the running Failsafe façade
        await until("/health not failed", lambda: _status(c) , timeout=30)
        measured: dict[str, float] = {}

        # 1. the lease store: leases.json replaced by a directory (a rename over it fails, for root too)
        store = fs.leases.store
        if store.exists():
            store.unlink()
        store.mkdir()
        aid = system_alarm_id("failsafe", "lease_store_unwritable")
        measured["lease store"] = await within("lease store P1", lambda: aid in active_ids(server), 1.0)
        h = (await c.get("/api/v1/health")).json()
        assert h["status"] == "failed" and any("lease store" in r for r in h["reasons"]), h
        store.rmdir()
        await within("lease store alarm cleared", lambda: aid not in active_ids(server), 1.0)

        # 2. the audit log: the file it appends to replaced by a directory
        target = newest_audit_file(fs.audit.path)
        aside = target.with_name(target.name + ".aside")
        os.replace(target, aside)
        target.mkdir()
        aid = system_alarm_id("failsafe", "audit_unwritable")
        try:
            measured["audit log"] = await within("audit log P1", lambda: aid in active_ids(server), 1.0)
            h = (await c.get("/api/v1/health")).json()
            assert h["status"] == "failed" and any("audit log" in r for r in h["reasons"]), h
            ho = await login(c, "op")
            listed = {a["id"]: a for a in (await c.get("/api/v1/alarms", headers=ho)).json()["alarms"]}
            assert listed[aid]["priority"] == 1
            # a command meanwhile: the gate's own append fails (refused, or its refusal not journalled), and the
            # gate holds the log unwritable until an append works again; the alarm must not outlive the fault
            j = next(e for e in server.config.equipment.values() if e.template == "junction")
            r = await c.post("/api/v1/commands", json={"target": j.id, "verb": "select_plan", "params": {"plan": 2}},
                             headers=ho)
            assert r.status_code >= 400, r.text  # nothing is accepted that cannot be journalled
            assert not fs.gate.audit_writable
        finally:
            shutil.rmtree(target)
            os.replace(aside, target)
        # cleared once the log is writable again: at the first passing probe, or — when the gate's own append
        # failed last — after the store watch's 5 s back-off (a full disk passes the probe but fails appends)
        await within("audit alarm cleared", lambda: aid not in active_ids(server), 6.0)
        assert (await c.get("/api/v1/health")).json()["status"] != "failed"
        assert fs.gate.audit_writable  # re-armed by a real append, which the log keeps
        assert any(e["kind"] == "audit_writable_again" for e in fs.audit.latest(limit=20))
        print("store failure → P1 alarm:", {k: f"{v * 1000:.0f} ms" for k, v in measured.items()})


async def _status(c: httpx.AsyncClient) -> bool:
    return bool((await c.get("/api/v1/health")).json()["status"] != "failed")
