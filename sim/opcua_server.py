"""OPC UA server of the simulator: the building management server (BMS) or the fleet server.

One :class:`OpcUaModelServer` serves many models (``sim.building.Building`` or ``sim.fleet.Vehicle``)
with asyncua 2.1.0. Each model reports ``values() -> {"fire/zone1": 0, ...}``; the value at key ``k``
of equipment ``B001`` is the variable with string node id ``B001/k`` in the namespace
``urn:city:bms`` (``urn:city:fleet`` for vehicles) — exactly the addresses of tags.yaml::

    Objects
    └── Buildings                 s=buildings                (Fleet, s=fleet, for kind "fleet")
        ├── B001-B100             s=buildings/B001-B100      ≤ 100 equipment per group
        │   ├── B001              s=B001
        │   │   ├── fire          s=B001/fire
        │   │   │   ├── zone1     s=B001/fire/zone1          Int32 0 normal / 1 alarm / 2 fault
        │   │   │   └── zone2 ...
        │   │   ├── intrusion     s=B001/intrusion           armed, alarm (Boolean); arm_request (Int32),
        │   │   │                                            arm_lease (UInt32): writable
        │   │   └── doors         s=B001/doors               door1.. (Boolean, True = open)
        │   └── B002 ...
        └── B101-B180 ...

    fleet:  V001 (s=V001) → lat, lon, speed (Double), status (Int32 0 available / 1 busy / 2 off duty),
            team (String)

No node ever has more than 100 children: asyncua scans a parent's references linearly on every
add, so a flat folder of thousands of variables takes minutes to build (libraries.md §2).

Updates: the runner steps the models, then awaits :meth:`publish`, which compares every model's
values with what was last published and writes only the changes with the fast path
``server.write_attribute_value`` (SourceTimestamp = the simulation clock, ServerTimestamp = now).
Subscribed clients get the changes as data-change notifications.

Writes: a model may declare ``WRITABLE = {key: "<OPC UA built-in type name>"}`` and ``write(key, value)``
(``sim.building.Building``: ``intrusion/arm_request`` Int32, ``intrusion/arm_lease`` UInt32). Those
variables get AccessLevel and UserAccessLevel CurrentRead|CurrentWrite (every other variable stays
read-only: a client write gets BadUserAccessDenied) and an asyncua value *setter*, so a client's
Write reaches the model at once, inside the Write service::

    client Write [wv1, wv2, ...] ──► _PerNodeWrites: each WriteValue on its own (OPC UA Part 4 §5.10.4:
                                     one StatusCode per node, in request order)
        wv ──► asyncua: access level (BadUserAccessDenied), data type (BadTypeMismatch) ──► setter
        setter: model.write(key, value) ── ValueError ──► BadOutOfRange for THAT node (it keeps its
                value; the good nodes of the same request are applied, the service itself is Good)
                the variable takes the MODEL's value after the write (what a Read, and every
                subscription, sees: a write the model ignored reads back what is in force), and
                the equipment's other changes (armed...) are published at once
    our own publishes go through the same setter and are recognised by a context variable
    (per asyncio task, so a client write running while a publish awaits is never mistaken for one)

A Write to an equipment with the ``drop`` comm fault is refused with BadNoCommunication; with
``corrupt`` the model takes it and the variable shows the garbled value.

Security: ``security="none"`` (tests, the demo's default), ``"sign_encrypt"`` (Basic256Sha256,
SignAndEncrypt only) or ``"both"``. With encryption a self-signed application certificate and key are
generated at start into ``cert_dir`` (a temporary directory when not given): ``server.pem`` /
``server.der`` (:attr:`certificate_path`). Client certificates are accepted without a trust list, as
on a commissioning bench; the transport is still signed and encrypted.

Communication faults, :meth:`set_comm_fault` (equipment id, or ``"*"`` for every equipment):

==============  ==================================================================================
``drop``        the BMS lost the equipment's field bus: its variables turn BadNoCommunication
                (value kept, status bad) and stop updating until cleared
``delay``       ``delay_s``: the equipment's changes reach the address space ``delay_s`` seconds
                late (granularity: the runner's publish period)
``corrupt``     garbled values with a Good status: ints/enums read -1 (unsigned ones their maximum),
                floats NaN, booleans are inverted, strings become "\\ufffd\\ufffd" — what a broken
                gateway mapping shows
``disconnect``  the whole endpoint goes away: the listening socket and every client connection
                are closed (whatever equipment is named); clearing it (``kind=None`` for the same
                id, or for ``"*"``) listens again on the same port
None            clears the equipment's comm fault (``"*"``: every comm fault)
==============  ==================================================================================
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime as dt
import logging
import math
import socket
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from asyncua import ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.address_space import AttributeService, NodeData
from asyncua.server.server import Server
from asyncua.ua.uaerrors import UaStatusCodeError
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

log = logging.getLogger(__name__)

GROUP_SIZE = 100
NAMESPACES = {"bms": "urn:city:bms", "fleet": "urn:city:fleet"}
ROOTS = {"bms": ("buildings", "Buildings"), "fleet": ("fleet", "Fleet")}
SECURITY = ("none", "sign_encrypt", "both")
COMM_FAULTS = ("drop", "delay", "corrupt", "disconnect")
_UTC = dt.UTC
BAD_NO_COMMUNICATION: int = ua.StatusCodes.BadNoCommunication  # type: ignore[attr-defined]
BAD_OUT_OF_RANGE: int = ua.StatusCodes.BadOutOfRange  # type: ignore[attr-defined]
BAD_TYPE_MISMATCH: int = ua.StatusCodes.BadTypeMismatch  # type: ignore[attr-defined]

#: True while this asyncio task writes the address space itself (publish, comm faults): the value
#: setters of writable variables then store the value instead of treating it as a client write.
_SERVER_WRITE: contextvars.ContextVar[bool] = contextvars.ContextVar("opcua_server_write", default=False)


class ValueModel(Protocol):
    def values(self) -> dict[str, Any]: ...


class WritableModel(ValueModel, Protocol):
    WRITABLE: Mapping[str, str]

    def write(self, key: str, value: Any) -> None: ...


def _variant_type(value: Any) -> ua.VariantType:
    if isinstance(value, bool):
        return ua.VariantType.Boolean
    if isinstance(value, int):
        return ua.VariantType.Int32
    if isinstance(value, float):
        return ua.VariantType.Double
    if isinstance(value, str):
        return ua.VariantType.String
    raise TypeError(f"unsupported value type {type(value).__name__}")


def _nid(identifier: str, idx: int) -> ua.NodeId:
    return ua.NodeId(identifier, idx)  # type: ignore[arg-type]  # asyncua's NewType aliases of str/int


def _data_value(value: Any, vtype: ua.VariantType, source: dt.datetime, server: dt.datetime,
                status: int | None = None) -> ua.DataValue:
    """A DataValue with both timestamps (and a status code when given)."""
    kw: dict[str, Any] = {"SourceTimestamp": source, "ServerTimestamp": server}
    if status is not None:
        kw["StatusCode"] = ua.StatusCode(status)  # type: ignore[arg-type]
    return ua.DataValue(ua.Variant(value, vtype), **kw)


def _refusal(code: int) -> Exception:
    """The exception a setter raises to refuse a write: :class:`_PerNodeWrites` makes it that node's status."""
    return UaStatusCodeError(code)  # type: ignore[no-untyped-call]


_ADMIN = User(role=UserRole.Admin)  # asyncua's default user of the service (its sessions always pass theirs)


class _PerNodeWrites(AttributeService):
    """asyncua's attribute service, with a Write that answers one status per node.

    asyncua 2.1.0 lets an exception from a value setter escape the whole Write service (a ServiceFault
    after the nodes before it were applied); here each WriteValue goes through asyncua's own checks
    alone, and a setter's refusal (:func:`_refusal`) becomes that node's StatusCode.
    """

    async def write(self, params: ua.WriteParameters, user: User = _ADMIN) -> list[ua.StatusCode]:
        results: list[ua.StatusCode] = []
        for node in params.NodesToWrite:
            try:
                results.extend(await super().write(ua.WriteParameters(NodesToWrite=[node]), user))
            except UaStatusCodeError as exc:
                results.append(ua.StatusCode(exc.code))
        return results


_UNSIGNED_MAX = {ua.VariantType.Byte: 0xFF, ua.VariantType.UInt16: 0xFFFF, ua.VariantType.UInt32: 0xFFFF_FFFF,
                 ua.VariantType.UInt64: 0xFFFF_FFFF_FFFF_FFFF}


def _garble(value: Any, vtype: ua.VariantType) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return _UNSIGNED_MAX.get(vtype, -1)  # an unsigned variable cannot carry -1: its maximum
    if isinstance(value, float):
        return math.nan
    return "\ufffd\ufffd"


class OpcUaModelServer:
    """An asyncua server exposing models' values (see the module docstring)."""

    def __init__(self, kind: str, models: Mapping[str, ValueModel], host: str = "127.0.0.1", port: int = 0,
                 path: str = "/city/bms", security: str = "none", cert_dir: Path | None = None) -> None:
        if kind not in NAMESPACES:
            raise ValueError(f"kind must be one of {', '.join(NAMESPACES)}, got {kind!r}")
        if security not in SECURITY:
            raise ValueError(f"security must be one of {', '.join(SECURITY)}, got {security!r}")
        self.kind = kind
        self.models = dict(models)
        self.host = host
        self.port = port
        self.path = path if path.startswith("/") else "/" + path
        self.security = security
        self.namespace = NAMESPACES[kind]
        self.cert_dir = cert_dir
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._server: Server | None = None
        self._idx = 0
        # equipment id → [(key, nodeid, variant type)]
        self._nodes: dict[str, list[tuple[str, ua.NodeId, ua.VariantType]]] = {}
        self._published: dict[ua.NodeId, Any] = {}
        self._faults: dict[str, tuple[str, dict[str, Any]]] = {}
        self._delayed: list[tuple[float, ua.NodeId, ua.DataValue]] = []
        self._disconnected_by: set[str] = set()
        self._writable: dict[str, dict[str, ua.VariantType]] = {}  # equipment id → {key: variant type}
        self._client_writes = 0  # client writes applied so far (publish re-reads values after one)
        self._source: dt.datetime | None = None  # SourceTimestamp of the last publish (simulation clock)
        self._tasks: set[asyncio.Task[None]] = set()
        self._listening = False
        self.start_seconds = 0.0
        self.timings: dict[str, float] = {}  # start phases: init (standard address space), security, build, listen
        self.certificate_path: Path | None = None
        self.private_key_path: Path | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def endpoint(self) -> str:
        """``127.0.0.1:PORT`` (the logical endpoint's value for ``load_city(endpoint_overrides=...)``)."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}{self.path}"

    async def start(self) -> None:
        """Build the address space and listen. Logs the URL and how long it took."""
        t0 = time.perf_counter()
        server = Server()
        await server.init()
        server.iserver.attribute_service = _PerNodeWrites(server.iserver.aspace)
        t_init = time.perf_counter()
        server.set_server_name(f"city simulator {self.kind}")
        await server.set_application_uri(f"urn:city:sim:{self.kind}")
        server.set_endpoint(f"opc.tcp://{self.host}:{self.port}{self.path}")
        policies = []
        if self.security in ("none", "both"):
            policies.append(ua.SecurityPolicyType.NoSecurity)
        if self.security in ("sign_encrypt", "both"):
            policies.append(ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt)
            await self._load_certificates(server)
        server.set_security_policy(policies)
        server.set_identity_tokens([ua.AnonymousIdentityToken])  # no user accounts on a simulated BMS
        self._idx = await server.register_namespace(self.namespace)
        t_setup = time.perf_counter()
        await self._build(server)
        t_build = time.perf_counter()
        await server.start()
        self._server = server
        self._listening = True
        assert server.bserver is not None
        self.port = int(server.bserver.port)
        self._fix_endpoint_urls()
        self.start_seconds = time.perf_counter() - t0
        self.timings = {"init": t_init - t0, "security": t_setup - t_init, "build": t_build - t_setup,
                        "listen": time.perf_counter() - t_build}
        n_vars = sum(len(v) for v in self._nodes.values())
        log.info("opcua-%s: listening on %s (%d equipment, %d variables, %s, started in %.2f s)",
                 self.kind, self.url, len(self.models), n_vars, self.security, self.start_seconds)

    async def _load_certificates(self, server: Server) -> None:
        if self.cert_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix=f"scada-sim-{self.kind}-")
            self.cert_dir = Path(self._tmp.name)
        self.cert_dir.mkdir(parents=True, exist_ok=True)
        key = self.cert_dir / f"opcua-{self.kind}-key.pem"
        cert = self.cert_dir / f"opcua-{self.kind}-cert.der"
        await setup_self_signed_certificate(
            key, cert, f"urn:city:sim:{self.kind}", socket.gethostname(),
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
            {"countryName": "FR", "organizationName": "city-scada simulator", "commonName": f"sim-{self.kind}"},
        )
        pem = self.cert_dir / f"opcua-{self.kind}-cert.pem"
        pem.write_bytes(x509.load_der_x509_certificate(cert.read_bytes()).public_bytes(Encoding.PEM))
        await server.load_certificate(str(cert))
        await server.load_private_key(str(key))
        self.certificate_path = cert
        self.private_key_path = key

    def _fix_endpoint_urls(self) -> None:
        """With port 0 the endpoint descriptions were made before the OS picked the port: fix them."""
        assert self._server is not None
        url = self.url
        self._server.set_endpoint(url)
        for edp in self._server.iserver.endpoints:
            edp.EndpointUrl = url
            edp.Server.DiscoveryUrls = [url]

    async def _build(self, server: Server) -> None:
        idx = self._idx
        root_id, root_name = ROOTS[self.kind]
        root = await server.nodes.objects.add_folder(_nid(root_id, idx), f"{idx}:{root_name}")
        ids = list(self.models)
        for g in range(0, len(ids), GROUP_SIZE):
            chunk = ids[g:g + GROUP_SIZE]
            name = f"{chunk[0]}-{chunk[-1]}"
            group = await root.add_folder(_nid(f"{root_id}/{name}", idx), f"{idx}:{name}")
            for eq_id in chunk:
                obj = await group.add_object(_nid(eq_id, idx), f"{idx}:{eq_id}")
                parents: dict[str, Any] = {"": obj}
                entries = []
                writable = {k: ua.VariantType[t] for k, t in getattr(self.models[eq_id], "WRITABLE", {}).items()}
                if writable:
                    self._writable[eq_id] = writable
                for key, value in self.models[eq_id].values().items():
                    *dirs, leaf = key.split("/")
                    parent_path = ""
                    for d in dirs:
                        sub = f"{parent_path}/{d}" if parent_path else d
                        if sub not in parents:
                            parents[sub] = await parents[parent_path].add_object(
                                _nid(f"{eq_id}/{sub}", idx), f"{idx}:{d}")
                        parent_path = sub
                    vtype = writable.get(key) or _variant_type(value)
                    nodeid = _nid(f"{eq_id}/{key}", idx)
                    var = await parents[parent_path].add_variable(nodeid, f"{idx}:{leaf}", value, varianttype=vtype)
                    if key in writable:
                        await var.set_writable()  # AccessLevel and UserAccessLevel CurrentRead|CurrentWrite
                        server.set_attribute_value_setter(nodeid, self._setter(eq_id, key, nodeid, vtype))
                    entries.append((key, nodeid, vtype))
                    self._published[nodeid] = value
                self._nodes[eq_id] = entries
        if any(len(v) > GROUP_SIZE for v in self._nodes.values()):
            raise ValueError("an equipment has more than 100 values: split them into sub-objects")

    # ------------------------------------------------------------------ client writes
    def _setter(self, eq_id: str, key: str, nodeid: ua.NodeId,
                vtype: ua.VariantType) -> Any:
        """The asyncua value setter of one writable variable (see the module docstring)."""

        def setter(node: NodeData, attr: Any, dv: ua.DataValue) -> None:  # attr: ua.AttributeIds
            if not _SERVER_WRITE.get():
                self._client_write(eq_id, key, nodeid, vtype, dv)
            node.attributes[attr].value = dv

        return setter

    def _client_write(self, eq_id: str, key: str, nodeid: ua.NodeId, vtype: ua.VariantType,
                      dv: ua.DataValue) -> None:
        """Apply a client's Write to the model, then make ``dv`` carry the model's value (raises to refuse)."""
        fault = self._faults.get(eq_id, self._faults.get("*"))
        kind = fault[0] if fault else None
        if kind == "drop":
            log.warning("%s: opcua-%s write of %s refused: equipment unreachable (drop fault)", eq_id, self.kind, key)
            raise _refusal(BAD_NO_COMMUNICATION)
        if dv.Value is None or dv.Value.VariantType != vtype:
            raise _refusal(BAD_TYPE_MISMATCH)
        model: WritableModel = self.models[eq_id]  # type: ignore[assignment]
        try:
            model.write(key, dv.Value.Value)
        except ValueError as exc:
            log.warning("opcua-%s: write refused: %s", self.kind, exc)
            raise _refusal(BAD_OUT_OF_RANGE) from None
        self._client_writes += 1
        value = model.values()[key]
        if kind == "corrupt":
            value = _garble(value, vtype)
        now_wall = dt.datetime.now(_UTC)
        dv.Value = ua.Variant(value, vtype)
        dv.StatusCode = ua.StatusCode()  # Good
        dv.SourceTimestamp = self._source or now_wall  # type: ignore[assignment]  # ua.DateTime is a datetime
        dv.ServerTimestamp = now_wall  # type: ignore[assignment]
        self._published[nodeid] = value
        if self._delayed:  # a delayed older value must not land on top of the write
            self._delayed = [d for d in self._delayed if d[1] != nodeid]
        task = asyncio.get_running_loop().create_task(self._publish_after_write(eq_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish_after_write(self, eq_id: str) -> None:
        """Publish the equipment's other changes (armed...) right after a client write."""
        if self._server is None:
            return
        try:
            await self._publish_equipment(eq_id, self._source or dt.datetime.now(_UTC), dt.datetime.now(_UTC),
                                          time.monotonic())
        except Exception:  # a publish problem must never surface as a write error (logged)
            log.exception("%s: opcua-%s publish after a write failed", eq_id, self.kind)

    async def _server_write(self, nodeid: ua.NodeId, dv: ua.DataValue) -> None:
        """Write the address space as the server (publish, comm faults): setters store, not apply."""
        assert self._server is not None
        token = _SERVER_WRITE.set(True)
        try:
            await self._server.write_attribute_value(nodeid, dv)
        finally:
            _SERVER_WRITE.reset(token)

    async def aclose(self) -> None:
        """Stop listening and free the address space (idempotent)."""
        for pending in list(self._tasks):
            pending.cancel()
        for pending in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await pending
        server, self._server = self._server, None
        if server is not None:
            # asyncua's stop() waits for its 1 s server-clock loop to notice a flag; cancel it instead
            task = getattr(server.iserver, "time_task", None)
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                server.iserver.time_task = None
            try:
                await server.stop()
            except Exception:  # a stopped endpoint (disconnect fault) must not fail the shutdown (logged)
                log.debug("opcua-%s: error while stopping", self.kind, exc_info=True)
            log.info("opcua-%s: stopped (%s)", self.kind, self.url)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    # ------------------------------------------------------------------ publishing
    async def publish(self, source_time_s: float | None = None) -> int:
        """Write every changed value (and due delayed ones); return how many variables were written.

        ``source_time_s``: the simulation clock (epoch seconds) used as SourceTimestamp; now if None.
        """
        server = self._server
        if server is None:
            return 0
        now_wall = dt.datetime.now(_UTC)
        src = dt.datetime.fromtimestamp(source_time_s, _UTC) if source_time_s is not None else now_wall
        self._source = src
        mono = time.monotonic()
        written = 0
        for eq_id in self._nodes:
            written += await self._publish_equipment(eq_id, src, now_wall, mono)
        if self._delayed:
            due = [d for d in self._delayed if d[0] <= mono]
            self._delayed = [d for d in self._delayed if d[0] > mono]
            for _, nodeid, dv in due:
                dv.ServerTimestamp = now_wall  # type: ignore[assignment]  # ua.DateTime is a datetime
                await self._server_write(nodeid, dv)
                written += 1
        return written

    async def _publish_equipment(self, eq_id: str, src: dt.datetime, now_wall: dt.datetime, mono: float) -> int:
        fault = self._faults.get(eq_id, self._faults.get("*"))
        kind = fault[0] if fault else None
        if kind == "drop":
            return 0
        written = 0
        model = self.models[eq_id]
        values = model.values()
        seen_writes = self._client_writes
        for key, nodeid, vtype in self._nodes[eq_id]:
            if self._client_writes != seen_writes:  # a client wrote while we awaited: never publish stale values
                values = model.values()
                seen_writes = self._client_writes
            value = values[key]
            if kind == "corrupt":
                value = _garble(value, vtype)
            old = self._published.get(nodeid)
            if old == value or (isinstance(old, float) and isinstance(value, float)
                                and math.isnan(old) and math.isnan(value)):
                continue
            self._published[nodeid] = value
            dv = _data_value(value, vtype, src, now_wall)
            if kind == "delay":
                assert fault is not None
                self._delayed.append((mono + float(fault[1].get("delay_s", 5.0)), nodeid, dv))
                continue
            await self._server_write(nodeid, dv)
            written += 1
        return written

    # ------------------------------------------------------------------ comm faults
    async def set_comm_fault(self, equipment_id: str, kind: str | None, **params: Any) -> None:
        """Set (or with ``kind=None`` clear) a communication fault; see the module docstring."""
        if equipment_id != "*" and equipment_id not in self.models:
            raise KeyError(f"opcua-{self.kind}: unknown equipment {equipment_id!r}")
        if kind is not None and kind not in COMM_FAULTS:
            raise ValueError(f"comm fault must be one of {', '.join(COMM_FAULTS)} or None, got {kind!r}")
        if kind == "disconnect":
            self._disconnected_by.add(equipment_id)
            log.warning("%s: opcua-%s endpoint disconnected (fault)", equipment_id, self.kind)
            await self._stop_listening()
            return
        if kind is None:
            affected = list(self._nodes) if equipment_id == "*" else [equipment_id]
            previous = dict(self._faults)
            if equipment_id == "*":
                self._faults.clear()
                self._disconnected_by.clear()
            else:
                self._faults.pop(equipment_id, None)
                self._disconnected_by.discard(equipment_id)
            if not self._disconnected_by:
                await self._start_listening()
            # republish everything that was dropped or garbled, with a good status
            for eq_id in affected:
                if previous.get(eq_id, previous.get("*", ("",)))[0] in ("drop", "corrupt"):
                    for _, nodeid, _ in self._nodes[eq_id]:
                        self._published.pop(nodeid, None)
            log.info("%s: opcua-%s comm fault cleared", equipment_id, self.kind)
            return
        self._faults[equipment_id] = (kind, dict(params))
        log.warning("%s: opcua-%s comm fault %s %s", equipment_id, self.kind, kind, params or "")
        if kind == "drop" and self._server is not None:
            ids = list(self._nodes) if equipment_id == "*" else [equipment_id]
            now_wall = dt.datetime.now(_UTC)
            for eq_id in ids:
                for _, nodeid, vtype in self._nodes[eq_id]:
                    bad = _data_value(self._published[nodeid], vtype, now_wall, now_wall, BAD_NO_COMMUNICATION)
                    await self._server_write(nodeid, bad)

    async def _stop_listening(self) -> None:
        if self._server is None or not self._listening or self._server.bserver is None:
            return
        self._listening = False
        await self._server.bserver.stop()

    async def _start_listening(self) -> None:
        if self._server is None or self._listening or self._server.bserver is None:
            return
        self._server.bserver.port = self.port
        await self._server.bserver.start()
        self._listening = True
        log.info("opcua-%s: listening again on %s", self.kind, self.url)

    @property
    def listening(self) -> bool:
        return self._listening


__all__ = ["COMM_FAULTS", "GROUP_SIZE", "NAMESPACES", "OpcUaModelServer"]
