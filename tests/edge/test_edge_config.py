"""The configuration fingerprint, with the real server, an edge in this process, Mosquitto and the simulator.

A server reload that changes the partition asks the edge to reload; the edge reads its file again and is born
with the server's fingerprint. An edge left on another file is refused (its tags bad_config, the
``system/edge/config_mismatch`` alarm naming it, /health degraded) until it runs the server's: the server asks
it again, and once the file is deployed the edge reloads, the alarm clears.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from scada.config.partitions import partition_fingerprint
from scada.quality import Quality
from tests.edge.conftest import Mosquitto
from tests.edge.test_edge_commands import room
from tests.server.test_e2e import until


async def test_reload_reaches_the_edge_and_a_foreign_configuration_is_refused(tmp_path: Path,
                                                                             mosquitto: Mosquitto) -> None:
    edge_tags = tmp_path / "edge-tags.yaml"  # the edge's own copy of tags.yaml (another machine's)
    async with room(tmp_path, mosquitto, edge_tags=edge_tags) as r:
        r.component.reload_retry_s = 1.0
        node = r.node(mosquitto)
        await until("the edge's data good on the server", r.good, 60)
        first = node.fingerprint
        assert first == node.expected == r.edge.fingerprint

        # 1. engineers change the partition (a deadband) and deploy the file to the edge too; the server reloads
        def change(path: Path, old: str, new: str) -> None:
            text = path.read_text()
            assert old in text
            path.write_text(text.replace(old, new))

        power = "units: W, deadband: 5,"
        change(r.tags, power, "units: W, deadband: 6,")
        change(edge_tags, power, "units: W, deadband: 6,")
        result = await r.server.reload("eng", "test")
        assert result.get("applied"), result
        new = partition_fingerprint(r.server.config, "lighting")
        assert new != first and node is not r.node(mosquitto)  # rebound
        node = r.node(mosquitto)
        await until("the edge reloaded, born with the server's fingerprint",
                    lambda: r.edge.fingerprint == new and node.fingerprint == new and node.online, 30)
        assert r.edge.stats.reloads == 1 and not node.config_refused
        await until("its data good again", r.good, 30)
        assert r.component.alarm_texts["config_mismatch"] == ""

        # 2. the next change is not deployed to the edge: after the server's reload it reads its old file again
        change(r.tags, "units: W, deadband: 6,", "units: W, deadband: 7,")
        r.component.reload_grace_s = 0.0
        result = await r.server.reload("eng", "test")
        assert result.get("applied"), result
        node = r.node(mosquitto)
        await until("the edge refused", lambda: node.config_refused, 30)
        assert r.edge.fingerprint == new != node.expected
        mismatch = r.server.tagdb.index["system/edge/config_mismatch"]
        await until("the config_mismatch alarm naming the edge",
                    lambda: "lighting" in str(r.server.tagdb.value_of(mismatch)), 10)
        await until("its tags bad_config",
                    lambda: bool(np.all(r.server.tagdb.qualities[r.data()] == int(Quality.BAD_CONFIG))), 10)
        alarms = (await r.client.get("/api/v1/alarms", headers=r.headers)).json()["alarms"]
        assert any(a["active"] and "lighting" in a["message"] and a["tag"] == "system/edge/config_mismatch"
                   for a in alarms), [a["tag"] for a in alarms]
        health = (await r.client.get("/api/v1/health", headers=r.headers)).json()["subsystems"]["edge"]
        assert health["status"] == "degraded" and "lighting" in health["detail"]

        # 3. the file deployed: the server asks again (every reload_retry_s), the edge reloads, the alarm clears
        shutil.copy(r.tags, edge_tags)
        await until("the edge back on the server's configuration", lambda: not node.config_refused, 30)
        await until("the alarm cleared", lambda: r.server.tagdb.value_of(mismatch) == "", 10)
        await until("its data good again", r.good, 30)
