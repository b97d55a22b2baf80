"""SNMPv3 requests with pysnmp 7.1.30 (the SNMP driver's v3 path), same answers and errors as
``drivers.snmp_puresnmp`` (its v2c path; drivers.snmp says why two libraries)::

    SnmpDriver ──► PySnmpSession.get / bulk / set ──► pysnmp command generators, pre-built
                         (async, in the driver's loop)       numeric varbinds (hlapi's get_cmd would
                                                             resolve every OID against the MIBs)
                     ◄── [Varbind] or CommError / AuthError / ErrorStatus (drivers.snmp_types)

Why pysnmp for v3: it keeps the agent's engine boots/time and the localised keys in one process-wide
``SnmpEngine``, so a v3 GET is one round trip and no key hashing. The session also speaks v2c (tests
compare both paths on the same agent).

One ``SnmpEngine`` per DriverContext (``"snmp:engine"``), created only when a v3 device connects.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Literal

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

from drivers.base import DriverContext, describe
from drivers.snmp_types import ErrorStatus, Target, Varbind
from scada.errors import AuthError, CommError, DeviceError, DriverError

#: the connection's auth_protocol / priv_protocol names → pysnmp's protocols
AUTH_PROTOCOLS = {"sha": usmHMACSHAAuthProtocol, "sha256": usmHMAC192SHA256AuthProtocol, "md5": usmHMACMD5AuthProtocol}
PRIV_PROTOCOLS = {"aes": usmAesCfb128Protocol, "aes128": usmAesCfb128Protocol, "aes256": usmAesCfb256Protocol,
                  "des": usmDESPrivProtocol}
_AUTH_ERRORS = (errind.WrongDigest, errind.UnknownUserName, errind.UnknownSecurityName,
                errind.UnsupportedSecurityLevel, errind.DecryptionError, errind.AuthenticationError,
                errind.AuthenticationFailure, errind.NoAuthentication, errind.NoEncryption,
                errind.UnsupportedAuthProtocol, errind.UnsupportedPrivProtocol)
_COMM_ERRORS = (errind.RequestTimedOut, errind.DeserializationError, errind.EmptyResponse,
                errind.DataMismatch, errind.SerializationError)


def shared_pysnmp_engine(context: DriverContext) -> SnmpEngine:
    """The one SnmpEngine of ``context`` (created on first use, closed with the context)."""
    return context.shared("snmp:engine", SnmpEngine, lambda eng: eng.close_dispatcher())


def _status(status: Any) -> str:
    """Readable SNMP error-status (pysnmp gives a named Integer, or a plain int)."""
    names = getattr(status, "namedValues", None)
    try:
        return str(names.getName(int(status))) if names is not None else str(int(status))
    except Exception:  # noqa: BLE001 - pysnmp/pyasn1 raise their own errors for an unnamed code: show it raw
        return str(status)


def _varbind(name: Any, value: Any) -> Varbind:
    oid = tuple(name)
    if isinstance(value, rfc1905.EndOfMibView):
        return Varbind(oid, "end", None)
    if isinstance(value, rfc1905.NoSuchObject | rfc1905.NoSuchInstance):
        return Varbind(oid, "absent", None)
    if isinstance(value, rfc1902.IpAddress | univ.ObjectIdentifier):
        return Varbind(oid, "text", value.prettyPrint())
    if isinstance(value, univ.OctetString):
        return Varbind(oid, "bytes", bytes(value.asOctets()))
    if isinstance(value, univ.Integer):  # Integer32, Counter32/64, Gauge32, TimeTicks, Unsigned32
        return Varbind(oid, "int", int(value))
    return Varbind(oid, "other", value.prettyPrint())


class PySnmpSession:
    """GET / GETBULK / SET to one Target (v2c community, or v3 user, keys, contextName) through the shared
    SnmpEngine."""

    def __init__(self, name: str, target: Target, engine: SnmpEngine) -> None:
        self.name = name
        self.target = target
        self.engine = engine
        self._addr: Any = None
        self._ctx = ContextData(contextName=target.context)
        self._varbinds: dict[str, tuple[Any, Any]] = {}  # address → (ObjectName, Null) built once

    async def open(self) -> None:
        t = self.target
        try:
            udp = await UdpTransportTarget.create((t.host, t.port), timeout=t.timeout_s, retries=0)
        except Exception as exc:  # noqa: BLE001 - pysnmp raises undocumented exceptions: translated here
            raise CommError(f"{self.name}: {t.host}:{t.port}: {describe(exc)}") from None
        who: Any
        if t.version == "v2c":  # the city's v2c controllers: the configuration chooses v2c per device
            who = CommunityData(t.community, mpModel=1)  # noqa: S508
        else:
            who = UsmUserData(t.user, t.auth_key, t.priv_key, authProtocol=AUTH_PROTOCOLS[t.auth_protocol],
                              privProtocol=PRIV_PROTOCOLS[t.priv_protocol])
        self._addr, _params = LCD.configure(self.engine, who, udp, self._ctx.contextName)

    async def get(self, oids: Sequence[str]) -> list[Varbind]:
        return await self._request("GET", [self._null(o) for o in oids])

    async def bulk(self, start: str, repetitions: int) -> list[Varbind]:
        return await self._request("GETBULK", [self._null(start)], repetitions)

    async def set(self, oid: str, kind: Literal["i", "s"], value: str) -> None:
        encoded = rfc1902.Integer32(int(value)) if kind == "i" else rfc1902.OctetString(value.encode("utf-8"))
        await self._request("SET", [(rfc1902.ObjectName(oid.strip(".")), encoded)])

    def _null(self, address: str) -> tuple[Any, Any]:
        vb = self._varbinds.get(address)
        if vb is None:
            vb = self._varbinds[address] = (rfc1902.ObjectName(address.strip(".")), univ.Null(""))
        return vb

    async def _request(self, what: str, varbinds: list[tuple[Any, Any]], repetitions: int = 0) -> list[Varbind]:
        future: asyncio.Future[tuple[Any, Any, Any, Any]] = asyncio.get_running_loop().create_future()

        def done(_engine: Any, _handle: Any, ind: Any, status: Any, index: Any, vbs: Any, _ctx: Any) -> None:
            if not future.done():
                future.set_result((ind, status, index, vbs))

        ctx = self._ctx
        try:
            if what == "GET":
                cmdgen.GetCommandGenerator().send_varbinds(self.engine, self._addr, ctx.contextEngineId,
                                                            ctx.contextName, varbinds, done)
            elif what == "GETBULK":
                cmdgen.BulkCommandGenerator().send_varbinds(self.engine, self._addr, ctx.contextEngineId,
                                                             ctx.contextName, 0, repetitions, varbinds, done)
            else:
                cmdgen.SetCommandGenerator().send_varbinds(self.engine, self._addr, ctx.contextEngineId,
                                                            ctx.contextName, varbinds, done)
            ind, status, index, vbs = await future
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a garbled answer pysnmp could not take apart raises anything
            raise CommError(f"{self.name}: {what} {self.target.host}:{self.target.port}: {describe(exc)}") from None
        if ind:
            raise self._indication(ind, what)
        if status:
            raise ErrorStatus(f"{self.name}: {what}: error-status {_status(status)} at {int(index)}", _status(status))
        return [_varbind(name, value) for name, value in vbs]

    def _indication(self, ind: Any, what: str) -> DriverError:
        t = self.target
        text = f"{self.name}: {what} {t.host}:{t.port}: {ind}"
        if isinstance(ind, _AUTH_ERRORS):
            return AuthError(text + f" (SNMPv3 user {t.user!r} refused: check the auth/priv keys)")
        if isinstance(ind, _COMM_ERRORS):
            return CommError(text)
        lowered = str(ind).lower()
        if "timeout" in lowered or "no snmp response" in lowered:
            return CommError(text)
        if "digest" in lowered or "authentic" in lowered or "usm" in lowered or "decrypt" in lowered:
            return AuthError(text + f" (SNMPv3 user {t.user!r} refused: check the auth/priv keys)")
        return DeviceError(text)


__all__ = ["AUTH_PROTOCOLS", "PRIV_PROTOCOLS", "PySnmpSession", "shared_pysnmp_engine"]
