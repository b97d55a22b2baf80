"""The simulator's SNMP agent against real managers: pysnmp (v1, v2c, v3 authPriv) and Debian's net-snmp tools.

The agent answers v2c on puresnmp's codec and hands v1 / v3 to pysnmp's engine, on one port: every behaviour
below is checked from the manager's side, in both paths where the two could differ (SET refusals, genErr).
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from puresnmp import V2C
from puresnmp.pdu import GetRequest, PDUContent
from puresnmp.plugins import mpm
from puresnmp.varbind import VarBind
from pysnmp.hlapi.v3arch.asyncio import (
    CommunityData,
    ContextData,
    ObjectIdentity,
    ObjectType,
    SnmpEngine,
    UdpTransportTarget,
    UsmUserData,
    bulk_cmd,
    get_cmd,
    set_cmd,
    usmAesCfb128Protocol,
    usmHMACSHAAuthProtocol,
    walk_cmd,
)
from pysnmp.proto.rfc1902 import Gauge32, Integer32, OctetString
from x690.types import Integer, Null, ObjectIdentifier
from x690.types import OctetString as X690OctetString
from x690.types import Sequence as X690Sequence

from scada.config import EquipmentDef
from sim.camera import Camera
from sim.junction import JunctionController
from sim.snmp_agent import SnmpAgent, device_oids
from tests.peers import require_peer

T0 = 1_780_000_000.0
AUTH, PRIV = "test-auth-key-1", "test-priv-key-1"

ASC = "1.3.6.1.4.1.1206.4.2.1"
JUNCTION_TAGS = {  # tags.yaml template `junction`: tag → OID
    "phase_reds": f"{ASC}.1.4.1.2.1",
    "phase_yellows": f"{ASC}.1.4.1.3.1",
    "phase_greens": f"{ASC}.1.4.1.4.1",
    "unit_control_status": f"{ASC}.3.5.0",
    "unit_flash_status": f"{ASC}.3.6.0",
    "short_alarm_status": f"{ASC}.3.9.0",
    "coord_pattern_status": f"{ASC}.4.10.0",
    "local_free_status": f"{ASC}.4.11.0",
    "system_pattern_control": f"{ASC}.4.14.0",
    "unit_backup_time": f"{ASC}.3.3.0",
}
CAMERA_TAGS = {  # tags.yaml template `camera`
    "uptime": "1.3.6.1.2.1.1.3.0",
    "link": "1.3.6.1.2.1.2.2.1.8.1",
    "in_octets": "1.3.6.1.2.1.2.2.1.10.1",
    "recording": "1.3.6.1.4.1.99999.2.1.0",
}
SPC, UBT = JUNCTION_TAGS["system_pattern_control"], JUNCTION_TAGS["unit_backup_time"]


def equipment(eq_id: str, kind: str, params: dict[str, Any] | None = None) -> EquipmentDef:
    return EquipmentDef(
        id=eq_id,
        template=kind,
        kind=kind,
        domain="traffic" if kind == "junction" else "cctv",
        commune="Dijon",
        lat=47.32,
        lon=5.04,
        device=eq_id,
        identity={"manufacturer": "Acme", "model": "X1"},
        params=params or {},
        prefix=f"dijon/{kind}/{eq_id}",
        source="test",
    )


@pytest.fixture
def models() -> dict[str, Any]:
    ms: dict[str, Any] = {
        "J1": JunctionController.from_equipment(equipment("J1", "junction", {"layout": "cross4"}), random.Random(1)),
        "J2": JunctionController.from_equipment(equipment("J2", "junction", {"layout": "nema8"}), random.Random(2)),
        "CAM1": Camera.from_equipment(equipment("CAM1", "camera"), random.Random(3)),
    }
    for m in ms.values():
        m.step(T0)
    return ms


@pytest.fixture
async def agent(models: dict[str, Any]) -> AsyncIterator[SnmpAgent]:
    a = SnmpAgent(models, host="127.0.0.1", port=0, v3_auth_key=AUTH, v3_priv_key=PRIV)
    await a.start()
    try:
        yield a
    finally:
        await a.aclose()


@pytest.fixture
async def mgr() -> AsyncIterator[SnmpEngine]:
    eng = SnmpEngine()
    try:
        yield eng
    finally:
        eng.close_dispatcher()


def v2(device: str) -> CommunityData:
    return CommunityData(f"public-{device}", mpModel=1)


def v3(auth: str = AUTH, priv: str = PRIV) -> UsmUserData:
    return UsmUserData("scada", auth, priv, authProtocol=usmHMACSHAAuthProtocol, privProtocol=usmAesCfb128Protocol)


async def target(agent: SnmpAgent, timeout: float = 2.0, retries: int = 0) -> UdpTransportTarget:
    return await UdpTransportTarget.create(("127.0.0.1", agent.port), timeout=timeout, retries=retries)


async def get(
    mgr: SnmpEngine, auth: Any, agent: SnmpAgent, *oids: str, context: str = "", timeout: float = 2.0
) -> tuple[Any, int, dict[str, Any]]:
    err, status, _idx, vbs = await get_cmd(
        mgr,
        auth,
        await target(agent, timeout),
        ContextData(contextName=context.encode()),
        *(ObjectType(ObjectIdentity(o)) for o in oids),
    )
    return err, int(status), {str(vb[0]): vb[1] for vb in vbs}


# --------------------------------------------------------------------------- reads


async def test_v2c_reads_every_junction_tag_in_one_pdu(
    agent: SnmpAgent, mgr: SnmpEngine, models: dict[str, Any]
) -> None:
    err, status, values = await get(mgr, v2("J1"), agent, *JUNCTION_TAGS.values())
    assert err is None and status == 0
    assert {tag: int(values[oid]) for tag, oid in JUNCTION_TAGS.items()} == models["J1"].status()
    assert agent.endpoint == f"127.0.0.1:{agent.port}"


async def test_v3_authpriv_context_name_selects_the_device(
    agent: SnmpAgent, mgr: SnmpEngine, models: dict[str, Any]
) -> None:
    err, status, values = await get(mgr, v3(), agent, f"{ASC}.1.1.0", "1.3.6.1.2.1.1.5.0", context="J2")
    assert err is None and status == 0
    assert int(values[f"{ASC}.1.1.0"]) == 8 and str(values["1.3.6.1.2.1.1.5.0"]) == "J2"  # maxPhases, sysName
    err, _, values = await get(mgr, v3(), agent, *CAMERA_TAGS.values(), context="CAM1")
    assert err is None
    assert {tag: int(values[oid]) for tag, oid in CAMERA_TAGS.items()} == models["CAM1"].status()
    err, _, values = await get(mgr, v2("J1"), agent, f"{ASC}.1.1.0")
    assert int(values[f"{ASC}.1.1.0"]) == 4


@pytest.mark.parametrize(
    ("auth", "context", "expected"),
    [
        (v3(auth="wrong-auth-key"), "J1", "Wrong SNMP PDU digest"),
        (v3(priv="wrong-priv-key"), "J1", "ciphertext is broken"),
        (v3(), "J404", "1.3.6.1.6.3.12.1.5.0"),  # report snmpUnknownContexts
    ],
)
async def test_v3_errors_are_clear(agent: SnmpAgent, mgr: SnmpEngine, auth: Any, context: str, expected: str) -> None:
    err, _, values = await get(mgr, auth, agent, SPC, context=context)
    assert err is not None and expected in str(err)
    assert values == {}
    assert agent.stats["unknown_context"] == (1 if context == "J404" else 0)


async def test_unknown_v2c_community_is_not_answered(agent: SnmpAgent, mgr: SnmpEngine) -> None:
    err, _, _ = await get(mgr, v2("J404"), agent, SPC, timeout=0.3)
    assert "No SNMP response" in str(err)


async def test_values_are_read_at_request_time(agent: SnmpAgent, mgr: SnmpEngine, models: dict[str, Any]) -> None:
    cam: Camera = models["CAM1"]
    _, _, before = await get(mgr, v2("CAM1"), agent, *CAMERA_TAGS.values())
    cam.step(T0 + 10)
    cam.inject("not_recording")
    _, _, after = await get(mgr, v2("CAM1"), agent, *CAMERA_TAGS.values())
    assert int(after[CAMERA_TAGS["uptime"]]) - int(before[CAMERA_TAGS["uptime"]]) == 1000
    assert int(after[CAMERA_TAGS["in_octets"]]) > int(before[CAMERA_TAGS["in_octets"]])
    assert (int(before[CAMERA_TAGS["recording"]]), int(after[CAMERA_TAGS["recording"]])) == (1, 0)
    j: JunctionController = models["J1"]
    seen = set()
    for k in range(1, 30):
        j.step(T0 + 3 * k)
        _, _, v = await get(mgr, v2("J1"), agent, JUNCTION_TAGS["phase_greens"])
        assert int(v[JUNCTION_TAGS["phase_greens"]]) == j.phase_greens
        seen.add(j.phase_greens)
    assert seen == {0, 0b0011, 0b1100}


async def test_missing_objects(agent: SnmpAgent, mgr: SnmpEngine) -> None:
    _, status, values = await get(mgr, v2("J1"), agent, f"{ASC}.1.4.1.4.2", "1.3.6.1.9.9.9.0")
    assert status == 0
    assert values[f"{ASC}.1.4.1.4.2"].prettyPrint().startswith("No Such Instance")
    assert values["1.3.6.1.9.9.9.0"].prettyPrint().startswith("No Such Object")


async def test_walk_getnext_and_getbulk(agent: SnmpAgent, mgr: SnmpEngine, models: dict[str, Any]) -> None:
    tgt = await target(agent)
    walked: list[str] = []
    async for err, status, _, vbs in walk_cmd(
        mgr, v2("J1"), tgt, ContextData(), ObjectType(ObjectIdentity("1.3.6.1")), lexicographicMode=False
    ):
        assert err is None and status == 0
        walked.extend(str(vb[0]) for vb in vbs)
    assert walked == device_oids(models["J1"])
    assert set(JUNCTION_TAGS.values()) <= set(walked)
    # GETBULK: every object, then one endOfMibView row (the agent stops repeating at the end)
    err, status, _, vbs = await bulk_cmd(
        mgr, v3(), tgt, ContextData(contextName=b"CAM1"), 0, 50, ObjectType(ObjectIdentity("1.3.6.1"))
    )
    assert err is None and status == 0
    names = [str(vb[0]) for vb in vbs]
    assert names[:-1] == device_oids(models["CAM1"]) and len(vbs) == len(names)
    assert vbs[-1][1].prettyPrint().startswith("No more variables")
    assert set(CAMERA_TAGS.values()) <= set(names)


# --------------------------------------------------------------------------- writes


SET_TABLE = [
    (SPC, Integer32(2), "noError"),
    (UBT, Integer32(120), "noError"),
    (SPC, Integer32(0), "noError"),
    (SPC, Integer32(300), "wrongValue"),
    (UBT, Integer32(70000), "wrongValue"),
    (SPC, Gauge32(2), "wrongType"),
    (SPC, OctetString("2"), "wrongType"),
    (JUNCTION_TAGS["phase_greens"], Integer32(15), "notWritable"),
    (JUNCTION_TAGS["unit_flash_status"], Integer32(2), "notWritable"),
    ("1.3.6.1.2.1.1.5.0", OctetString("x"), "notWritable"),
    (f"{ASC}.3.1.0", Integer32(0), "notWritable"),  # unitStartUpFlash: not on the allow-list
    (f"{ASC}.4.1.0", Integer32(255), "notWritable"),  # coordOperationalMode
    (f"{ASC}.1.5.1.2.1", Integer32(1), "notWritable"),  # phaseControlGroupPhaseOmit
    ("1.3.6.1.4.1.99999.2.1.0", Integer32(1), "notWritable"),
]


@pytest.mark.parametrize("version", ["v2c", "v3"])
async def test_set_allow_list(agent: SnmpAgent, mgr: SnmpEngine, models: dict[str, Any], version: str) -> None:
    j: JunctionController = models["J1"]
    auth = v2("J1") if version == "v2c" else v3()
    ctx = ContextData(contextName=b"" if version == "v2c" else b"J1")
    tgt = await target(agent)
    for oid, value, status in SET_TABLE:
        before = j.status()
        err, err_status, _idx, vbs = await set_cmd(mgr, auth, tgt, ctx, ObjectType(ObjectIdentity(oid), value))
        assert err is None
        assert (err_status.prettyPrint() if err_status else "noError") == status, (oid, value)
        if status == "noError":
            assert int(vbs[0][1]) == int(value)
            tag = "system_pattern_control" if oid == SPC else "unit_backup_time"
            assert j.status()[tag] == int(value)
        else:
            assert j.status() == before, (oid, value)


async def test_set_is_all_or_nothing(agent: SnmpAgent, mgr: SnmpEngine, models: dict[str, Any]) -> None:
    j: JunctionController = models["J1"]
    err, status, _, _ = await set_cmd(
        mgr,
        v2("J1"),
        await target(agent),
        ContextData(),
        ObjectType(ObjectIdentity(SPC), Integer32(3)),
        ObjectType(ObjectIdentity(JUNCTION_TAGS["phase_greens"]), Integer32(15)),
    )
    assert err is None and status.prettyPrint() == "notWritable"
    assert j.system_pattern_control == 0 and j.unit_control_status == 6


@pytest.mark.parametrize("version", ["v2c", "v3"])
async def test_a_refused_set_names_its_varbind(
    agent: SnmpAgent, mgr: SnmpEngine, models: dict[str, Any], version: str
) -> None:
    j: JunctionController = models["J1"]
    auth = v2("J1") if version == "v2c" else v3()
    ctx = ContextData(contextName=b"" if version == "v2c" else b"J1")
    tgt = await target(agent)
    cases = [  # (var-binds, status, 1-based error-index): the first refused var-bind in PDU order
        ([(UBT, Integer32(120)), (SPC, Integer32(300)), (JUNCTION_TAGS["phase_greens"], Integer32(1))], "wrongValue", 2),
        ([(UBT, Integer32(120)), (SPC, Integer32(3)), (JUNCTION_TAGS["phase_greens"], Integer32(1))], "notWritable", 3),
        ([(SPC, Integer32(3)), (UBT, OctetString("120"))], "wrongType", 2),
    ]
    for varbinds, expected, index in cases:
        before = j.status()
        err, status, err_index, vbs = await set_cmd(
            mgr, auth, tgt, ctx, *(ObjectType(ObjectIdentity(o), v) for o, v in varbinds)
        )
        assert err is None
        assert (status.prettyPrint(), int(err_index)) == (expected, index)
        assert [str(vb[0]) for vb in vbs] == [o for o, _ in varbinds]  # the request's var-binds come back
        assert j.status() == before  # all or nothing


@pytest.mark.parametrize("version", ["v2c", "v3"])
async def test_a_model_that_fails_to_read_gives_generr_at_its_varbind(
    agent: SnmpAgent, mgr: SnmpEngine, monkeypatch: pytest.MonkeyPatch, version: str
) -> None:
    def broken(_self: JunctionController) -> int:
        raise RuntimeError("simulated model bug")

    monkeypatch.setattr(JunctionController, "phase_greens", property(broken))
    err, status, err_index, _ = await get_cmd(
        mgr,
        v2("J1") if version == "v2c" else v3(),
        await target(agent),
        ContextData(contextName=b"" if version == "v2c" else b"J1"),
        *(ObjectType(ObjectIdentity(o)) for o in (SPC, UBT, JUNCTION_TAGS["phase_greens"])),
    )
    assert err is None and (status.prettyPrint(), int(err_index)) == ("genErr", 3)
    err, status, _ = await get(mgr, v2("J2"), agent, SPC)  # the agent keeps answering
    assert err is None and status == 0


async def test_lease_expires_over_snmp(agent: SnmpAgent, mgr: SnmpEngine, models: dict[str, Any]) -> None:
    j: JunctionController = models["J1"]
    tgt = await target(agent)
    err, status, _, _ = await set_cmd(
        mgr,
        v3(),
        tgt,
        ContextData(contextName=b"J1"),
        ObjectType(ObjectIdentity(UBT), Integer32(30)),
        ObjectType(ObjectIdentity(SPC), Integer32(255)),
    )
    assert err is None and not status
    j.step(T0 + 20)
    _, _, v = await get(
        mgr, v3(), agent, SPC, JUNCTION_TAGS["unit_control_status"], JUNCTION_TAGS["unit_flash_status"], context="J1"
    )
    assert [int(x) for x in v.values()] == [255, 2, 3]  # commanded flash, system control, automatic flash
    j.step(T0 + 30.5)  # no SET for 30 s: backup mode, local plan, systemPatternControl reads 0
    _, _, v = await get(mgr, v3(), agent, SPC, JUNCTION_TAGS["unit_control_status"], context="J1")
    assert [int(x) for x in v.values()] == [0, 4]
    j.step(T0 + 60)
    _, _, v = await get(
        mgr, v3(), agent, JUNCTION_TAGS["unit_flash_status"], JUNCTION_TAGS["phase_greens"], context="J1"
    )
    assert int(v[JUNCTION_TAGS["unit_flash_status"]]) == 2 and int(v[JUNCTION_TAGS["phase_greens"]]) != 0


# --------------------------------------------------------------------------- comm faults


@pytest.mark.parametrize("kind", ["drop", "disconnect"])
async def test_no_answer_until_cleared_and_other_devices_unaffected(
    agent: SnmpAgent, mgr: SnmpEngine, kind: str
) -> None:
    agent.set_comm_fault("J1", kind)
    assert agent.comm_fault("J1") == (kind, {"probability": 1.0} if kind == "drop" else {})
    err, _, _ = await get(mgr, v2("J1"), agent, SPC, timeout=0.3)
    assert "No SNMP response" in str(err)
    err, _, _ = await get(mgr, v3(), agent, SPC, context="J1", timeout=0.3)
    assert "No SNMP response" in str(err)
    err, _, _ = await get(mgr, v2("J2"), agent, SPC)
    assert err is None
    agent.set_comm_fault("J1", None)
    err, _, _ = await get(mgr, v2("J1"), agent, SPC)
    assert err is None and agent.comm_fault("J1") is None


async def test_drop_with_probability_loses_some_requests(agent: SnmpAgent, mgr: SnmpEngine) -> None:
    agent.set_comm_fault("CAM1", "drop", probability=0.5)
    results = [await get(mgr, v2("CAM1"), agent, CAMERA_TAGS["uptime"], timeout=0.3) for _ in range(12)]
    lost = sum(err is not None for err, _, _ in results)
    assert 0 < agent.stats["dropped"] < 12  # seeded: the same requests are dropped every run
    assert lost >= agent.stats["dropped"]


async def test_delay_answers_late(agent: SnmpAgent, mgr: SnmpEngine, models: dict[str, Any]) -> None:
    agent.set_comm_fault("J1", "delay", delay_s=0.4)
    t = time.perf_counter()
    err, _, _ = await get(mgr, v2("J1"), agent, SPC, timeout=2.0)
    assert err is None and time.perf_counter() - t >= 0.4
    err, _, _ = await get(mgr, v2("J1"), agent, SPC, timeout=0.2)  # a manager that does not wait long enough
    assert "No SNMP response" in str(err)
    assert agent.stats["delayed"] == 2


async def test_corrupt_values_gives_a_wrong_typed_answer(agent: SnmpAgent, mgr: SnmpEngine) -> None:
    agent.set_comm_fault("J1", "corrupt")
    err, status, v = await get(mgr, v2("J1"), agent, SPC, JUNCTION_TAGS["phase_greens"])
    assert err is None and status == 0
    assert all(isinstance(x, OctetString) for x in v.values())


@pytest.mark.parametrize("auth_kind", ["v2c", "v3"])
async def test_corrupt_garble_breaks_the_datagram(
    agent: SnmpAgent, mgr: SnmpEngine, models: dict[str, Any], auth_kind: str
) -> None:
    agent.set_comm_fault("J1", "corrupt", mode="garble")
    auth, ctx = (v2("J1"), "") if auth_kind == "v2c" else (v3(), "J1")
    for _ in range(3):
        err, _, v = await get(mgr, auth, agent, *JUNCTION_TAGS.values(), context=ctx, timeout=0.3)
        # either the manager cannot decode/authenticate it, or what it decodes is not the device's data
        assert err is not None or {t: int(v.get(o, -1)) for t, o in JUNCTION_TAGS.items()} != models["J1"].status()
    assert agent.stats["corrupted"] == 3


async def test_a_powered_off_device_does_not_answer(agent: SnmpAgent, mgr: SnmpEngine, models: dict[str, Any]) -> None:
    models["CAM1"].inject("power_cycle", off_s=30)
    err, _, _ = await get(mgr, v2("CAM1"), agent, CAMERA_TAGS["uptime"], timeout=0.3)
    assert "No SNMP response" in str(err)
    models["CAM1"].step(T0 + 31)
    err, _, v = await get(mgr, v2("CAM1"), agent, CAMERA_TAGS["uptime"])
    assert err is None and int(v[CAMERA_TAGS["uptime"]]) == 100


@pytest.mark.parametrize(
    ("eq", "kind", "params", "exc"),
    [
        ("J404", "drop", {}, KeyError),
        ("J1", "flood", {}, ValueError),
        ("J1", "delay", {"delay_s": 0}, ValueError),
        ("J1", "delay", {"seconds": 1}, ValueError),
        ("J1", "drop", {"probability": 1.5}, ValueError),
        ("J1", "corrupt", {"mode": "bits"}, ValueError),
        ("J1", "disconnect", {"delay_s": 1}, ValueError),
    ],
)
async def test_comm_fault_arguments_are_checked(
    agent: SnmpAgent, eq: str, kind: str, params: dict[str, Any], exc: type
) -> None:
    with pytest.raises(exc):
        agent.set_comm_fault(eq, kind, **params)


async def test_construction_checks() -> None:
    with pytest.raises(ValueError, match="at least 8"):
        SnmpAgent({}, v3_auth_key="short")
    with pytest.raises(TypeError, match="serves JunctionController and Camera"):
        SnmpAgent({"X": object()})
    a = SnmpAgent({})
    with pytest.raises(RuntimeError, match="not started"):
        _ = a.endpoint


# --------------------------------------------------------------------------- one port, two codecs


def pysnmp_messages(agent: SnmpAgent) -> int:
    """snmpInPkts of the agent's pysnmp engine: the messages that reached pysnmp's dispatcher."""
    (counter,) = agent._engine.get_mib_builder().import_symbols("__SNMPv2-MIB", "snmpInPkts")
    return int(counter.syntax)


async def test_v1_v2c_and_v3_share_the_port(agent: SnmpAgent, mgr: SnmpEngine, models: dict[str, Any]) -> None:
    j1, j2 = models["J1"].status(), models["J2"].status()
    before = pysnmp_messages(agent)
    results = await asyncio.gather(*(
        get(mgr, v2("J1") if k % 2 else v2("J2"), agent, *JUNCTION_TAGS.values()) for k in range(10)
    ))
    for k, (err, status, values) in enumerate(results):
        assert err is None and status == 0
        assert {t: int(values[o]) for t, o in JUNCTION_TAGS.items()} == (j1 if k % 2 else j2)
    assert pysnmp_messages(agent) == before  # v2c is answered before pysnmp's engine sees it
    mixed = await asyncio.gather(
        get(mgr, v3(), agent, "1.3.6.1.2.1.1.5.0", context="J2"),
        get(mgr, v2("CAM1"), agent, "1.3.6.1.2.1.1.5.0"),
        get(mgr, CommunityData("public-J1", mpModel=0), agent, "1.3.6.1.2.1.1.5.0"),  # SNMPv1: pysnmp too
        get(mgr, v3(), agent, "1.3.6.1.2.1.1.5.0", context="J1"),
    )
    assert [(r[0], str(r[2]["1.3.6.1.2.1.1.5.0"])) for r in mixed] == [
        (None, "J2"), (None, "CAM1"), (None, "J1"), (None, "J1")
    ]
    assert pysnmp_messages(agent) > before  # v1 and v3 went through pysnmp
    assert agent.stats["requests"] == agent.stats["answered"] == 14


async def test_an_undecodable_v2c_datagram_is_dropped(
    agent: SnmpAgent, mgr: SnmpEngine, models: dict[str, Any]
) -> None:
    """A v2c message cut short (a framing edge case: built with x690, then truncated) is not answered, and
    the agent goes on answering."""
    request = X690Sequence([
        Integer(1),
        X690OctetString(b"public-J1"),
        GetRequest(PDUContent(42, [VarBind(ObjectIdentifier(SPC), Null())])),
    ])
    whole = bytes(request)
    v2c_model = mpm.create(1, _no_transport, {})
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)  # the agent answers in this test's loop
        sock.connect(("127.0.0.1", agent.port))
        await loop.sock_sendall(sock, whole)  # whole, the message is answered (it is well formed)
        answer = v2c_model.decode(await asyncio.wait_for(loop.sock_recv(sock, 2048), 2.0), V2C("public-J1")).value
        assert answer.request_id == 42
        assert [(vb.oid.value, vb.value.value) for vb in answer.varbinds] == [
            (SPC, models["J1"].system_pattern_control)
        ]
        for cut in (whole[:-3], whole[:12], whole[:-len(bytes(ObjectIdentifier(SPC))) - 2]):
            await loop.sock_sendall(sock, cut)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(loop.sock_recv(sock, 2048), 0.3)
    finally:
        sock.close()
    err, status, values = await get(mgr, v2("J1"), agent, SPC)
    assert err is None and status == 0 and SPC in values


async def _no_transport(_data: bytes) -> bytes:  # pragma: no cover - v2c decoding sends nothing
    raise AssertionError("v2c sends no discovery")


# --------------------------------------------------------------------------- net-snmp (independent tool)


async def net_snmp(tool: str, *args: str, tmp: Path) -> tuple[int, str, str]:
    env = {**os.environ, "MIBS": "", "SNMP_PERSISTENT_DIR": str(tmp)}
    proc = await asyncio.create_subprocess_exec(
        tool,
        "-On",
        "-t",
        "2",
        "-r",
        "1",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    return proc.returncode or 0, out.decode(), err.decode()


def parse(out: str) -> dict[str, str]:
    values = {}
    for line in out.splitlines():
        oid, _, rest = line.partition(" = ")
        if not rest.startswith("No more variables"):  # snmpwalk's end-of-view line repeats the last OID
            values[oid.lstrip(".")] = rest
    return values


async def test_net_snmp_tools_read_and_write_the_agent(
    agent: SnmpAgent, models: dict[str, Any], tmp_path: Path
) -> None:
    for tool in ("snmpget", "snmpwalk", "snmpset"):
        require_peer(tool, "Debian package snmp")
    j1: JunctionController = models["J1"]
    rc, out, err = await net_snmp(
        "snmpget", "-v2c", "-c", "public-J1", agent.endpoint, *JUNCTION_TAGS.values(), tmp=tmp_path
    )
    assert rc == 0, err
    got = parse(out)
    assert {t: got[o] for t, o in JUNCTION_TAGS.items()} == {t: f"INTEGER: {v}" for t, v in j1.status().items()}

    v3args = ["-v3", "-l", "authPriv", "-u", "scada", "-a", "SHA", "-A", AUTH, "-x", "AES", "-X", PRIV]
    rc, out, err = await net_snmp(
        "snmpget", *v3args, "-n", "J2", agent.endpoint, f"{ASC}.1.1.0", "1.3.6.1.2.1.1.5.0", tmp=tmp_path
    )
    assert rc == 0, err
    assert parse(out) == {f"{ASC}.1.1.0": "INTEGER: 8", "1.3.6.1.2.1.1.5.0": 'STRING: "J2"'}

    rc, out, err = await net_snmp("snmpwalk", "-v2c", "-c", "public-CAM1", agent.endpoint, ".1.3.6.1", tmp=tmp_path)
    assert rc == 0, err
    walked = parse(out)
    cam = models["CAM1"].status()
    assert walked[CAMERA_TAGS["link"]] == "INTEGER: 1"
    assert walked[CAMERA_TAGS["recording"]] == "INTEGER: 1"
    assert walked[CAMERA_TAGS["in_octets"]] == f"Counter32: {cam['in_octets']}"
    assert walked[CAMERA_TAGS["uptime"]].startswith(f"Timeticks: ({cam['uptime']})")
    assert list(walked) == device_oids(models["CAM1"])

    rc, out, err = await net_snmp("snmpset", *v3args, "-n", "J1", agent.endpoint, SPC, "i", "255", tmp=tmp_path)
    assert rc == 0, err
    assert j1.system_pattern_control == 255 and j1.unit_control_status == 2
    rc, out, err = await net_snmp(
        "snmpset", "-v2c", "-c", "public-J1", agent.endpoint, JUNCTION_TAGS["phase_greens"], "i", "15", tmp=tmp_path
    )
    assert rc != 0 and "notWritable" in out + err

    rc, out, err = await net_snmp("snmpget", *v3args[:-1], "not-the-key", "-n", "J1", agent.endpoint, SPC, tmp=tmp_path)
    assert rc != 0 and "Decryption error" in out + err, out + err
    rc, out, err = await net_snmp(
        "snmpget", *v3args[:8], "wrong-auth-key", *v3args[9:], "-n", "J1", agent.endpoint, SPC, tmp=tmp_path
    )
    assert rc != 0 and "Authentication failure" in out + err


async def test_net_snmp_bulk_tools_agree_with_the_v2c_path(
    agent: SnmpAgent, models: dict[str, Any], tmp_path: Path
) -> None:
    for tool in ("snmpbulkwalk", "snmpbulkget"):
        require_peer(tool, "Debian package snmp")
    j1: JunctionController = models["J1"]
    rc, out, err = await net_snmp(
        "snmpbulkwalk", "-v2c", "-c", "public-J1", "-Cr7", agent.endpoint, ".1.3.6.1", tmp=tmp_path
    )
    assert rc == 0, err
    lines = out.splitlines()
    walked = parse(out)
    assert list(walked) == device_oids(j1)  # every object once
    assert len(lines) == len(walked) + 1 and "No more variables" in lines[-1]  # then one end-of-view line
    assert {t: walked[o] for t, o in JUNCTION_TAGS.items()} == {t: f"INTEGER: {v}" for t, v in j1.status().items()}
    assert walked["1.3.6.1.2.1.1.5.0"] == 'STRING: "J1"'
    # one non-repeater (sysContact.0 → sysName.0) and repeaters from coordPatternStatus: the last objects of
    # the junction, then one endOfMibView row
    rc, out, err = await net_snmp(
        "snmpbulkget", "-v2c", "-c", "public-J1", "-Cn1", "-Cr5", agent.endpoint,
        "1.3.6.1.2.1.1.4.0", JUNCTION_TAGS["coord_pattern_status"], tmp=tmp_path,
    )
    assert rc == 0, err
    rows = [line.partition(" = ") for line in out.splitlines()]
    assert [(oid.lstrip("."), value) for oid, _, value in rows] == [
        ("1.3.6.1.2.1.1.5.0", 'STRING: "J1"'),
        (JUNCTION_TAGS["local_free_status"], f"INTEGER: {j1.local_free_status}"),
        (SPC, f"INTEGER: {j1.system_pattern_control}"),
        (SPC, "No more variables left in this MIB View (It is past the end of the MIB tree)"),
    ]


async def test_two_agents_share_one_loop(models: dict[str, Any], mgr: SnmpEngine) -> None:
    traffic = SnmpAgent({"J1": models["J1"], "J2": models["J2"]}, v3_auth_key=AUTH, v3_priv_key=PRIV)
    cctv = SnmpAgent({"CAM1": models["CAM1"]}, v3_auth_key=AUTH, v3_priv_key=PRIV)
    async with traffic, cctv:
        assert traffic.port != cctv.port
        results = await asyncio.gather(
            get(mgr, v2("J2"), traffic, "1.3.6.1.2.1.1.5.0"),
            get(mgr, v3(), cctv, "1.3.6.1.2.1.1.5.0", context="CAM1"),
            get(mgr, v2("CAM1"), traffic, "1.3.6.1.2.1.1.5.0", timeout=0.3),  # not served there
        )
    assert [str(r[2].get("1.3.6.1.2.1.1.5.0")) for r in results[:2]] == ["J2", "CAM1"]
    assert "No SNMP response" in str(results[2][0])
