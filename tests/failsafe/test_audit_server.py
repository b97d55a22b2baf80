"""Fail-safe 2 and security 6 against the real server and the simulator: a torn audit-log tail is cut aside
(P2 on /alarms, commands as before); a byte edited in the middle of the log leaves the layer running with
only safety-increasing commands (flash works, set_level refused, P1 on /alarms); GET /commands pages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.server.conftest import login, running_server
from tests.server.test_e2e import field, until

__all__ = ["field"]  # the simulator fixture


def last_segment(data: Path) -> Path:
    return sorted((data / "failsafe" / "audit").glob("*.log"))[-1]


def polled(server: Any, cab: Any) -> bool:
    """The tags set_level reads (its interlock's input too) have good quality."""
    return all(server.tagdb.read(cab.tag_name(t)).quality.is_good for t in ("mode", "schedule_level"))


def passed_gate(r: httpx.Response) -> bool:
    """Accepted by the gate and journalled; whether the write then lands is the field's (a loaded test machine
    loses Modbus answers: "failed" is a write outcome, never the gate's refusal)."""
    return r.status_code == 200 and r.json()["state"] == "finished" and r.json()["outcome"] != "rejected"


async def command(c: httpx.AsyncClient, h: dict[str, str], body: dict[str, Any]) -> httpx.Response:
    """POST a command; again while it is refused only for unreadable inputs (a loaded machine loses polls)."""
    got: list[httpx.Response] = []

    async def attempt() -> bool:
        r = await c.post("/api/v1/commands", json=body, headers=h)
        got.append(r)
        return not (r.status_code == 409 and r.json()["why"].startswith("inputs:"))

    await until(f"{body['verb']} on {body['target']} past its input check", attempt, timeout=40, every=1.0)
    return got[-1]


async def alarm(c: httpx.AsyncClient, h: dict[str, str], code: str) -> dict[str, Any] | None:
    listed = (await c.get("/api/v1/alarms", headers=h)).json()["alarms"]
    return next((a for a in listed if a["id"].startswith(f"system.failsafe.{code}")), None)


async def flash(c: httpx.AsyncClient, h: dict[str, str], junction: str) -> httpx.Response:
    r = await c.post("/api/v1/commands", json={"target": junction, "verb": "flash", "lease_s": 60}, headers=h)
    if r.status_code == 200 and r.json()["state"] == "selected":  # junctions are critical: select, then operate
        r = await c.post(f"/api/v1/commands/{r.json()['id']}/operate", headers=h)
    return r


async def test_a_damaged_audit_log_never_stops_the_fail_safe_layer(field: tuple[Any, Path], tmp_path: Path) -> None:
    sim, tags = field
    data = tmp_path / "data"
    opts = {"endpoints": sim.endpoints, "tags": tags, "alarms": tags.parent / "alarms.yaml"}
    async with running_server(data, **opts) as (server, url), httpx.AsyncClient(base_url=url, timeout=60) as c:
        h = await login(c, "op")
        cabs = [e for e in server.config.equipment.values() if e.template == "lighting_cabinet"]
        await until("the cabinets polled", lambda: all(polled(server, e) for e in cabs[:3]), timeout=40)
        for cab in cabs[:3]:
            r = await command(c, h, {"target": cab.id, "verb": "set_level",
                                                       "params": {"level": 100}, "lease_s": 60})
            assert passed_gate(r), r.text
        history = (await c.get("/api/v1/commands", params={"limit": 2}, headers=h)).json()["commands"]
        assert len(history) == 2 and history[0]["seq"] > history[1]["seq"]
        page = (await c.get("/api/v1/commands", params={"limit": 2, "before": history[-1]["seq"]},
                            headers=h)).json()["commands"]
        assert page and page[0]["seq"] < history[-1]["seq"]  # the next page, newest first
    assert (data / "keys" / "audit.key").stat().st_mode & 0o077 == 0

    # 1. an interrupted write: half a line at the end of the log
    with last_segment(data).open("ab") as fh:
        fh.write(b'{"seq": 999, "kind": "operate", "user": "op", "targ')
    async with running_server(data, **opts) as (server, url), httpx.AsyncClient(base_url=url, timeout=60) as c:
        h = await login(c, "op")
        repaired = await until("the P2 on /alarms", lambda: alarm(c, h, "audit_repaired"), timeout=20)
        assert repaired["priority"] == 2
        assert await alarm(c, h, "audit_damaged") is None
        assert list((data / "failsafe" / "audit").glob("*.torn-*"))  # the torn bytes kept aside
        cab = next(e for e in server.config.equipment.values() if e.template == "lighting_cabinet")
        await until("the cabinet polled", lambda: polled(server, cab), timeout=40)
        r = await command(c, h, {"target": cab.id, "verb": "set_level",
                                                   "params": {"level": 100}, "lease_s": 60})
        assert passed_gate(r), r.text  # not degraded: commands as before

    # 2. one byte edited in the middle of the chain
    seg = last_segment(data)
    text = seg.read_bytes()
    at = text.index(b'"level": 100')
    seg.write_bytes(text[:at] + b'"level": 900' + text[at + len(b'"level": 100'):])
    async with running_server(data, **opts) as (server, url), httpx.AsyncClient(base_url=url, timeout=60) as c:
        h = await login(c, "op")
        damaged = await until("the P1 on /alarms", lambda: alarm(c, h, "audit_damaged"), timeout=20)
        assert damaged["priority"] == 1
        assert server.status("failsafe").status == "degraded"
        fs = server.components["failsafe"].fs  # type: ignore[attr-defined]
        jid = "J005"
        # the field-safety monitor runs on a damaged log too: it watches the junction
        await until("the monitor watching J005", lambda: fs.monitor.view(jid).state == "normal", timeout=40)
        r = await flash(c, h, jid)
        # safety-increasing: past the gate and journalled (whether the write then lands is the write path's)
        assert r.status_code == 200 and r.json()["safety"] == "increasing" and r.json()["outcome"] != "rejected", r.text
        flashed = [e for e in fs.history(jid, 10) if e["kind"] == "operate" and e["verb"] == "flash"]
        assert flashed and flashed[0]["user"] == "op"
        cab = next(e for e in server.config.equipment.values() if e.template == "lighting_cabinet")
        await until("the cabinet polled", lambda: polled(server, cab), timeout=40)
        r = await command(c, h, {"target": cab.id, "verb": "set_level", "params": {"level": 100},
                                                   "lease_s": 60})
        assert passed_gate(r), r.text  # lighting to 100 %: safety-increasing, accepted
        r = await command(c, h, {"target": cab.id, "verb": "set_level", "params": {"level": 40},
                                                   "lease_s": 60})
        assert r.status_code == 409 and "audit log is damaged" in r.json()["why"], r.text
