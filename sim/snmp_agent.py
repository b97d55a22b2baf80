"""One SNMP agent (pysnmp 7.1.30 command responder) serving many simulated devices from one UDP port.

::

    manager ──UDP──▶ _Transport ──▶ SnmpEngine ── v2c: community "public-<id>" → contextName <id>
       ▲                 │                      └─ v3:  user "scada" authPriv (SHA / AES-128), contextName <id>
       │                 │                                         │
       │   garble bytes  │                                         ▼
       └─────────────────┘          _Responder.process_pdu: the device's comm fault decides
                                    drop │ delay (call_later) │ corrupt │ disconnect │ answer
                                                                        ▼
                                    GET / GETNEXT / GETBULK / SET ──▶ _DeviceMib(<id>) ──▶ model properties
                                                                        (read at request time)

pysnmp's own MIB instrumentation is bypassed: each device is a small sorted table of OIDs with
getter callables (``_DeviceMib``), registered as the context's "MIB instrumentation" (pysnmp only
calls ``read_variables`` / ``read_next_variables`` / ``write_variables`` on it). Access control is
ours, not VACM: everything is readable, and only systemPatternControl and unitBackupTime are
writable (anything else → notWritable, a non-INTEGER → wrongType, out of range → wrongValue).
Likewise the v1/v2c community → context step is a dict lookup (``_CommunityMapV1``) rather than
one snmpCommunityTable row per device, so start-up does not grow with the number of devices.

The agent runs in the caller's asyncio loop: opening the UDP endpoint registers it with the loop,
so no ``open_dispatcher()`` (which would block to run the loop itself) is needed. A v3 request for
an unknown context is answered with a snmpUnknownContexts report (pysnmp's responder cannot build
that report itself: it passes the response PDU, which is not a confirmed class, and drops it).

Comm faults (``set_comm_fault(id, kind, **params)``, ``kind=None`` clears):

``drop``        probability=1.0: requests are not answered (with probability p, seeded RNG)
``delay``       delay_s=1.0: requests are answered delay_s later (values read when answering)
``corrupt``     mode="values": a well-formed response whose values are replaced by an OCTET STRING
                (wrong type, wrong value); mode="garble": the second half of the response datagram is
                XOR-ed with noise (a manager fails to decode it, or it fails authentication in v3)
``disconnect``  nothing is answered until cleared

A device whose model reports ``powered`` False (power cycle) does not answer either.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import random
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from pysnmp.carrier.asyncio.dgram import udp
from pysnmp.entity import config, engine
from pysnmp.entity.rfc3413 import cmdrsp, context
from pysnmp.proto import errind, rfc1902
from pysnmp.proto import error as proto_error
from pysnmp.proto.api import v2c
from pysnmp.proto.secmod.rfc2576 import SnmpV1SecurityModel, SnmpV2cSecurityModel
from pysnmp.smi import error as smi_error

from sim.camera import Camera
from sim.junction import JunctionController
from sim.mib2 import MibSystem

__all__ = ["ASC", "COMM_FAULTS", "SnmpAgent", "device_oids"]

logger = logging.getLogger(__name__)

COMM_FAULTS = ("drop", "delay", "corrupt", "disconnect")

Oid = tuple[int, ...]

ASC = (1, 3, 6, 1, 4, 1, 1206, 4, 2, 1)  # NTCIP 1202 asc node
SYS_DESCR = (1, 3, 6, 1, 2, 1, 1, 1, 0)
SYS_UPTIME = (1, 3, 6, 1, 2, 1, 1, 3, 0)
SYS_NAME = (1, 3, 6, 1, 2, 1, 1, 5, 0)
IF_NUMBER = (1, 3, 6, 1, 2, 1, 2, 1, 0)
IF_ENTRY = (1, 3, 6, 1, 2, 1, 2, 2, 1)
RECORDING = (1, 3, 6, 1, 4, 1, 99999, 2, 1, 0)
SYSTEM_PATTERN_CONTROL = (*ASC, 4, 14, 0)
UNIT_BACKUP_TIME = (*ASC, 3, 3, 0)

_GARBAGE = b"\xde\xad\xbe\xef"


@dataclass(frozen=True, slots=True)
class _Obj:
    oid: Oid
    read: Callable[[], Any]  # returns a pyasn1 value
    write: Callable[[int], object] | None = None
    lo: int = 0
    hi: int = 0


def _int(fn: Callable[[], int]) -> Callable[[], Any]:
    return lambda: rfc1902.Integer32(fn())


def _octets(fn: Callable[[], bytes]) -> Callable[[], Any]:
    return lambda: rfc1902.OctetString(fn())


def _system_objects(model: MibSystem) -> list[_Obj]:
    """MIB-II system group: sysDescr, sysUpTime, sysName."""
    return [
        _Obj(SYS_DESCR, lambda: rfc1902.OctetString(model.sys_descr)),
        _Obj(SYS_UPTIME, lambda: rfc1902.TimeTicks(model.uptime_cs)),
        _Obj(SYS_NAME, lambda: rfc1902.OctetString(model.sys_name)),
    ]


def _objects_for(model: Any) -> list[_Obj]:
    if isinstance(model, JunctionController):
        j = model
        return [
            *_system_objects(model),
            _Obj((*ASC, 1, 1, 0), _int(lambda: j.phases)),  # maxPhases
            _Obj((*ASC, 1, 3, 0), _int(lambda: 1)),  # maxPhaseGroups
            _Obj((*ASC, 1, 4, 1, 2, 1), _int(lambda: j.phase_reds)),
            _Obj((*ASC, 1, 4, 1, 3, 1), _int(lambda: j.phase_yellows)),
            _Obj((*ASC, 1, 4, 1, 4, 1), _int(lambda: j.phase_greens)),
            _Obj(UNIT_BACKUP_TIME, _int(lambda: j.unit_backup_time), j.set_unit_backup_time, 0, 65535),
            _Obj((*ASC, 3, 5, 0), _int(lambda: j.unit_control_status)),
            _Obj((*ASC, 3, 6, 0), _int(lambda: j.unit_flash_status)),
            _Obj((*ASC, 3, 9, 0), _int(lambda: j.short_alarm_status)),
            _Obj((*ASC, 4, 10, 0), _int(lambda: j.coord_pattern_status)),
            _Obj((*ASC, 4, 11, 0), _int(lambda: j.local_free_status)),
            _Obj(SYSTEM_PATTERN_CONTROL, _int(lambda: j.system_pattern_control), j.set_system_pattern_control, 0, 255),
            # static configuration: phaseConcurrency.p (the controller's compatibility matrix, an OCTET STRING of
            # phase numbers) and patternCycleTime.n of each plan it has (the frozen-status check's cycle)
            *(_Obj((*ASC, 1, 2, 1, 23, p), _octets(partial(j.phase_concurrency, p))) for p in range(1, j.phases + 1)),
            *(_Obj((*ASC, 4, 7, 1, 2, n), _int(partial(j.pattern_cycle_time, n))) for n in sorted(j.plans)),
        ]
    if isinstance(model, Camera):
        c = model
        return [
            *_system_objects(model),
            _Obj(IF_NUMBER, _int(lambda: 1)),
            _Obj((*IF_ENTRY, 1, 1), _int(lambda: 1)),  # ifIndex.1
            _Obj((*IF_ENTRY, 2, 1), lambda: rfc1902.OctetString("eth0")),  # ifDescr.1
            _Obj((*IF_ENTRY, 8, 1), _int(lambda: c.if_oper_status)),  # ifOperStatus.1
            _Obj((*IF_ENTRY, 10, 1), lambda: rfc1902.Counter32(c.in_octets)),  # ifInOctets.1
            _Obj(RECORDING, _int(lambda: int(c.recording))),
        ]
    raise TypeError(f"SnmpAgent serves JunctionController and Camera models, got {type(model).__name__}")


def device_oids(model: Any) -> list[str]:
    """The dotted OIDs served for a model (sorted), e.g. to document or to check a tag map."""
    return [".".join(map(str, o.oid)) for o in sorted(_objects_for(model), key=lambda o: o.oid)]


class _DeviceMib:
    """Duck-typed MIB instrumentation for one device (the three calls pysnmp's responders make)."""

    def __init__(self, device_id: str, model: Any) -> None:
        self.id = device_id
        self.model = model
        objs = _objects_for(model)
        self._objs = {o.oid: o for o in objs}
        self._oids = sorted(self._objs)
        self._parents = {oid[:-1] for oid in self._oids}

    def _value(self, obj: _Obj, idx: int) -> Any:
        try:
            return obj.read()
        except Exception as exc:  # a model bug must not kill the agent: answer genErr (logged)
            logger.error("%s: reading %s failed: %r", self.id, ".".join(map(str, obj.oid)), exc)
            raise smi_error.GenError(name=obj.oid, idx=idx) from exc

    def read_variables(self, *var_binds: Any, **_ctx: Any) -> list[tuple[Any, Any]]:
        out: list[tuple[Any, Any]] = []
        for idx, (name, _) in enumerate(var_binds):
            oid = tuple(name)
            obj = self._objs.get(oid)
            if obj is None:
                out.append((name, v2c.NoSuchInstance() if oid[:-1] in self._parents else v2c.NoSuchObject()))
            else:
                out.append((name, self._value(obj, idx)))
        return out

    def read_next_variables(self, *var_binds: Any, **_ctx: Any) -> list[tuple[Any, Any]]:
        out: list[tuple[Any, Any]] = []
        for idx, (name, _) in enumerate(var_binds):
            i = bisect.bisect_right(self._oids, tuple(name))
            if i >= len(self._oids):
                out.append((name, v2c.EndOfMibView()))
            else:
                obj = self._objs[self._oids[i]]
                out.append((rfc1902.ObjectName(obj.oid), self._value(obj, idx)))
        return out

    def write_variables(self, *var_binds: Any, **_ctx: Any) -> list[tuple[Any, Any]]:
        # validate every var-bind first: a SET is all or nothing
        checked: list[tuple[_Obj, int]] = []
        for idx, (name, val) in enumerate(var_binds):
            obj = self._objs.get(tuple(name))
            if obj is None or obj.write is None:
                raise smi_error.NotWritableError(name=name, idx=idx)
            if val.tagSet != rfc1902.Integer32.tagSet:
                raise smi_error.WrongTypeError(name=name, idx=idx)
            value = int(val)
            if not obj.lo <= value <= obj.hi:
                raise smi_error.WrongValueError(name=name, idx=idx)
            checked.append((obj, value))
        for (obj, value), (name, _) in zip(checked, var_binds, strict=True):
            assert obj.write is not None
            obj.write(value)
            logger.info("%s: SET %s = %d", self.id, ".".join(map(str, name)), value)
        return [(name, val) for name, val in var_binds]


class _Transport(udp.UdpAsyncioTransport):  # type: ignore[misc]  # pysnmp is untyped
    """UDP endpoint that can garble the datagram being sent (corrupt mode="garble")."""

    def __init__(self, agent: SnmpAgent) -> None:
        super().__init__()
        self._agent = agent

    def send_message(self, outgoingMessage: bytes, transportAddress: Any) -> None:
        if self._agent._corrupting == "garble":
            outgoingMessage = self._agent._garble(bytes(outgoingMessage))
        super().send_message(outgoingMessage, transportAddress)


class _CommunityMapV1(SnmpV1SecurityModel):  # type: ignore[misc]  # pysnmp is untyped
    """Community ``public-<id>`` → contextName ``<id>`` by a dict lookup.

    pysnmp's own mapping goes through one snmpCommunityTable row per device (``config.add_v1_system``
    costs ~5 ms per device through the MIB write machinery: ~2 s for the 269 cameras); this is the
    same RFC 2576 step (community → securityName, contextEngineId, contextName) without the table.
    """

    def __init__(self, agent: SnmpAgent) -> None:
        super().__init__()
        self._agent = agent

    def _com2sec(self, snmpEngine: Any, communityName: Any, transportInformation: Any) -> tuple[Any, Any, Any]:
        name = bytes(communityName).decode("utf-8", "replace")
        device = name[len("public-") :] if name.startswith("public-") else None
        if device is None or device not in self._agent._devices:
            raise proto_error.StatusInformation(errorIndication=errind.unknownCommunityName)
        (engine_id,) = snmpEngine.get_mib_builder().import_symbols("__SNMP-FRAMEWORK-MIB", "snmpEngineID")
        return rfc1902.OctetString(name), engine_id.syntax, rfc1902.OctetString(device)


class _CommunityMapV2c(_CommunityMapV1):
    SECURITY_MODEL_ID = SnmpV2cSecurityModel.SECURITY_MODEL_ID


class _Responder:
    """Mixin over pysnmp's command responders: comm faults and unknown contexts are decided here."""

    agent: SnmpAgent

    def __init__(self, snmp_engine: Any, snmp_context: Any, agent: SnmpAgent) -> None:
        super().__init__(snmp_engine, snmp_context)  # type: ignore[call-arg]
        self.agent = agent

    def process_pdu(self, *args: Any) -> None:
        # args: snmpEngine, messageProcessingModel, securityModel, securityName, securityLevel,
        #       contextEngineId, contextName, pduVersion, PDU, maxSizeResponseScopedPDU, stateReference
        self.agent._dispatch(super().process_pdu, args)  # type: ignore[misc]

    def send_varbinds(
        self, snmpEngine: Any, stateReference: Any, errorStatus: Any, errorIndex: Any, varBinds: Any
    ) -> None:
        if self.agent._corrupting == "values":
            varBinds = [(name, rfc1902.OctetString(_GARBAGE)) for name, _ in varBinds]
        super().send_varbinds(snmpEngine, stateReference, errorStatus, errorIndex, varBinds)  # type: ignore[misc]


class _Get(_Responder, cmdrsp.GetCommandResponder):  # type: ignore[misc]
    pass


class _Next(_Responder, cmdrsp.NextCommandResponder):  # type: ignore[misc]
    pass


class _Set(_Responder, cmdrsp.SetCommandResponder):  # type: ignore[misc]
    pass


class _Bulk(_Responder, cmdrsp.BulkCommandResponder):  # type: ignore[misc]
    """GETBULK that stops repeating once every repeater has reached the end of the device's MIB
    (pysnmp's own keeps appending endOfMibView rows, and snmpbulkwalk prints each of them)."""

    def handle_management_operation(self, snmpEngine: Any, stateReference: Any, contextName: Any, PDU: Any) -> None:
        non_repeaters = max(int(v2c.apiBulkPDU.get_non_repeaters(PDU)), 0)
        max_repetitions = max(int(v2c.apiBulkPDU.get_max_repetitions(PDU)), 0)
        req = list(v2c.apiPDU.get_varbinds(PDU))
        n = min(non_repeaters, len(req))
        r = len(req) - n
        m = min(max_repetitions, self.max_varbinds // r) if r else 0
        mib = self.snmpContext.get_mib_instrum(contextName)
        rsp = list(mib.read_next_variables(*req[:n])) if n else []
        row = req[n:]
        while m > 0 and r:
            row = mib.read_next_variables(*row)
            rsp.extend(row)
            if all(isinstance(val, v2c.EndOfMibView) for _, val in row):
                break
            m -= 1
        self.send_varbinds(snmpEngine, stateReference, 0, 0, rsp)
        self.release_state_information(stateReference)


class SnmpAgent:
    """Serve ``models`` (device id → JunctionController | Camera) over SNMP v2c and v3 on one UDP port.

    Create and start it inside the running asyncio loop::

        agent = SnmpAgent({"J001": junction, "CAM001": camera}, port=0,
                          v3_auth_key="...", v3_priv_key="...")
        await agent.start()
        agent.endpoint              # "127.0.0.1:40123"
        agent.set_comm_fault("J001", "delay", delay_s=2.0)
        await agent.aclose()
    """

    def __init__(
        self,
        models: Mapping[str, Any],
        host: str = "127.0.0.1",
        port: int = 0,
        v3_auth_key: str = "simulator-auth-key",
        v3_priv_key: str = "simulator-priv-key",
        *,
        v3_user: str = "scada",
        seed: int = 0,
    ) -> None:
        for what, key in (("v3_auth_key", v3_auth_key), ("v3_priv_key", v3_priv_key)):
            if len(key) < 8:
                raise ValueError(f"SnmpAgent: {what} must be at least 8 characters (RFC 3414 passphrase)")
        self.host = host
        self._want_port = port
        self._v3 = (v3_user, v3_auth_key, v3_priv_key)
        self._devices: dict[str, _DeviceMib] = {dev_id: _DeviceMib(dev_id, m) for dev_id, m in models.items()}
        self._faults: dict[str, tuple[str, dict[str, Any]]] = {}
        self._rng = random.Random(seed)
        self._engine: Any = None
        self._port: int | None = None
        self._pending: set[asyncio.TimerHandle] = set()
        self._corrupting: str | None = None  # corrupt mode of the response being built right now
        self._unknown_logged: set[str] = set()
        self.stats = {"requests": 0, "answered": 0, "dropped": 0, "delayed": 0, "corrupted": 0, "unknown_context": 0}

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._engine is not None:
            raise RuntimeError("SnmpAgent already started")
        asyncio.get_running_loop()  # RuntimeError outside a running loop: pysnmp binds to this loop
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((self.host, self._want_port))
        except OSError:
            sock.close()
            raise
        self._port = sock.getsockname()[1]
        eng = engine.SnmpEngine()
        transport = _Transport(self).open_server_mode(sock=sock)
        config.add_transport(eng, udp.DOMAIN_NAME, transport)
        for model in (_CommunityMapV1, _CommunityMapV2c):
            eng.security_models[model.SECURITY_MODEL_ID] = model(self)
        user, auth, priv = self._v3
        config.add_v3_user(eng, user, config.USM_AUTH_HMAC96_SHA, auth, config.USM_PRIV_CFB128_AES, priv)
        ctx = context.SnmpContext(eng)
        for dev_id, dev in self._devices.items():
            ctx.context_names[dev_id.encode()] = dev  # duck-typed MIB instrumentation
        for cls in (_Get, _Next, _Bulk, _Set):
            cls(eng, ctx, self)
        self._engine = eng
        # the endpoint is created by a task pysnmp scheduled on this loop: wait until it is up
        for _ in range(1000):
            if transport.transport is not None:
                break
            await asyncio.sleep(0.001)
        else:
            raise RuntimeError(f"SnmpAgent: UDP endpoint {self.endpoint} did not open")
        logger.info(
            "snmp agent listening on udp %s (%d devices, v2c + v3 user %s)", self.endpoint, len(self._devices), user
        )

    async def aclose(self) -> None:
        for handle in self._pending:
            handle.cancel()
        self._pending.clear()
        if self._engine is not None:
            self._engine.close_dispatcher()
            self._engine = None
            await asyncio.sleep(0)  # let the transport's close callbacks run
            logger.info("snmp agent on udp %s:%s closed", self.host, self._port)

    async def __aenter__(self) -> SnmpAgent:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("SnmpAgent not started")
        return self._port

    @property
    def endpoint(self) -> str:
        """``"127.0.0.1:PORT"`` once started."""
        return f"{self.host}:{self.port}"

    @property
    def device_ids(self) -> list[str]:
        return list(self._devices)

    def model(self, equipment_id: str) -> Any:
        return self._devices[equipment_id].model

    # ------------------------------------------------------------------ comm faults

    def set_comm_fault(self, equipment_id: str, kind: str | None, **params: Any) -> None:
        """Set (or clear with ``kind=None``) the communication fault of one device (module docstring)."""
        if equipment_id not in self._devices:
            raise KeyError(f"SnmpAgent serves no device {equipment_id!r}")
        if kind is None:
            if self._faults.pop(equipment_id, None) is not None:
                logger.info("%s: snmp comm fault cleared", equipment_id)
            return
        allowed: dict[str, dict[str, Any]] = {
            "drop": {"probability": 1.0},
            "delay": {"delay_s": 1.0},
            "corrupt": {"mode": "values"},
            "disconnect": {},
        }
        if kind not in allowed:
            raise ValueError(
                f"{equipment_id}: comm fault kind must be one of {', '.join(COMM_FAULTS)} or None, got {kind!r}"
            )
        unknown = set(params) - set(allowed[kind])
        if unknown:
            raise ValueError(
                f"{equipment_id}: comm fault {kind!r} takes {sorted(allowed[kind]) or 'no params'}, "
                f"got {sorted(unknown)}"
            )
        p = {**allowed[kind], **params}
        if kind == "drop" and not 0.0 < float(p["probability"]) <= 1.0:
            raise ValueError(f"{equipment_id}: drop probability must be in (0, 1], got {p['probability']}")
        if kind == "delay" and not float(p["delay_s"]) > 0:
            raise ValueError(f"{equipment_id}: delay_s must be > 0, got {p['delay_s']}")
        if kind == "corrupt" and p["mode"] not in ("values", "garble"):
            raise ValueError(f"{equipment_id}: corrupt mode must be 'values' or 'garble', got {p['mode']!r}")
        self._faults[equipment_id] = (kind, p)
        logger.info("%s: snmp comm fault %s %s", equipment_id, kind, p)

    def comm_fault(self, equipment_id: str) -> tuple[str, dict[str, Any]] | None:
        """The comm fault in force for a device: (kind, params) or None."""
        f = self._faults.get(equipment_id)
        return (f[0], dict(f[1])) if f else None

    # ------------------------------------------------------------------ request path

    def _dispatch(self, run: Callable[..., None], args: tuple[Any, ...]) -> None:
        self.stats["requests"] += 1
        context_name = bytes(args[6]).decode("utf-8", "replace")
        dev = self._devices.get(context_name)
        if dev is None:
            self._unknown_context(context_name, args)
            return
        if not getattr(dev.model, "powered", True):
            self.stats["dropped"] += 1
            return
        kind, params = self._faults.get(context_name, (None, {}))
        if kind == "disconnect" or (kind == "drop" and self._rng.random() < float(params["probability"])):
            self.stats["dropped"] += 1
            return
        if kind == "delay":
            self.stats["delayed"] += 1
            loop = asyncio.get_running_loop()
            holder: list[asyncio.TimerHandle] = []

            def later() -> None:
                self._pending.discard(holder[0])
                if self._engine is not None:
                    self._answer(run, args, None)

            holder.append(loop.call_later(float(params["delay_s"]), later))
            self._pending.add(holder[0])
            return
        self._answer(run, args, params.get("mode") if kind == "corrupt" else None)

    def _answer(self, run: Callable[..., None], args: tuple[Any, ...], corrupt: str | None) -> None:
        if corrupt is not None:
            self.stats["corrupted"] += 1
        self._corrupting = corrupt
        try:
            run(*args)
            self.stats["answered"] += 1
        finally:
            self._corrupting = None

    def _garble(self, data: bytes) -> bytes:
        half = len(data) // 2
        noise = bytes(self._rng.randrange(1, 256) for _ in range(len(data) - half))
        return data[:half] + bytes(a ^ b for a, b in zip(data[half:], noise, strict=True))

    def _unknown_context(self, name: str, args: tuple[Any, ...]) -> None:
        self.stats["unknown_context"] += 1
        if name not in self._unknown_logged and len(self._unknown_logged) < 100:
            self._unknown_logged.add(name)
            logger.warning("snmp agent %s: request for unknown context %r", self.endpoint, name)
        snmp_engine, mp_model = args[0], int(args[1])
        if mp_model != 3:
            return  # v1/v2c: the community table only maps to known devices
        (unknown,) = snmp_engine.get_mib_builder().import_symbols("__SNMP-TARGET-MIB", "snmpUnknownContexts")
        unknown.syntax += 1
        try:
            snmp_engine.message_dispatcher.return_response_pdu(
                *args[:10], args[10], {"oid": unknown.name, "val": unknown.syntax}
            )
        except proto_error.StatusInformation:
            pass
