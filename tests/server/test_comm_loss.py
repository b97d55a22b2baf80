"""Communication loss is one alarm per lost thing, for every kind of device, and /health says so.

Simulator (real Modbus TCP gateway, RS-485 panel bus, Modbus RTU parking bus, OPC UA fleet server) +
server. The simulator's control API ``POST /comm {equipment, kind: disconnect}`` unplugs a bollard (its
Modbus unit: the gateway drops the connection), a panel (silent on a bus that still answers for the
others), a car park (silent on the RTU bus) and a vehicle (the whole fleet server endpoint goes away).
Each gives exactly one annunciated comm-loss alarm: the bollard's, the panel's, the car park's, and one
for the fleet server (the twelve vehicles behind it are suppressed by design behind it); /health is
``degraded`` naming the lost devices. Cleared, every one returns to normal by itself.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from scada.alarms.system import BY_KEY, rule_name
from scada.config import load_city
from tests.server.conftest import login, running_server
from tests.server.test_e2e import NIGHT, fast_city, until


@pytest.fixture
async def field_api(tmp_path: Path) -> AsyncIterator[tuple[Any, Path]]:
    """The simulator with its HTTP control API on an OS-assigned port."""
    from sim.runner import Simulator

    tags = fast_city(tmp_path)
    config = load_city(tags, tags.parent / "alarms.yaml")
    sim = Simulator(config, seed=42, speed=1.0, ports="test", state_dir=tmp_path / "sim", start_time=NIGHT,
                    control_port=0)
    await sim.start()
    try:
        yield sim, tags
    finally:
        await sim.aclose()


def annunciated(alarms: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Active alarms an operator sees (not suppressed, shelved or out of service)."""
    return [a for a in alarms if a["active"] and not any(f.startswith(("suppressed", "shelved", "out_of"))
                                                         for f in a["flags"])]


async def test_disconnect_bollard_panel_car_park_vehicle_one_comm_loss_alarm_each(
        field_api: tuple[Any, Path], tmp_path: Path) -> None:
    sim, tags = field_api
    async with running_server(tmp_path / "data", endpoints=sim.endpoints, tags=tags,
                              alarms=tags.parent / "alarms.yaml") as (server, url), \
            httpx.AsyncClient(base_url=url, timeout=60) as c, \
            httpx.AsyncClient(base_url=sim.control_url, timeout=30) as ctl:
        h = await login(c, "op")
        cfg = server.config
        pick = {t: next(e for e in cfg.equipment.values() if e.template == t)
                for t in ("bollard", "panel", "parking", "vehicle")}
        comm = BY_KEY[("poll", "comm_lost")]
        device_alarm = BY_KEY[("poll", "device_comm_lost")]
        fleet = pick["vehicle"].device
        assert len(cfg.devices[fleet].equipment) > 1  # the vehicles share the fleet server
        expected = {  # equipment → the one comm-loss alarm id expected for it
            "bollard": f"{rule_name(comm, 'bollard')}:{pick['bollard'].tag_name('poll/comm_lost')}",
            "panel": f"{rule_name(comm, 'panel')}:{pick['panel'].tag_name('poll/comm_lost')}",
            "parking": f"{rule_name(comm, 'parking')}:{pick['parking'].tag_name('poll/comm_lost')}",
            "vehicle": f"{rule_name(device_alarm, fleet)}:{device_alarm.tag(fleet)}",
        }

        async def health() -> dict[str, Any]:
            return dict((await c.get("/api/v1/health")).json())

        # the warm-up, then the grace (two scan periods): everything answers, no comm-loss alarm, health ok
        await until("the first reads", lambda: server.status("poll").status != "starting", timeout=60)
        try:
            await until("/health ok", lambda: _status_is(health, "ok"), timeout=30)
        except AssertionError:
            raise AssertionError(f"{await health()}") from None
        listed = (await c.get("/api/v1/alarms", headers=h)).json()["alarms"]
        # (not active: a device may have flapped on a loaded machine, the test and the simulator share one loop)
        assert not [a for a in listed if a["id"] in expected.values() and a["active"]], listed

        started = time.monotonic()
        for e in pick.values():
            r = await ctl.post("/comm", json={"equipment": e.id, "kind": "disconnect"})
            assert r.status_code == 200, r.text

        async def all_raised() -> list[dict[str, Any]] | None:
            alarms = (await c.get("/api/v1/alarms", headers=h)).json()["alarms"]
            shown = {a["id"] for a in annunciated(alarms)}
            return alarms if set(expected.values()) <= shown else None

        alarms = await until("a comm-loss alarm for each", all_raised, timeout=60, every=0.5)
        took = time.monotonic() - started
        comm_shown = [a for a in annunciated(alarms) if "comm_lost" in a["rule"]]
        for kind, aid in expected.items():
            mine = [a for a in comm_shown if a["id"] == aid]
            assert len(mine) == 1, (kind, comm_shown)
        # one annunciation per lost thing: no other comm-loss alarm for these equipment or the fleet
        ours = {e.id for e in pick.values()} | set(cfg.devices[fleet].equipment)
        extra = [a for a in comm_shown if a["id"] not in expected.values() and (a["equipment"] in ours or
                                                                                 fleet in a["id"])]
        assert not extra, extra
        by_id = {a["id"]: a for a in alarms}
        assert by_id[expected["bollard"]]["priority"] == 2 and by_id[expected["panel"]]["priority"] == 3
        assert by_id[expected["bollard"]]["equipment"] == pick["bollard"].id
        assert "communication lost" in by_id[expected["panel"]]["message"]
        # the vehicle's own comm-loss alarm is there, journalled, but suppressed by design behind the fleet server's
        own = f"{rule_name(comm, 'vehicle')}:{pick['vehicle'].tag_name('poll/comm_lost')}"
        assert own in by_id and by_id[own]["active"] and any(f.startswith("suppressed") for f in by_id[own]["flags"])

        report = await health()
        assert report["status"] == "degraded", report
        assert fleet in report["devices_lost"]["names"] and pick["bollard"].device in report["devices_lost"]["names"]
        assert report["devices_lost"]["count"] >= 2
        assert any("lost" in r for r in report["reasons"])
        assert report["subsystems"]["poll"]["status"] == "ok"  # the per-subsystem detail stays

        for e in pick.values():
            r = await ctl.post("/comm", json={"equipment": e.id, "kind": None})
            assert r.status_code == 200, r.text

        async def all_cleared() -> bool:
            alarms = {a["id"]: a for a in (await c.get("/api/v1/alarms", headers=h)).json()["alarms"]}
            return not any(alarms.get(aid, {}).get("active") for aid in [*expected.values(), own])

        await until("every comm-loss alarm back to normal", all_cleared, timeout=90, every=0.5)
        await until("/health ok again", lambda: _status_is(health, "ok"), timeout=30)
        print(f"comm-loss alarms raised {took:.1f} s after the disconnects")


async def _status_is(health: Any, status: str) -> bool:
    return bool((await health())["status"] == status)
