"""Configuration reload against the simulator: only added, removed and changed devices start and stop.

The server polls the simulated city; the inventory gains a lighting cabinet and loses a camera; the
reload (validated first) starts the new cabinet's device and stops the camera's, while every other
device keeps its driver and connection and goes on writing into the new tag database.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import httpx

from tests.server.conftest import ROOT, login, running_server
from tests.server.test_e2e import field, until

__all__ = ["field"]  # the simulator fixture


async def test_reload_restarts_only_what_changed(field: tuple[Any, Path], tmp_path: Path) -> None:
    sim, tags = field
    city = tags.parent
    shutil.copytree(ROOT / "inventory", city / "inventory")
    (city / "tags.yaml").write_text(tags.read_text().replace(f"file: {ROOT / 'inventory' / 'demo.csv'}",
                                                             "file: inventory/demo.csv"))
    async with running_server(tmp_path / "data", endpoints=sim.endpoints, tags=city / "tags.yaml",
                              alarms=city / "alarms.yaml") as (server, url), \
            httpx.AsyncClient(base_url=url, timeout=60) as c:
        he = await login(c, "eng")
        await until("the first poll of every device", lambda: server.subsystems["poll"].status == "ok", timeout=60)
        junction = next(e for e in server.config.equipment.values() if e.template == "junction")
        driver_before = server.poller.drivers[junction.device]
        requests_before = server.poller.stats[junction.device].requests

        inv = (city / "inventory" / "demo.csv").read_text().splitlines()
        header = inv[0].split(",")
        cab = next(line for line in inv if ",lighting_cabinet," in line)
        cam = next(line for line in inv if ",camera," in line)
        fields = cab.split(",")
        fields[0] = "C9999"
        fields[header.index("unit")] = "199"
        (city / "inventory" / "demo.csv").write_text("\n".join([*[x for x in inv if x != cam], ",".join(fields)])
                                                     + "\n")
        cam_device = server.config.equipment[cam.split(",")[0]].device
        r = await c.post("/api/v1/config/reload", headers=he)
        assert r.status_code == 200, r.text
        poll = r.json()["subsystems"]["poll"]
        new_device = server.config.equipment["C9999"].device
        assert poll["started"] == [new_device] and poll["stopped"] == [cam_device], poll
        assert poll["restarted"] == [] and poll["kept"] == len(server.config.devices) - 1
        assert new_device in server.poller.devices and cam_device not in server.poller.devices

        # the junction kept its driver (and connection) and writes into the new tag database
        assert server.poller.drivers[junction.device] is driver_before
        assert server.poller.stats[junction.device].requests >= requests_before  # counters carried on
        t0 = time.time_ns()
        greens = junction.tag_name("phase_greens")
        await until("a fresh junction sample in the new tag database",
                    lambda: server.tagdb.read(greens).receive_ns > t0 and server.tagdb.read(greens).quality.is_good)
        # the new cabinet (unit 199: nobody answers) is polled and reported lost, the others are fine
        await until("the new cabinet's device polled",
                    lambda: server.poller.stats[new_device].requests > 0 or server.poller.stats[new_device].errors > 0)
