"""One SNMP agent serving many simulated devices from one UDP port: v2c on puresnmp's codec, v1 and v3 on pysnmp.

::

    manager ──UDP──▶ _Transport.datagram_received: the message's version field decides
       ▲               ├─ v2c (1) ─▶ sim.snmp_v2c.decode_request (x690) ─ community "public-<id>" → device
       │               │             (unknown community: no answer)             │
       │               └─ v1 (0), v3 (3) ─▶ pysnmp SnmpEngine ─ v1: community "public-<id>" → contextName <id>
       │                                     v3: user "scada" authPriv (SHA / AES-128), contextName <id>
       │                                     ─▶ _Responder.process_pdu (unknown context: report)
       │                                                                         │
       │                                     SnmpAgent._serve: the device's comm fault decides
       │                                     drop │ delay (call_later) │ corrupt │ disconnect │ answer
       │                                                                         ▼
       │    garble bytes      GET / GETNEXT / GETBULK / SET ──▶ sim.snmp_mib.DeviceMib(<id>) ──▶ model properties
       └──────────────────── encode: x690 (v2c) or pysnmp (v1, v3)   codec-neutral values   (read at request time)

Why two codecs on one port: v2c is the city's polling traffic (113 junctions x 2 PDUs every second plus the
cameras at full scale), and pysnmp's command responder made the simulator need as much CPU as the server; on
puresnmp's x690 codec the agent spends about a fifth of the CPU per PDU (README_snmp.md, "Two codecs, one
port": the figures). v3 needs what pysnmp's engine holds (engine boots/time, localised keys, USM reports) and
is rare. The datagram is sorted before pysnmp sees it, so a v2c request never enters pysnmp's dispatcher.

Both paths answer from the same device tables (``sim.snmp_mib``: the SMI semantics, access control and
GETBULK's end-of-view rule live there once), through a thin value adapter each (``sim.snmp_v2c.to_x690``,
``_to_pysnmp`` here). pysnmp's own MIB instrumentation and VACM are bypassed: the responders below take the
device from the context name and call the table. Likewise the v1 community → context step is a dict lookup
(``_CommunityMapV1``) rather than one snmpCommunityTable row per device, so start-up does not grow with the
number of devices.

The agent runs in the caller's asyncio loop: opening the UDP endpoint registers it with the loop,
so no ``open_dispatcher()`` (which would block to run the loop itself) is needed. A v3 request for
an unknown context is answered with a snmpUnknownContexts report (pysnmp's responder cannot build
that report itself: it passes the response PDU, which is not a confirmed class, and drops it).

Comm faults (``set_comm_fault(id, kind, **params)``, ``kind=None`` clears), the same for every version:

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
import logging
import random
import socket
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

from pysnmp.carrier.asyncio.dgram import udp
from pysnmp.entity import config, engine
from pysnmp.entity.rfc3413 import cmdrsp, context
from pysnmp.proto import errind, rfc1902
from pysnmp.proto import error as proto_error
from pysnmp.proto.api import v2c
from pysnmp.proto.secmod.rfc2576 import SnmpV1SecurityModel
from x690.types import ObjectIdentifier, OctetString

from sim import snmp_v2c
from sim.snmp_mib import ASC, DeviceMib, Oid, ReadFailed, SetRefused, Value, device_oids

__all__ = ["ASC", "COMM_FAULTS", "SnmpAgent", "device_oids"]

logger = logging.getLogger(__name__)

COMM_FAULTS = ("drop", "delay", "corrupt", "disconnect")

_GARBAGE = b"\xde\xad\xbe\xef"

_PYSNMP: dict[str, Callable[[Any], Any]] = {
    "Integer32": rfc1902.Integer32,
    "OctetString": rfc1902.OctetString,
    "TimeTicks": rfc1902.TimeTicks,
    "Counter32": rfc1902.Counter32,
    "noSuchObject": lambda _: v2c.NoSuchObject(),
    "noSuchInstance": lambda _: v2c.NoSuchInstance(),
    "endOfMibView": lambda _: v2c.EndOfMibView(),
}


def _to_pysnmp(value: Value) -> Any:
    """A neutral value (sim.snmp_mib) as its pysnmp (pyasn1) type."""
    syntax, v = value
    return _PYSNMP[syntax](v)


def _dotted(oid: Oid) -> str:
    return ".".join(map(str, oid))


class _Transport(udp.UdpAsyncioTransport):  # type: ignore[misc]  # pysnmp is untyped
    """The agent's UDP endpoint: v2c datagrams are answered here, the others go to pysnmp's engine; and a
    response can be garbled on its way out (corrupt mode="garble")."""

    def __init__(self, agent: SnmpAgent) -> None:
        super().__init__()
        self._agent = agent

    def datagram_received(self, datagram: bytes, transportAddress: Any) -> None:
        if not self._agent._v2c_received(datagram, transportAddress):
            super().datagram_received(datagram, transportAddress)

    def send_message(self, outgoingMessage: bytes, transportAddress: Any) -> None:
        if self._agent._corrupting == "garble":
            outgoingMessage = self._agent._garble(bytes(outgoingMessage))
        super().send_message(outgoingMessage, transportAddress)


class _CommunityMapV1(SnmpV1SecurityModel):  # type: ignore[misc]  # pysnmp is untyped
    """SNMPv1 community ``public-<id>`` → contextName ``<id>`` by a dict lookup.

    pysnmp's own mapping goes through one snmpCommunityTable row per device (``config.add_v1_system``
    costs ~5 ms per device through the MIB write machinery: ~2 s for the 269 cameras); this is the
    same RFC 2576 step (community → securityName, contextEngineId, contextName) without the table.
    (v2c never reaches pysnmp: ``_Transport`` answers it.)
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


class _Responder:
    """Mixin over pysnmp's command responders (v1, v3): comm faults and unknown contexts are decided by the
    agent, the operation is the device table's (``_rows``), pysnmp only encodes."""

    agent: SnmpAgent

    def __init__(self, snmp_engine: Any, snmp_context: Any, agent: SnmpAgent) -> None:
        super().__init__(snmp_engine, snmp_context)  # type: ignore[call-arg]
        self.agent = agent

    def process_pdu(self, *args: Any) -> None:
        # args: snmpEngine, messageProcessingModel, securityModel, securityName, securityLevel,
        #       contextEngineId, contextName, pduVersion, PDU, maxSizeResponseScopedPDU, stateReference
        self.agent._pysnmp_pdu(super().process_pdu, args)  # type: ignore[misc]

    def _rows(self, dev: DeviceMib, pdu: Any, var_binds: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
        raise NotImplementedError

    def handle_management_operation(self, snmpEngine: Any, stateReference: Any, contextName: Any, PDU: Any) -> None:
        dev = self.agent._devices[bytes(contextName).decode("utf-8", "replace")]  # known: _pysnmp_pdu checked
        var_binds = list(v2c.apiPDU.get_varbinds(PDU))
        status: str | int = 0
        index = 0
        try:
            rows = self._rows(dev, PDU, var_binds)
        except (ReadFailed, SetRefused) as exc:  # the request's var-binds come back with the status, as in v2c
            status = exc.status if isinstance(exc, SetRefused) else "genErr"
            index, rows = exc.index + 1, var_binds
        self.send_varbinds(snmpEngine, stateReference, status, index, rows)
        self.release_state_information(stateReference)  # type: ignore[attr-defined]

    def send_varbinds(
        self, snmpEngine: Any, stateReference: Any, errorStatus: Any, errorIndex: Any, varBinds: Any
    ) -> None:
        if self.agent._corrupting == "values":
            varBinds = [(name, rfc1902.OctetString(_GARBAGE)) for name, _ in varBinds]
        super().send_varbinds(snmpEngine, stateReference, errorStatus, errorIndex, varBinds)  # type: ignore[misc]


class _Get(_Responder, cmdrsp.GetCommandResponder):  # type: ignore[misc]
    def _rows(self, dev: DeviceMib, pdu: Any, var_binds: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
        got = dev.get([tuple(name) for name, _ in var_binds])
        return [(name, _to_pysnmp(value)) for (name, _), (_, value) in zip(var_binds, got, strict=True)]


class _Next(_Responder, cmdrsp.NextCommandResponder):  # type: ignore[misc]
    def _rows(self, dev: DeviceMib, pdu: Any, var_binds: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
        got = dev.next([tuple(name) for name, _ in var_binds])
        return [(rfc1902.ObjectName(oid), _to_pysnmp(value)) for oid, value in got]


class _Bulk(_Responder, cmdrsp.BulkCommandResponder):  # type: ignore[misc]
    def _rows(self, dev: DeviceMib, pdu: Any, var_binds: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
        non_repeaters = int(v2c.apiBulkPDU.get_non_repeaters(pdu))
        max_repetitions = int(v2c.apiBulkPDU.get_max_repetitions(pdu))
        got = dev.bulk([tuple(name) for name, _ in var_binds], non_repeaters, max_repetitions)
        return [(rfc1902.ObjectName(oid), _to_pysnmp(value)) for oid, value in got]


class _Set(_Responder, cmdrsp.SetCommandResponder):  # type: ignore[misc]
    _INTEGER = rfc1902.Integer32.tagSet

    def _rows(self, dev: DeviceMib, pdu: Any, var_binds: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
        self.agent._write(
            dev, [(tuple(name), int(val) if val.tagSet == self._INTEGER else None) for name, val in var_binds]
        )
        return var_binds


class SnmpAgent:
    """Serve ``models`` (device id → JunctionController | Camera) over SNMP v2c, v3 (and v1) on one UDP port.

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
        self._devices: dict[str, DeviceMib] = {dev_id: DeviceMib(dev_id, m) for dev_id, m in models.items()}
        self._by_community = {f"public-{dev_id}".encode(): dev for dev_id, dev in self._devices.items()}
        self._faults: dict[str, tuple[str, dict[str, Any]]] = {}
        self._rng = random.Random(seed)
        self._engine: Any = None
        self._udp: _Transport | None = None
        self._port: int | None = None
        self._pending: set[asyncio.TimerHandle] = set()
        self._corrupting: str | None = None  # corrupt mode of the pysnmp response being built right now
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
        eng.security_models[_CommunityMapV1.SECURITY_MODEL_ID] = _CommunityMapV1(self)
        user, auth, priv = self._v3
        config.add_v3_user(eng, user, config.USM_AUTH_HMAC96_SHA, auth, config.USM_PRIV_CFB128_AES, priv)
        ctx = context.SnmpContext(eng)  # no context names registered: the responders ask the agent
        for cls in (_Get, _Next, _Bulk, _Set):
            cls(eng, ctx, self)
        self._engine, self._udp = eng, transport
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
            self._engine = self._udp = None
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

    def _v2c_received(self, data: bytes, addr: Any) -> bool:
        """Answer a v2c datagram (True); False when it is not SNMPv2c (pysnmp's engine takes it)."""
        try:
            request = snmp_v2c.decode_request(data)
            if request is None:
                return False
            dev = self._by_community.get(request.community_bytes)
            if dev is not None:  # an unknown community is not answered, as a real agent
                self._serve(dev, partial(self._answer_v2c, request, dev, addr))
        except snmp_v2c.V2cError as exc:  # pysnmp would have dropped it too (snmpInASNParseErrs)
            logger.debug("snmp agent %s: v2c datagram from %s dropped: %s", self.endpoint, addr, exc)
        except Exception:  # an agent bug must not take the endpoint down: logged, that request unanswered
            logger.exception("snmp agent %s: v2c request from %s failed", self.endpoint, addr)
        return True

    def _pysnmp_pdu(self, run: Callable[..., None], args: tuple[Any, ...]) -> None:
        """A v1 / v3 request that pysnmp's engine has authenticated and decoded: the context names the device."""
        context_name = bytes(args[6]).decode("utf-8", "replace")
        dev = self._devices.get(context_name)
        if dev is None:
            self.stats["requests"] += 1
            self._unknown_context(context_name, args)
            return
        self._serve(dev, partial(self._answer_pysnmp, run, args))

    def _serve(self, dev: DeviceMib, answer: Callable[[str | None], None]) -> None:
        """The device's power and comm fault decide whether, when and how ``answer(corrupt_mode)`` runs."""
        self.stats["requests"] += 1
        if not getattr(dev.model, "powered", True):
            self.stats["dropped"] += 1
            return
        kind, params = self._faults.get(dev.id, (None, {}))
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
                    self._answer(answer, None)

            holder.append(loop.call_later(float(params["delay_s"]), later))
            self._pending.add(holder[0])
            return
        self._answer(answer, params.get("mode") if kind == "corrupt" else None)

    def _answer(self, answer: Callable[[str | None], None], corrupt: str | None) -> None:
        if corrupt is not None:
            self.stats["corrupted"] += 1
        answer(corrupt)
        self.stats["answered"] += 1

    def _answer_pysnmp(self, run: Callable[..., None], args: tuple[Any, ...], corrupt: str | None) -> None:
        self._corrupting = corrupt  # read by _Responder.send_varbinds and _Transport.send_message
        try:
            run(*args)
        finally:
            self._corrupting = None

    def _answer_v2c(self, request: snmp_v2c.V2cRequest, dev: DeviceMib, addr: Any, corrupt: str | None) -> None:
        oids = [snmp_v2c.oid_nodes(oid) for oid, _ in request.varbinds]
        status = index = 0
        varbinds: Sequence[tuple[ObjectIdentifier, Any]]
        try:
            if request.kind == "GET":  # the request's OIDs are echoed as decoded (no re-encoding)
                got = dev.get(oids)
                varbinds = [(oid, snmp_v2c.to_x690(v)) for (oid, _), (_, v) in zip(request.varbinds, got, strict=True)]
            elif request.kind == "SET":
                values = [snmp_v2c.integer_of(v) for _, v in request.varbinds]
                self._write(dev, list(zip(oids, values, strict=True)))
                varbinds = request.varbinds
            else:
                rows = (
                    dev.next(oids)
                    if request.kind == "GETNEXT"
                    else dev.bulk(oids, request.non_repeaters, request.max_repetitions)
                )
                varbinds = [(snmp_v2c.x690_oid(oid), snmp_v2c.to_x690(v)) for oid, v in rows]
        except (ReadFailed, SetRefused) as exc:  # RFC 3416: the request's var-binds, the status, 1-based index
            status = snmp_v2c.STATUS[exc.status if isinstance(exc, SetRefused) else "genErr"]
            index, varbinds = exc.index + 1, request.varbinds
        if corrupt == "values":
            varbinds = [(oid, OctetString(_GARBAGE)) for oid, _ in varbinds]
        data = snmp_v2c.encode_response(request, varbinds, status, index)
        if corrupt == "garble":
            data = self._garble(data)
        if self._udp is not None and self._udp.transport is not None:
            self._udp.transport.sendto(data, addr)

    def _write(self, dev: DeviceMib, items: list[tuple[Oid, int | None]]) -> None:
        """A SET, all or nothing: every var-bind is checked (SetRefused) before the first is written."""
        for obj, value in dev.check_set(items):
            assert obj.write is not None  # check_set keeps writable objects only
            obj.write(value)
            logger.info("%s: SET %s = %d", dev.id, _dotted(obj.oid), value)

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
            return  # v1: the community map only maps to known devices (v2c never gets here)
        (unknown,) = snmp_engine.get_mib_builder().import_symbols("__SNMP-TARGET-MIB", "snmpUnknownContexts")
        unknown.syntax += 1
        try:
            snmp_engine.message_dispatcher.return_response_pdu(
                *args[:10], args[10], {"oid": unknown.name, "val": unknown.syntax}
            )
        except proto_error.StatusInformation:
            pass
