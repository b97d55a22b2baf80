"""The driver interface: what the poll scheduler and the fail-safe gate see of a field protocol.

One driver object serves one :class:`~scada.config.DeviceDef` (a TCP device, an OPC UA server, an
SNMP agent context, or a whole serial bus with its units)::

    DriverFactory(config)(device) ──► Driver
        await connect()                   open the link (socket, session, serial port, SNMP target);
                                          raises CommError / AuthError (never a library exception)
        await read(points) -> [Sample]    one Sample per point, same order. Failures come back as BAD
                                          qualities (bad_comm, bad_device, bad_config); read() never
                                          raises a DriverError and never returns None for a point
        await read_readings(points) -> Readings
                                          the same answer as numpy columns (scada.tagdb.Readings): what
                                          the poll scheduler calls. The Modbus drivers (TCP and RTU)
                                          decode straight into columns (no Sample per point) and derive
                                          read() from it; SNMP, OPC UA and serial ASCII answer per sample
                                          and take the default, which wraps read()
        await write(point, value) -> Sample
                                          write ONE value, read it back, return the read-back sample.
                                          Raises WriteNotAllowed (not declared rw, or out of range),
                                          CommError, DeviceError, AuthError, or WriteNotConfirmed when
                                          the device answered but the read-back differs. It never
                                          claims a success it did not observe.
        await aclose()                    release everything; idempotent
        connected: bool                   False until connect() succeeded, and again after a loss
        requests: int                     protocol requests sent so far (PDUs, service calls, frames)
        last_error: DriverError | None    why the last failed operation failed (for the poller's log)
        set_sink(callback)                push path for drivers that receive data unasked (OPC UA
                                          subscriptions): callback(list[(TagDef, Sample)])

**Only the fail-safe command gate (failsafe/) may call write().** Every field write in the system
goes HMI → API → gate → ``driver.write`` → read-back → journal; nothing else writes to a device.
The poll scheduler only reads.

Cancellation: the scheduler bounds a cycle with a deadline and may cancel a read() in flight. A
driver must leave itself usable (typically it drops the connection, ``connected`` becomes False, and
the next connect() starts clean).

Value conversion shared by all drivers lives here: raw device number → engineering value
(``raw * scale + offset``, typed by the tag's dtype) and back for writes. ``engineering()`` converts
one value; ``EngineeringColumns`` does the same for many points at once on numpy columns (built once
per point list, same results as ``engineering()`` for numeric raws).
"""

from __future__ import annotations

import abc
import asyncio
import logging
import math
import numbers
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, TypeVar

import numpy as np
import numpy.typing as npt

from scada.config.model import DeviceDef, TagDef
from scada.errors import AuthError, CommError, DeviceError, DriverError, WriteNotAllowed, WriteNotConfirmed
from scada.quality import Quality, Sample, Value
from scada.tagdb import Readings

log = logging.getLogger(__name__)

Sink = Callable[[list[tuple[TagDef, Sample]]], None]
T = TypeVar("T")


class DriverContext:
    """Resources shared by the drivers of one process: one SNMP request pool, one client per serial bus.

    ``shared(key, create, close)`` returns the object stored under ``key``, creating it on first use;
    ``aclose()`` closes them all (in reverse creation order).
    """

    def __init__(self) -> None:
        self._items: dict[str, Any] = {}
        self._closers: list[tuple[str, Callable[[Any], Awaitable[None] | None]]] = []

    def shared(self, key: str, create: Callable[[], T], close: Callable[[T], Awaitable[None] | None]) -> T:
        if key not in self._items:
            self._items[key] = create()
            self._closers.append((key, close))
        return self._items[key]  # type: ignore[no-any-return]

    def get(self, key: str) -> Any:
        return self._items.get(key)

    async def aclose(self) -> None:
        while self._closers:
            key, close = self._closers.pop()
            obj = self._items.pop(key, None)
            try:
                result = close(obj)
                if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                    await result
            except Exception:  # a resource's close may raise anything: closing must go on for the others (logged)
                log.exception("%s: closing shared resource failed", key)


class Driver(abc.ABC):
    """Base of every protocol driver (see the module docstring for the contract)."""

    protocol: ClassVar[str] = ""

    def __init__(self, device: DeviceDef, context: DriverContext | None = None) -> None:
        self.device = device
        self.owns_context = context is None
        self.context = context if context is not None else DriverContext()
        self.requests = 0
        self.last_error: DriverError | None = None
        self._connected = False
        self._sink: Sink | None = None

    # ------------------------------------------------------------------ contract
    @property
    def connected(self) -> bool:
        return self._connected

    def set_sink(self, sink: Sink | None) -> None:
        """Install the push callback (used by subscription drivers; others ignore it)."""
        self._sink = sink

    @abc.abstractmethod
    async def connect(self) -> None: ...

    @abc.abstractmethod
    async def read(self, points: Sequence[TagDef]) -> list[Sample]: ...

    async def read_readings(self, points: Sequence[TagDef]) -> Readings:
        """``read()`` as columns (the poll scheduler's path); drivers that decode into columns override it."""
        return Readings.from_samples(await self.read(points))

    @abc.abstractmethod
    async def write(self, point: TagDef, value: Value, *, tolerance: float | None = None) -> Sample: ...

    @abc.abstractmethod
    async def aclose(self) -> None: ...

    # ------------------------------------------------------------------ helpers
    @property
    def name(self) -> str:
        return self.device.name

    def fail(self, error: DriverError) -> DriverError:
        """Remember ``error`` as the last error and return it (``raise self.fail(CommError(...))``)."""
        self.last_error = error
        return error

    def all_bad(self, points: Sequence[TagDef], quality: Quality = Quality.BAD_COMM) -> list[Sample]:
        bad = Sample.bad(quality)
        return [bad] * len(points)

    def check_writable(self, point: TagDef) -> None:
        if point.device != self.device.name:
            raise WriteNotAllowed(f"{self.name}: tag '{point.name}' belongs to device '{point.device}'")
        if not point.writable:
            raise WriteNotAllowed(f"{point.name}: not declared writable (access {point.access!r})")

    def confirm(self, point: TagDef, requested: Value, sample: Sample, tolerance: float | None) -> Sample:
        """Raise unless the read-back ``sample`` shows ``requested``; return it otherwise."""
        if sample.quality.is_bad:
            raise self.fail(WriteNotConfirmed(
                f"{point.name}: written, but the read-back failed ({sample.quality.label})", sample))
        if not same_value(point, requested, sample.value, tolerance):
            raise self.fail(WriteNotConfirmed(
                f"{point.name}: wrote {requested!r}, device reports {sample.value!r}", sample))
        return sample


# ---------------------------------------------------------------------- value conversion
def engineering(point: TagDef, raw: object) -> tuple[Value, Quality]:
    """Raw device value → (engineering value typed by ``point.dtype``, quality). Never raises.

    Numbers are scaled (``raw * scale + offset``); NaN/inf from a device, or an enum value outside
    the tag's enum map, is bad_device; a value that does not fit the dtype (text for an int tag, a
    date, a node id or any other structure for a numeric tag) is bad_config.
    """
    dtype = point.dtype
    if type(raw) is int and point.scale == 1.0 and point.offset == 0.0:  # fast path: registers, INTEGERs
        if dtype == "int":
            return raw, Quality.GOOD
        if dtype == "enum":
            return raw, Quality.GOOD if point.enum is None or raw in point.enum else Quality.BAD_DEVICE
        if dtype == "bool":
            return raw != 0, Quality.GOOD
        if dtype == "float":
            return float(raw), Quality.GOOD
    if raw is None:
        return None, Quality.BAD_DEVICE
    if dtype == "string":
        if isinstance(raw, bytes):
            return raw.decode("utf-8", "replace"), Quality.GOOD
        return str(raw), Quality.GOOD
    if isinstance(raw, (bytes, str)):
        try:
            raw = float(raw) if "." in str(raw) else int(raw)
        except ValueError:
            return None, Quality.BAD_CONFIG
    number: float | int
    if isinstance(raw, (numbers.Integral, np.bool_)):  # int, bool, numpy integers and booleans
        number = int(raw)
    elif isinstance(raw, numbers.Real):  # float, numpy floats
        number = float(raw)
    else:  # a DateTime, NodeId, LocalizedText, StatusCode...: not a number at all
        return None, Quality.BAD_CONFIG
    if isinstance(number, float) and not math.isfinite(number):
        return None, Quality.BAD_DEVICE
    scaled: float | int = number
    if point.scale != 1.0 or point.offset != 0.0:
        scaled = number * point.scale + point.offset
    if dtype == "bool":
        return bool(scaled), Quality.GOOD
    if dtype in ("int", "enum"):
        integer = round(scaled) if isinstance(scaled, float) else int(scaled)
        if dtype == "enum" and point.enum is not None and integer not in point.enum:
            return integer, Quality.BAD_DEVICE  # a state the device type does not have: garbled answer
        return integer, Quality.GOOD
    return float(scaled), Quality.GOOD


_ENUM_SHIFT = 34  # enum membership code: position << 34 | (value + 2**33)
_ENUM_BIAS = 2**33


class EngineeringColumns:
    """``engineering()`` for a fixed list of points, on numpy columns.

    ``convert(raw, sel, out)``: ``raw[k]`` is the raw number of point ``sel[k]`` (registers, bits as
    0/1, INTEGERs, floats); writes the engineering value and quality of those points into ``out``
    (a :class:`~scada.tagdb.Readings`): NaN/inf raw → no value, bad_device; scaled by ``raw * scale +
    offset``; bool → 0/1 (non-zero is true); int/enum → rounded half to even (Python's ``round``);
    an enum value outside the tag's map → bad_device with the value kept. String points are not
    converted here (``string`` marks them: drivers convert their text with ``engineering()``).
    """

    def __init__(self, points: Sequence[TagDef]) -> None:
        n = len(points)
        self.scale = np.array([p.scale for p in points], dtype=np.float64)
        self.offset = np.array([p.offset for p in points], dtype=np.float64)
        scaled = (self.scale != 1.0) | (self.offset != 0.0)
        self.scaled: npt.NDArray[np.bool_] | None = scaled if scaled.any() else None
        dtypes = [p.dtype for p in points]
        self.string = np.array([d == "string" for d in dtypes], dtype=bool)
        is_bool = np.array([d == "bool" for d in dtypes], dtype=bool)
        is_round = np.array([d in ("int", "enum") for d in dtypes], dtype=bool)
        self.is_bool: npt.NDArray[np.bool_] | None = is_bool if is_bool.any() else None
        self.is_round: npt.NDArray[np.bool_] | None = is_round if is_round.any() else None
        enum_pos = [k for k, p in enumerate(points) if p.dtype == "enum" and p.enum is not None]
        self.is_enum: npt.NDArray[np.bool_] | None = None
        self.enum_codes = np.zeros(0, dtype=np.int64)
        if enum_pos:
            self.is_enum = np.zeros(n, dtype=bool)
            self.is_enum[enum_pos] = True
            codes = [(k << _ENUM_SHIFT) | (int(key) + _ENUM_BIAS) for k in enum_pos
                     for key in (points[k].enum or {}) if -_ENUM_BIAS < int(key) < _ENUM_BIAS]
            self.enum_codes = np.unique(np.array(codes, dtype=np.int64))

    def convert(self, raw: npt.NDArray[np.float64], sel: npt.NDArray[np.int64], out: Readings) -> None:
        if not sel.size:
            return
        bad = ~np.isfinite(raw)
        v = raw
        if self.scaled is not None:
            sc = self.scaled[sel]
            if sc.any():
                v = np.where(sc, raw * self.scale[sel] + self.offset[sel], raw)
        if self.is_bool is not None:
            b = self.is_bool[sel]
            if b.any():
                v = np.where(b, (v != 0).astype(np.float64), v)
        if self.is_round is not None:
            r = self.is_round[sel]
            if r.any():
                v = np.where(r, np.rint(v), v)
        q = np.zeros(sel.size, dtype=np.uint8)
        if bad.any():
            v = np.where(bad, np.nan, v)
            q[bad] = int(Quality.BAD_DEVICE)
        if self.is_enum is not None:
            e = self.is_enum[sel] & ~bad
            if e.any():
                ev = v[e]
                inside = np.abs(ev) < _ENUM_BIAS
                codes = (sel[e] << _ENUM_SHIFT) | (np.where(inside, ev, 0).astype(np.int64) + _ENUM_BIAS)
                if self.enum_codes.size:  # sorted codes: a binary search (np.isin sorts both sides, 10x slower)
                    at = np.minimum(np.searchsorted(self.enum_codes, codes), self.enum_codes.size - 1)
                    member = inside & (self.enum_codes[at] == codes)
                else:
                    member = np.zeros(codes.size, dtype=bool)
                qe = q[e]
                qe[~member] = int(Quality.BAD_DEVICE)
                q[e] = qe
        out.values[sel] = v
        out.qualities[sel] = q


def raw_number(point: TagDef, value: Value) -> float:
    """Engineering value → raw device number (inverse scaling); raises WriteNotAllowed on a bad value."""
    if isinstance(value, bool):
        number = float(value)
    elif isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        if point.enum is not None and value in point.enum.values():
            number = float(next(k for k, v in point.enum.items() if v == value))
        else:
            try:
                number = float(value)
            except ValueError:
                raise WriteNotAllowed(f"{point.name}: {value!r} is not a number") from None
    else:
        raise WriteNotAllowed(f"{point.name}: cannot write {value!r}")
    if not math.isfinite(number):
        raise WriteNotAllowed(f"{point.name}: cannot write {value!r}")
    if point.dtype == "enum" and point.enum is not None and int(number) not in point.enum:
        raise WriteNotAllowed(f"{point.name}: {value!r} is not one of {sorted(point.enum)}")
    if point.dtype == "bool" and number not in (0.0, 1.0):
        raise WriteNotAllowed(f"{point.name}: a bool takes 0/1, got {value!r}")
    if point.scale != 1.0 or point.offset != 0.0:
        number = (number - point.offset) / point.scale
    return number


def same_value(point: TagDef, requested: Value, got: Value, tolerance: float | None) -> bool:
    """Does the read-back ``got`` show the ``requested`` value (within the tag's resolution)?"""
    if point.dtype == "string":
        return str(requested) == str(got)
    if got is None or isinstance(got, str):
        return False
    if isinstance(requested, str):
        if point.enum is None or requested not in point.enum.values():
            return False
        requested = next(k for k, v in point.enum.items() if v == requested)
    if requested is None:
        return False
    want = float(requested)
    have = float(got)
    if tolerance is None:
        # one raw step of resolution after scaling, plus float32 rounding for float tags
        tolerance = abs(point.scale) / 2 if point.scale != 1.0 else 0.0
        if point.dtype == "float":
            tolerance += abs(want) * 1e-6 + 1e-9
    return abs(want - have) <= tolerance


def good(value: Value, quality: Quality = Quality.GOOD, source_ns: int | None = None,
         receive_ns: int | None = None) -> Sample:
    """A sample with explicit timestamps (drivers stamp one receive time per response)."""
    now = time.time_ns() if receive_ns is None else receive_ns
    return Sample(value, quality, source_ns if source_ns is not None else now, now)


def describe(exc: BaseException) -> str:
    """A short readable text for a library exception (type and message, no traceback)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def bad_from(error: DriverError) -> Quality:
    if isinstance(error, (CommError, AuthError)):
        return Quality.BAD_COMM
    if isinstance(error, DeviceError):
        return Quality.BAD_DEVICE
    return Quality.BAD_CONFIG


__all__ = [
    "Driver",
    "DriverContext",
    "DriverError",
    "EngineeringColumns",
    "Sink",
    "WriteNotConfirmed",
    "describe",
    "engineering",
    "good",
    "raw_number",
    "same_value",
]
