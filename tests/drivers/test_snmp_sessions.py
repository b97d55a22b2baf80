"""The SNMP driver's two request paths: v2c on puresnmp (answers, errors, a dead device holding up
nobody, the same answers as pysnmp) and v3 with a context against snmpd (pysnmp).

Against the simulator's agent (sim.snmp_agent) and Debian's net-snmp snmpd, on 127.0.0.1 port 0::

    SnmpDriver ×N (v2c) ──► PureSnmpSession (a connected UDP socket each) ──UDP──► SnmpAgent (pysnmp)
    SnmpDriver (v3, contextName J005) ──► PySnmpSession ──UDP──► snmpd ──proxy -Cn J005 (v2c)──► SnmpAgent
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import x690

from drivers.base import DriverContext
from drivers.registry import DriverFactory
from drivers.snmp import SnmpDriver
from drivers.snmp_puresnmp import PureSnmpSession
from drivers.snmp_pysnmp import PySnmpSession, shared_pysnmp_engine
from drivers.snmp_types import ErrorStatus, Target
from scada.config.model import DeviceDef
from scada.errors import CommError
from scada.quality import Quality
from sim.junction import JunctionController
from sim.snmp_agent import SnmpAgent
from tests.drivers.conftest import AUTH, PRIV, demo_city, device_points
from tests.drivers.test_snmp import assert_junction_samples, free_udp_port, snmpd_running


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A UDP port that is bound but never answers (no ICMP unreachable: a real timeout)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


async def test_a_dead_device_does_not_hold_up_the_others(
        agent: tuple[SnmpAgent, dict[str, JunctionController]], silent_port: int) -> None:
    a, models = agent
    cfg = demo_city(snmp_traffic=a.endpoint)
    names = sorted(models)[:12]
    dead = cfg.devices[names[0]]
    dead.connection = {**dead.connection, "port": silent_port}
    dead.timeout_s = 1.0
    factory = DriverFactory(cfg)
    drivers = {n: factory(cfg.devices[n]) for n in names}
    for d in drivers.values():
        await d.connect()
    for name in names[1:]:  # warm up: the agent (in this loop) builds its answers' machinery on first use
        await drivers[name].read(device_points(cfg, name))
    # the loop keeps ticking while the dead device's request waits (a blocking wait would make one gap
    # last its whole 1 s timeout)
    loop = asyncio.get_running_loop()
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = loop.time()
        while not stop.is_set():
            await asyncio.sleep(0.005)
            gaps.append(loop.time() - last)
            last = loop.time()

    tick = asyncio.create_task(ticker())
    finished: dict[str, float] = {}

    async def read(name: str) -> list[Quality]:
        t0 = loop.time()
        samples = await drivers[name].read(device_points(cfg, name))
        finished[name] = loop.time() - t0
        return [s.quality for s in samples]

    # the dead device first: its request is in flight while the others are read
    results = dict(zip(names, await asyncio.gather(*(read(n) for n in names)), strict=True))
    stop.set()
    await tick
    assert set(results[names[0]]) == {Quality.BAD_COMM}
    assert isinstance(drivers[names[0]].last_error, CommError)
    assert 0.9 <= finished[names[0]] < 2.0, finished
    for name in names[1:]:
        assert Quality.GOOD in results[name], (name, drivers[name].last_error)
        assert finished[name] < 0.8, (name, finished)  # answered well before the dead one's timeout
    assert max(gaps) < 0.5 and len(gaps) >= 20, (max(gaps), len(gaps))
    await factory.aclose()


async def test_getbulk_past_a_four_phase_controllers_rows_is_bad_config(
        agent: tuple[SnmpAgent, dict[str, JunctionController]]) -> None:
    a, models = agent
    four = [name for name, m in sorted(models.items()) if m.phases == 4]
    assert four, "the demo city has no 4-phase junction"
    cfg = demo_city(snmp_traffic=a.endpoint)
    drv = SnmpDriver(cfg.devices[four[0]])
    await drv.connect()
    points = device_points(cfg, four[0])
    samples = await drv.read(points)
    got = {p.tag: s for p, s in zip(points, samples, strict=True)}
    assert_junction_samples(got, models[four[0]])
    for phase in range(1, 9):
        s = got[f"phase_concurrency_{phase}"]
        assert s.quality is (Quality.GOOD if phase <= 4 else Quality.BAD_CONFIG), (phase, s)
    assert drv.requests == 2  # one GET + one GETBULK: rows 5..8 known absent from the walk, not asked again
    await drv.aclose()


async def test_v2c_session_answers_and_errors(agent: tuple[SnmpAgent, dict[str, JunctionController]],
                                             silent_port: int) -> None:
    a, _models = agent
    v2c = PureSnmpSession("J001", Target("127.0.0.1", a.port, 1.0, "v2c", community="public-J001"))
    await v2c.open()
    vbs = await v2c.get(["1.3.6.1.2.1.1.5.0", "1.3.6.1.2.1.1.3.0", "1.3.6.1.4.1.1206.4.2.1.1.2.1.23.9",
                         "1.3.6.1.4.1.99999.77.0"])
    assert [(vb.kind, vb.value) for vb in vbs[:1]] == [("bytes", b"J001")]
    assert vbs[1].kind == "int" and isinstance(vbs[1].value, int)  # TimeTicks as a number
    assert [vb.kind for vb in vbs[2:]] == ["absent", "absent"]  # noSuchInstance, noSuchObject
    # a walk off the end of the device's MIB
    tail = await v2c.bulk("1.3.6.1.4.1.1206.4.2.1.4.14", 3)
    assert tail[-1].kind == "end"
    # SET refused by the agent: an ErrorStatus naming the status, and the session goes on
    with pytest.raises(ErrorStatus) as refused:
        await v2c.set("1.3.6.1.4.1.1206.4.2.1.4.14.0", "i", "300")
    assert refused.value.status == "wrongValue"
    await v2c.set("1.3.6.1.4.1.1206.4.2.1.4.14.0", "i", "2")
    assert (await v2c.get(["1.3.6.1.4.1.1206.4.2.1.4.14.0"]))[0].value == 2
    # no answer: a CommError after the timeout; the same session answers again once the agent does
    silent = PureSnmpSession("X", Target("127.0.0.1", silent_port, 0.2, "v2c", community="public"))
    t0 = time.monotonic()
    with pytest.raises(CommError, match="timeout"):
        await silent.get(["1.3.6.1.2.1.1.5.0"])
    assert 0.15 < time.monotonic() - t0 < 1.5
    # v3 is pysnmp's (drivers.snmp_pysnmp); its keys never show in a Target's repr
    v3 = Target("127.0.0.1", a.port, 1.0, "v3", user="scada", context="J002", auth_key=AUTH, priv_key=PRIV)
    with pytest.raises(ValueError, match="v3"):
        PureSnmpSession("J002", v3)
    assert AUTH not in repr(v3) and PRIV not in repr(v3)
    # closed, then used again: a new socket, the same answers
    await v2c.aclose()
    assert (await v2c.get(["1.3.6.1.2.1.1.5.0"]))[0].value == b"J001"
    await v2c.aclose()
    await silent.aclose()


async def test_v2c_paths_agree_with_pysnmp(agent: tuple[SnmpAgent, dict[str, JunctionController]]) -> None:
    """puresnmp (the driver's v2c path) and pysnmp answer the same requests identically, GET and GETBULK."""
    a, _models = agent
    cfg = demo_city(snmp_traffic=a.endpoint)
    name = sorted(_models)[0]
    oids = [p.address for p in device_points(cfg, name)]
    target = Target("127.0.0.1", a.port, 1.0, "v2c", community=f"public-{name}")
    ctx = DriverContext()
    ours = PureSnmpSession(name, target)
    theirs = PySnmpSession(name, target, shared_pysnmp_engine(ctx))
    await ours.open()
    await theirs.open()
    for _ in range(2):
        # the controller's status may change between the two requests: compare what cannot (kinds, oids,
        # the static objects), and the values of the static objects
        mine, other = await ours.get(oids[:20]), await theirs.get(oids[:20])
        assert [(v.oid, v.kind) for v in mine] == [(v.oid, v.kind) for v in other]
        assert [v.value for v in mine if v.kind == "bytes"] == [v.value for v in other if v.kind == "bytes"]
        walk, walk2 = await ours.bulk("1.3.6.1.4.1.1206.4.2.1.1.2.1.23", 10), \
            await theirs.bulk("1.3.6.1.4.1.1206.4.2.1.1.2.1.23", 10)
        assert walk == walk2 and len(walk) == 10
    await ours.aclose()
    await ctx.aclose()


# ---------------------------------------------------------------------- snmpd with a v3 context
SNMPD_CONTEXT_CONF = """\
agentAddress udp:127.0.0.1:{port}
master no
createUser scadaUser SHA "authpass123" AES "privpass123"
view all included .1
rouser scadaUser priv -V all {context}
proxy -Cn {context} -v 2c -c public-{context} 127.0.0.1:{sim_port} .1.3.6.1.4.1.1206
"""


@pytest.fixture
async def snmpd_context(tmp_path: Path, agent: tuple[SnmpAgent, dict[str, JunctionController]]
                        ) -> AsyncIterator[tuple[int, str]]:
    """snmpd whose context J005 (SNMPv3 user scadaUser, authPriv only) proxies to the simulator's J005."""
    a, _models = agent
    port = free_udp_port()
    with snmpd_running(tmp_path, SNMPD_CONTEXT_CONF.format(port=port, context="J005", sim_port=a.port), port):
        yield port, "J005"


async def test_v3_auth_priv_with_a_context_against_snmpd(
        snmpd_context: tuple[int, str], agent: tuple[SnmpAgent, dict[str, JunctionController]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    port, context = snmpd_context
    _a, models = agent
    monkeypatch.setenv("T_CTX_AUTH", "authpass123")
    monkeypatch.setenv("T_CTX_PRIV", "privpass123")
    cfg = demo_city()
    points = [p for p in device_points(cfg, context) if p.address.startswith("1.3.6.1.4.1.1206.")]

    def device(ctx_name: str) -> DeviceDef:
        return DeviceDef(context, "snmp", {"host": "127.0.0.1", "port": port, "version": "v3", "user": "scadaUser",
                                           "context": ctx_name, "auth_key_env": "T_CTX_AUTH",
                                           "priv_key_env": "T_CTX_PRIV"}, "normal", 1.0, 2.0, 1)

    ctx = DriverContext()
    drv = SnmpDriver(device(context), ctx)
    await drv.connect()
    for _ in range(50):  # snmpd may take a moment to answer after binding its port
        samples = await drv.read(points)
        if samples[0].quality is not Quality.BAD_COMM:
            break
        await asyncio.sleep(0.1)
    assert_junction_samples({p.tag: s for p, s in zip(points, samples, strict=True)}, models[context])
    # the same user in the default context sees nothing of the junction: snmpd refuses (error-status)
    other = SnmpDriver(device(""), ctx)
    await other.connect()
    samples = await other.read(points)
    assert {s.quality for s in samples} == {Quality.BAD_DEVICE}
    assert isinstance(other.last_error, ErrorStatus) and other.last_error.status == "authorizationError"
    await ctx.aclose()


class _Relay(asyncio.DatagramProtocol):
    """A UDP relay on 127.0.0.1 that records each request it forwards to the agent and relays the answer."""

    def __init__(self, agent_port: int) -> None:
        self.agent_port = agent_port
        self.requests: list[bytes] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.client: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram endpoint's transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        assert self.transport is not None
        if addr[1] == self.agent_port:
            self.transport.sendto(data, self.client)
        else:
            self.client = addr
            self.requests.append(data)
            self.transport.sendto(data, ("127.0.0.1", self.agent_port))


async def test_a_get_re_sent_from_its_cached_encoding_carries_a_new_request_id(
        agent: tuple[SnmpAgent, dict[str, JunctionController]]) -> None:
    """The session encodes a GET once per OID list and patches only the request-id: each message on the wire
    decodes (puresnmp's own decoder) to the same GET with its own request-id, and each is answered."""
    a, _models = agent
    loop = asyncio.get_running_loop()
    transport, relay = await loop.create_datagram_endpoint(lambda: _Relay(a.port), local_addr=("127.0.0.1", 0))
    try:
        port = transport.get_extra_info("sockname")[1]
        s = PureSnmpSession("J001", Target("127.0.0.1", port, 1.0, "v2c", community="public-J001"))
        oids = ["1.3.6.1.2.1.1.5.0", "1.3.6.1.2.1.1.3.0"]
        answers = [await s.get(oids) for _ in range(3)]
        await s.get(oids[:1])  # another list: its own encoding
        assert all(vbs[0].value == b"J001" for vbs in answers)
        decoded = [x690.decode(m)[0] for m in relay.requests]
        pdus = [d[2] for d in decoded]
        rids = [p.value.request_id for p in pdus]
        assert len(set(rids)) == 4, rids
        assert all(d[1].value == b"public-J001" for d in decoded)
        assert [[str(vb.oid) for vb in p.value.varbinds] for p in pdus] == [oids, oids, oids, oids[:1]]
        assert len(relay.requests[0]) == len(relay.requests[1]) == len(relay.requests[2])
        await s.aclose()
    finally:
        transport.close()
