"""OPC UA driver against the simulator's real asyncua servers (sim.opcua_server)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import math
import socket

import pytest
from asyncua import Server, ua

from drivers.base import WriteNotConfirmed
from drivers.opcua import OpcUaDriver
from scada.config.model import DeviceDef, TagDef
from scada.errors import AuthError, CommError, DeviceError, WriteNotAllowed
from scada.poll import Poller, device_stat_tags, stat_tag_name
from scada.quality import Quality, Sample
from scada.tagdb import TagDatabase
from sim.building import Building
from sim.fleet import Vehicle
from sim.opcua_server import OpcUaModelServer
from tests.drivers.conftest import demo_city, device_points, models_for, wait_for

NIGHT = dt.datetime(2026, 3, 10, 23, 0, tzinfo=dt.UTC).timestamp()  # Wednesday 00:00 in Paris

async def start_bms(security: str = "none") -> tuple[OpcUaModelServer, dict[str, Building]]:
    models = models_for(demo_city(), "building", Building.from_equipment)
    server = OpcUaModelServer("bms", models, path="/city/bms", security=security)
    await server.start()
    return server, models


async def test_subscription_values_push_and_source_timestamps() -> None:
    server, models = await start_bms()
    try:
        cfg = demo_city(opcua_bms=server.endpoint)
        points = device_points(cfg, "bms-1")
        pushed: list[tuple[TagDef, Sample]] = []
        drv = OpcUaDriver(cfg.devices["bms-1"])
        drv.set_sink(pushed.extend)
        await drv.connect()
        samples = await drv.read(points)
        assert all(s.quality is Quality.GOOD for s in samples)
        by_name = {p.name: s for p, s in zip(points, samples, strict=True)}
        b1 = cfg.equipment["B001"]
        values = models["B001"].values()
        assert by_name[f"{b1.prefix}/fire_zone_1"].value == values["fire/zone1"] == 0
        assert by_name[f"{b1.prefix}/intrusion_armed"].value is values["intrusion/armed"]
        first_requests = drv.requests
        # a second read is served from the subscription: no request on the wire
        again = await drv.read(points)
        assert drv.requests == first_requests
        assert [s.value for s in again] == [s.value for s in samples]
        # a fire alarm reaches the sink as a data-change notification, with the device's source time
        models["B001"].inject("fire_alarm", zone=1)
        await server.publish(1_700_000_123.5)
        zone = f"{b1.prefix}/fire_zone_1"
        await wait_for(lambda: any(p.name == zone and s.value == 1 for p, s in pushed), 3.0)
        (sample,) = [s for p, s in pushed if p.name == zone and s.value == 1]
        assert sample.source_ns == 1_700_000_123_500_000_000
        assert sample.receive_ns > sample.source_ns
        assert (await drv.read([cfg.tag_by_name()[zone]]))[0].value == 1
        assert drv.notifications >= len(points)
        await drv.aclose()
    finally:
        await server.aclose()


async def test_poll_mode_one_read_per_chunk_and_fleet_types() -> None:
    models = models_for(demo_city(), "vehicle", Vehicle.from_equipment)
    server = OpcUaModelServer("fleet", models, path="/city/fleet")
    await server.start()
    try:
        cfg = demo_city(opcua_fleet=server.endpoint)
        dev = cfg.devices["fleet-1"]
        dev.connection = {**dev.connection, "mode": "poll", "read_chunk": 25}
        points = device_points(cfg, "fleet-1")
        drv = OpcUaDriver(dev)
        await drv.connect()
        before = drv.requests
        samples = await drv.read(points)
        assert drv.requests - before == math.ceil(len(points) / 25)
        by_tag = {p.tag: s.value for p, s in zip(points, samples, strict=True) if p.equipment == "V001"}
        v = models["V001"].values()
        assert by_tag["lat"] == pytest.approx(v["lat"]) and isinstance(by_tag["lat"], float)
        assert by_tag["team"] == v["team"] and isinstance(by_tag["team"], str)
        assert by_tag["status"] == v["status"] and isinstance(by_tag["status"], int)
        await drv.aclose()
    finally:
        await server.aclose()


async def test_drop_and_corrupt_faults_per_equipment() -> None:
    server, _models = await start_bms()
    try:
        cfg = demo_city(opcua_bms=server.endpoint)
        points = device_points(cfg, "bms-1")
        drv = OpcUaDriver(cfg.devices["bms-1"])
        await drv.connect()
        await drv.read(points)
        await server.set_comm_fault("B002", "drop")
        await server.set_comm_fault("B003", "corrupt")
        await server.publish()

        async def settled() -> bool:
            s = dict(zip([p.name for p in points], await drv.read(points), strict=True))
            b2 = [v for k, v in s.items() if "/B002/" in k]
            b3 = [v for k, v in s.items() if "/B003/fire_zone" in k]
            return all(x.quality is Quality.BAD_COMM for x in b2) and all(x.quality is Quality.BAD_DEVICE for x in b3)

        await wait_for(settled, 3.0)
        samples = dict(zip([p.name for p in points], await drv.read(points), strict=True))
        assert all(s.quality is Quality.GOOD for k, s in samples.items() if "/B001/" in k)
        await server.set_comm_fault("*", None)
        await server.publish()
        await wait_for(lambda: all(s.quality is Quality.GOOD for s in drv._latest.values()), 3.0)
        await drv.aclose()
    finally:
        await server.aclose()


async def test_disconnect_bad_comm_then_reconnect_and_resubscribe() -> None:
    server, models = await start_bms()
    try:
        cfg = demo_city(opcua_bms=server.endpoint)
        dev = cfg.devices["bms-1"]
        dev.period_s = 0.3
        db = TagDatabase(cfg.tags + device_stat_tags(cfg, ["bms-1"]))
        drivers: dict[str, OpcUaDriver] = {}

        def factory(d: DeviceDef) -> OpcUaDriver:
            drivers[d.name] = OpcUaDriver(d)
            return drivers[d.name]

        poller = Poller(cfg, factory, db, devices=["bms-1"], max_backoff_s=0.6)
        await poller.start()
        zone = cfg.equipment["B001"].prefix + "/fire_zone_1"
        await wait_for(lambda: db.read(zone).quality is Quality.GOOD, 5.0)
        await server.set_comm_fault("*", "disconnect")
        waited = await wait_for(lambda: db.read(zone).quality is Quality.BAD_COMM, 3.0)
        assert waited < dev.period_s + 1.2  # pushed on loss (watchdog 1 s) or found by the next cycle
        await wait_for(lambda: db.read(stat_tag_name("bms-1", "status")).value == 2, dev.period_s + 0.2)
        await asyncio.sleep(0.5)
        await server.set_comm_fault("*", None)
        await wait_for(lambda: db.read(stat_tag_name("bms-1", "status")).value == 1, 5.0)
        assert db.read(zone).quality is Quality.GOOD
        # the new session's subscription delivers changes again
        models["B001"].inject("fire_alarm", zone=1)
        await server.publish()
        await wait_for(lambda: db.read(zone).value == 1, 3.0)
        await poller.aclose()
    finally:
        await server.aclose()


async def test_sign_and_encrypt_with_certificates() -> None:
    server, _models = await start_bms("sign_encrypt")
    try:
        cfg = demo_city(opcua_bms=server.endpoint)
        dev = cfg.devices["bms-1"]
        points = device_points(cfg, "bms-1")[:10]
        plain = OpcUaDriver(dev)
        with pytest.raises((AuthError, CommError)):
            await plain.connect()  # the server offers no unsecured endpoint
        await plain.aclose()
        dev.connection = {**dev.connection, "security": "basic256sha256",
                          "server_certificate": str(server.certificate_path)}
        drv = OpcUaDriver(dev)
        await drv.connect()
        assert drv._client is not None
        assert drv._client.security_policy.Mode == ua.MessageSecurityMode.SignAndEncrypt
        assert "Basic256Sha256" in drv._client.security_policy.URI
        samples = await drv.read(points)
        assert all(s.quality is Quality.GOOD for s in samples)
        await drv.aclose()
    finally:
        await server.aclose()


async def test_write_and_read_back_on_the_simulated_building() -> None:
    """The simulator's BMS: remote intrusion arming written by the driver, confirmed by read-back, and the
    model's answer (a lease it ignores, a value it refuses, a hung gateway) seen as the driver must report it."""
    server, models = await start_bms()
    try:
        cfg = demo_city(opcua_bms=server.endpoint)
        for m in models.values():
            m.step(NIGHT)  # closed: every building armed by its schedule
        await server.publish(NIGHT)
        tags = cfg.tag_by_name()
        b1 = cfg.equipment["B001"]
        request, lease, armed = (tags[b1.tag_name(t)] for t in ("intrusion_arm_request", "intrusion_arm_lease",
                                                                  "intrusion_armed"))
        assert request.writable and lease.writable and not armed.writable
        pushed: list[tuple[TagDef, Sample]] = []
        drv = OpcUaDriver(cfg.devices["bms-1"])
        drv.set_sink(pushed.extend)
        with pytest.raises(CommError):
            await drv.write(request, 2)  # not connected: never a silent success
        await drv.connect()
        await drv.read(device_points(cfg, "bms-1"))  # subscribed, like the poller
        # the WriteNotConfirmed case: a lease with no request in force is ignored by the building
        with pytest.raises(WriteNotConfirmed) as mismatch:
            await drv.write(lease, 600, tolerance=5)
        assert mismatch.value.sample is not None and mismatch.value.sample.value == 0
        # disarm: request then lease, each confirmed by its read-back
        back = await drv.write(request, 2)
        assert back.value == 2 and back.quality is Quality.GOOD
        back = await drv.write(lease, 600, tolerance=5)
        assert back.value == 600
        assert models["B001"].arm_request == 2 and models["B001"].lease.remaining(NIGHT) == 600
        # the building's answer reaches the subscribers at once (no simulator step needed)
        await wait_for(lambda: any(p.name == armed.name and s.value is False for p, s in pushed), 3.0)
        assert (await drv.read([armed]))[0].value is False
        # the enum labels work too; back to local control (the building cancels the lease itself)
        mark = len(pushed)
        assert (await drv.write(request, "local")).value == 0
        await wait_for(lambda: any(p.name == lease.name and s.value == 0 for p, s in pushed[mark:]), 3.0)
        assert models["B001"].values()["intrusion/arm_lease"] == 0 and not models["B001"].lease.active
        # refusals: a read-only node declared rw by mistake; a value the building refuses (BadOutOfRange)
        armed_rw = dataclasses.replace(armed, access="rw")
        with pytest.raises(DeviceError) as info:
            await drv.write(armed_rw, False)
        assert "refused" in str(info.value) and not isinstance(info.value, WriteNotConfirmed)
        request_int = dataclasses.replace(request, dtype="int", enum=None)
        with pytest.raises(DeviceError) as info:
            await drv.write(request_int, 7)
        assert "BadOutOfRange" in str(info.value) and not isinstance(info.value, WriteNotConfirmed)
        with pytest.raises(WriteNotAllowed):
            await drv.write(request, 7)  # the tag's enum stops it before the wire
        with pytest.raises(WriteNotAllowed):
            await drv.write(armed, False)  # not declared rw
        # a hung BMS gateway acknowledges the write but shows nothing changed: not confirmed
        models["B001"].inject("frozen")
        with pytest.raises(WriteNotConfirmed):
            await drv.write(request, 2)
        assert models["B001"].arm_request == 0
        assert drv.connected  # every refusal left the session usable
        await drv.aclose()
    finally:
        await server.aclose()


async def test_write_with_read_back_and_refusals() -> None:
    """A Double variable on a plain asyncua server (the simulator's writable points are integers)."""
    server = Server()
    await server.init()
    server.set_endpoint("opc.tcp://127.0.0.1:0/w")
    idx = await server.register_namespace("urn:test:w")
    obj = await server.nodes.objects.add_object(ua.NodeId("X", idx), f"{idx}:X")
    sp = await obj.add_variable(ua.NodeId("X/setpoint", idx), f"{idx}:setpoint", 20.0)
    await sp.set_writable()
    await obj.add_variable(ua.NodeId("X/mode", idx), f"{idx}:mode", 1, varianttype=ua.VariantType.Int32)
    await server.start()
    assert server.bserver is not None
    port = server.bserver.port
    try:
        dev = DeviceDef("ua", "opcua", {"url": f"opc.tcp://127.0.0.1:{port}/w"}, "normal", 1.0, 2.0, 1)
        setpoint = TagDef("x/setpoint", "X", "setpoint", "setpoint", "ua", "nsu=urn:test:w;s=X/setpoint", "float",
                          access="rw")
        mode_rw = TagDef("x/mode", "X", "mode", "mode", "ua", "nsu=urn:test:w;s=X/mode", "int", access="rw")
        mode_r = TagDef("x/mode", "X", "mode", "mode", "ua", "nsu=urn:test:w;s=X/mode", "int")
        drv = OpcUaDriver(dev)
        with pytest.raises(CommError):
            await drv.write(setpoint, 1.0)  # not connected: never a silent success
        await drv.connect()
        back = await drv.write(setpoint, 21.5)
        assert back.value == 21.5 and back.quality is Quality.GOOD
        assert (await sp.read_value()) == 21.5
        with pytest.raises(WriteNotAllowed):
            await drv.write(mode_r, 2)  # not declared rw: refused before the wire
        with pytest.raises(Exception) as info:
            await drv.write(mode_rw, 2)  # declared rw here, but the server refuses it
        assert "refused" in str(info.value) and not isinstance(info.value, WriteNotConfirmed)
        await drv.aclose()
    finally:
        await server.stop()


async def test_silent_server_times_out_cleanly() -> None:
    """A TCP peer that accepts and never answers: connect() fails within the timeout, no hang."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    try:
        dev = DeviceDef("ua", "opcua", {"url": f"opc.tcp://127.0.0.1:{port}/x"}, "normal", 1.0, 0.3, 0)
        drv = OpcUaDriver(dev)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(CommError):
            await drv.connect()
        assert loop.time() - t0 < 1.5
        assert not drv.connected
        assert all(s.quality is Quality.BAD_COMM for s in await drv.read([
            TagDef("x/a", "X", "a", "a", "ua", "ns=2;s=a", "int")]))
        await drv.aclose()
    finally:
        listener.close()


ODD_VALUES = [
    ua.Variant(dt.datetime(2026, 3, 10, tzinfo=dt.UTC), ua.VariantType.DateTime),
    ua.Variant(ua.LocalizedText("porte ouverte", "fr"), ua.VariantType.LocalizedText),
    ua.Variant(ua.NodeId("elsewhere", 1), ua.VariantType.NodeId),
    ua.Variant(ua.StatusCode(0x80020000), ua.VariantType.StatusCode),
    ua.Variant(ua.QualifiedName("q", 1), ua.VariantType.QualifiedName),
    ua.Variant([1, 2], ua.VariantType.Int32),
    ua.Variant(b"\x00\x01", ua.VariantType.ByteString),
]


@pytest.mark.parametrize("dtype", ["int", "float", "bool", "enum"])
@pytest.mark.parametrize("variant", ODD_VALUES, ids=lambda v: v.VariantType.name)
def test_a_value_a_numeric_tag_cannot_hold_is_bad_config(dtype: str, variant: ua.Variant) -> None:
    """Pure: DataValue → Sample never raises (one odd value must not cost the session or the batch)."""
    dev = DeviceDef("ua", "opcua", {"url": "opc.tcp://127.0.0.1:4840/x"}, "normal", 1.0, 2.0, 1)
    point = TagDef("x/a", "X", "a", "a", "ua", "ns=2;s=a", dtype)
    sample = OpcUaDriver(dev)._sample(point, ua.DataValue(variant), 1_000)
    assert (sample.value, sample.quality) == (None, Quality.BAD_CONFIG)


@pytest.mark.parametrize(("vtype", "low", "high"), [
    (ua.VariantType.SByte, -128, 127), (ua.VariantType.Byte, 0, 255), (ua.VariantType.Int16, -32768, 32767),
    (ua.VariantType.UInt16, 0, 65535), (ua.VariantType.Int32, -(2**31), 2**31 - 1),
    (ua.VariantType.UInt32, 0, 2**32 - 1), (ua.VariantType.Boolean, 0, 1),
])
def test_a_write_outside_the_nodes_type_is_refused_before_the_wire(vtype: ua.VariantType, low: int,
                                                                    high: int) -> None:
    """Pure: the value → Variant conversion refuses what asyncua could not encode (WriteNotAllowed, not CommError)."""
    dev = DeviceDef("ua", "opcua", {"url": "opc.tcp://127.0.0.1:4840/x"}, "normal", 1.0, 2.0, 1)
    point = TagDef("x/a", "X", "a", "a", "ua", "ns=2;s=a", "int", access="rw")
    drv = OpcUaDriver(dev)
    for ok in (low, high):
        ua.ua_binary.variant_to_binary(ua.Variant(drv._to_variant_value(point, ok, vtype), vtype))  # encodes
    for bad in (low - 1, high + 1):
        with pytest.raises(WriteNotAllowed, match=f"out of range for the node's {vtype.name}"):
            drv._to_variant_value(point, bad, vtype)
