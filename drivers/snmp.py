"""SNMP driver: v2c and v3 authPriv, many OIDs per PDU, GETBULK for table columns.

    connection: {host, port, version: v2c | v3, community,          (v2c: the community selects the device)
                 user, context, auth_key_env, priv_key_env,         (v3: USM user + contextName)
                 auth_protocol: sha | sha256 | md5, priv_protocol: aes | aes256 | des,
                 max_oids: 24, bulk_min: 4}

This module plans the requests and turns answers into samples; a session object sends them, the same
three calls (get / bulk / set → ``drivers.snmp_types.Varbind``, or CommError / AuthError / ErrorStatus)
on one library per SNMP version (measured: BENCHMARKS.md "SNMP")::

    v2c   drivers.snmp_puresnmp.PureSnmpSession   puresnmp's codec (x690), one connected UDP socket per
                                                   device, in the driver's event loop: about half
                                                   pysnmp's CPU per request
    v3    drivers.snmp_pysnmp.PySnmpSession       pysnmp 7.1.30, one SnmpEngine per context
                                                   ("snmp:engine": engine boots/time and localised keys)

Why not net-snmp's C library (ezsnmp), tried before: in a full test run ezsnmp's bulk_get aborted the
whole process (net-snmp is not safe in a threaded process); isolated in a worker process it cost more
CPU than puresnmp in the same process (its per-varbind printing and the pipe), so it was dropped.

Each driver only holds its session (target, credentials) and read plans. The simulator's agent
(``sim.snmp_agent``) answers v2c on the same codec and v3 on pysnmp::

    points ─► plan (cached)
               ├─ columns: ≥ bulk_min instances prefix.k, prefix.k+1 ... of one table column
               │    → one GETBULK (max-repetitions = run length) from prefix.(k-1)
               └─ everything else → GET PDUs of ≤ max_oids varbinds. The cells of one table row
                  (same entry, same index: a junction's phaseStatusGroupReds/Yellows/Greens.1) are
                  never split across PDUs, so they come from one consistent snapshot. With the
                  shipped templates the poller reads a junction's status objects in one GET every 0.5 s,
                  its control objects every 1 s, and its phaseConcurrency column (one GETBULK) and the
                  plans' cycle times every 60 s (per-tag scan classes: scada.poll plans each group).

    answers: value → scaled, typed sample; noSuchObject/noSuchInstance/endOfMibView → bad_config (also
             for a column instance a GETBULK walked past: the device has no such row);
             wrong type (text for a number) → bad_device; error-status (genError ...) → bad_device
             (every varbind of that PDU); no answer (timeout, garbled datagram) → bad_comm; v3
             credentials refused → bad_comm, ``last_error`` an AuthError saying so (the poller logs
             it once).

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
from typing import Literal

from drivers.base import Driver, DriverContext, engineering, raw_number
from drivers.snmp_puresnmp import PureSnmpSession
from drivers.snmp_pysnmp import AUTH_PROTOCOLS, PRIV_PROTOCOLS, PySnmpSession, shared_pysnmp_engine
from drivers.snmp_types import ErrorStatus, Target, Varbind, parse_oid
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
            oids[i] = parse_oid(p.address)
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
        self._session: PureSnmpSession | PySnmpSession | None = None
        self._plans: dict[tuple[str, ...], SnmpPlan] = {}

    # ------------------------------------------------------------------ connection
    def _target(self) -> Target:
        conn = self.device.connection
        timeout = float(self.device.timeout_s)
        if self.version == "v2c":
            return Target(self.host, self.port, timeout, "v2c", community=str(conn.get("community", "public")))
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
        return Target(self.host, self.port, timeout, "v3", user=user, context=str(conn.get("context", "")),
                      auth_protocol=auth_name, priv_protocol=priv_name, auth_key=keys[0], priv_key=keys[1])

    async def connect(self) -> None:
        """Prepare target and credentials (UDP: nothing to open; failures show on the first read)."""
        try:
            target = self._target()
        except AuthError as exc:
            raise self.fail(exc) from None
        session: PureSnmpSession | PySnmpSession
        if target.version == "v2c":
            session = PureSnmpSession(self.name, target)
        else:
            session = PySnmpSession(self.name, target, shared_pysnmp_engine(self.context))
        try:
            await session.open()
        except CommError as exc:
            raise self.fail(exc) from None
        self._session = session
        self._connected = True

    async def aclose(self) -> None:
        self._connected = False
        session, self._session = self._session, None
        if isinstance(session, PureSnmpSession):
            await session.aclose()
        if self.owns_context:
            await self.context.aclose()

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

    def _sample(self, point: TagDef, vb: Varbind, now: int) -> Sample:
        raw: int | bool | str
        if vb.kind in ("absent", "end"):
            return Sample(None, Quality.BAD_CONFIG, now, now)
        if isinstance(vb.value, bytes):
            if point.dtype != "string":
                return Sample(None, Quality.BAD_DEVICE, now, now)  # text where a number is expected
            raw = vb.value.decode("utf-8", "replace")
        elif isinstance(vb.value, int):
            raw = vb.value
            if point.dtype == "bool":
                raw = raw == 1  # TruthValue: 1 true, 2 false (0/1 devices read the same)
        elif vb.kind == "text":  # OBJECT IDENTIFIER, IpAddress: dotted text
            raw = str(vb.value)
        else:
            return Sample(None, Quality.BAD_DEVICE, now, now)
        v, q = engineering(point, raw)
        return Sample(v, q, now, now)

    async def read(self, points: Sequence[TagDef]) -> list[Sample]:
        session = self._session
        if not self._connected or session is None:
            return self.all_bad(points)
        plan = self.plan(points)
        out: list[Sample | None] = [None] * len(points)
        for i in plan.invalid:
            out[i] = Sample.bad(Quality.BAD_CONFIG)
        try:
            for g in plan.gets:
                await self._get(session, points, g.indices, out)
            for b in plan.bulks:
                await self._bulk(session, points, b, out)
        except AuthError as exc:
            self.last_error = exc
            self._connected = False  # connect() again re-reads the keys from the environment
        except CommError as exc:
            self.last_error = exc
        bad = Sample.bad(Quality.BAD_COMM)
        return [s if s is not None else bad for s in out]

    async def _get(self, session: PureSnmpSession | PySnmpSession, points: Sequence[TagDef], indices: list[int],
                   out: list[Sample | None]) -> None:
        self.requests += 1
        try:
            vbs = await session.get([points[i].address for i in indices])
        except (CommError, AuthError):
            raise
        except DriverError as err:  # error-status for the whole PDU, or an answer the library would not take
            self.last_error = err
            for i in indices:
                out[i] = Sample.bad(Quality.BAD_DEVICE)
            return
        now = time.time_ns()
        got = {vb.oid: vb for vb in vbs}
        for i in indices:
            vb = got.get(parse_oid(points[i].address))
            if vb is None:  # the varbind an error-status named (left out), or the agent answered another OID
                self.last_error = DeviceError(f"{self.name}: GET: no value for {points[i].address} in the answer")
                out[i] = Sample.bad(Quality.BAD_DEVICE)
            else:
                out[i] = self._sample(points[i], vb, now)

    async def _bulk(self, session: PureSnmpSession | PySnmpSession, points: Sequence[TagDef], bulk: _Bulk,
                    out: list[Sample | None]) -> None:
        self.requests += 1
        vbs: list[Varbind] = []
        try:
            vbs = await session.bulk(".".join(map(str, bulk.start)), bulk.count)
        except (CommError, AuthError):
            raise
        except DriverError as err:  # error-status: ask the instances with a GET below
            self.last_error = err
        got: dict[tuple[int, ...], Varbind] = {}
        # GETBULK walks in OID order, so an instance the walk stepped over (it lies before the last OID
        # answered, or the walk reached endOfMibView) does not exist: noSuchInstance without a second
        # request (a 4-phase controller's phaseConcurrency.5..8). Only what lies beyond a short answer
        # is unknown.
        walked: tuple[int, ...] = ()
        ended = False
        for vb in vbs:
            if vb.kind == "end":
                ended = True
            else:
                got[vb.oid] = vb
                walked = max(walked, vb.oid)
        now = time.time_ns()
        missing: list[int] = []
        for i in bulk.indices:
            oid = parse_oid(points[i].address)
            value = got.get(oid)
            if value is None and (ended or oid < walked):
                value = Varbind(oid, "absent", None)
            if value is None:
                missing.append(i)
            else:
                out[i] = self._sample(points[i], value, now)
        if missing:  # beyond a short answer (or an error): GET those exactly
            for start in range(0, len(missing), self.max_oids):
                await self._get(session, points, missing[start:start + self.max_oids], out)

    # ------------------------------------------------------------------ write
    def _encode(self, point: TagDef, value: Value) -> tuple[Literal["i", "s"], str]:
        if point.dtype == "string":
            return "s", str(value)
        number = raw_number(point, value)
        if point.dtype == "bool":
            return "i", "1" if number else "2"
        if not number.is_integer():
            number = round(number)
        if not -(2**31) <= number < 2**31:
            raise WriteNotAllowed(f"{point.name}: {value!r} does not fit an INTEGER")
        return "i", str(int(number))

    async def write(self, point: TagDef, value: Value, *, tolerance: float | None = None) -> Sample:
        """SET one declared-writable OID and read it back. Only the fail-safe command gate may call this."""
        self.check_writable(point)
        if point.address.strip(".") not in SET_ALLOW_LIST:
            # defence in depth: even a tag wrongly declared rw in tags.yaml cannot reach a signal head,
            # a channel, a phase timing or the start-up flash through this driver
            raise WriteNotAllowed(f"{point.name}: SET of {point.address} is outside the SNMP allow-list "
                                  f"({', '.join(sorted(SET_ALLOW_LIST))})")
        kind, text = self._encode(point, value)
        session = self._session
        if not self._connected or session is None:
            raise self.fail(CommError(f"{self.name}: not connected"))
        self.requests += 1
        try:
            await session.set(point.address.strip("."), kind, text)
        except asyncio.CancelledError:
            raise
        except ErrorStatus as err:
            raise self.fail(DeviceError(f"{point.name}: the agent refused the SET ({err.status})")) from None
        except DriverError as err:
            raise self.fail(err) from None
        out: list[Sample | None] = [None]
        try:
            await self._get(session, [point], [0], out)
        except DriverError as exc:
            raise self.fail(CommError(f"{point.name}: SET accepted, but the read-back failed: {exc}")) from None
        if out[0] is None:  # _get answers every index it is given; say so loudly if that ever changes
            raise self.fail(DeviceError(f"{point.name}: SET accepted, but the read-back gave no value"))
        return self.confirm(point, value, out[0], tolerance)


__all__ = ["SET_ALLOW_LIST", "SnmpDriver", "SnmpPlan", "plan_snmp"]
