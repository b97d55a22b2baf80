"""The operators' view of the edge pollers: GET /api/v1/edges and the console's table (hmi.edges_view), against the
real server as Sparkplug host, an edge node, a real Mosquitto and the simulator; the console offscreen, through its
own bridge to that server.

    edge online, born with the server's configuration and obeying its epoch ──► the route's row says so, and the
    console's table shows it; the broker stopped ──► both say offline (the row in capitals on the console)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from PyQt6.QtCore import QEventLoop
from PyQt6.QtWidgets import QApplication

from hmi.bridge import Bridge, Reply
from hmi.console import ConsoleModel
from hmi.edges_view import COLUMNS, EdgesView, edge_rows
from scada.i18n import _
from tests.edge.conftest import Mosquitto
from tests.edge.test_edge_commands import room
from tests.server.conftest import PASSWORDS
from tests.server.test_e2e import until


async def pumped(app: QApplication, what: str, check: Callable[[], Any], timeout_s: float = 30.0) -> None:
    """Wait for ``check`` while both the server (this event loop) and the console (Qt's events) run."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


async def test_edges_route_and_console_view(tmp_path: Any, mosquitto: Mosquitto, qapp: QApplication) -> None:
    async with room(tmp_path, mosquitto) as r:
        await until("the edge's data good on the server", r.good, 60)
        node = r.node(mosquitto)
        devices = r.config.partitions["lighting"].devices
        await until("every device reporting", lambda: all(d.status == 1 for d in node.devices.values()), 30)

        assert (await r.client.get("/api/v1/edges")).status_code == 401  # read permission: a session
        got = (await r.client.get("/api/v1/edges", headers=r.headers)).json()
        assert got["enabled"] and got["primary"] and got["epoch"] == r.component.epoch >= 1
        [row] = got["edges"]
        assert row["node"] == "lighting" and row["broker"] == r.source and row["online"]
        assert row["fingerprint"] == r.edge.fingerprint == row["expected_fingerprint"] and row["fingerprint_ok"]
        assert row["edge_epoch"] is not None and row["edge_epoch"] <= got["epoch"] and row["epoch_obeyed"]
        assert row["devices"] == len(devices) == row["devices_ok"]
        assert abs(row["last_birth"] - node.last_birth_ns / 1e9) < 0.01 and 0 <= row["last_data_age_s"] < 10
        assert row["store_backlog"] == 0 and row["store_capacity"] == r.edge.store.max_rows
        assert row["seq_gaps"] == node.seq_gaps and row["store_alarm"] is None

        # the console: its own bridge to this server, the view refreshed with the health
        bridge = Bridge(str(r.client.base_url), "edges-view")
        bridge.start()
        console = ConsoleModel(bridge)
        view = EdgesView(console)
        try:
            login = console.login("op", PASSWORDS["op"])
            await pumped(qapp, "the console logged in", lambda: login.done)
            assert login.ok, login.why()
            assert view.isHidden()  # until the server says it has edges

            def cells() -> list[str]:
                items = [view.table.item(0, c) for c in range(len(COLUMNS))]
                return [i.text() if i is not None else "" for i in items]

            console.refresh_health()
            await pumped(qapp, "the edges in the console", lambda: view.table.rowCount() == 1)
            assert not view.isHidden()
            shown = cells()
            assert shown[0] == "lighting" and shown[1] == _("yes")
            assert shown[COLUMNS.index("configuration")] == _("same as the server")
            assert shown[COLUMNS.index("epoch")] == _("obeyed")
            assert shown[COLUMNS.index("devices ok")] == f"{len(devices)} / {len(devices)}"
            assert shown[COLUMNS.index("store-and-forward")] == f"0 / {r.edge.store.max_rows}"

            await mosquitto.stop()
            await until("the edge offline on the server", lambda: not node.online, 10)
            offline = (await r.client.get("/api/v1/edges", headers=r.headers)).json()["edges"][0]
            assert not offline["online"] and offline["devices_ok"] == 0
            assert edge_rows({"edges": [offline]})[0][1] == _("NO")
            reply: Reply = view.load()
            await pumped(qapp, "offline in the console", lambda: cells()[1] == _("NO"))
            assert reply.ok and cells()[COLUMNS.index("devices ok")] == f"0 / {len(devices)}"
            await mosquitto.start()
        finally:
            console.close()
            view.deleteLater()
