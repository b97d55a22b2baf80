"""Client writes to the BMS server's remote-arming points (sim.opcua_server setters → sim.building.Building.write).

A real asyncua client against the real server: access levels and data types, the write reaching the model,
what reads and subscriptions see afterwards (always the model's value), refusals, comm faults.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asyncua import Client, ua
from asyncua.ua.uaerrors import UaStatusCodeError

from sim.building import REQ_ARM, REQ_DISARM, REQ_LOCAL, Building
from sim.opcua_server import OpcUaModelServer
from tests.sim.test_opcua_server import T0, buildings, children, wait_for

NIGHT = T0 + 13 * 3600  # 2026-03-10 23:00 UTC: every building closed and armed


class Nodes:
    def __init__(self, client: Client, idx: int, eq: str) -> None:
        self.request = client.get_node(ua.NodeId(f"{eq}/intrusion/arm_request", idx))
        self.lease = client.get_node(ua.NodeId(f"{eq}/intrusion/arm_lease", idx))
        self.armed = client.get_node(ua.NodeId(f"{eq}/intrusion/armed", idx))
        self.alarm = client.get_node(ua.NodeId(f"{eq}/intrusion/alarm", idx))

    async def write_request(self, value: int) -> None:
        await self.request.write_value(ua.Variant(value, ua.VariantType.Int32))

    async def write_lease(self, value: int) -> None:
        await self.lease.write_value(ua.Variant(value, ua.VariantType.UInt32))


async def started(n: int = 3, t: float = NIGHT) -> tuple[OpcUaModelServer, dict[str, Building]]:
    models = buildings(n)
    for b in models.values():
        b.step(t)
    server = OpcUaModelServer("bms", models, path="/city/bms")
    await server.start()
    await server.publish(t)
    return server, models


def code(exc: pytest.ExceptionInfo[UaStatusCodeError]) -> int:
    return int(exc.value.code)


async def test_only_the_two_arming_points_are_writable_with_their_data_types() -> None:
    server, _ = await started()
    try:
        async with Client(server.url, timeout=5) as client:
            idx = await client.get_namespace_index("urn:city:bms")
            n = Nodes(client, idx, "B002")
            rw = {ua.AccessLevel.CurrentRead, ua.AccessLevel.CurrentWrite}
            assert await n.request.get_access_level() == rw and await n.request.get_user_access_level() == rw
            assert await n.lease.get_access_level() == rw and await n.lease.get_user_access_level() == rw
            assert await n.request.read_data_type() == ua.NodeId(ua.ObjectIds.Int32)
            assert await n.lease.read_data_type() == ua.NodeId(ua.ObjectIds.UInt32)
            assert (await n.lease.read_data_value()).Value.VariantType == ua.VariantType.UInt32
            for ro in (n.armed, n.alarm, client.get_node(ua.NodeId("B002/fire/zone1", idx))):
                assert await ro.get_access_level() == {ua.AccessLevel.CurrentRead}
            with pytest.raises(UaStatusCodeError) as info:
                await n.armed.write_value(False)
            assert code(info) == ua.StatusCodes.BadUserAccessDenied
            assert await n.armed.read_value() is True
            intrusion = client.get_node(ua.NodeId("B002/intrusion", idx))
            assert sorted([(await c.read_browse_name()).Name for c in await children(intrusion)]) == [
                "alarm", "arm_lease", "arm_request", "armed"]
    finally:
        await server.aclose()


async def test_a_write_reaches_the_model_and_a_read_returns_the_models_value() -> None:
    server, models = await started()
    b = models["B001"]
    try:
        async with Client(server.url, timeout=5) as client:
            n = Nodes(client, await client.get_namespace_index("urn:city:bms"), "B001")
            assert (await n.request.read_value(), await n.lease.read_value(), await n.armed.read_value()) == (
                REQ_LOCAL, 0, True)
            await n.write_lease(500)  # no request in force: the building ignores it, the read shows 0
            assert await n.lease.read_value() == 0 and not b.lease.active
            await n.write_request(REQ_DISARM)
            assert b.arm_request == REQ_DISARM and not b.armed  # reached the model inside the Write
            assert await n.request.read_value() == REQ_DISARM
            assert await n.lease.read_value() == 60  # the default lease of a request without one
            await wait_for(lambda: server._published[n.armed.nodeid] is False, 2.0)  # published at once
            assert await n.armed.read_value() is False
            await n.write_lease(600)
            assert await n.lease.read_value() == 600
            for m in models.values():
                m.step(NIGHT + 30)
            await server.publish(NIGHT + 30)
            assert await n.lease.read_value() == 570  # counted down by the building
            dv = await n.lease.read_data_value()
            assert dv.SourceTimestamp.timestamp() == pytest.approx(NIGHT + 30)  # the simulation clock
            await n.write_request(REQ_LOCAL)
            assert (await n.request.read_value(), await n.lease.read_value()) == (REQ_LOCAL, 0)
            await wait_for(lambda: server._published[n.armed.nodeid] is True, 2.0)  # closed: re-armed
            assert b.armed and not b.lease.active
    finally:
        await server.aclose()


async def test_subscriptions_see_the_models_value_not_the_written_one() -> None:
    server, models = await started()
    seen: list[tuple[str, Any]] = []

    class Handler:
        def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
            seen.append((node.nodeid.Identifier, val))

    try:
        async with Client(server.url, timeout=5) as client:
            n = Nodes(client, await client.get_namespace_index("urn:city:bms"), "B003")
            sub = await client.create_subscription(50, Handler())
            await sub.subscribe_data_change([n.request, n.lease, n.armed])
            await wait_for(lambda: len(seen) >= 3)
            await n.write_lease(777)  # ignored by the building: subscribers must not see 777
            await n.write_request(REQ_DISARM)
            await wait_for(lambda: ("B003/intrusion/armed", False) in seen)
            assert ("B003/intrusion/arm_request", REQ_DISARM) in seen
            assert ("B003/intrusion/arm_lease", 60) in seen
            assert all(v != 777 for _, v in seen), seen
            assert models["B003"].arm_request == REQ_DISARM
    finally:
        await server.aclose()


async def test_refusals_bad_values_types_and_an_unreachable_equipment() -> None:
    server, models = await started()
    b = models["B001"]
    try:
        async with Client(server.url, timeout=5) as client:
            n = Nodes(client, await client.get_namespace_index("urn:city:bms"), "B001")
            with pytest.raises(UaStatusCodeError) as info:
                await n.write_request(5)
            assert code(info) == ua.StatusCodes.BadOutOfRange
            await n.write_request(REQ_ARM)
            with pytest.raises(UaStatusCodeError) as info:
                await n.write_lease(70_000)
            assert code(info) == ua.StatusCodes.BadOutOfRange
            assert await n.lease.read_value() == 60 and b.lease.remaining(NIGHT) == 60  # nothing changed
            with pytest.raises(UaStatusCodeError) as info:
                await n.lease.write_value(ua.Variant(600, ua.VariantType.Int32))  # wrong type
            assert code(info) == ua.StatusCodes.BadTypeMismatch
            # the BMS lost the building's field bus: the write cannot reach it
            await server.set_comm_fault("B001", "drop")
            with pytest.raises(UaStatusCodeError) as info:
                await n.write_request(REQ_DISARM)
            assert code(info) == ua.StatusCodes.BadNoCommunication
            assert b.arm_request == REQ_ARM
            await server.set_comm_fault("B001", None)
            await server.publish(NIGHT)
            await n.write_request(REQ_DISARM)
            assert await n.request.read_value() == REQ_DISARM and b.arm_request == REQ_DISARM
            # a garbling gateway: the building takes the write, the variable shows garbage
            await server.set_comm_fault("B001", "corrupt")
            await n.write_request(REQ_LOCAL)
            assert b.arm_request == REQ_LOCAL and await n.request.read_value() == -1
            # the session survived every refusal
            assert await n.armed.read_value() in (True, False)
    finally:
        await server.aclose()


async def test_a_frozen_gateway_acknowledges_a_write_that_never_reaches_the_building() -> None:
    server, models = await started()
    b = models["B002"]
    try:
        async with Client(server.url, timeout=5) as client:
            n = Nodes(client, await client.get_namespace_index("urn:city:bms"), "B002")
            b.inject("frozen")
            await n.write_request(REQ_DISARM)  # Good status...
            assert await n.request.read_value() == REQ_LOCAL  # ...but the read-back shows nothing changed
            assert b.arm_request == REQ_LOCAL
    finally:
        await server.aclose()


async def test_publishing_while_clients_write_never_shows_a_stale_value() -> None:
    server, models = await started(60)
    try:
        async with Client(server.url, timeout=5) as client:
            idx = await client.get_namespace_index("urn:city:bms")
            nodes = [Nodes(client, idx, eq) for eq in ("B001", "B030", "B060")]
            for n in nodes:
                await n.write_request(REQ_DISARM)
            for k in range(20):
                t = NIGHT + k
                for m in models.values():
                    m.step(t)
                await asyncio.gather(server.publish(t), *(n.write_lease(1000 + k) for n in nodes))
                for n, eq in zip(nodes, ("B001", "B030", "B060"), strict=True):
                    assert await n.lease.read_value() == models[eq].values()["intrusion/arm_lease"] == 1000 + k
    finally:
        await server.aclose()
