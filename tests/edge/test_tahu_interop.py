"""Interop: Eclipse Tahu's JavaScript codec (sparkplug-payload, tests/peers/sparkplug_host.js) reads our edge
node's births and data, and its rebirth request (NCMD, encoded by Tahu) is honoured by our edge."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from drivers.sparkplug.edge import EdgeNode
from scada.config import load_city
from tests.edge.conftest import Mosquitto
from tests.edge.test_edge_host import partitioned
from tests.peers import TAHU, NodeScript
from tests.server.test_e2e import demo_field, until

TAHU_TYPES = {"bool": "Boolean", "int": "Int64", "enum": "Int32", "float": "Double", "string": "String"}


async def next_of(peer: NodeScript, kind: str, timeout_s: float = 20.0) -> dict[str, Any]:
    """The next message of type ``kind`` the peer decoded (others skipped)."""
    while True:
        got = await peer.line(timeout_s)
        assert "error" not in got, got
        if got.get("type") == kind:
            return got


async def test_tahu_decodes_our_births_and_data_and_its_rebirth_request_is_honoured(tmp_path: Path,
                                                                                    mosquitto: Mosquitto) -> None:
    async with demo_field(tmp_path) as (sim, tags):
        config = load_city(partitioned(tags, mosquitto.url), tags.parent / "alarms.yaml",
                           endpoint_overrides=sim.endpoints)
        async with NodeScript("sparkplug_host.js", mosquitto.url, config.site, "60", packages=TAHU) as peer:
            assert peer.ready == {"ready": True}
            edge = EdgeNode(config, "lighting", mosquitto.broker, tmp_path / "store.sqlite", host_id=None)
            edge.start()
            try:
                nbirth = await next_of(peer, "NBIRTH")
                assert nbirth["node"] == "lighting" and int(nbirth["seq"]) == 0
                node_metrics = {m["name"]: m for m in nbirth["metrics"]}
                assert node_metrics["bdSeq"]["type"] == "Int64" and int(node_metrics["bdSeq"]["value"]) == edge.bd_seq
                assert node_metrics["Node Control/Rebirth"]["type"] == "Boolean"

                # a DBIRTH per device, every metric with its name, alias, type, Quality and unit, as Tahu reads them
                births: dict[str, dict[str, Any]] = {}
                while len(births) < len(edge.devices):
                    got = await next_of(peer, "DBIRTH")
                    births[got["device"]] = got
                    assert int(got["seq"]) == len(births)  # NBIRTH 0, then one per message
                by_name = config.tag_by_name()
                for device, got in births.items():
                    names = [m["name"] for m in got["metrics"]]
                    assert names == [edge.db.names[i] for i in edge.devices[device].indices.tolist()]
                    for m in got["metrics"]:
                        tag = by_name.get(m["name"])
                        dtype = tag.dtype if tag is not None else edge.db.defs[edge.db.index[m["name"]]].dtype
                        assert m["type"] == TAHU_TYPES[dtype], m
                        assert int(m["alias"]) == edge.db.index[m["name"]]
                        assert m["properties"]["Quality"]["type"] == "Int32"
                        assert m["properties"]["Quality"]["value"] in (192, 64, 24, 12, 4)
                        units = tag.units if tag is not None else edge.db.defs[edge.db.index[m["name"]]].units
                        if units:
                            assert m["properties"]["engUnit"]["value"] == units
                # a DDATA: aliases only, values decoded
                ddata = await next_of(peer, "DDATA")
                assert ddata["metrics"] and all("name" not in m or not m["name"] for m in ddata["metrics"])
                assert all(int(m["alias"]) in edge.devices[ddata["device"]].indices.tolist() for m in ddata["metrics"])

                # Tahu's rebirth request → a new NBIRTH (seq 0, the same bdSeq: the same MQTT session)
                got = await peer.command("rebirth lighting")
                while "sent" not in got:  # the data flowing meanwhile
                    assert "error" not in got, got
                    got = await peer.line()
                assert got == {"sent": "NCMD", "node": "lighting"}
                again = await next_of(peer, "NBIRTH")
                assert int(again["seq"]) == 0
                assert int({m["name"]: m for m in again["metrics"]}["bdSeq"]["value"]) == edge.bd_seq
                await until("the rebirth done", lambda: edge.stats.births == 2, 10)
                assert edge.stats.rebirth_requests == 1
            finally:
                await edge.aclose()
