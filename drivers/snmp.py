"""SNMP driver (pysnmp 7.1.30): v2c and v3 authPriv, many OIDs per PDU, GETBULK for table columns.

    connection: {host, port, version: v2c | v3, community,          (v2c: the community selects the device)
                 user, context, auth_key_env, priv_key_env,         (v3: USM user + contextName)
                 auth_protocol: sha | sha256 | md5, priv_protocol: aes | aes256 | des,
                 max_oids: 24, bulk_min: 4}

One process-wide ``SnmpEngine`` (``DriverContext.shared("snmp:engine")``) serves every SNMP
driver; each driver only holds its target, credentials and a read plan. Requests go through
pysnmp's command generators with pre-built numeric varbinds (hlapi's ``get_cmd`` would resolve every
OID against the MIBs on every call: a third of the CPU of a full-city poll)::

    points ─► plan (cached)
               ├─ columns: ≥ bulk_min instances prefix.k, prefix.k+1 ... of one table column
               │    → one GETBULK (max-repetitions = run length) from prefix.(k-1)
               └─ everything else → GET PDUs of ≤ max_oids varbinds. The cells of one table row
                  (same entry, same index: a junction's phaseStatusGroupReds/Yellows/Greens.1) are
                  never split across PDUs, so they come from one consistent snapshot. With the
                  shipped templates a whole junction is one GET (status objects, sysUpTime, the plans'
                  cycle times: 14 OIDs) and one GETBULK (its phaseConcurrency column).

    answers: value → scaled, typed sample; noSuchObject/noSuchInstance/endOfMibView → bad_config (also
             for a column instance a GETBULK walked past: the device has no such row);
             wrong type (text for a number) → bad_device; error-status (genError ...) → bad_device
             for the PDU; no answer (timeout, garbled datagram) → bad_comm; v3 credentials refused
             → bad_comm, ``last_error`` an AuthError saying so (the poller logs it once).

Secrets: v3 keys are read from the environment variables NAMED in the connection
(``auth_key_env``/``priv_key_env``) at connect(); they are never logged nor put in an error text.
Writes: SET only for tags the device's template declares ``access: rw``; anything else raises
WriteNotAllowed before any packet is sent; the value is read back with a GET. Only the fail-safe
command gate may call write(). Booleans are written as TruthValue (1 true, 2 false) and read as
``value == 1``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pyasn1.type import univ
from pysnmp.entity.rfc3413 import cmdgen
from pysnmp.hlapi.v3arch.asyncio import (
    CommunityData,
    ContextData,
    SnmpEngine,
    UdpTransportTarget,
    UsmUserData,
    usmAesCfb128Protocol,
    usmAesCfb256Protocol,
    usmDESPrivProtocol,
    usmHMAC192SHA256AuthProtocol,
    usmHMACMD5AuthProtocol,
    usmHMACSHAAuthProtocol,
)
from pysnmp.hlapi.v3arch.asyncio.cmdgen import LCD
from pysnmp.proto import errind, rfc1902, rfc1905

from drivers.base import Driver, DriverContext, describe, engineering, raw_number
from scada.config.model import DeviceDef, TagDef
from scada.errors import AuthError, CommError, DeviceError, DriverError, WriteNotAllowed
from scada.quality import Quality, Sample, Value

log = logging.getLogger(__name__)

#: The only OIDs this driver will ever SET (NTCIP 1202 system control objects that the controller
#: treats as requests under its own minimum times and conflict monitor): systemPatternControl and
#: unitBackupTime, the lease. No signal head, channel, phase timing or unit control object.
SET_ALLOW_LIST = frozenset({
    "1.3.6.1.4.1.1206.4.2.1.4.14.0",  # systemPatternControl
    "1.3.6.1.4.1.1206.4.2.1.3.3.0",  # unitBackupTime
})

AUTH_PROTOCOLS = {"sha": usmHMACSHAAuthProtocol, "sha256": usmHMAC192SHA256AuthProtocol,
                  "md5": usmHMACMD5AuthProtocol}
PRIV_PROTOCOLS = {"aes": usmAesCfb128Protocol, "aes128": usmAesCfb128Protocol, "aes256": usmAesCfb256Protocol,
                  "des": usmDESPrivProtocol}
_AUTH_ERRORS = (errind.WrongDigest, errind.UnknownUserName, errind.UnknownSecurityName,
                errind.UnsupportedSecurityLevel, errind.DecryptionError, errind.AuthenticationError,
                errind.AuthenticationFailure, errind.NoAuthentication, errind.NoEncryption,
                errind.UnsupportedAuthProtocol, errind.UnsupportedPrivProtocol)
_COMM_ERRORS = (errind.RequestTimedOut, errind.DeserializationError, errind.EmptyResponse,
                errind.DataMismatch, errind.SerializationError)
_ABSENT = (rfc1905.NoSuchObject, rfc1905.NoSuchInstance, rfc1905.EndOfMibView)


def _status(status: Any) -> str:
    """Readable SNMP error-status (pysnmp gives a named Integer, or a plain int)."""
    names = getattr(status, "namedValues", None)
    try:
        return str(names.getName(int(status))) if names is not None else str(int(status))
    except Exception:  # noqa: BLE001 - pysnmp/pyasn1 raise their own errors for an unnamed code: show it raw
        return str(status)


def shared_engine(context: DriverContext) -> SnmpEngine:
    """The one SnmpEngine of this process (created on first use, closed with the context)."""
    return context.shared("snmp:engine", SnmpEngine, lambda eng: eng.close_dispatcher())


def _oid(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.strip(".").split("."))


@dataclass(slots=True)
class _Get:
    indices: list[int] = field(default_factory=list)


@dataclass(slots=True)
class _Bulk:
    start: tuple[int, ...]  # GETNEXT from here
    count: int
    indices: list[int] = field(default_factory=list)


@dataclass(slots=True)
class SnmpPlan:
    gets: list[_Get]
    bulks: list[_Bulk]
    invalid: dict[int, str]

    @property
    def pdus(self) -> int:
        return len(self.gets) + len(self.bulks)


def plan_snmp(points: Sequence[TagDef], max_oids: int = 24, bulk_min: int = 4) -> SnmpPlan:
    """Group the points' OIDs into GETBULK column runs and GET PDUs (pure; see the module docstring)."""
    invalid: dict[int, str] = {}
    oids: dict[int, tuple[int, ...]] = {}
    for i, p in enumerate(points):
        try:
            oids[i] = _oid(p.address)
        except ValueError:
            invalid[i] = f"not a numeric OID: {p.address!r}"
    # column runs: same prefix (all arcs but the last), consecutive last arcs
    by_prefix: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for i, o in oids.items():
        if o[-1] != 0:  # scalars (.0) are never bulked
            by_prefix[o[:-1]].append(i)
    bulks: list[_Bulk] = []
    in_bulk: set[int] = set()
    for prefix, members in by_prefix.items():
        if len(members) < bulk_min:
            continue
        members.sort(key=lambda i: oids[i][-1])
        run: list[int] = []
        for i in [*members, -1]:
            if i >= 0 and run and oids[i][-1] == oids[run[-1]][-1] + 1 and len(run) < max(bulk_min, 64):
                run.append(i)
                continue
            if i >= 0 and run and oids[i][-1] == oids[run[-1]][-1]:
                continue  # the same OID twice: leave it to a GET
            if len(run) >= bulk_min:
                first = oids[run[0]][-1]
                start = (*prefix, first - 1) if first > 0 else prefix
                bulks.append(_Bulk(start, len(run), list(run)))
                in_bulk.update(run)
            run = [i] if i >= 0 else []
    # GETs: keep each table row (entry prefix oid[:-2] + index oid[-1]) together
    rows: dict[tuple[tuple[int, ...], int], list[int]] = {}
    for i in sorted(oids):
        if i in in_bulk:
            continue
        o = oids[i]
        key = (o[:-2], o[-1]) if o[-1] != 0 else (o, 0)
        rows.setdefault(key, []).append(i)
    gets: list[_Get] = []
    current = _Get()
    for group in rows.values():
        for offset in range(0, len(group), max_oids):
            part = group[offset:offset + max_oids]
            if len(current.indices) + len(part) > max_oids:
                gets.append(current)
                current = _Get()
            current.indices.extend(part)
    if current.indices:
        gets.append(current)
    return SnmpPlan(gets, bulks, invalid)


class SnmpDriver(Driver):
    protocol = "snmp"

    def __init__(self, device: DeviceDef, context: DriverContext | None = None) -> None:
        super().__init__(device, context)
        conn = device.connection
        self.host = str(conn.get("host", "127.0.0.1"))
        self.port = int(conn.get("port", 161))
        self.version = str(conn.get("version", "v2c")).lower()
        if self.version not in ("v2c", "v3", "2c", "3"):
            raise ValueError(f"{device.name}: SNMP version must be v2c or v3, got {self.version!r}")
        self.version = "v3" if self.version in ("v3", "3") else "v2c"
        self.max_oids = int(conn.get("max_oids", 24))
        self.bulk_min = int(conn.get("bulk_min", 4))
        self._auth: Any = None
        self._target: Any = None
        self._ctx: Any = None
        self._plans: dict[tuple[str, ...], SnmpPlan] = {}
        self._addr: Any = None
        self._varbinds: dict[str, tuple[Any, Any]] = {}  # address → (ObjectName, Null) built once

    @property
    def engine(self) -> SnmpEngine:
        return shared_engine(self.context)

    # ------------------------------------------------------------------ connection
    def _credentials(self) -> Any:
        conn = self.device.connection
        if self.version == "v2c":
            # the city's v2c controllers: the configuration chooses v2c per device, v3 is the other branch
            return CommunityData(str(conn.get("community", "public")), mpModel=1)  # noqa: S508
        user = str(conn.get("user", ""))
        keys: list[str] = []
        for what in ("auth_key_env", "priv_key_env"):
            env = conn.get(what)
            if not env:
                raise AuthError(f"{self.name}: SNMPv3 needs connection '{what}' (the name of an environment variable)")
            value = os.environ.get(str(env))
            if not value:
                raise AuthError(f"{self.name}: environment variable {env} ({what[:4]} key of SNMPv3 user "
                                f"{user!r}) is not set")
            keys.append(value)
        auth_name = str(conn.get("auth_protocol", "sha")).lower()
        priv_name = str(conn.get("priv_protocol", "aes")).lower()
        if auth_name not in AUTH_PROTOCOLS or priv_name not in PRIV_PROTOCOLS:
            raise AuthError(f"{self.name}: unsupported SNMPv3 protocols auth={auth_name!r} priv={priv_name!r}")
        return UsmUserData(user, keys[0], keys[1], authProtocol=AUTH_PROTOCOLS[auth_name],
                           privProtocol=PRIV_PROTOCOLS[priv_name])

    async def connect(self) -> None:
        """Prepare target and credentials (UDP: nothing to open; failures show on the first read)."""
        try:
            self._auth = self._credentials()
        except AuthError as exc:
            raise self.fail(exc) from None
        try:
            self._target = await UdpTransportTarget.create((self.host, self.port), timeout=self.device.timeout_s,
                                                           retries=0)
        except Exception as exc:  # noqa: BLE001 - pysnmp raises undocumented exceptions: translated to DriverError at the boundary
            raise self.fail(CommError(f"{self.name}: {self.host}:{self.port}: {describe(exc)}")) from None
        context_name = str(self.device.connection.get("context", "")) if self.version == "v3" else ""
        self._ctx = ContextData(contextName=context_name)
        self._addr, _params = LCD.configure(self.engine, self._auth, self._target, self._ctx.contextName)
        self._connected = True

    async def aclose(self) -> None:
        self._connected = False
        self._target = None
        if self.owns_context:
            await self.context.aclose()

    # ------------------------------------------------------------------ errors
    def _indication(self, ind: Any, what: str) -> DriverError:
        text = f"{self.name}: {what} {self.host}:{self.port}: {ind}"
        if isinstance(ind, _AUTH_ERRORS):
            if self.version == "v3":
                text += f" (SNMPv3 user {self.device.connection.get('user')!r} refused: check the auth/priv keys)"
            return AuthError(text)
        if isinstance(ind, _COMM_ERRORS):
            return CommError(text)
        text_l = str(ind).lower()
        if "timeout" in text_l or "no snmp response" in text_l:
            return CommError(text)
        if "digest" in text_l or "authentic" in text_l or "usm" in text_l or "decrypt" in text_l:
            return AuthError(text)
        return DeviceError(text)

    # ------------------------------------------------------------------ requests
    def _varbind(self, address: str) -> tuple[Any, Any]:
        vb = self._varbinds.get(address)
        if vb is None:
            vb = (rfc1902.ObjectName(address.strip(".")), univ.Null(""))
            self._varbinds[address] = vb
        return vb

    async def _request(self, kind: str, varbinds: list[tuple[Any, Any]], max_repetitions: int = 0) -> Any:
        """One GET / GETBULK / SET through pysnmp's command generators → (ind, status, index, varbinds)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()

        def done(_engine: Any, _handle: Any, ind: Any, status: Any, index: Any, vbs: Any, _ctx: Any) -> None:
            if not future.done():
                future.set_result((ind, status, index, vbs))

        ctx = self._ctx
        if kind == "get":
            cmdgen.GetCommandGenerator().send_varbinds(self.engine, self._addr, ctx.contextEngineId, ctx.contextName,
                                                        varbinds, done)
        elif kind == "bulk":
            cmdgen.BulkCommandGenerator().send_varbinds(self.engine, self._addr, ctx.contextEngineId,
                                                         ctx.contextName, 0, max_repetitions, varbinds, done)
        else:
            cmdgen.SetCommandGenerator().send_varbinds(self.engine, self._addr, ctx.contextEngineId, ctx.contextName,
                                                        varbinds, done)
        return await future

    # ------------------------------------------------------------------ read
    def plan(self, points: Sequence[TagDef]) -> SnmpPlan:
        key = tuple(p.name for p in points)
        plan = self._plans.get(key)
        if plan is None:
            plan = plan_snmp(points, self.max_oids, self.bulk_min)
            if len(self._plans) > 64:
                self._plans.clear()
            self._plans[key] = plan
        return plan

    def _sample(self, point: TagDef, value: Any, now: int) -> Sample:
        if isinstance(value, _ABSENT):
            return Sample(None, Quality.BAD_CONFIG, now, now)
        if isinstance(value, univ.OctetString) and not isinstance(value, rfc1902.IpAddress):
            if point.dtype != "string":
                return Sample(None, Quality.BAD_DEVICE, now, now)  # text where a number is expected
            raw: Any = bytes(value.asOctets()).decode("utf-8", "replace")
        elif isinstance(value, univ.Integer):
            raw = int(value)
            if point.dtype == "bool":
                raw = raw == 1  # TruthValue: 1 true, 2 false (0/1 devices read the same)
        elif isinstance(value, univ.ObjectIdentifier | rfc1902.IpAddress):
            raw = value.prettyPrint()
        else:
            return Sample(None, Quality.BAD_DEVICE, now, now)
        v, q = engineering(point, raw)
        return Sample(v, q, now, now)

    async def read(self, points: Sequence[TagDef]) -> list[Sample]:
        if not self._connected or self._target is None:
            return self.all_bad(points)
        plan = self.plan(points)
        out: list[Sample | None] = [None] * len(points)
        for i in plan.invalid:
            out[i] = Sample.bad(Quality.BAD_CONFIG)
        try:
            for g in plan.gets:
                await self._get(points, g.indices, out)
            for b in plan.bulks:
                await self._bulk(points, b, out)
        except AuthError as exc:
            self.last_error = exc
            self._connected = False  # connect() again re-reads the keys from the environment
        except CommError as exc:
            self.last_error = exc
        bad = Sample.bad(Quality.BAD_COMM)
        return [s if s is not None else bad for s in out]

    async def _get(self, points: Sequence[TagDef], indices: list[int], out: list[Sample | None]) -> None:
        self.requests += 1
        try:
            ind, status, index, vbs = await self._request("get", [self._varbind(points[i].address) for i in indices])
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a garbled answer pysnmp could not take apart raises anything: a CommError
            raise CommError(f"{self.name}: GET {self.host}:{self.port}: {describe(exc)}") from None
        if ind:
            err = self._indication(ind, "GET")
            if isinstance(err, (CommError, AuthError)):
                raise err
            self.last_error = err
            for i in indices:
                out[i] = Sample.bad(Quality.BAD_DEVICE)
            return
        now = time.time_ns()
        if status:
            self.last_error = DeviceError(f"{self.name}: GET: error-status {_status(status)} at {int(index)}")
            for i in indices:
                out[i] = Sample.bad(Quality.BAD_DEVICE)
            return
        if len(vbs) != len(indices):
            raise CommError(f"{self.name}: GET: {len(vbs)} varbinds for {len(indices)} requested")
        for i, (name, value) in zip(indices, vbs, strict=True):
            if tuple(name) != _oid(points[i].address):
                out[i] = Sample.bad(Quality.BAD_DEVICE)  # the agent answered another OID
            else:
                out[i] = self._sample(points[i], value, now)

    async def _bulk(self, points: Sequence[TagDef], bulk: _Bulk, out: list[Sample | None]) -> None:
        self.requests += 1
        try:
            ind, status, _index, vbs = await self._request(
                "bulk", [self._varbind(".".join(map(str, bulk.start)))], bulk.count)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - pysnmp raises undocumented exceptions: translated to CommError here
            raise CommError(f"{self.name}: GETBULK {self.host}:{self.port}: {describe(exc)}") from None
        if ind:
            err = self._indication(ind, "GETBULK")
            if isinstance(err, (CommError, AuthError)):
                raise err
            self.last_error = err
        got: dict[tuple[int, ...], Any] = {}
        # GETBULK walks in OID order, so an instance the walk stepped over (it lies before the last OID
        # answered, or the walk reached endOfMibView) does not exist: noSuchInstance without a second
        # request (a 4-phase controller's phaseConcurrency.5..8). Only what lies beyond a short answer
        # is unknown.
        walked: tuple[int, ...] = ()
        ended = False
        if not ind and not status:
            for name, value in vbs:
                if isinstance(value, rfc1905.EndOfMibView):
                    ended = True
                else:
                    got[tuple(name)] = value
                    walked = max(walked, tuple(name))
        now = time.time_ns()
        missing: list[int] = []
        for i in bulk.indices:
            oid = _oid(points[i].address)
            value = got.get(oid)
            if value is None and (ended or oid < walked):
                value = rfc1905.noSuchInstance
            if value is None:
                missing.append(i)
            else:
                out[i] = self._sample(points[i], value, now)
        if missing:  # beyond a short answer (or an error): GET those exactly
            for start in range(0, len(missing), self.max_oids):
                await self._get(points, missing[start:start + self.max_oids], out)

    # ------------------------------------------------------------------ write
    def _encode(self, point: TagDef, value: Value) -> Any:
        if point.dtype == "string":
            return rfc1902.OctetString(str(value).encode("utf-8"))
        number = raw_number(point, value)
        if point.dtype == "bool":
            return rfc1902.Integer32(1 if number else 2)
        if not number.is_integer():
            number = round(number)
        if not -(2**31) <= number < 2**31:
            raise WriteNotAllowed(f"{point.name}: {value!r} does not fit an INTEGER")
        return rfc1902.Integer32(int(number))

    async def write(self, point: TagDef, value: Value, *, tolerance: float | None = None) -> Sample:
        """SET one declared-writable OID and read it back. Only the fail-safe command gate may call this."""
        self.check_writable(point)
        if point.address.strip(".") not in SET_ALLOW_LIST:
            # defence in depth: even a tag wrongly declared rw in tags.yaml cannot reach a signal head,
            # a channel, a phase timing or the start-up flash through this driver
            raise WriteNotAllowed(f"{point.name}: SET of {point.address} is outside the SNMP allow-list "
                                  f"({', '.join(sorted(SET_ALLOW_LIST))})")
        encoded = self._encode(point, value)
        if not self._connected or self._target is None:
            raise self.fail(CommError(f"{self.name}: not connected"))
        self.requests += 1
        try:
            ind, status, _index, _vbs = await self._request(
                "set", [(rfc1902.ObjectName(point.address.strip(".")), encoded)])
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - pysnmp raises undocumented exceptions: translated to DriverError at the boundary
            raise self.fail(CommError(f"{self.name}: SET {point.name}: {describe(exc)}")) from None
        if ind:
            raise self.fail(self._indication(ind, f"SET {point.name}"))
        if status:
            raise self.fail(DeviceError(f"{point.name}: the agent refused the SET ({_status(status)})"))
        out: list[Sample | None] = [None]
        try:
            await self._get([point], [0], out)
        except DriverError as exc:
            raise self.fail(CommError(f"{point.name}: SET accepted, but the read-back failed: {exc}")) from None
        if out[0] is None:  # _get answers every index it is given; say so loudly if that ever changes
            raise self.fail(DeviceError(f"{point.name}: SET accepted, but the read-back gave no value"))
        return self.confirm(point, value, out[0], tolerance)


__all__ = ["SnmpDriver", "SnmpPlan", "plan_snmp", "shared_engine"]
