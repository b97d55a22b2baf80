"""Modbus read planning and value coding: pure functions, no sockets (tested table-driven).

Planning turns a device's tags into the fewest read requests the protocol allows::

    tags  hr:0 hr:1 hr:2     ir:0..7 (float32 at ir:2, ir:4)      ir:100 ir:101 ... ir:223
           └──── 1 request ┘  └─────── 1 request (8 regs) ──────┘  └── 1 request (124 regs) ──┘
                               gap 92 > max_gap: a new request

    per (unit, table) sort by offset; extend the current request while the next point starts at most
    ``max_gap`` registers (bits for coil/di) after the request's end and the request stays within
    125 registers (function codes 3/4) or 2000 bits (1/2). Points wider than one register
    (int32/uint32/float32: 2, float64: 4) are never split across requests.

Value coding (``decode_registers`` / ``encode_registers``)::

    float32 123.5 = 0x42F7_0000    word_order big:    [0x42F7, 0x0000]   (most significant word first)
                                   word_order little: [0x0000, 0x42F7]
                                   byte_order little swaps the two bytes inside every register:
                                                      [0xF742, 0x0000]

Encodings: int16 uint16 int32 uint32 float32 float64 (registers) and bit (coils/discrete inputs).
A tag without ``encoding`` gets the loader's default (float → float32, int → int16, bool/enum →
uint16 on registers; bit on coil/di). Scaling (``raw * scale + offset``) is applied by the driver
(drivers.base.engineering), not here.
"""

from __future__ import annotations

import re
import struct
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from scada.config.loader import default_encoding  # one source of truth for encoding defaults
from scada.config.model import TagDef

MAX_REGISTERS = 125  # function codes 3/4: at most 125 registers per request
MAX_BITS = 2000  # function codes 1/2: at most 2000 bits per request
DEFAULT_MAX_GAP_REGISTERS = 16
DEFAULT_MAX_GAP_BITS = 128

WIDTH = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "float64": 4, "bit": 1}
_STRUCT = {"int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I", "float32": ">f", "float64": ">d"}
FUNCTION_CODE = {"coil": 1, "di": 2, "hr": 3, "ir": 4}
BIT_TABLES = frozenset({"coil", "di"})
_TABLE_ORDER = {"coil": 0, "di": 1, "hr": 2, "ir": 3}
_ADDRESS = re.compile(r"^(coil|di|hr|ir):(\d{1,5})$")


@dataclass(frozen=True, slots=True)
class PointSpec:
    """Where one point lives and how it is coded."""

    index: int  # position in the list of points handed to plan_reads
    unit: int
    table: str
    offset: int
    width: int
    encoding: str
    word_order: str = "big"
    byte_order: str = "big"

    @property
    def end(self) -> int:
        return self.offset + self.width


@dataclass(slots=True)
class ReadRequest:
    """One Modbus read: ``count`` registers/bits of ``table`` from ``start`` on ``unit``."""

    unit: int
    table: str
    start: int
    count: int
    items: list[PointSpec] = field(default_factory=list)

    @property
    def function_code(self) -> int:
        return FUNCTION_CODE[self.table]

    @property
    def bits(self) -> bool:
        return self.table in BIT_TABLES


@dataclass(slots=True)
class Plan:
    requests: list[ReadRequest]
    invalid: dict[int, str]  # point index → why it cannot be read as configured (bad_config)
    cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)  # what drivers derive from it

    @property
    def request_count(self) -> int:
        return len(self.requests)


def parse_address(address: str) -> tuple[str, int]:
    """``"hr:100"`` → ``("hr", 100)``; ValueError otherwise."""
    m = _ADDRESS.match(address.strip())
    if not m:
        raise ValueError(f"Modbus address must be coil|di|hr|ir:<offset>, got {address!r}")
    offset = int(m.group(2))
    if offset > 65535:
        raise ValueError(f"Modbus offset must be 0..65535, got {offset}")
    return m.group(1), offset


def point_spec(index: int, point: TagDef, default_unit: int = 1) -> PointSpec:
    """The coding of one tag (ValueError if it cannot be read as configured)."""
    table, offset = parse_address(point.address)
    encoding = point.encoding or default_encoding(point.dtype, table)
    if encoding not in WIDTH:
        raise ValueError(f"encoding {encoding!r} is not a Modbus encoding")
    if (table in BIT_TABLES) != (encoding == "bit"):
        raise ValueError(f"encoding {encoding!r} does not fit table {table!r}")
    width = WIDTH[encoding]
    if offset + width > 65536:
        raise ValueError(f"{point.address} + {width} registers runs past 65535")
    unit = point.unit if point.unit is not None else default_unit
    return PointSpec(index, unit, table, offset, width, encoding, point.word_order, point.byte_order)


def plan_specs(specs: Sequence[PointSpec], *, max_gap: int = DEFAULT_MAX_GAP_REGISTERS,
               max_gap_bits: int = DEFAULT_MAX_GAP_BITS, max_registers: int = MAX_REGISTERS,
               max_bits: int = MAX_BITS) -> list[ReadRequest]:
    """Merge point specs into the fewest requests (see module docstring)."""
    groups: dict[tuple[int, str], list[PointSpec]] = defaultdict(list)
    for s in specs:
        groups[(s.unit, s.table)].append(s)
    requests: list[ReadRequest] = []
    for (unit, table) in sorted(groups, key=lambda k: (k[0], _TABLE_ORDER[k[1]])):
        items = sorted(groups[(unit, table)], key=lambda s: (s.offset, s.width))
        bits = table in BIT_TABLES
        limit = max_bits if bits else max_registers
        gap = max_gap_bits if bits else max_gap
        current: ReadRequest | None = None
        for s in items:
            if current is not None:
                end = current.start + current.count
                new_end = max(end, s.end)
                if s.offset - end <= gap and new_end - current.start <= limit:
                    current.count = new_end - current.start
                    current.items.append(s)
                    continue
            current = ReadRequest(unit, table, s.offset, s.width, [s])
            requests.append(current)
    return requests


def plan_reads(points: Sequence[TagDef], *, default_unit: int = 1, max_gap: int = DEFAULT_MAX_GAP_REGISTERS,
               max_gap_bits: int = DEFAULT_MAX_GAP_BITS, max_registers: int = MAX_REGISTERS,
               max_bits: int = MAX_BITS) -> Plan:
    """Plan the reads of ``points``; points that cannot be read as configured go to ``invalid``."""
    specs: list[PointSpec] = []
    invalid: dict[int, str] = {}
    for i, p in enumerate(points):
        try:
            specs.append(point_spec(i, p, default_unit))
        except ValueError as exc:
            invalid[i] = str(exc)
    requests = plan_specs(specs, max_gap=max_gap, max_gap_bits=max_gap_bits, max_registers=max_registers,
                          max_bits=max_bits)
    return Plan(requests, invalid)


def layout_key(points: Sequence[TagDef], *, units: bool = True) -> tuple[Any, ...]:
    """What a plan of ``points`` (and what drivers derive from it: decoders, engineering columns) depends
    on, point by point: address, coding, unit, type, scaling and enum map. Two devices of one template
    give equal keys (their tags differ only by name), so they can share one plan; building the key costs
    a tuple per point against a regex parse, a spec and numpy columns per point for a plan. Without
    ``units``: the key of the layout whatever unit its points are on (see :func:`retarget`)."""
    if units:
        return tuple((p.address, p.encoding, p.word_order, p.byte_order, p.unit, p.dtype, p.scale, p.offset,
                      None if p.enum is None else tuple(p.enum.items())) for p in points)
    return tuple((p.address, p.encoding, p.word_order, p.byte_order, p.dtype, p.scale, p.offset,
                  None if p.enum is None else tuple(p.enum.items())) for p in points)


def retarget(plan: Plan, unit: int) -> Plan:
    """``plan`` (of points all on one unit) for the same layout on ``unit``: the same requests and specs
    with the unit changed. The city's cabinets are ~200 units on their gateways but 3 layouts: a plan per
    layout, retargeted per unit, instead of one per device. ``cache`` is shared: what drivers derive from
    a plan there (decoders, engineering columns) does not depend on the unit."""
    requests = [ReadRequest(unit, r.table, r.start, r.count,
                            [PointSpec(s.index, unit, s.table, s.offset, s.width, s.encoding, s.word_order,
                                       s.byte_order) for s in r.items]) for r in plan.requests]
    return Plan(requests, plan.invalid, plan.cache)


def split_request(request: ReadRequest) -> list[ReadRequest]:
    """One request per point (used when a merged read spans registers the device does not have)."""
    return [ReadRequest(request.unit, request.table, s.offset, s.width, [s]) for s in request.items]


# ---------------------------------------------------------------------- coding
def _swap(reg: int) -> int:
    return ((reg & 0xFF) << 8) | (reg >> 8)


def decode_registers(regs: Sequence[int], encoding: str, word_order: str = "big",
                     byte_order: str = "big") -> int | float:
    """Registers (16-bit ints, as on the wire) → the raw number they encode."""
    width = WIDTH[encoding]
    if len(regs) != width:
        raise ValueError(f"{encoding} needs {width} registers, got {len(regs)}")
    words = [r & 0xFFFF for r in regs]
    if byte_order == "little":
        words = [_swap(w) for w in words]
    if word_order == "little":
        words.reverse()
    data = b"".join(w.to_bytes(2, "big") for w in words)
    value: int | float = struct.unpack(_STRUCT[encoding], data)[0]
    return value


def encode_registers(value: int | float, encoding: str, word_order: str = "big", byte_order: str = "big") -> list[int]:
    """The raw number → registers; ValueError if it does not fit the encoding."""
    fmt = _STRUCT.get(encoding)
    if fmt is None:
        raise ValueError(f"cannot encode registers as {encoding!r}")
    if encoding.startswith(("int", "uint")):
        if isinstance(value, float):
            if not value.is_integer():
                value = round(value)
            value = int(value)
        lo, hi = _RANGE[encoding]
        if not lo <= value <= hi:
            raise ValueError(f"{value} does not fit {encoding} ({lo}..{hi})")
    try:
        data = struct.pack(fmt, value)
    except (struct.error, OverflowError) as exc:
        raise ValueError(f"{value!r} does not fit {encoding}: {exc}") from None
    words = [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]
    if word_order == "little":
        words.reverse()
    if byte_order == "little":
        words = [_swap(w) for w in words]
    return words


_RANGE = {"int16": (-(2**15), 2**15 - 1), "uint16": (0, 2**16 - 1), "int32": (-(2**31), 2**31 - 1),
          "uint32": (0, 2**32 - 1)}


class ColumnDecoder:
    """``decode_request`` for one request, vectorised: bits and one-register big-endian points are taken
    from the response with numpy gathers; wider or byte-swapped points go through ``decode_registers``.

    ``decode(data, raw)`` writes the raw number of every point of the request into ``raw`` (float64,
    indexed by the point's ``index``; bits as 0/1, int16 sign-extended, the same numbers as
    ``decode_request``).
    """

    __slots__ = ("bits", "count", "pos", "positions", "python", "rel", "signed", "start")

    def __init__(self, request: ReadRequest) -> None:
        self.bits = request.bits
        self.start = request.start
        self.count = request.count
        vec = [s for s in request.items if self.bits or (s.width == 1 and s.byte_order == "big")]
        self.python = [s for s in request.items if not (self.bits or (s.width == 1 and s.byte_order == "big"))]
        self.pos: npt.NDArray[np.int64] = np.array([s.index for s in vec], dtype=np.int64)
        self.rel: npt.NDArray[np.int64] = np.array([s.offset - request.start for s in vec], dtype=np.int64)
        signed = np.array([s.encoding == "int16" for s in vec], dtype=bool)
        self.signed: npt.NDArray[np.bool_] | None = signed if signed.any() else None
        self.positions: npt.NDArray[np.int64] = np.array([s.index for s in request.items], dtype=np.int64)

    def decode(self, data: Sequence[int] | Sequence[bool], raw: npt.NDArray[np.float64]) -> None:
        if len(data) < self.count:
            raise ValueError(f"short response: {len(data)} of {self.count}")
        if self.pos.size:
            words = np.asarray(data[:self.count], dtype=np.int64)[self.rel]
            if self.bits:
                raw[self.pos] = words != 0
            else:
                words &= 0xFFFF
                if self.signed is not None:
                    words -= np.where(self.signed & (words >= 0x8000), 0x10000, 0)
                raw[self.pos] = words
        for s in self.python:
            rel = s.offset - self.start
            raw[s.index] = decode_registers([int(x) for x in data[rel:rel + s.width]], s.encoding, s.word_order,
                                            s.byte_order)


def decode_request(request: ReadRequest, data: Sequence[int] | Sequence[bool]) -> list[tuple[int, int | float | bool]]:
    """The raw value of every point of ``request`` from the response payload (index, raw)."""
    out: list[tuple[int, int | float | bool]] = []
    if len(data) < request.count:
        raise ValueError(f"short response: {len(data)} of {request.count}")
    bits = request.bits
    for s in request.items:
        rel = s.offset - request.start
        if bits:
            out.append((s.index, bool(data[rel])))
        elif s.width == 1 and s.byte_order == "big":  # the common case, without struct
            v = int(data[rel]) & 0xFFFF
            out.append((s.index, v - 0x10000 if s.encoding == "int16" and v >= 0x8000 else v))
        else:
            out.append((s.index, decode_registers([int(x) for x in data[rel:rel + s.width]], s.encoding,
                                                  s.word_order, s.byte_order)))
    return out


__all__ = [
    "MAX_BITS",
    "MAX_REGISTERS",
    "ColumnDecoder",
    "Plan",
    "PointSpec",
    "ReadRequest",
    "decode_registers",
    "decode_request",
    "encode_registers",
    "layout_key",
    "parse_address",
    "plan_reads",
    "plan_specs",
    "point_spec",
    "retarget",
    "split_request",
]
