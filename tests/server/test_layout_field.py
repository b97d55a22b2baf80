"""Layouts checked against the field, in the server with the simulator (its real SNMP agent).

commands.yaml declaring J004 "all pairs compatible" (its controller is a cross4: 1+2 and 3+4 only):
at start the fail-safe monitor refuses the layout once J004's phaseConcurrency has been read (P1 system
alarm, J004's commands refused, health degraded naming J004); a reload to that layout from a good one is
refused with the file:line and the junction named.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx

from tests.server.conftest import ROOT, login, running_server
from tests.server.test_e2e import field, until

__all__ = ["field"]  # the simulator fixture

J = "J004"
ALL_PAIRS = "  J004: {phases: 4, permissive: [[1, 2], [1, 3], [1, 4], [2, 3], [2, 4], [3, 4]]}\n"


def commands(tmp: Path, all_pairs: bool) -> tuple[Path, int]:
    """A copy of the shipped commands.yaml (J004 all-pairs-compatible or not) and J004's line in it."""
    path = tmp / "commands.yaml"
    text = (ROOT / "commands.yaml").read_text(encoding="utf-8")
    assert "  J004: cross4\n" in text
    path.write_text(text.replace("  J004: cross4\n", ALL_PAIRS) if all_pairs else text, encoding="utf-8")
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if t.startswith("  J004:"))
    return path, line


async def test_all_pairs_layout_refused_at_start(field: tuple[Any, Path], tmp_path: Path) -> None:
    sim, tags = field
    path, _ = commands(tmp_path, all_pairs=True)
    async with running_server(tmp_path / "data", endpoints=sim.endpoints, tags=tags, alarms=tags.parent / "alarms.yaml",
                              commands=path) as (server, url), httpx.AsyncClient(base_url=url, timeout=60) as c:
        fs = server.components["failsafe"].fs  # type: ignore[attr-defined]
        await until("J004's layout checked against its controller", lambda: J in fs.monitor.layouts()["refused"],
                    timeout=40)
        junction = server.config.equipment[J]
        # the monitor decides in the field-safety thread; its alarm tag reaches the main database on the main loop
        await until("the layout_refused condition in the tag database",
                    lambda: server.tagdb.read(junction.tag_name("failsafe/layout_refused")).value == 1)
        h = await login(c, "op")
        aid = f"system.junction.layout_refused:{junction.tag_name('failsafe/layout_refused')}"
        alarms = await until("the P1 in the alarm list", lambda: [a for a in server.alarms.active()[1]  # type: ignore[union-attr]
                                                                   if a["id"] == aid])
        assert alarms[0]["priority"] == 1
        st = server.subsystems["failsafe"]
        assert st.status == "degraded" and "REFUSED at J004" in st.detail
        r = await c.post("/api/v1/commands", json={"target": J, "verb": "select_plan", "params": {"plan": 2}},
                         headers=h)
        assert r.status_code in (409, 422), r.text
        assert "layout refused" in r.text
        assert J not in fs.monitor.layouts()["verified"]
        assert "J003" in fs.monitor.layouts()["verified"]  # the others agree with their controllers


async def test_all_pairs_layout_refused_at_reload(field: tuple[Any, Path], tmp_path: Path) -> None:
    sim, tags = field
    path, _ = commands(tmp_path, all_pairs=False)
    city = tags.parent
    shutil.copy(path, city / "commands.yaml")
    async with running_server(tmp_path / "data", endpoints=sim.endpoints, tags=tags, alarms=city / "alarms.yaml",
                              commands=path) as (server, url), httpx.AsyncClient(base_url=url, timeout=60) as c:
        fs = server.components["failsafe"].fs  # type: ignore[attr-defined]
        await until("J004 verified", lambda: J in fs.monitor.layouts()["verified"], timeout=40)
        _, line = commands(tmp_path, all_pairs=True)
        he = await login(c, "eng")
        r = await c.post("/api/v1/config/reload", headers=he)
        assert r.status_code == 409, r.text  # refused: nothing was changed
        body = r.json()
        assert body["code"] == "config_invalid", body
        assert any(f"{path}:{line}: junction 'J004'" in p and "1+3" in p for p in body["problems"]), body
        assert server.components["failsafe"].fs is fs  # type: ignore[attr-defined]  # nothing switched
