"""Sparkplug B payloads ↔ our tags' columns (the codec is generated from the specification's sparkplug_b.proto).

A metric per tag. In a birth (NBIRTH/DBIRTH) every metric carries its name, alias, datatype and value; in
DDATA only alias, value and properties (report by exception)::

    Metric ─ name "dijon/lighting/C001/mode"   (births only: the tag's name, the same on edge and server)
           ─ alias 17                          (the tag's position in the edge's tag list: unique per node)
           ─ datatype                          bool → Boolean, int → Int64, enum → Int32, float → Double,
                                               string → String
           ─ timestamp                         the source timestamp (ms since the epoch, UTC)
           ─ value / is_null                   is_null: a bad sample with no value (the last one stays shown)
           ─ is_historical                     a replayed value from the edge's store-and-forward
           ─ properties  Quality (Int32)       OPC DA quality codes, as Ignition and Tahu's tools read them:
                                               192 good, 64 uncertain, 24 bad_comm, 12 bad_device, 4 bad_config
                         engUnit (String)      births only, when the tag has units

Node metrics: ``bdSeq`` (Int64, NBIRTH and the NDEATH will), ``Node Control/Rebirth`` (Boolean, NBIRTH
and a host's NCMD), and ours, declared in the NBIRTH (docs/sparkplug.md has the table)::

    Config/Fingerprint (String)        NBIRTH: scada.config.partitions.partition_fingerprint of the edge's tags.yaml
    Node Control/Reload Configuration  NCMD (Boolean true + Config/Fingerprint: what the host runs): re-read tags.yaml
    Host/Epoch (Int64)                 NCMD (the active host announces it) and every DCMD: a fencing token;
                                       NBIRTH: the highest the edge has obeyed (-1: none)
    Command/Id, Command/Outcome,       NDATA: a DCMD's outcome (done, rejected, failed, not_confirmed) and why
      Command/Reason (String)
    Store/Backlog, Store/Capacity      NBIRTH and NDATA: the store-and-forward's messages and its bound (Int64)
    Store/Dropped (Int64)              NBIRTH: messages the store dropped (oldest first) since the last NBIRTH

A DCMD (host → edge) names its metric (the tag's name; aliases are the edge's), with its datatype and value,
beside ``Host/Epoch`` and ``Command/Id`` (and ``Command/Tolerance``, Double, when the write has one).
Timestamps lose their sub-millisecond part on the wire (Sparkplug's unit).

Everything here is pure (bytes in, columns out): the edge node and the host application do the I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from drivers.sparkplug import sparkplug_b_pb2 as pb
from scada.config.model import TagDef
from scada.quality import Quality
from scada.tagdb import F64, I64, U8, Readings

BOOLEAN, INT32, INT64, DOUBLE, STRING = pb.Boolean, pb.Int32, pb.Int64, pb.Double, pb.String
DATATYPES: dict[str, int] = {"bool": BOOLEAN, "int": INT64, "enum": INT32, "float": DOUBLE, "string": STRING}

#: our qualities → OPC DA quality codes (the Sparkplug community's "Quality" property), and back
QUALITY_CODES: dict[Quality, int] = {Quality.GOOD: 192, Quality.UNCERTAIN: 64, Quality.BAD_COMM: 24,
                                     Quality.BAD_DEVICE: 12, Quality.BAD_CONFIG: 4}
_FROM_CODE: dict[int, Quality] = {v: k for k, v in QUALITY_CODES.items()}
QUALITY_PROPERTY, UNIT_PROPERTY = "Quality", "engUnit"
BD_SEQ, REBIRTH = "bdSeq", "Node Control/Rebirth"
FINGERPRINT, RELOAD = "Config/Fingerprint", "Node Control/Reload Configuration"
EPOCH = "Host/Epoch"
COMMAND_ID, COMMAND_OUTCOME, COMMAND_REASON, COMMAND_TOLERANCE = ("Command/Id", "Command/Outcome", "Command/Reason",
                                                                  "Command/Tolerance")
BACKLOG, CAPACITY, DROPPED = "Store/Backlog", "Store/Capacity", "Store/Dropped"
#: metrics that are the protocol's, never a tag's (skipped when a payload is read as tag columns)
CONTROL = frozenset({BD_SEQ, REBIRTH, FINGERPRINT, RELOAD, EPOCH, COMMAND_ID, COMMAND_OUTCOME, COMMAND_REASON,
                     COMMAND_TOLERANCE, BACKLOG, CAPACITY, DROPPED})

_U32, _U64 = 1 << 32, 1 << 64


def quality_of(code: int) -> Quality:
    """An OPC DA quality code → ours: the exact codes above, else by its class (bits 6-7: good/uncertain/bad)."""
    q = _FROM_CODE.get(code)
    if q is not None:
        return q
    major = code & 0xC0
    return Quality.GOOD if major == 0xC0 else Quality.UNCERTAIN if major == 0x40 else Quality.BAD_DEVICE


@dataclass(frozen=True, slots=True)
class MetricDef:
    """What a birth says of one metric: the tag name, its alias, datatype and unit."""

    name: str
    alias: int
    datatype: int
    units: str = ""

    @classmethod
    def of(cls, tag: TagDef, alias: int) -> MetricDef:
        return cls(tag.name, alias, DATATYPES[tag.dtype], tag.units)


def ms(ns: int) -> int:
    return ns // 1_000_000


def _set_value(m: pb.Payload.Metric, datatype: int, value: float, text: str | None) -> None:
    """The value of one metric (``value`` NaN and no ``text``: is_null)."""
    if datatype == STRING:
        if text is None:
            m.is_null = True
        else:
            m.string_value = text
        return
    if math.isnan(value):
        m.is_null = True
    elif datatype == BOOLEAN:
        m.boolean_value = bool(value)
    elif datatype == INT64:
        m.long_value = int(value) % _U64  # two's complement in the uint64 field
    elif datatype == INT32:
        m.int_value = int(value) % _U32
    else:
        m.double_value = float(value)


def _quality(m: pb.Payload.Metric, quality: int) -> None:
    props = m.properties
    props.keys.append(QUALITY_PROPERTY)
    props.values.add(type=INT32, int_value=QUALITY_CODES[Quality(quality)])


def _add(payload: pb.Payload, d: MetricDef, value: float, quality: int, source_ns: int, text: str | None, *,
         birth: bool, historical: bool) -> None:
    m = payload.metrics.add(alias=d.alias, timestamp=ms(source_ns))
    if birth:
        m.name = d.name
        m.datatype = d.datatype
    if historical:
        m.is_historical = True
    _set_value(m, d.datatype, value, text)
    _quality(m, quality)
    if birth and d.units:
        props = m.properties
        props.keys.append(UNIT_PROPERTY)
        props.values.add(type=STRING, string_value=d.units)


def build_metrics(defs: Sequence[MetricDef], values: F64, qualities: U8, source_ns: I64, texts: dict[int, str],
                  *, timestamp_ns: int, seq: int | None = None, birth: bool = False, historical: bool = False,
                  node_metrics: Iterable[pb.Payload.Metric] = ()) -> pb.Payload:
    """A DBIRTH (``birth``) or DDATA payload: metric ``k`` is ``defs[k]`` with the ``k``-th value, quality and
    source timestamp (``texts[k]``: a string tag's text). ``seq`` None: numbered when it is sent (``.seq = n``)."""
    payload = pb.Payload(timestamp=ms(timestamp_ns))
    if seq is not None:
        payload.seq = seq
    for m in node_metrics:
        payload.metrics.append(m)
    for k, (d, v, q, src) in enumerate(zip(defs, values.tolist(), qualities.tolist(), source_ns.tolist(),
                                           strict=True)):
        _add(payload, d, v, q, src, texts.get(k), birth=birth, historical=historical)
    return payload


def node_metric_bd_seq(bd_seq: int, timestamp_ns: int) -> pb.Payload.Metric:
    return pb.Payload.Metric(name=BD_SEQ, timestamp=ms(timestamp_ns), datatype=INT64, long_value=bd_seq)


def node_metric_rebirth(timestamp_ns: int, value: bool = False) -> pb.Payload.Metric:
    return pb.Payload.Metric(name=REBIRTH, timestamp=ms(timestamp_ns), datatype=BOOLEAN, boolean_value=value)


def node_metric(name: str, value: bool | int | float | str, timestamp_ns: int) -> pb.Payload.Metric:
    """A named node metric: Boolean, Int64, Double or String by the Python type of ``value``."""
    m = pb.Payload.Metric(name=name, timestamp=ms(timestamp_ns))
    if isinstance(value, bool):
        m.datatype, m.boolean_value = BOOLEAN, value
    elif isinstance(value, int):
        m.datatype, m.long_value = INT64, value % _U64
    elif isinstance(value, float):
        m.datatype, m.double_value = DOUBLE, value
    else:
        m.datatype, m.string_value = STRING, value
    return m


def named(payload: pb.Payload) -> dict[str, bool | int | float | str | None]:
    """The payload's named metrics → their values (the control metrics of a node message or a command)."""
    out: dict[str, bool | int | float | str | None] = {}
    for m in payload.metrics:
        if not m.name:
            continue
        kind = None if m.is_null else m.WhichOneof("value")
        if kind == "long_value":
            v = m.long_value
            out[m.name] = v - _U64 if v >= _U64 // 2 else v
        elif kind in ("boolean_value", "string_value", "double_value", "float_value", "int_value"):
            out[m.name] = getattr(m, kind)
        else:
            out[m.name] = None
    return out


def command_request(tag: str, datatype: int, value: float, text: str | None, *, epoch: int, command_id: str,
                    tolerance: float | None, timestamp_ns: int) -> bytes:
    """A DCMD writing ``value`` (``text`` for a string tag) to the tag named ``tag``, fenced by ``epoch``."""
    payload = pb.Payload(timestamp=ms(timestamp_ns))
    m = payload.metrics.add(name=tag, timestamp=ms(timestamp_ns), datatype=datatype)
    _set_value(m, datatype, value, text)
    payload.metrics.extend([node_metric(EPOCH, epoch, timestamp_ns), node_metric(COMMAND_ID, command_id, timestamp_ns)])
    if tolerance is not None:
        payload.metrics.append(node_metric(COMMAND_TOLERANCE, float(tolerance), timestamp_ns))
    return payload.SerializeToString()


def command_writes(payload: pb.Payload) -> list[tuple[str, int, float, str | None]]:
    """The tag metrics of a DCMD: (name, datatype, value, text); NaN and None for a null."""
    out = []
    for m in payload.metrics:
        if m.name in CONTROL:
            continue
        value, text = _value(m, m.datatype)
        out.append((m.name, int(m.datatype), value, text))
    return out


def encode_node(metrics: Iterable[pb.Payload.Metric], *, timestamp_ns: int, seq: int | None) -> bytes:
    """An NBIRTH, NDEATH (``seq`` None: a death has none), NDATA or NCMD payload of node metrics."""
    payload = pb.Payload(timestamp=ms(timestamp_ns))
    if seq is not None:
        payload.seq = seq
    payload.metrics.extend(metrics)
    return payload.SerializeToString()


def rebirth_request(timestamp_ns: int) -> bytes:
    """What a host sends as NCMD to ask a node for a rebirth."""
    return encode_node([node_metric_rebirth(timestamp_ns, True)], timestamp_ns=timestamp_ns, seq=None)


def decode(raw: bytes) -> pb.Payload:
    payload = pb.Payload()
    payload.ParseFromString(raw)
    return payload


def set_historical(raw: bytes, seq: int) -> bytes:
    """A stored DDATA, numbered ``seq`` and its metrics marked is_historical (the edge's replay)."""
    payload = decode(raw)
    payload.seq = seq
    for m in payload.metrics:
        m.is_historical = True
    return payload.SerializeToString()


def for_store(payload: pb.Payload, names: Sequence[str]) -> bytes:
    """A DDATA as the store keeps it: each metric named after its tag (``names[alias]``), aliases kept."""
    for m in payload.metrics:
        if m.HasField("alias") and not m.name:
            m.name = names[m.alias]
    return payload.SerializeToString()


def replayed(raw: bytes, seq: int, alias_of: Mapping[str, int]) -> tuple[bytes, int]:
    """A stored DDATA as sent on replay: numbered ``seq``, marked is_historical, each metric by its tag's alias in
    the configuration now running (by name, no name on the wire); a metric whose tag is gone is left out.
    Returns (payload, metrics left out)."""
    stored = decode(raw)
    payload = pb.Payload(timestamp=stored.timestamp, seq=seq)
    for m in stored.metrics:
        alias = alias_of.get(m.name) if m.name else (m.alias if m.HasField("alias") else None)
        if alias is None:
            continue
        out = payload.metrics.add()
        out.CopyFrom(m)
        out.alias = alias
        out.ClearField("name")
        out.is_historical = True
    return payload.SerializeToString(), len(stored.metrics) - len(payload.metrics)


def bd_seq_of(payload: pb.Payload) -> int | None:
    for m in payload.metrics:
        if m.name == BD_SEQ:
            return int(m.long_value)
    return None


def asks_rebirth(payload: pb.Payload) -> bool:
    return any(m.name == REBIRTH and m.boolean_value for m in payload.metrics)


def _value(m: pb.Payload.Metric, datatype: int) -> tuple[float, str | None]:
    if m.is_null:
        return math.nan, None
    if datatype == DOUBLE and m.HasField("double_value"):  # the common case first
        return m.double_value, None
    kind = m.WhichOneof("value")
    if kind is None:
        return math.nan, None
    if kind == "string_value":
        return math.nan, m.string_value
    if kind == "boolean_value":
        return float(m.boolean_value), None
    if kind == "long_value":
        v = m.long_value
        return float(v - _U64 if datatype != pb.UInt64 and v >= _U64 // 2 else v), None
    if kind == "int_value":
        v = m.int_value
        return float(v - _U32 if datatype in (pb.Int8, pb.Int16, pb.Int32) and v >= _U32 // 2 else v), None
    if kind == "float_value":
        return float(m.float_value), None
    if kind == "double_value":
        return float(m.double_value), None
    return math.nan, None  # bytes, datasets, templates: not a tag of ours


def _properties(m: pb.Payload.Metric) -> tuple[Quality, str]:
    quality, units = Quality.GOOD, ""
    if m.HasField("properties"):
        for key, prop in zip(m.properties.keys, m.properties.values, strict=False):
            if key == QUALITY_PROPERTY:
                quality = quality_of(int(prop.int_value))
            elif key == UNIT_PROPERTY:
                units = prop.string_value
    return quality, units


@dataclass(slots=True)
class Decoded:
    """The metrics of one payload as columns: the host resolves ``aliases``/``names`` to its tag indices."""

    aliases: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # "" where the metric had only an alias
    datatypes: list[int] = field(default_factory=list)
    units: list[str] = field(default_factory=list)
    historical: list[bool] = field(default_factory=list)
    readings: Readings = field(default_factory=lambda: Readings(0))


def decode_metrics(payload: pb.Payload, datatypes: dict[int, int] | None = None, receive_ns: int = 0) -> Decoded:
    """Every metric of a birth or data payload (node control metrics excepted) → columns. ``datatypes``
    (alias → datatype, from the birth) types DDATA metrics, which carry none."""
    out = Decoded()
    known = datatypes or {}
    values: list[float] = []
    qualities: list[int] = []
    stamps: list[int] = []
    texts: dict[int, str] = {}
    k = 0
    for m in payload.metrics:  # per-metric Python work kept to the minimum: this is the host's cost per value
        name = m.name
        if name and name in CONTROL:
            continue
        alias = m.alias if m.HasField("alias") else -1
        datatype = m.datatype if m.HasField("datatype") else known.get(alias, pb.Unknown)
        value, text = _value(m, datatype)
        if text is not None:
            texts[k] = text
        props = m.properties
        keys = props.keys
        if len(keys) == 1 and keys[0] == QUALITY_PROPERTY:  # DDATA: the quality alone
            quality, units = quality_of(props.values[0].int_value), ""
        else:
            quality, units = _properties(m)
        out.aliases.append(alias)
        out.names.append(name)
        out.datatypes.append(datatype)
        out.units.append(units)
        out.historical.append(m.is_historical)
        values.append(value)
        qualities.append(quality)
        stamps.append(m.timestamp * 1_000_000 if m.HasField("timestamp") else receive_ns)
        k += 1
    r = Readings(k)
    if k:
        r.values[:] = values
        r.qualities[:] = qualities
        r.source_ns[:] = stamps
        r.receive_ns[:] = receive_ns
    r.texts = texts
    out.readings = r
    return out


__all__ = [
    "DATATYPES",
    "QUALITY_CODES",
    "Decoded",
    "MetricDef",
    "asks_rebirth",
    "bd_seq_of",
    "build_metrics",
    "command_request",
    "command_writes",
    "decode",
    "decode_metrics",
    "encode_node",
    "for_store",
    "named",
    "node_metric",
    "node_metric_bd_seq",
    "node_metric_rebirth",
    "quality_of",
    "rebirth_request",
    "replayed",
    "set_historical",
]
