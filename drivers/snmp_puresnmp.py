"""SNMP v2c requests on puresnmp 2.0.1's codec (x690), over one connected UDP socket per device.

The SNMP driver (``drivers.snmp``) plans the PDUs and turns answers into samples; this module sends one
GET / GETBULK / SET to a v2c agent and hands back typed varbinds, or raises the project's errors, the
same answers and errors as ``drivers.snmp_pysnmp`` (which serves v3)::

    SnmpDriver.read ──► await session.get(oids) ──► puresnmp PDU + v2c message model (encode, x690;
                                                    a GET encoded once per OID list, request-id patched)
        (asyncio loop)                                  │ sendto on this device's connected UDP socket
                                                        ▼
                        [Varbind(oid, kind, value)] ◄── datagram_received → decode (x690) → the waiter
                        or CommError / ErrorStatus / DeviceError

Why puresnmp for v2c: its codec is about half pysnmp's CPU per request (BENCHMARKS.md "SNMP", same
run: a junction's 14-OID GET), and SNMP encoding is the largest cost of a city server (113 junctions
read every second). pysnmp keeps v3 (it holds the agent's engine boots/time and the localised keys in
one engine); the simulator's agent answers v2c on the same codec (sim/snmp_v2c.py). puresnmp's own UDP
sender is not used: it opens a socket per request and, with ``retries=0``, fails with UnboundLocalError
on a timeout (2.0.1); here a device keeps one connected socket, and a timeout closes it so a late answer
can never be taken for the next.

One request in flight per device (a lock): the driver reads a device's PDUs one after the other
anyway, and a write waits at most one timeout for a read in progress. A request that ends without
its answer (timeout, cancelled by the poller's cycle limit) closes the socket, so a late answer never
reaches the next request; that also makes an answer with an error-status (which puresnmp raises while
decoding, before its request-id can be compared) unambiguous: it answers the request in flight. The
socket belongs to the event loop that reads with it (the field-safety thread has its own loop).

Answers (``Varbind.kind``)::

    Integer, Counter, Gauge, TimeTicks, Counter64 → "int"     OctetString (and Opaque) → "bytes"
    ObjectIdentifier, IpAddress                   → "text"    noSuchObject/noSuchInstance → "absent"
    endOfMibView                                  → "end"     anything else → "other" (printed)

Errors: no answer within the timeout, a datagram that does not decode, or a mismatched request-id →
CommError; an error-status (genError, wrongValue, notWritable ...) → ErrorStatus naming it; a failure
to open the socket → CommError.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from typing import Any, Literal

from puresnmp import V2C
from puresnmp.exc import ErrorResponse, SnmpError
from puresnmp.pdu import (
    PDU,
    BulkGetRequest,
    EndOfMibView,
    GetRequest,
    NoSuchInstance,
    NoSuchObject,
    PDUContent,
    SetRequest,
)
from puresnmp.plugins import mpm
from puresnmp.types import IpAddress
from puresnmp.varbind import VarBind
from x690.exc import X690Error
from x690.types import Integer, Null, ObjectIdentifier, OctetString

from drivers.snmp_types import ErrorStatus, Target, Varbind, parse_oid
from scada.errors import CommError

_V2C_MPM = 1  # IANA message-processing model id of SNMPv2c
_NULL = Null()
_ids = itertools.count(1)  # request-ids, process-wide (each answer is checked against its own)
# Request-ids are kept in [RID_BASE, RID_BASE + RID_SPAN): every one BER-encodes in 4 bytes (02 04 xx xx xx
# xx, top bit clear), so a GET message encoded once per OID list is re-used with only those 4 bytes changed
RID_BASE = 0x01000000
RID_SPAN = 0x7F000000
GET_CACHE = 32  # encoded GET messages kept per session (a device's plan has a few PDUs)


#: RFC 3416 error-status names by code (the names pysnmp and the SNMP texts use)
_STATUS = ("noError", "tooBig", "noSuchName", "badValue", "readOnly", "genErr", "noAccess", "wrongType",
           "wrongLength", "wrongEncoding", "wrongValue", "noCreation", "inconsistentValue", "resourceUnavailable",
           "commitFailed", "undoFailed", "authorizationError", "notWritable", "inconsistentName")


def _status_name(exc: ErrorResponse) -> str:
    code = int(exc.error_status)
    return _STATUS[code] if 0 <= code < len(_STATUS) else str(code)


def _varbind(vb: VarBind) -> Varbind:
    oid = parse_oid(vb.oid.value)
    value: Any = vb.value
    if isinstance(value, EndOfMibView):
        return Varbind(oid, "end", None)
    if isinstance(value, NoSuchObject | NoSuchInstance):
        return Varbind(oid, "absent", None)
    if isinstance(value, Integer):  # Counter, Gauge, TimeTicks, Counter64 are Integers in x690/puresnmp
        return Varbind(oid, "int", int(value.value))
    if isinstance(value, OctetString):
        return Varbind(oid, "bytes", bytes(value.value))
    if isinstance(value, ObjectIdentifier):
        return Varbind(oid, "text", str(value.value).lstrip("."))
    if isinstance(value, IpAddress):
        return Varbind(oid, "text", str(value.value))
    return Varbind(oid, "other", str(getattr(value, "value", value)))


class _Socket(asyncio.DatagramProtocol):
    """One connected UDP socket: hands each datagram to whoever waits for the answer."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()  # created by its loop's create_datagram_endpoint
        self.transport: asyncio.DatagramTransport | None = None
        self.waiter: asyncio.Future[bytes] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram endpoint's transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(data)
        # else: a late or unsolicited datagram, dropped

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable etc.: the request fails now
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc or ConnectionError("socket closed"))


class PureSnmpSession:
    """GET / GETBULK / SET to one v2c Target over its own connected UDP socket."""

    def __init__(self, name: str, target: Target) -> None:
        if target.version != "v2c":
            raise ValueError(f"{name}: the puresnmp path reads SNMP v2c (v3 goes through drivers.snmp_pysnmp)")
        self.name = name
        self.target = target
        self._credentials = V2C(target.community)
        self._mpm = mpm.create(_V2C_MPM, self._no_discovery, {})
        self._socket: _Socket | None = None
        self._lock = asyncio.Lock()
        self._lock_loop: asyncio.AbstractEventLoop | None = None  # the loop self._lock serves
        self._oids: dict[str, ObjectIdentifier] = {}  # address → ObjectIdentifier, built once
        self._gets: dict[tuple[str, ...], tuple[bytes, int]] = {}  # OID list → (encoded GET, rid offset)

    @staticmethod
    async def _no_discovery(_data: bytes) -> bytes:  # pragma: no cover - v2c never sends on its own
        raise CommError("SNMP v2c sends no discovery")

    async def open(self) -> None:
        """Open the device's socket (UDP: nothing is sent; a dead agent shows on the first request)."""
        await self._connect()

    async def aclose(self) -> None:
        sock, self._socket = self._socket, None
        if sock is not None and sock.transport is not None:
            self._close(sock)

    @staticmethod
    def _close(sock: _Socket) -> None:
        transport, loop = sock.transport, sock.loop
        if transport is None:
            return
        if loop is asyncio.get_running_loop():
            transport.close()
        elif not loop.is_closed():  # a socket is its loop's: closed there
            loop.call_soon_threadsafe(transport.close)

    async def get(self, oids: Sequence[str]) -> list[Varbind]:
        rid = self._next_id()
        return await self._request("GET", await self._get_message(tuple(oids), rid), rid)

    async def _get_message(self, oids: tuple[str, ...], rid: int) -> bytes:
        """The encoded GET for ``oids`` with request-id ``rid``: encoded by puresnmp once per OID list, then
        only the request-id's 4 bytes are replaced (the module's RID_BASE note; a poll re-reads the same
        lists, and the encode was ~10 % of a junction read's CPU)."""
        cached = self._gets.get(oids)
        if cached is None:
            pdu = GetRequest(PDUContent(rid, [VarBind(self._oid(o), _NULL) for o in oids]))
            raw = await self._encode(pdu, rid)
            at = raw.find(b"\x02\x04" + rid.to_bytes(4, "big")) + 2
            if at < 2:  # cannot happen with an RID_BASE id; then simply not cached
                return raw
            if len(self._gets) >= GET_CACHE:
                self._gets.clear()
            cached = self._gets[oids] = (raw, at)
        raw, at = cached
        return raw[:at] + rid.to_bytes(4, "big") + raw[at + 4:]

    async def bulk(self, start: str, repetitions: int) -> list[Varbind]:
        """GETBULK (non-repeaters 0) from ``start``: up to ``repetitions`` successors of it."""
        rid = self._next_id()
        return await self._request("GETBULK", await self._encode(BulkGetRequest(rid, 0, repetitions,
                                                                               self._oid(start)), rid), rid)

    async def set(self, oid: str, kind: Literal["i", "s"], value: str) -> None:
        """SET one varbind (``i`` INTEGER, ``s`` OCTET STRING); ErrorStatus when the agent refuses it."""
        encoded: Any = Integer(int(value)) if kind == "i" else OctetString(value.encode("utf-8"))
        rid = self._next_id()
        await self._request("SET", await self._encode(SetRequest(PDUContent(rid, [VarBind(self._oid(oid),
                                                                                          encoded)])), rid), rid)

    @staticmethod
    def _next_id() -> int:
        return RID_BASE + next(_ids) % RID_SPAN  # an Integer32, never 0, always 4 bytes encoded (RID_BASE)

    async def _encode(self, pdu: PDU, rid: int) -> bytes:
        packet = await self._mpm.encode(rid, self._credentials, b"", b"", pdu)
        return bytes(packet.data)

    def _oid(self, address: str) -> ObjectIdentifier:
        oid = self._oids.get(address)
        if oid is None:
            oid = self._oids[address] = ObjectIdentifier(address.strip("."))
        return oid

    async def _connect(self) -> _Socket:
        # the socket belongs to the event loop that opened it: a driver connected in one loop and read in
        # another (the field-safety thread's) gets a socket of the reading loop, or its answers would be
        # handed to a future of another thread's loop without waking it
        loop = asyncio.get_running_loop()
        sock = self._socket
        if sock is not None and (sock.loop is not loop or sock.transport is None or sock.transport.is_closing()):
            self._close(sock)
            sock = self._socket = None
        if sock is None:
            t = self.target
            try:
                _transport, sock = await loop.create_datagram_endpoint(_Socket, remote_addr=(t.host, t.port))
            except OSError as exc:
                raise CommError(f"{self.name}: {t.host}:{t.port}: {exc}") from None
            self._socket = sock
        return sock

    async def _request(self, what: str, message: bytes, rid: int) -> list[Varbind]:
        t = self.target
        where = f"{self.name}: {what} {t.host}:{t.port}"
        loop = asyncio.get_running_loop()
        if self._lock_loop is not loop:  # an asyncio.Lock serves one loop (see _connect)
            self._lock, self._lock_loop = asyncio.Lock(), loop
        async with self._lock:
            sock = await self._connect()
            waiter: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
            sock.waiter = waiter
            try:
                if sock.transport is None:
                    raise CommError(f"{where}: socket closed")
                sock.transport.sendto(message)
                raw = await asyncio.wait_for(waiter, t.timeout_s)
            except TimeoutError:
                await self.aclose()  # a late answer must not be read as the next request's
                raise CommError(f"{where}: no answer within {t.timeout_s:g} s (timeout)") from None
            except OSError as exc:
                await self.aclose()
                raise CommError(f"{where}: {exc}") from None
            except asyncio.CancelledError:  # the poller gave up on the cycle: same reason as a timeout
                await self.aclose()
                raise
            finally:
                sock.waiter = None
            try:  # x690 decodes lazily: the PDU's fields are taken apart when read, here
                content = self._mpm.decode(raw, self._credentials).value
                rid_answered = content.request_id
                varbinds = [_varbind(vb) for vb in content.varbinds]
            except ErrorResponse as exc:  # the agent's error-status (module docstring: why it is this request's)
                status = _status_name(exc)
                raise ErrorStatus(f"{where}: error-status {status} at {exc.offending_oid.value}", status) from None
            except (SnmpError, X690Error, ValueError, IndexError, TypeError) as exc:  # x690 cannot take it apart
                await self.aclose()
                raise CommError(f"{where}: undecodable answer ({type(exc).__name__}: {exc})") from None
        if rid_answered != rid:
            raise CommError(f"{where}: answer to request-id {rid_answered}, expected {rid}")
        return varbinds

__all__ = ["PureSnmpSession"]
