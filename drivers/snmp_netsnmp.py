"""SNMP v2c requests on net-snmp's C library (ezsnmp 2.5.0), run in a bounded thread pool.

The SNMP driver (``drivers.snmp``) plans the PDUs and turns answers into samples; this module only
sends one GET / GETBULK / SET to a v2c agent and hands back typed varbinds, or raises the project's
errors (v3 goes through ``drivers.snmp_pysnmp``, same answers and errors: why there)::

    SnmpDriver.read ──► await session.get(oids) ── engine.call ──────────► worker thread (≤ WORKERS)
        (asyncio loop,        │                                             ezsnmp Session.get
         never blocked)       │                                               net-snmp snmp_synch_response
                              ◄── [Varbind(oid, kind, value)] ◄────────────  (GIL released while it waits)
                                  or CommError / AuthError / ErrorStatus

Why threads: ezsnmp's calls are blocking (net-snmp's synchronous API: open a UDP socket, send, wait
up to the timeout, decode). It releases the GIL while it waits (measured: a 1 s timeout in a worker
leaves the loop ticking every millisecond), so a worker blocked on a dead device costs nothing but
itself. The pool is bounded (``WORKERS``) and shared by every SNMP driver of a ``DriverContext``
(``"snmp:netsnmp"``; the field-safety thread's factory has its own): a live device holds a worker
for one round trip (≈ 1 ms on loopback, tens of ms in the field), a dead one for its timeout (then
the driver stops reading it for that cycle). 113 junctions at 1 s + 269 cameras at 60 s are ≈ 230
PDUs/s, a handful of busy workers; 32 leave room for ~20 devices timing out at once at 1 s without
delaying the others.

Answers (``Varbind.kind``), from ezsnmp's printed type (OCTET STRINGs are asked in hex, ``-Ox``, so
their bytes come back exactly, quotes and non-UTF-8 included)::

    INTEGER Counter32 Gauge32 Counter64 Timeticks UInteger32   → "int",    value int
    Hex-STRING / empty string                                   → "bytes",  value bytes
    OID, IpAddress                                              → "text",   value "1.3.6..." / "a.b.c.d"
    NOSUCHOBJECT / NOSUCHINSTANCE                               → "absent", value None
    endOfMibView ("No more variables left in this MIB View")    → "end",    value None
    anything else (Opaque, BITS ...)                            → "other",  value the printed text

Errors: no answer (timeout; a garbled datagram net-snmp cannot decode is dropped, so also a timeout;
an unknown community is not answered either) → CommError; an error-status (genError, wrongValue,
notWritable ...) → ErrorStatus, a DeviceError naming the status. For a GET, net-snmp's snmpget drops
the varbind the agent named in an error-status and asks again for the others (its default "fix the
PDU"), so that varbind is simply missing from the answer. Anything else ezsnmp raises → DeviceError.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, TypeVar

import ezsnmp  # type: ignore[import-untyped]  # no type stubs: this module is the typed boundary
from ezsnmp import exceptions as ez

from drivers.base import DriverContext
from scada.errors import CommError, DeviceError, DriverError

#: Worker threads per DriverContext (module docstring: why 32).
WORKERS = 32

Kind = Literal["int", "bytes", "text", "absent", "end", "other"]
T = TypeVar("T")

_INT_TYPES = frozenset({"INTEGER", "Counter32", "Gauge32", "Counter64", "Timeticks", "UInteger32", "Unsigned32"})
_REASON = re.compile(r"Reason:\s*(\S+)")


@dataclass(frozen=True, slots=True)
class Varbind:
    """One answered variable, library-neutral (both request paths give these; kinds: module docstring)."""

    oid: tuple[int, ...]
    kind: Kind
    value: int | bytes | str | None


class ErrorStatus(DeviceError):
    """The agent answered with an SNMP error-status (``status``: its name, e.g. ``wrongValue``)."""

    def __init__(self, text: str, status: str) -> None:
        super().__init__(text)
        self.status = status


@dataclass(frozen=True, slots=True)
class Target:
    """Where and as whom: one agent context (v2c community, or v3 user + contextName)."""

    host: str
    port: int
    timeout_s: float
    version: Literal["v2c", "v3"]
    community: str = ""
    user: str = ""
    context: str = ""
    auth_protocol: str = "sha"
    priv_protocol: str = "aes"
    auth_key: str = ""
    priv_key: str = ""

    def __repr__(self) -> str:  # never show the keys
        who = f"user {self.user!r} context {self.context!r}" if self.version == "v3" else "v2c"
        return f"Target({self.host}:{self.port} {who})"


class NetSnmpEngine:
    """The bounded worker pool of one DriverContext; ``await call(fn, *args)`` runs a blocking request."""

    def __init__(self, workers: int = WORKERS) -> None:
        self.workers = workers
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="snmp")

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a worker; a pool already shut down (the context closing) is a CommError."""
        try:
            future = asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        except RuntimeError as exc:  # "cannot schedule new futures after shutdown"
            raise CommError(f"SNMP request pool: {exc}") from None
        return await future

    def close(self) -> None:
        # a worker inside net-snmp cannot be interrupted: it returns within its timeout, unawaited
        self._pool.shutdown(wait=False, cancel_futures=True)


def shared_engine(context: DriverContext) -> NetSnmpEngine:
    """The worker pool of ``context`` (created on first use, shut down with the context)."""
    return context.shared("snmp:netsnmp", NetSnmpEngine, NetSnmpEngine.close)


@lru_cache(maxsize=1 << 16)  # the same few thousand OIDs come and go every poll: parse each once
def parse_oid(text: str) -> tuple[int, ...]:
    """``"1.3.6.1.2.1.1.3.0"`` (a leading dot allowed) → (1, 3, 6, 1, 2, 1, 1, 3, 0); ValueError if not numeric."""
    return tuple(int(x) for x in text.strip(".").split("."))


def _varbind(result: Any) -> Varbind:
    """One ezsnmp Result (printed oid + index, type, value, converted_value) → Varbind."""
    index = str(result.index)
    oid = parse_oid(f"{result.oid}.{index}" if index else str(result.oid))
    kind = str(result.type)
    try:
        return _typed(oid, kind, result)
    except (TypeError, ValueError):  # a printed value ezsnmp could not convert: not what the type says
        return Varbind(oid, "other", str(result.value))


def _typed(oid: tuple[int, ...], kind: str, result: Any) -> Varbind:
    if kind in _INT_TYPES:
        return Varbind(oid, "int", int(result.converted_value))
    if kind == "Hex-STRING":
        return Varbind(oid, "bytes", bytes(result.converted_value))
    if kind == '""':  # net-snmp prints an empty OCTET STRING as "" even in hex mode
        return Varbind(oid, "bytes", b"")
    if kind in ("NOSUCHOBJECT", "NOSUCHINSTANCE"):
        return Varbind(oid, "absent", None)
    if kind.startswith("No more variables"):
        return Varbind(oid, "end", None)
    if kind == "OID":
        return Varbind(oid, "text", str(result.value).lstrip("."))
    if kind == "IpAddress":
        return Varbind(oid, "text", str(result.value))
    return Varbind(oid, "other", str(result.value))


class NetSnmpSession:
    """GET / GETBULK / SET to one v2c Target, each request a blocking ezsnmp call in ``engine``'s pool."""

    def __init__(self, name: str, target: Target, engine: NetSnmpEngine) -> None:
        if target.version != "v2c":
            raise ValueError(f"{name}: the net-snmp path reads SNMP v2c (v3 goes through drivers.snmp_pysnmp)")
        self.name = name
        self.target = target
        self.engine = engine
        self._sessions: dict[int, Any] = {}  # max-repetitions (0 for GET/SET) → ezsnmp Session

    async def get(self, oids: Sequence[str]) -> list[Varbind]:
        return await self.engine.call(self._blocking, "GET", list(oids), 0)

    async def bulk(self, start: str, repetitions: int) -> list[Varbind]:
        """GETBULK (non-repeaters 0) from ``start``: up to ``repetitions`` successors of it."""
        return await self.engine.call(self._blocking, "GETBULK", [start], repetitions)

    async def set(self, oid: str, kind: Literal["i", "s"], value: str) -> None:
        """SET one varbind (``i`` INTEGER, ``s`` OCTET STRING); ErrorStatus when the agent refuses it."""
        await self.engine.call(self._blocking, "SET", [oid, kind, value], 0)

    def _session(self, repetitions: int) -> Any:
        # ezsnmp takes GETBULK's max-repetitions per Session: one Session per count (a junction has one)
        session = self._sessions.get(repetitions)
        if session is None:
            t = self.target
            session = self._sessions[repetitions] = ezsnmp.Session(
                hostname=t.host, port_number=t.port, version=2, community=t.community, timeout=f"{t.timeout_s:g}",
                retries=0, print_oids_numerically=True, print_enums_numerically=True, print_hex_strings=True,
                set_max_repeaters_to_num=max(repetitions, 1))
        return session

    def _blocking(self, what: str, args: list[str], repetitions: int) -> list[Varbind]:
        """In a worker: one request, its answer converted (the conversion is Python: it takes the GIL)."""
        try:
            session = self._session(repetitions)
            if what == "GET":
                results = session.get(args)
            elif what == "GETBULK":
                results = session.bulk_get(args)
            else:
                session.set(args)
                return []
        except Exception as exc:  # noqa: BLE001 - ezsnmp raises its own tree or a SWIG error: translated here
            raise self._error(what, exc) from None
        return [_varbind(r) for r in results]

    def _error(self, what: str, exc: BaseException) -> DriverError:
        t = self.target
        text = " ".join(str(exc).split())
        full = f"{self.name}: {what} {t.host}:{t.port}: {text or type(exc).__name__}"
        if isinstance(exc, ez.TimeoutError | ez.ConnectionError):
            return CommError(full)
        if isinstance(exc, ez.PacketError):
            m = _REASON.search(str(exc))
            return ErrorStatus(full, m.group(1) if m else "error")
        return DeviceError(full)


__all__ = ["WORKERS", "ErrorStatus", "NetSnmpEngine", "NetSnmpSession", "Target", "Varbind", "parse_oid",
           "shared_engine"]
