"""The routes' own logic on a real server: alarm filters in one call, typed refusals answered by their code.

The city runs with every endpoint pointed at nothing, so communication-loss alarms appear on their own
within seconds: real alarms to filter, acknowledge and count.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from scada.config.units import slug
from server.app import ScadaServer
from tests.server.conftest import login


async def _alarms(c: httpx.AsyncClient, h: dict[str, str], **params: Any) -> dict[str, Any]:
    r = await c.get("/api/v1/alarms", params=params, headers=h)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["total"] >= len(body["alarms"])
    return body


async def test_alarm_list_filters(live: tuple[ScadaServer, httpx.AsyncClient]) -> None:
    _, c = live
    h = await login(c, "op")
    deadline = time.monotonic() + 60
    seen: set[str] = set()
    while True:  # until the communication-loss alarms have all appeared (the same list 2 s apart)
        everything = await _alarms(c, h)
        ids = {a["id"] for a in everything["alarms"]}
        if len(ids) >= 3 and ids == seen:
            break
        assert time.monotonic() < deadline, f"no stable list of communication-loss alarms within 60 s: {len(ids)}"
        seen = ids
        await asyncio.sleep(2)
    first = everything["alarms"][0]
    acked = everything["alarms"][1]["id"]
    assert (await c.post("/api/v1/alarms/ack", json={"ids": [acked]}, headers=h)).status_code == 200

    # each filter keeps exactly the matching alarms
    by_state = {s: await _alarms(c, h, state=s) for s in ("unack", "acked")}
    assert [a["id"] for a in by_state["acked"]["alarms"]] == [acked]
    assert all(a["state"] == "unack" for a in by_state["unack"]["alarms"])
    both = await _alarms(c, h, state="unack,acked")
    assert both["total"] == by_state["unack"]["total"] + by_state["acked"]["total"]
    p = first["priority"]
    assert all(a["priority"] == p for a in (await _alarms(c, h, priority=str(p)))["alarms"])
    other = 1 if p != 1 else 2
    assert (await _alarms(c, h, priority=f"{p},{other}"))["total"] == \
        (await _alarms(c, h, priority=str(p)))["total"] + (await _alarms(c, h, priority=str(other)))["total"]
    assert all(a["priority"] == "diagnostic" for a in (await _alarms(c, h, priority="diagnostic"))["alarms"])
    by_area = await _alarms(c, h, area=slug(first["area"]))  # the commune's slug names it as well as its name
    assert by_area["total"] >= 1 and all(slug(a["area"]) == slug(first["area"]) for a in by_area["alarms"])
    one = await _alarms(c, h, equipment=first["equipment"], service=first["service"])
    assert one["total"] >= 1 and all(a["equipment"] == first["equipment"] for a in one["alarms"])
    # limit pages, total still counts every match
    page = await _alarms(c, h, limit=1)
    assert len(page["alarms"]) == 1 and page["total"] >= 3
    # the equipment sheet lists that equipment's active alarms
    sheet = (await c.get(f"/api/v1/equipment/{first['equipment']}", headers=h)).json()
    assert {a["id"] for a in sheet["alarms"]} == {a["id"] for a in (await _alarms(c, h, equipment=first["equipment"],
                                                                                   limit=50_000))["alarms"]}

    # a filter that cannot match anything is a refusal, not an empty list
    for params in ({"priority": "urgent"}, {"priority": "7"}, {"state": "shelved"}):
        r = await c.get("/api/v1/alarms", params=params, headers=h)
        assert r.status_code == 422 and r.json()["code"] == "invalid_request", (params, r.text)


async def test_user_refusals_are_typed(live: tuple[ScadaServer, httpx.AsyncClient]) -> None:
    server, c = live
    ha = await login(c, "admin")
    r = await c.delete("/api/v1/users/nobody", headers=ha)
    assert r.status_code == 404 and r.json()["code"] == "not_found", r.text
    r = await c.patch("/api/v1/users/nobody", json={"disabled": True}, headers=ha)
    assert r.status_code == 404 and r.json()["code"] == "not_found", r.text
    r = await c.delete("/api/v1/users/admin", headers=ha)  # the last administrator
    assert r.status_code == 409 and r.json()["code"] == "user_refused" and "last administrator" in r.json()["why"]
    r = await c.post("/api/v1/users", json={"name": "op", "role": "viewer", "password": "Another-Long-One-1"}, headers=ha)
    assert r.status_code == 409 and r.json()["code"] == "user_refused" and "exists" in r.json()["why"], r.text
    assert server.users.get("op") is not None and server.users.get("op").role == "operator"  # type: ignore[union-attr]
