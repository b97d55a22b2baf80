"""The Modbus read planner and value coding (pure, table-driven)."""

from __future__ import annotations

import dataclasses
import math

import pytest

from drivers.base import engineering, raw_number, same_value
from drivers.modbus_plan import (
    MAX_BITS,
    MAX_REGISTERS,
    decode_registers,
    decode_request,
    encode_registers,
    layout_key,
    plan_reads,
    retarget,
    split_request,
)
from scada.config.model import TagDef
from scada.errors import WriteNotAllowed
from scada.quality import Quality


def tag(address: str, dtype: str = "int", encoding: str | None = None, unit: int | None = 1, **kw: object) -> TagDef:
    return TagDef(name=f"t/{address}", equipment="E", tag=address, template_tag=address, device="D",
                  address=address, dtype=dtype, encoding=encoding, unit=unit, **kw)  # type: ignore[arg-type]


# (name, tags, max_gap, expected [(unit, table, start, count, n_items)])
PLANS = [
    ("single register", [tag("hr:5")], 16, [(1, "hr", 5, 1, 1)]),
    ("contiguous merge", [tag("hr:0"), tag("hr:1"), tag("hr:2")], 16, [(1, "hr", 0, 3, 3)]),
    ("unsorted input", [tag("hr:2"), tag("hr:0"), tag("hr:1")], 16, [(1, "hr", 0, 3, 3)]),
    ("gap within max_gap", [tag("ir:0"), tag("ir:10")], 16, [(1, "ir", 0, 11, 2)]),
    ("gap beyond max_gap", [tag("ir:0"), tag("ir:10")], 8, [(1, "ir", 0, 1, 1), (1, "ir", 10, 1, 1)]),
    ("gap exactly max_gap", [tag("ir:0"), tag("ir:9")], 8, [(1, "ir", 0, 10, 2)]),
    ("max_gap 0 merges only adjacent", [tag("ir:0"), tag("ir:1"), tag("ir:3")], 0,
     [(1, "ir", 0, 2, 2), (1, "ir", 3, 1, 1)]),
    ("float32 width counts", [tag("ir:2", "float", "float32"), tag("ir:4", "float", "float32")], 0,
     [(1, "ir", 2, 4, 2)]),
    ("float64 width", [tag("hr:0", "float", "float64"), tag("hr:4")], 0, [(1, "hr", 0, 5, 2)]),
    ("tables are separate", [tag("hr:0"), tag("ir:0"), tag("di:0", "bool"), tag("coil:0", "bool")], 16,
     [(1, "coil", 0, 1, 1), (1, "di", 0, 1, 1), (1, "hr", 0, 1, 1), (1, "ir", 0, 1, 1)]),
    ("units are separate", [tag("ir:0", unit=1), tag("ir:1", unit=2)], 16,
     [(1, "ir", 0, 1, 1), (2, "ir", 1, 1, 1)]),
    ("overlapping points share registers", [tag("hr:0", "int", "int32"), tag("hr:1")], 0, [(1, "hr", 0, 2, 2)]),
    ("bits merge with bit gap", [tag("di:0", "bool"), tag("di:100", "bool")], 16, [(1, "di", 0, 101, 2)]),
]


@pytest.mark.parametrize(("name", "tags", "max_gap", "expected"), PLANS, ids=[p[0] for p in PLANS])
def test_plan(name: str, tags: list[TagDef], max_gap: int, expected: list[tuple[int, str, int, int, int]]) -> None:
    plan = plan_reads(tags, max_gap=max_gap)
    got = [(r.unit, r.table, r.start, r.count, len(r.items)) for r in plan.requests]
    assert got == expected
    assert not plan.invalid


def test_register_limit_125() -> None:
    tags = [tag(f"ir:{i}") for i in range(300)]
    plan = plan_reads(tags)
    assert [(r.start, r.count) for r in plan.requests] == [(0, 125), (125, 125), (250, 50)]
    assert all(r.count <= MAX_REGISTERS for r in plan.requests)


def test_wide_point_never_split_across_limit() -> None:
    tags = [tag(f"ir:{i}") for i in range(124)] + [tag("ir:124", "float", "float32")]
    plan = plan_reads(tags)
    assert [(r.start, r.count) for r in plan.requests] == [(0, 124), (124, 2)]


def test_bit_limit_2000() -> None:
    tags = [tag(f"coil:{i}", "bool") for i in range(4500)]
    plan = plan_reads(tags)
    assert [(r.start, r.count) for r in plan.requests] == [(0, 2000), (2000, 2000), (4000, 500)]
    assert all(r.count <= MAX_BITS for r in plan.requests)


def test_lighting_cabinet_layout() -> None:
    """The shipped cabinet template: 3 DI + ir:0..7 + hr:0..2 + 4 registers per luminaire."""
    lamps = 31
    tags = [tag(f"di:{i}", "bool") for i in range(3)]
    tags += [tag("ir:0"), tag("ir:1"), tag("ir:2", "float", "float32"), tag("ir:4", "float", "float32"),
             tag("ir:6"), tag("ir:7", "enum")]
    tags += [tag(f"hr:{i}") for i in range(3)]
    tags += [tag(f"ir:{100 + 4 * i + k}") for i in range(lamps) for k in range(4)]
    plan = plan_reads(tags)
    assert [(r.table, r.start, r.count) for r in plan.requests] == [
        ("di", 0, 3), ("hr", 0, 3), ("ir", 0, 8), ("ir", 100, 124)]
    assert len(tags) == 136 and plan.request_count == 4  # 34x fewer requests than one per tag


def test_invalid_points_reported_not_planned() -> None:
    tags = [tag("hr:0"), tag("xx:1"), tag("di:0", "bool", "uint16"), tag("hr:65535", "float", "float32")]
    plan = plan_reads(tags)
    assert sorted(plan.invalid) == [1, 2, 3]
    assert [(r.start, r.count) for r in plan.requests] == [(0, 1)]


def test_default_unit_when_tag_has_none() -> None:
    plan = plan_reads([tag("hr:0", unit=None)], default_unit=7)
    assert plan.requests[0].unit == 7


def test_split_request() -> None:
    plan = plan_reads([tag("ir:0"), tag("ir:5"), tag("ir:6", "float", "float32")])
    (req,) = plan.requests
    parts = split_request(req)
    assert [(r.start, r.count) for r in parts] == [(0, 1), (5, 1), (6, 2)]


# (encoding, word_order, byte_order, value, registers)
CODING = [
    ("int16", "big", "big", -2, [0xFFFE]),
    ("int16", "big", "little", -2, [0xFEFF]),
    ("uint16", "big", "big", 65535, [0xFFFF]),
    ("uint16", "big", "little", 0x1234, [0x3412]),
    ("int32", "big", "big", -1, [0xFFFF, 0xFFFF]),
    ("int32", "big", "big", 0x12345678, [0x1234, 0x5678]),
    ("int32", "little", "big", 0x12345678, [0x5678, 0x1234]),
    ("int32", "little", "little", 0x12345678, [0x7856, 0x3412]),
    ("uint32", "big", "big", 4_000_000_000, [0xEE6B, 0x2800]),
    ("uint32", "big", "little", 4_000_000_000, [0x6BEE, 0x0028]),
    ("float32", "big", "big", 123.5, [0x42F7, 0x0000]),
    ("float32", "little", "big", 123.5, [0x0000, 0x42F7]),
    ("float32", "big", "little", 123.5, [0xF742, 0x0000]),
    ("float32", "little", "little", 123.5, [0x0000, 0xF742]),
    ("float64", "big", "big", 1.5, [0x3FF8, 0, 0, 0]),
    ("float64", "little", "big", 1.5, [0, 0, 0, 0x3FF8]),
    ("float64", "big", "little", -2.0, [0x00C0, 0, 0, 0]),
]


@pytest.mark.parametrize(("encoding", "word_order", "byte_order", "value", "regs"), CODING)
def test_coding_round_trip(encoding: str, word_order: str, byte_order: str, value: float, regs: list[int]) -> None:
    assert encode_registers(value, encoding, word_order, byte_order) == regs
    assert decode_registers(regs, encoding, word_order, byte_order) == value


@pytest.mark.parametrize(("encoding", "value"), [("uint16", -1), ("uint16", 65536), ("int16", 40000),
                                                  ("int32", 2**31), ("uint32", -5)])
def test_encode_out_of_range(encoding: str, value: int) -> None:
    with pytest.raises(ValueError, match="does not fit"):
        encode_registers(value, encoding)


def test_decode_request_registers_and_bits() -> None:
    tags = [tag("ir:0"), tag("ir:2", "float", "float32"), tag("ir:4", "int", "uint16")]
    (req,) = plan_reads(tags).requests
    regs = [7, 0, *encode_registers(230.25, "float32"), 0xFFFF]
    assert decode_request(req, regs) == [(0, 7), (1, 230.25), (2, 65535)]
    (breq,) = plan_reads([tag("di:1", "bool"), tag("di:3", "bool")]).requests
    assert decode_request(breq, [True, True, False, True, True, True, True, True]) == [(0, True), (1, False)]
    with pytest.raises(ValueError, match="short"):
        decode_request(req, [1, 2])


# engineering conversion (drivers.base) with scaling
ENG = [
    (tag("ir:102", "float", "uint16", scale=0.1), 1234, 123.4, Quality.GOOD),
    (tag("ir:0", "float", "int16", scale=0.5, offset=-10.0), 40, 10.0, Quality.GOOD),
    (tag("ir:0", "int", "uint16", scale=10.0), 7, 70, Quality.GOOD),
    (tag("ir:0", "enum", enum={0: "a", 1: "b"}), 1, 1, Quality.GOOD),
    (tag("di:0", "bool"), True, True, Quality.GOOD),
    (tag("ir:0", "bool"), 0, False, Quality.GOOD),
    (tag("ir:0", "float", "float32"), math.nan, None, Quality.BAD_DEVICE),
    (tag("ir:0", "float", "float32"), math.inf, None, Quality.BAD_DEVICE),
]


@pytest.mark.parametrize(("point", "raw", "value", "quality"), ENG)
def test_engineering(point: TagDef, raw: float, value: object, quality: Quality) -> None:
    got, q = engineering(point, raw)
    assert q is quality
    if isinstance(value, float):
        assert got == pytest.approx(value)
    else:
        assert got == value and type(got) is type(value)


def test_raw_number_inverse_scaling_and_checks() -> None:
    p = tag("hr:0", "float", "uint16", scale=0.1)
    assert raw_number(p, 12.3) == pytest.approx(123)
    assert raw_number(tag("hr:0", "enum", enum={0: "local", 2: "raise"}), "raise") == 2
    with pytest.raises(WriteNotAllowed):
        raw_number(tag("hr:0", "enum", enum={0: "local", 2: "raise"}), 1)
    with pytest.raises(WriteNotAllowed):
        raw_number(tag("coil:0", "bool"), 2)
    with pytest.raises(WriteNotAllowed):
        raw_number(p, "abc")
    assert same_value(p, 12.3, 12.300000001, None)
    assert not same_value(p, 12.3, 12.5, None)
    assert same_value(tag("hr:1", "int"), 600, 599, 1)
    assert not same_value(tag("hr:1", "int"), 600, 599, None)


def test_decode_request_single_register_fast_path_matches_struct() -> None:
    tags = [tag("hr:0", "int", "int16"), tag("hr:1", "int", "uint16"), tag("hr:2", "int", "int16", byte_order="little")]
    (req,) = plan_reads(tags).requests
    regs = [0xFFFE, 0xFFFE, 0xFEFF]
    assert decode_request(req, regs) == [(0, -2), (1, 65534), (2, -2)]
    for value in (-32768, -1, 0, 1, 32767):
        (r,) = plan_reads([tag("hr:0", "int", "int16")]).requests
        assert decode_request(r, encode_registers(value, "int16")) == [(0, value)]


def test_column_decoding_matches_the_per_point_path() -> None:
    """ColumnDecoder + EngineeringColumns (the poller's path) give what decode_request + engineering give,
    over random registers, every encoding, byte/word orders, scales, enums (in and out of their map)."""
    import random

    import numpy as np

    from drivers.base import EngineeringColumns
    from drivers.modbus_plan import ColumnDecoder
    from scada.tagdb import Readings

    rng = random.Random(5)
    enum = {0: "a", 1: "b", 7: "c"}
    for _round in range(60):
        points: list[TagDef] = []
        offset = 0
        for k in range(rng.randint(1, 30)):
            enc = rng.choice(["int16", "uint16", "int32", "uint32", "float32", "float64"])
            dtype = rng.choice(["int", "float", "bool", "enum"])
            kw: dict[str, object] = {"word_order": rng.choice(["big", "little"]),
                                     "byte_order": rng.choice(["big", "big", "little"])}
            if rng.random() < 0.3:
                kw["scale"], kw["offset"] = rng.choice([0.1, 0.5, 2.0, -1.0]), rng.choice([0.0, 0.25, -3.0])
            if dtype == "enum":
                kw["enum"] = enum
            t = tag(f"hr:{offset}", dtype, enc, **kw)
            t.name = f"t/{k}"
            points.append(t)
            offset += {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "float64": 4}[enc]
            offset += rng.choice([0, 0, 1])
        bits = [tag(f"di:{i}", rng.choice(["bool", "int"]), "bit") for i in range(rng.randint(0, 5))]
        for i, b in enumerate(bits):
            b.name = f"b/{i}"
        points += bits
        plan = plan_reads(points, max_gap=4)
        eng = EngineeringColumns(points)
        raw = np.full(len(points), np.nan)
        have = np.zeros(len(points), dtype=bool)
        expected: dict[int, tuple[object, Quality]] = {}
        for req in plan.requests:
            if req.bits:
                data: list = [rng.random() < 0.5 for _ in range(req.count)]
            else:
                data = [rng.choice([0, 1, 7, 0x7FFF, 0x8000, 0xFFFF, 0x7F80, 0xFFC0, rng.randrange(65536)])
                        for _ in range(req.count)]
            ColumnDecoder(req).decode(data, raw)
            have[[s.index for s in req.items]] = True
            for index, value in decode_request(req, data):
                expected[index] = engineering(points[index], value)
        out = Readings(len(points))
        sel = np.flatnonzero(have)
        eng.convert(raw[sel], sel, out)
        got = out.samples(points)
        for index, (value, quality) in expected.items():
            s = got[index]
            assert s.quality == quality, (points[index], value, s)
            if value is None:
                assert s.value is None
            else:
                assert type(s.value) is type(value) and (s.value == value or value != value), (points[index], value, s)


def test_layout_key_is_what_a_plan_depends_on_and_retarget_moves_a_plan_to_another_unit() -> None:
    base = [tag("hr:0"), tag("ir:2", "float", "float32"), tag("ir:4", "enum", enum={0: "off", 1: "on"}),
            tag("ir:300", "float", scale=0.1)]
    renamed = [dataclasses.replace(t, name=f"other/{t.tag}", equipment="F") for t in base]
    assert layout_key(renamed) == layout_key(base)  # names and equipment do not plan
    on_7 = [dataclasses.replace(t, unit=7) for t in base]
    assert layout_key(on_7) != layout_key(base) and layout_key(on_7, units=False) == layout_key(base, units=False)
    for change in ({"address": "hr:1"}, {"encoding": "uint16"}, {"scale": 2.0}, {"offset": 1.0}, {"dtype": "int"},
                   {"enum": {0: "off", 1: "on", 2: "dim"}}, {"word_order": "little"}, {"byte_order": "little"}):
        other = [*base[:2], dataclasses.replace(base[2], **change), *base[3:]]  # type: ignore[arg-type]
        assert layout_key(other, units=False) != layout_key(base, units=False), change
    plan = plan_reads(base, max_gap=4)
    moved = retarget(plan, 7)
    assert moved.requests == plan_reads(on_7, max_gap=4).requests and moved.invalid == plan.invalid
    assert {r.unit for r in plan.requests} == {1} and moved.cache is plan.cache  # the original is left alone
