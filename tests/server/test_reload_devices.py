"""Configuration reload against the simulator: only added, removed and changed devices start and stop.

The server polls the simulated city; the inventory gains a lighting cabinet and loses a camera; the
reload (validated first) starts the new cabinet's device and stops the camera's, while every other
device keeps its driver and connection and goes on writing into the new tag database: a lighting
cabinet in the main Poller, a junction in the field-safety thread's own Poller (server.components.safety).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import httpx

from scada.config.partitions import junction_devices
from server.components.poll import PollComponent
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
        # a kept device of each Poller: a lighting cabinet (main) and a junction (field-safety thread)
        kept = next(e for e in server.config.equipment.values() if e.template == "lighting_cabinet")
        driver_before = server.poller.drivers[kept.device]
        requests_before = server.poller.stats[kept.device].requests
        poll_component = server.components["poll"]
        assert isinstance(poll_component, PollComponent)
        safety = poll_component.safety
        assert safety.poller is not None
        junction = next(e for e in server.config.equipment.values() if e.template == "junction")
        assert junction.device not in server.poller.drivers  # polled by the field-safety thread only
        junction_driver_before = safety.poller.drivers[junction.device]
        junction_requests_before = safety.stats[junction.device].requests

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
        # the main Poller kept every other non-junction device; the junctions' Poller changed nothing
        junctions = junction_devices(server.config)
        assert poll["restarted"] == [] and poll["kept"] == len(server.config.devices) - len(junctions) - 1
        assert poll["safety"]["junction_devices"] == len(junctions), poll
        assert not any(poll["safety"].get(k) for k in ("started", "stopped", "restarted")), poll
        assert new_device in server.poller.devices and cam_device not in server.poller.devices

        # the kept devices kept their drivers (and connections) and counters, and write into the new tag database
        assert server.poller.drivers[kept.device] is driver_before
        assert server.poller.stats[kept.device].requests >= requests_before  # counters carried on
        assert safety.poller.drivers[junction.device] is junction_driver_before
        assert safety.stats[junction.device].requests >= junction_requests_before
        t0 = time.time_ns()
        greens = junction.tag_name("phase_greens")
        await until("a fresh junction sample in the new tag database",
                    lambda: server.tagdb.read(greens).receive_ns > t0 and server.tagdb.read(greens).quality.is_good)
        # the new cabinet (unit 199: nobody answers) is polled and reported lost, the others are fine
        await until("the new cabinet's device polled",
                    lambda: server.poller.stats[new_device].requests > 0 or server.poller.stats[new_device].errors > 0)
