"""sim.opcua_server against a real asyncua client: address space, reads, subscriptions, comm faults, security."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import random
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, ua
from asyncua.crypto import security_policies
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from cryptography.x509.oid import ExtendedKeyUsageOID

from scada.config import load_city
from sim.building import Building
from sim.fleet import Vehicle
from sim.opcua_server import GROUP_SIZE, OpcUaModelServer

ROOT = Path(__file__).resolve().parents[2]
T0 = dt.datetime(2026, 3, 10, 10, 0, tzinfo=dt.UTC).timestamp()


def buildings(n: int) -> dict[str, Building]:
    out = {}
    for i in range(1, n + 1):
        b = Building(f"B{i:03d}", 1 + i % 4, 1 + i % 3, random.Random(i))
        b.step(T0)
        out[b.id] = b
    return out


async def wait_for(pred: Any, timeout_s: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not pred():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def children(node: Any) -> list[Any]:
    return list(await node.get_children())


async def test_address_space_grouping_node_ids_and_batched_read() -> None:
    models = buildings(150)
    server = OpcUaModelServer("bms", models, path="/city/bms")
    await server.start()
    try:
        assert server.endpoint == f"127.0.0.1:{server.port}" and server.port > 0
        async with Client(server.url, timeout=5) as client:
            idx = await client.get_namespace_index("urn:city:bms")
            root = await client.nodes.objects.get_child(f"{idx}:Buildings")
            groups = await children(root)
            assert [(await g.read_browse_name()).Name for g in groups] == ["B001-B100", "B101-B150"]
            for g in groups:
                assert len(await children(g)) <= GROUP_SIZE
            b7 = await client.nodes.objects.get_child([f"{idx}:Buildings", f"{idx}:B001-B100", f"{idx}:B007"])
            assert b7.nodeid == ua.NodeId("B007", idx)
            assert sorted([(await c.read_browse_name()).Name for c in await children(b7)]) == ["doors", "fire",
                                                                                               "intrusion"]
            zone = await b7.get_child([f"{idx}:fire", f"{idx}:zone1"])
            assert zone.nodeid == ua.NodeId("B007/fire/zone1", idx)
            # every model value, one batched Read, at the string node ids of tags.yaml
            keys = [(eq, k) for eq, m in models.items() for k in m.values()]
            nodes = [client.get_node(ua.NodeId(f"{eq}/{k}", idx)) for eq, k in keys]
            values = await client.read_values(nodes)
            assert values == [models[eq].values()[k] for eq, k in keys]
            dv = await client.get_node(ua.NodeId("B001/intrusion/armed", idx)).read_data_value()
            assert dv.Value.VariantType == ua.VariantType.Boolean
            dv = await client.get_node(ua.NodeId("B001/fire/zone1", idx)).read_data_value()
            assert dv.Value.VariantType == ua.VariantType.Int32
    finally:
        await server.aclose()


async def test_subscription_sees_fire_alarm_and_comm_faults() -> None:
    models = buildings(12)
    server = OpcUaModelServer("bms", models, path="/city/bms")
    await server.start()

    class Handler:
        def __init__(self) -> None:
            self.seen: list[tuple[str, Any, Any]] = []

        def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
            self.seen.append((node.nodeid.Identifier, val, data.monitored_item.Value))

    try:
        async with Client(server.url, timeout=5) as client:
            idx = await client.get_namespace_index("urn:city:bms")
            handler = Handler()
            sub = await client.create_subscription(50, handler)
            ids = ["B003/fire/zone1", "B004/fire/zone1", "B005/intrusion/armed"]
            await sub.subscribe_data_change([client.get_node(ua.NodeId(i, idx)) for i in ids], queuesize=10)
            await wait_for(lambda: len(handler.seen) >= 3)  # the initial values
            handler.seen.clear()

            models["B003"].inject("fire_alarm", zone=1)
            assert await server.publish(T0 + 12.25) >= 1  # the zone (and the doors: evacuation)
            await wait_for(lambda: any(n == "B003/fire/zone1" and v == 1 for n, v, _ in handler.seen))
            dv = [d for n, v, d in handler.seen if n == "B003/fire/zone1"][-1]
            assert dv.SourceTimestamp == dt.datetime.fromtimestamp(T0 + 12.25, dt.UTC).replace(tzinfo=None) \
                or dv.SourceTimestamp.timestamp() == pytest.approx(T0 + 12.25)
            await server.publish(T0 + 13)
            assert await server.publish(T0 + 13) == 0  # nothing changed: nothing written

            # drop: the BMS lost B004's field bus -> bad status, no updates
            await server.set_comm_fault("B004", "drop")
            node4 = client.get_node(ua.NodeId("B004/fire/zone1", idx))
            dv4 = await node4.read_data_value(raise_on_bad_status=False)
            assert dv4.StatusCode.value == ua.StatusCodes.BadNoCommunication
            models["B004"].inject("fire_alarm", zone=1)
            await server.publish(T0 + 14)
            assert (await node4.read_data_value(raise_on_bad_status=False)).StatusCode.is_bad()
            await server.set_comm_fault("B004", None)
            await server.publish(T0 + 15)
            assert await node4.read_value() == 1

            # corrupt: garbled values with a good status
            await server.set_comm_fault("B005", "corrupt")
            await server.publish(T0 + 16)
            node5 = client.get_node(ua.NodeId("B005/fire/zone1", idx))
            assert await node5.read_value() == -1
            await server.set_comm_fault("B005", None)
            await server.publish(T0 + 17)
            assert await node5.read_value() == 0

            # delay: the change reaches the address space delay_s later
            await server.set_comm_fault("B006", "delay", delay_s=0.4)
            models["B006"].inject("fire_fault", zone=1)
            await server.publish(T0 + 18)
            node6 = client.get_node(ua.NodeId("B006/fire/zone1", idx))
            assert await node6.read_value() == 0
            await asyncio.sleep(0.5)
            await server.publish(T0 + 19)
            assert await node6.read_value() == 2
            await server.set_comm_fault("B006", None)

            with pytest.raises(ValueError, match="comm fault must be one of"):
                await server.set_comm_fault("B006", "garble")
            with pytest.raises(KeyError):
                await server.set_comm_fault("B999", "drop")

        # disconnect: the whole endpoint goes away, and comes back on the same port
        port = server.port
        await server.set_comm_fault("B001", "disconnect")
        assert not server.listening
        with pytest.raises(OSError):
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
        await server.set_comm_fault("B001", None)
        assert server.listening and server.port == port
        async with Client(server.url, timeout=5) as client:
            idx = await client.get_namespace_index("urn:city:bms")
            assert await client.get_node(ua.NodeId("B003/fire/zone1", idx)).read_value() == 1
    finally:
        await server.aclose()


async def test_fleet_types_and_values() -> None:
    cfg = load_city(ROOT / "tags.yaml")
    models = {e.id: Vehicle.from_equipment(e, random.Random(e.id)) for e in cfg.equipment.values()
              if e.template == "vehicle"}
    for m in models.values():
        m.step(T0)
    server = OpcUaModelServer("fleet", models, path="/city/fleet")
    await server.start()
    try:
        async with Client(server.url, timeout=5) as client:
            idx = await client.get_namespace_index("urn:city:fleet")
            assert idx == 2
            names = ["lat", "lon", "speed", "status", "team"]
            dvs = await client.read_attributes([client.get_node(ua.NodeId(f"V001/{n}", idx)) for n in names])
            types = [d.Value.VariantType for d in dvs]
            assert types == [ua.VariantType.Double] * 3 + [ua.VariantType.Int32, ua.VariantType.String]
            assert [d.Value.Value for d in dvs] == [models["V001"].values()[n] for n in names]
            for m in models.values():
                m.step(T0 + 3600)
            assert await server.publish(T0 + 3600) > 0
            lat = await client.get_node(ua.NodeId("V001/lat", idx)).read_value()
            assert math.isclose(lat, models["V001"].values()["lat"])
    finally:
        await server.aclose()


async def test_sign_and_encrypt_with_certificates(tmp_path: Path) -> None:
    models = buildings(3)
    server = OpcUaModelServer("bms", models, path="/city/bms", security="sign_encrypt", cert_dir=tmp_path / "srv")
    await server.start()
    try:
        assert server.certificate_path is not None and server.certificate_path.exists()
        key, cert = tmp_path / "client-key.pem", tmp_path / "client-cert.der"
        await setup_self_signed_certificate(key, cert, "urn:city:test:client", "localhost",
                                            [ExtendedKeyUsageOID.CLIENT_AUTH], {"commonName": "test client"})
        client = Client(server.url, timeout=5)
        client.application_uri = "urn:city:test:client"
        await client.set_security(security_policies.SecurityPolicyBasic256Sha256, str(cert), str(key),
                                  server_certificate=str(server.certificate_path),
                                  mode=ua.MessageSecurityMode.SignAndEncrypt)
        async with client:
            idx = await client.get_namespace_index("urn:city:bms")
            assert await client.get_node(ua.NodeId("B002/intrusion/armed", idx)).read_value() is False
        # only the secure endpoint is offered; a client without security is turned away
        endpoints = await Client(server.url, timeout=5).connect_and_get_server_endpoints()
        assert {e.SecurityMode for e in endpoints} == {ua.MessageSecurityMode.SignAndEncrypt}
        assert {e.SecurityPolicyUri.rsplit("#")[-1] for e in endpoints} == {"Basic256Sha256"}
        with pytest.raises(Exception):  # noqa: B017 - asyncua raises several types for a refused session
            async with Client(server.url, timeout=3) as plain:
                await plain.get_namespace_index("urn:city:bms")
    finally:
        await server.aclose()
