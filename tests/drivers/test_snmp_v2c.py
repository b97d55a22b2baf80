"""The builtin SNMPv2c codec (drivers.snmp_v2c) against pysnmp's own BER coder, and both codecs of the
SNMP driver against the simulator's agent (same readings, same fault handling)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
from pyasn1.codec.ber import decoder, encoder
from pysnmp.proto import api

from drivers import snmp_v2c
from drivers.base import DriverContext
from drivers.snmp import SnmpDriver
from scada.quality import Quality
from sim.camera import Camera
from sim.junction import JunctionController
from sim.snmp_agent import SnmpAgent
from tests.drivers.conftest import demo_city, device_points, models_for, wait_for

V2 = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]


def test_request_decodes_with_pysnmp() -> None:
    oids = [(1, 3, 6, 1, 4, 1, 1206, 4, 2, 1, 1, 4, 1, 4, 1), (1, 3, 6, 1, 2, 1, 1, 3, 0), (2, 999, 3), (1, 0)]
    for kind, reps in ((snmp_v2c.GET, 0), (snmp_v2c.GETBULK, 25)):
        raw = snmp_v2c.request(b"public-J001", 123456789, snmp_v2c.varbinds(oids), kind, reps)
        msg, rest = decoder.decode(raw, asn1Spec=V2.Message())
        assert not rest
        assert V2.apiMessage.get_community(msg) == b"public-J001"
        pdu = V2.apiMessage.get_pdu(msg)
        assert int(V2.apiPDU.get_request_id(pdu)) == 123456789
        names = [tuple(n) for n, _v in V2.apiPDU.get_varbinds(pdu)]
        assert names == oids
        if kind == snmp_v2c.GETBULK:
            assert pdu.isSameTypeWith(V2.GetBulkRequestPDU()) and int(V2.apiBulkPDU.get_max_repetitions(pdu)) == 25
        assert snmp_v2c.request_id_of(raw) == 123456789


def _response(varbinds: list[tuple[tuple[int, ...], Any]], request_id: int = 77, status: int = 0,
              index: int = 0) -> bytes:
    pdu = V2.GetResponsePDU()
    V2.apiPDU.set_defaults(pdu)
    V2.apiPDU.set_request_id(pdu, request_id)
    V2.apiPDU.set_error_status(pdu, status)
    V2.apiPDU.set_error_index(pdu, index)
    V2.apiPDU.set_varbinds(pdu, varbinds)
    msg = V2.Message()
    V2.apiMessage.set_defaults(msg)
    V2.apiMessage.set_community(msg, b"public")
    V2.apiMessage.set_pdu(msg, pdu)
    return bytes(encoder.encode(msg))


def test_response_values_match_pysnmp_decoding() -> None:
    values = [V2.Integer(0), V2.Integer(-1), V2.Integer(2**31 - 1), V2.Integer(-(2**31)), V2.Counter32(2**32 - 1),
              V2.Gauge32(1234), V2.TimeTicks(99), V2.Counter64(2**64 - 1), V2.OctetString(b"caf\xc3\xa9"),
              V2.OctetString(b""), V2.IpAddress("10.1.2.3"), V2.ObjectIdentifier((1, 3, 6, 1, 99999, 200)),
              V2.NoSuchObject(""), V2.NoSuchInstance(""), V2.EndOfMibView(""), V2.Null(""),
              V2.Opaque(b"\x01\x02")]
    oids = [(1, 3, 6, 1, 4, 1, 9, k) for k in range(len(values))]
    raw = _response(list(zip(oids, values, strict=True)), request_id=2**31 - 2)
    resp = snmp_v2c.Response(raw)
    assert resp.request_id == 2**31 - 2 and resp.error_status == 0
    assert [name for name, _t, _p in resp.varbinds] == [snmp_v2c.encode_oid(o) for o in oids]
    ref, _rest = decoder.decode(raw, asn1Spec=V2.Message())
    for (_name, tag, payload), (_n, value) in zip(resp.varbinds, V2.apiPDU.get_varbinds(V2.apiMessage.get_pdu(ref)),
                                                   strict=True):
        assert snmp_v2c.value_of(tag, payload) == SnmpDriver._kind(value), value
    err = snmp_v2c.Response(_response([(oids[0], V2.Null(""))], status=5, index=1))
    assert (err.error_status, err.error_index) == (5, 1)


def test_garbage_is_refused() -> None:
    good = _response([((1, 3, 6, 1, 2, 1, 1, 3, 0), V2.Integer(5))])
    for bad in (b"", b"\x30", good[:-3], b"\x30\x03\x02\x01\x00", good[:10] + b"\xff" * 5):
        with pytest.raises(snmp_v2c.BerError):
            snmp_v2c.Response(bad)
    with pytest.raises(ValueError):
        snmp_v2c.encode_oid((1,))


@pytest.fixture
async def agents() -> Any:
    now = time.time()
    juncs = models_for(demo_city(), "junction", JunctionController.from_equipment)
    cams = models_for(demo_city(), "camera", Camera.from_equipment)
    for m in [*juncs.values(), *cams.values()]:
        m.step(now)
    a, c = SnmpAgent(juncs), SnmpAgent(cams)
    await a.start()
    await c.start()
    yield a, c
    await a.aclose()
    await c.aclose()


async def test_both_codecs_read_the_same(agents: tuple[SnmpAgent, SnmpAgent]) -> None:
    a, c = agents
    cfg = demo_city(snmp_traffic=a.endpoint, snmp_cctv=c.endpoint)
    ctx = DriverContext()
    for dev_name in ("J001", "J007", "CAM001", "CAM002"):
        dev = cfg.devices[dev_name]
        fast = SnmpDriver(dev, ctx)
        slow_dev = type(dev)(**{**{f: getattr(dev, f) for f in dev.__slots__},  # type: ignore[attr-defined]
                               "connection": {**dev.connection, "codec": "pysnmp"}})
        slow = SnmpDriver(slow_dev, ctx)
        assert fast.builtin and not slow.builtin
        await fast.connect()
        await slow.connect()
        points = device_points(cfg, dev_name)
        rf = await fast.read_readings(points)
        rs = await slow.read_readings(points)
        assert (rf.qualities == int(Quality.GOOD)).all(), fast.last_error
        np.testing.assert_array_equal(rf.qualities, rs.qualities)
        np.testing.assert_array_equal(rf.values, rs.values)
        assert rf.texts == rs.texts
        assert [s.value for s in await fast.read(points)] == [s.value for s in await slow.read(points)]
        assert fast.requests == slow.requests
    await ctx.aclose()


async def test_builtin_codec_faults(agents: tuple[SnmpAgent, SnmpAgent]) -> None:
    a, _c = agents
    cfg = demo_city(snmp_traffic=a.endpoint)
    dev = cfg.devices["J005"]
    dev.timeout_s = 0.2
    ctx = DriverContext()
    drv = SnmpDriver(dev, ctx)
    await drv.connect()
    points = device_points(cfg, "J005")

    async def qualities() -> set[Quality]:
        return {s.quality for s in await drv.read(points)}

    assert await qualities() == {Quality.GOOD}
    a.set_comm_fault("J005", "corrupt", mode="values")  # OCTET STRING where INTEGER is due
    assert await qualities() == {Quality.BAD_DEVICE}
    a.set_comm_fault("J005", "corrupt", mode="garble")
    t0 = time.monotonic()
    assert await qualities() == {Quality.BAD_COMM}
    assert "GET" in str(drv.last_error)
    a.set_comm_fault("J005", "drop")
    assert await qualities() == {Quality.BAD_COMM}
    assert "no SNMP response within 0.2 s" in str(drv.last_error)
    a.set_comm_fault("J005", None)
    await wait_for(qualities_good(drv, points), 2.0)
    assert time.monotonic() - t0 < 3
    # a wrong community (no such device on this agent): silence, bad_comm
    dev.connection = {**dev.connection, "community": "public-NOPE"}
    other = SnmpDriver(dev, ctx)
    await other.connect()
    assert {s.quality for s in await other.read(points)} == {Quality.BAD_COMM}
    await ctx.aclose()


def qualities_good(drv: SnmpDriver, points: list[Any]) -> Any:
    async def check() -> bool:
        return {s.quality for s in await drv.read(points)} == {Quality.GOOD}
    return check
