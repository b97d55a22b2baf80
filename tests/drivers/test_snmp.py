"""SNMP driver against the simulator's agent (sim.snmp_agent) and Debian's net-snmp snmpd."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.base import DriverContext
from drivers.registry import DriverFactory
from drivers.snmp import SnmpDriver, plan_snmp
from drivers.snmp_puresnmp import PureSnmpSession
from scada.config.model import DeviceDef, TagDef
from scada.errors import AuthError, DeviceError, WriteNotAllowed
from scada.poll import Poller, device_stat_tags, stat_tag_name
from scada.quality import Quality, Sample
from scada.tagdb import TagDatabase
from sim.camera import Camera
from sim.junction import JunctionController
from sim.snmp_agent import SnmpAgent
from tests.drivers.conftest import AUTH, PRIV, demo_city, device_points, snmp_agent, wait_for
from tests.peers import require_peer


def tag(name: str, oid: str, dtype: str = "int", access: str = "r", device: str = "D") -> TagDef:
    return TagDef(name, "E", name, name, device, oid, dtype, access=access)


def assert_junction_samples(got: dict[str, Sample], j: JunctionController) -> None:
    """Every tag good and as the controller serves it, except phaseConcurrency of the phases this controller
    does not have: bad_config (noSuchInstance; the fail-safe reads that as "no such phase")."""
    for name, s in got.items():
        served = j.served(name)
        if served is None:
            assert name.startswith("phase_concurrency_") and int(name.rsplit("_", 1)[1]) > j.phases, name
            assert s.quality is Quality.BAD_CONFIG and s.value is None, (name, s)
        else:
            assert s.quality is Quality.GOOD and s.value == served, (name, s, served)


def test_plan_one_pdu_per_junction_and_bulk_columns() -> None:
    cfg = demo_city()
    points = device_points(cfg, "J001")
    plan = plan_snmp(points)
    # a junction: one GET (10 status objects, sysUpTime, 3 patternCycleTime) + one GETBULK over its
    # phaseConcurrency column (8 instances from .0)
    by_index = {i: p.tag for i, p in enumerate(points)}
    assert plan.pdus == 2 and len(plan.gets) == 1 and len(plan.gets[0].indices) == 14
    assert [(b.start[-2:], b.count) for b in plan.bulks] == [((23, 0), 8)]
    assert sorted(by_index[i] for i in plan.bulks[0].indices) == [f"phase_concurrency_{p}" for p in range(1, 9)]
    # a table column of 6 instances → one GETBULK; scalars and the lone cell → one GET
    col = [tag(f"c{i}", f"1.3.6.1.4.1.9.7.1.2.{i}") for i in range(1, 7)]
    others = [tag("s", "1.3.6.1.2.1.1.3.0"), tag("x", "1.3.6.1.4.1.9.7.1.3.1")]
    plan = plan_snmp(col + others, bulk_min=4)
    assert [(b.start, b.count) for b in plan.bulks] == [((1, 3, 6, 1, 4, 1, 9, 7, 1, 2, 0), 6)]
    assert [g.indices for g in plan.gets] == [[6, 7]]
    # max_oids splits PDUs but never splits one table row (reds/yellows/greens of group 1)
    row = [tag(n, f"1.3.6.1.4.1.1206.4.2.1.1.4.1.{c}.1") for n, c in (("r", 2), ("y", 3), ("g", 4))]
    scal = [tag(f"s{i}", f"1.3.6.1.4.1.1206.4.2.1.3.{i}.0") for i in range(1, 3)]
    plan = plan_snmp(scal + row, max_oids=3)
    assert [sorted(g.indices) for g in plan.gets] == [[0, 1], [2, 3, 4]]
    assert plan_snmp([tag("bad", "1.3.x")]).invalid


async def test_v2c_read_one_pdu_values_and_write(agent: tuple[SnmpAgent, dict[str, JunctionController]]) -> None:
    a, models = agent
    cfg = demo_city(snmp_traffic=a.endpoint)
    factory = DriverFactory(cfg)
    drv = factory(cfg.devices["J001"])
    await drv.connect()
    points = device_points(cfg, "J001")
    samples = await drv.read(points)
    # one GET (status objects) + one GETBULK (phaseConcurrency column): the phases a 4-phase controller
    # lacks are known absent from the walk, not asked again
    assert drv.requests == 2
    got = {p.tag: s for p, s in zip(points, samples, strict=True)}
    j = models["J001"]
    assert_junction_samples(got, j)
    assert got["phase_greens"].value == j.phase_greens
    assert got["unit_control_status"].value == j.unit_control_status
    assert got["unit_backup_time"].value == j.unit_backup_time
    # write with read-back through a declared rw OID
    spc = next(p for p in points if p.tag == "system_pattern_control")
    back = await drv.write(spc, 2)
    assert back.value == 2 and j.system_pattern_control == 2
    # not declared rw: refused before any packet leaves
    before = a.stats["requests"]
    with pytest.raises(WriteNotAllowed):
        await drv.write(next(p for p in points if p.tag == "coord_pattern_status"), 1)
    assert a.stats["requests"] == before
    # declared rw but the agent refuses the value (0..255): a DeviceError, not a success
    with pytest.raises(DeviceError, match="refused"):
        await drv.write(spc, 300)
    # v2c: each device its own connected socket, closed with the driver
    other = factory(cfg.devices["J002"])
    await other.connect()
    assert isinstance(drv, SnmpDriver) and isinstance(other, SnmpDriver)
    mine, theirs = drv._session, other._session
    assert isinstance(mine, PureSnmpSession) and isinstance(theirs, PureSnmpSession)
    assert mine._socket is not None and theirs._socket is not None and mine._socket is not theirs._socket
    await drv.aclose()
    assert mine._socket is None
    await other.aclose()
    await factory.aclose()


async def test_v3_auth_priv_and_wrong_credentials(agent: tuple[SnmpAgent, dict[str, JunctionController]],
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    a, models = agent
    cfg = demo_city(snmp_traffic=a.endpoint)
    dev = cfg.devices["J003"]
    dev.connection = {**dev.connection, "version": "v3", "auth_key_env": "T_SNMP_AUTH", "priv_key_env": "T_SNMP_PRIV"}
    points = device_points(cfg, "J003")
    ctx = DriverContext()
    monkeypatch.setenv("T_SNMP_AUTH", AUTH)
    monkeypatch.setenv("T_SNMP_PRIV", PRIV)
    drv = SnmpDriver(dev, ctx)
    await drv.connect()
    samples = await drv.read(points)
    assert_junction_samples({p.tag: s for p, s in zip(points, samples, strict=True)}, models["J003"])
    assert drv.requests == 2, drv.last_error
    assert samples[2].value == models["J003"].phase_greens
    # wrong auth key: a clear AuthError, bad_comm samples, no exception, no secret in the text
    monkeypatch.setenv("T_SNMP_AUTH", "wrong-auth-key-9")
    bad = SnmpDriver(dev, ctx)
    await bad.connect()
    samples = await bad.read(points)
    assert all(s.quality is Quality.BAD_COMM for s in samples)
    assert isinstance(bad.last_error, AuthError)
    assert "refused" in str(bad.last_error) and "wrong-auth-key-9" not in str(bad.last_error)
    # missing variable: refused at connect, naming the variable, not a value
    monkeypatch.delenv("T_SNMP_PRIV")
    with pytest.raises(AuthError, match="T_SNMP_PRIV"):
        await SnmpDriver(dev, ctx).connect()
    # through the poller: status 'refused', logged once, the secret never logged
    monkeypatch.setenv("T_SNMP_PRIV", PRIV)
    dev.period_s = 0.2
    db = TagDatabase(cfg.tags + device_stat_tags(cfg, ["J003"]))
    poller = Poller(cfg, lambda d: SnmpDriver(d, ctx), db, devices=["J003"], max_backoff_s=0.4)
    await poller.run_for(1.0)
    await poller.aclose()
    assert db.read(stat_tag_name("J003", "status")).value == 3
    assert all(db.read(p.name).quality is Quality.BAD_COMM for p in points)
    refusals = [r for r in caplog.records if r.name == "scada.poll" and "refused" in r.getMessage()]
    assert len(refusals) == 1
    assert not any("wrong-auth-key-9" in r.getMessage() or AUTH in r.getMessage() for r in caplog.records)
    await ctx.aclose()


async def test_comm_faults_drop_delay_corrupt_and_recovery(
        agent: tuple[SnmpAgent, dict[str, JunctionController]], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="scada.poll")
    a, _models = agent
    cfg = demo_city(snmp_traffic=a.endpoint)
    dev = cfg.devices["J004"]
    dev.period_s, dev.timeout_s = 0.3, 0.1
    points = device_points(cfg, "J004")
    ctx = DriverContext()
    db = TagDatabase(cfg.tags + device_stat_tags(cfg, ["J004"]))
    poller = Poller(cfg, lambda d: SnmpDriver(d, ctx), db, devices=["J004"], max_backoff_s=0.3)
    await poller.start()
    first = points[0].name
    await wait_for(lambda: db.read(first).quality is Quality.GOOD, 2.0)
    # corrupted values (an OCTET STRING where an INTEGER is due): bad_device, the link is fine
    a.set_comm_fault("J004", "corrupt", mode="values")
    await wait_for(lambda: db.read(first).quality is Quality.BAD_DEVICE, 1.0)
    assert db.read(stat_tag_name("J004", "status")).value == 1
    # garbled datagrams: undecodable, so no answer: bad_comm
    a.set_comm_fault("J004", "corrupt", mode="garble")
    await wait_for(lambda: db.read(first).quality is Quality.BAD_COMM, 1.0)
    a.set_comm_fault("J004", None)
    await wait_for(lambda: db.read(first).quality is Quality.GOOD, 2.0)
    # slow device: answers after 0.25 s, timeout 0.1 s → bad_comm within one period of the loss
    a.set_comm_fault("J004", "delay", delay_s=0.25)
    t = await wait_for(lambda: db.read(first).quality is Quality.BAD_COMM, 1.0)
    assert t <= dev.period_s + dev.timeout_s * 2 + 0.1
    a.set_comm_fault("J004", "drop")
    await asyncio.sleep(0.5)
    a.set_comm_fault("J004", None)
    await wait_for(lambda: db.read(first).quality is Quality.GOOD, 2.0)
    await poller.aclose()
    await ctx.aclose()
    msgs = [r.getMessage() for r in caplog.records if r.name == "scada.poll" and r.levelno >= logging.WARNING]
    assert sum("lost" in m for m in msgs) == 2 and sum("recovered" in m for m in msgs) == 2, msgs


async def test_camera_types() -> None:
    async with snmp_agent("camera", Camera.from_equipment) as (cams, models):
        cfg = demo_city(snmp_cctv=cams.endpoint)
        drv = SnmpDriver(cfg.devices["CAM001"])
        await drv.connect()
        points = device_points(cfg, "CAM001")
        got = {p.tag: s.value for p, s in zip(points, await drv.read(points), strict=True)}
        c = models["CAM001"]
        assert got["recording"] is bool(c.recording)
        assert got["link"] == c.if_oper_status and isinstance(got["uptime"], int)
        await drv.aclose()


# ---------------------------------------------------------------------- net-snmp snmpd
SNMPD_CONF = """\
agentAddress udp:127.0.0.1:{port}
master no
rocommunity public 127.0.0.1
rwcommunity private 127.0.0.1
createUser scadaUser SHA "authpass123" AES "privpass123"
rouser scadaUser priv
sysName scada-test-snmpd
{overrides}
override -rw .1.3.6.1.4.1.1206.4.2.1.4.14.0 integer 5
"""


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def snmpd_running(tmp_path: Path, conf_text: str, port: int) -> Iterator[None]:
    """Debian's snmpd on 127.0.0.1:``port`` with ``conf_text`` (its own persistent dir, no MIBs), until the block
    ends; returns once the UDP port is taken (at most 5 s)."""
    require_peer("snmpd", "Debian package snmpd")
    conf = tmp_path / "snmpd.conf"
    conf.write_text(conf_text)
    (tmp_path / "persist").mkdir()
    proc = subprocess.Popen(
        ["snmpd", "-f", "-Lf", str(tmp_path / "snmpd.log"), "-C", "-c", str(conf), "-p", str(tmp_path / "pid")],
        env={"SNMP_PERSISTENT_DIR": str(tmp_path / "persist"), "PATH": "/usr/sbin:/usr/bin:/bin", "MIBS": ""},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # wait until the UDP port is taken
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    break
            time.sleep(0.05)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def snmpd(tmp_path: Path) -> Iterator[int]:
    port = free_udp_port()
    overrides = "\n".join(f"override .1.3.6.1.4.1.99999.7.1.2.{i} integer {10 + i}" for i in range(1, 9))
    with snmpd_running(tmp_path, SNMPD_CONF.format(port=port, overrides=overrides), port):
        yield port


def _snmpd_device(port: int, **conn: object) -> DeviceDef:
    return DeviceDef("netsnmp", "snmp", {"host": "127.0.0.1", "port": port, "version": "v2c", "community": "public",
                                         **conn}, "normal", 1.0, 0.5, 1)


async def test_net_snmp_get_bulk_v3_and_set(snmpd: int, monkeypatch: pytest.MonkeyPatch) -> None:
    column = [tag(f"col{i}", f"1.3.6.1.4.1.99999.7.1.2.{i}", device="netsnmp") for i in range(1, 9)]
    scalars = [tag("uptime", "1.3.6.1.2.1.1.3.0", device="netsnmp"),
               tag("name", "1.3.6.1.2.1.1.5.0", "string", device="netsnmp"),
               tag("absent", "1.3.6.1.4.1.99999.99.0", device="netsnmp")]
    points = column + scalars
    ctx = DriverContext()
    drv = SnmpDriver(_snmpd_device(snmpd), ctx)
    await drv.connect()
    t0 = time.monotonic()
    samples = await wait_first_answer(drv, points)
    assert time.monotonic() - t0 < 5
    assert [s.value for s in samples[:8]] == [10 + i for i in range(1, 9)]
    assert samples[9].value == "scada-test-snmpd"
    assert isinstance(samples[8].value, int) and samples[8].quality is Quality.GOOD
    assert samples[10].quality is Quality.BAD_CONFIG  # noSuchObject
    before = drv.requests
    await drv.read(points)
    assert drv.requests - before == 2  # one GETBULK for the column + one GET for the rest
    # v3 authPriv against snmpd, and a wrong key
    monkeypatch.setenv("T_NS_AUTH", "authpass123")
    monkeypatch.setenv("T_NS_PRIV", "privpass123")
    v3 = SnmpDriver(_snmpd_device(snmpd, version="v3", user="scadaUser", auth_key_env="T_NS_AUTH",
                                  priv_key_env="T_NS_PRIV"), ctx)
    await v3.connect()
    samples = await v3.read(points)
    assert samples[9].value == "scada-test-snmpd", v3.last_error
    monkeypatch.setenv("T_NS_AUTH", "not-the-key")
    wrong = SnmpDriver(_snmpd_device(snmpd, version="v3", user="scadaUser", auth_key_env="T_NS_AUTH",
                                     priv_key_env="T_NS_PRIV"), ctx)
    await wrong.connect()
    samples = await wrong.read(points[:2])
    assert all(s.quality is Quality.BAD_COMM for s in samples)
    assert isinstance(wrong.last_error, AuthError)
    # SET with read-back on snmpd's writable override
    rw = SnmpDriver(_snmpd_device(snmpd, community="private"), ctx)
    await rw.connect()
    knob = tag("knob", "1.3.6.1.4.1.1206.4.2.1.4.14.0", access="rw", device="netsnmp")  # systemPatternControl
    assert (await rw.write(knob, 42)).value == 42
    assert (await drv.read([knob]))[0].value == 42
    await ctx.aclose()


async def wait_first_answer(drv: SnmpDriver, points: list[TagDef]) -> list:  # type: ignore[type-arg]
    """snmpd may take a moment to answer after binding its port."""
    for _ in range(50):
        samples = await drv.read(points)
        if samples[0].quality is not Quality.BAD_COMM:
            return samples
        await asyncio.sleep(0.1)
    raise AssertionError(f"snmpd never answered: {drv.last_error}")
