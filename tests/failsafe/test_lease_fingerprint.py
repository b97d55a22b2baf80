"""A lease belongs to its equipment and its city: never re-applied to another one that shares the id.

- Lease manager: a persisted lease whose equipment is now at another device address (or that records
  no fingerprint) is dropped at load, journalled with the reason, and nothing is written for it; the
  same city resumes it.
- Real servers + simulators: a server of city A takes a lease on C0001 and stops; a server of city B
  (another inventory, where C0001 is another cabinet) starts on the same data folder: nothing is
  re-applied to B's field (its C0001 stays on its schedule, no override), the audit says why, a P3
  "lease from another configuration dropped" alarm is raised, and A's lease store is kept aside.
"""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any

import httpx

from failsafe.fingerprint import equipment_fingerprint
from failsafe.leases import LeaseManager
from failsafe.types import CommandRequest, Outcome
from scada.alarms.system import BY_KEY, rule_name
from scada.config import load_city
from tests.failsafe.conftest import ALICE, Stack
from tests.server.conftest import ROOT, login, running_server
from tests.server.test_e2e import NIGHT, fast_city, until

CAB = "C0005"


async def test_a_lease_on_equipment_now_at_another_address_is_dropped_not_reapplied(stack: Stack) -> None:
    stack.watch = [CAB]
    r = await stack.gate.execute(CommandRequest("set_level", (CAB,), ALICE, {"level": 90}, lease_s=3600))
    assert r.outcome is Outcome.DONE
    await stack.run_for(2)
    other = copy.deepcopy(stack.city)  # the same id, another cabinet: another unit on the gateway
    dev = other.devices[other.equipment[CAB].device]
    dev.connection = {**dev.connection, "unit": 200}
    assert equipment_fingerprint(other, CAB) != equipment_fingerprint(stack.city, CAB)
    before = len(stack.field.writes)
    moved = LeaseManager(other, stack.vocab, stack.field, stack.audit, store=stack.tmp / "leases.json",
                         clock=stack.clock)
    assert moved.active(CAB) is None and [lease.equipment for lease in moved.dropped] == [CAB]
    for _ in range(20):
        stack.clock.advance(1)
        await moved.tick()
    assert [w for w in stack.field.writes[before:] if w.equipment == CAB] == []  # neither refreshed nor released
    dropped = [e for e in stack.audit.entries() if e["kind"] == "lease_dropped"]
    assert len(dropped) == 1 and dropped[0]["target"] == CAB and "another equipment now" in dropped[0]["reason"]
    # the city it was taken in resumes it (the check is not over-eager)
    same = LeaseManager(stack.city, stack.vocab, stack.field, stack.audit, store=stack.tmp / "leases.json",
                        clock=stack.clock)
    assert same.active(CAB) is not None and same.dropped == []


async def test_a_lease_without_fingerprint_is_dropped(stack: Stack) -> None:
    stack.watch = [CAB]
    await stack.gate.execute(CommandRequest("set_level", (CAB,), ALICE, {"level": 90}, lease_s=3600))
    store = stack.tmp / "leases.json"
    data = json.loads(store.read_text())
    for lease in data["leases"]:
        lease.pop("fingerprint")  # written before leases recorded their equipment
    store.write_text(json.dumps(data))
    again = LeaseManager(stack.city, stack.vocab, stack.field, stack.audit, store=store, clock=stack.clock)
    assert again.active(CAB) is None
    assert "no equipment fingerprint" in again.dropped[0].note


def other_city(tmp: Path) -> Path:
    """The demo city with another inventory, where C0001 is another cabinet (unit 9 of the gateway)."""
    tags = fast_city(tmp)
    rows = (ROOT / "inventory" / "demo.csv").read_text().splitlines()
    out = [r.replace(",modbus-1,1,", ",modbus-1,9,") if r.startswith("C0001,") else r for r in rows]
    inv = tags.parent / "other.csv"
    inv.write_text("\n".join(out) + "\n")
    tags.write_text(tags.read_text().replace(f"file: {ROOT / 'inventory' / 'demo.csv'}", f"file: {inv}"))
    return tags


async def start_sim(tags: Path, state: Path) -> Any:
    from sim.runner import Simulator  # tests may import sim; the core never does

    sim = Simulator(load_city(tags, tags.parent / "alarms.yaml"), seed=42, speed=1.0, ports="test",
                    state_dir=state, start_time=NIGHT, control_port=None)
    await sim.start()
    return sim


async def test_leases_of_another_city_are_never_reapplied(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    tags_a = fast_city(tmp_path / "a")
    tags_b = other_city(tmp_path / "b")

    # city A: an operator puts C0001 on override (safety-increasing: runs at once), a lease of an hour
    sim_a = await start_sim(tags_a, tmp_path / "sim-a")
    try:
        async with running_server(data, endpoints=sim_a.endpoints, tags=tags_a,
                                  alarms=tags_a.parent / "alarms.yaml") as (server, url), \
                httpx.AsyncClient(base_url=url, timeout=60) as c:
            await until("C0001 read", lambda: server.tagdb.read(
                server.config.equipment["C0001"].tag_name("mode")).quality.is_good, timeout=60)
            r = await c.post("/api/v1/commands", headers=await login(c, "op"),
                             json={"target": "C0001", "verb": "set_level", "params": {"level": 100},
                                   "lease_s": 3600})
            assert r.status_code in (200, 201) and r.json()["outcome"] == "done", r.text
            assert sim_a.models["C0001"].mode == 1  # override
    finally:
        await sim_a.aclose()
    stored = json.loads((data / "failsafe" / "leases.json").read_text())["leases"]
    assert [(x["equipment"], x["state"]) for x in stored] == [("C0001", "active")]
    city_a = json.loads((data / "city.json").read_text())["fingerprint"]

    # city B on the same folder: its C0001 is another cabinet
    sim_b = await start_sim(tags_b, tmp_path / "sim-b")
    try:
        async with running_server(data, endpoints=sim_b.endpoints, tags=tags_b,
                                  alarms=tags_b.parent / "alarms.yaml") as (server, url), \
                httpx.AsyncClient(base_url=url, timeout=60) as c:
            fs = server.components["failsafe"].fs  # type: ignore[attr-defined]  # the running Failsafe façade
            assert fs.leases.active("C0001") is None and fs.leases.leases() == []
            await until("C0001 read", lambda: server.tagdb.read(
                server.config.equipment["C0001"].tag_name("mode")).quality.is_good, timeout=60)
            await asyncio.sleep(3)  # lease ticks and heartbeats run every 0.5 s: nothing may reach the field
            cab = sim_b.models["C0001"]
            assert cab.mode == 0 and cab.lease.remaining(sim_b.now) == 0, (cab.mode, cab.lease)  # its schedule
            h = await login(c, "op")
            entries = (await c.get("/api/v1/commands", params={"equipment": "C0001"}, headers=h)).json()["commands"]
            dropped = [e for e in entries if e.get("kind") == "lease_dropped"]
            assert dropped and "another configuration" in dropped[0]["reason"], entries
            a = BY_KEY[("failsafe", "lease_foreign_dropped")]
            aid = f"{rule_name(a)}:{a.tag()}"
            listed = {x["id"]: x for x in (await c.get("/api/v1/alarms", headers=h)).json()["alarms"]}
            assert aid in listed and listed[aid]["priority"] == 3, sorted(listed)
            assert list((data / "failsafe").glob("leases.json.other-config-*"))  # A's store kept aside
            assert json.loads((data / "city.json").read_text())["fingerprint"] != city_a  # now serves city B
    finally:
        await sim_b.aclose()
