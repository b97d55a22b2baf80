"""SNMPv2c requests in, responses out, on puresnmp 2.0.1's codec (x690): the simulator agent's v2c path.

::

    datagram ──► decode_request ──► None            not an SNMPv2c message (version ≠ 1, or not even a
                                     │               SEQUENCE): the agent hands it to pysnmp (v1, v3)
                                     │  V2cError     a v2c message that does not decode: dropped
                                     ▼
                 V2cRequest(community, kind, request_id, non_repeaters, max_repetitions,
                            varbinds [(ObjectIdentifier, value)])
                                     │  the agent answers from the device's table (sim.snmp_mib, neutral
                                     ▼  values; to_x690 turns them into x690 types)
    datagram ◄── encode_response(request, varbinds, error_status, error_index)

    Message  ::= SEQUENCE { version INTEGER (1), community OCTET STRING, PDU }
    PDU      ::= [0] GET | [1] GETNEXT | [3] SET | [5] GETBULK  IMPLICIT SEQUENCE {
                    request-id INTEGER, error-status | non-repeaters INTEGER,
                    error-index | max-repetitions INTEGER, SEQUENCE OF SEQUENCE { name OID, value } }
    Response ::= [2] the same, with the request's request-id                     (RFC 1901, RFC 3416)

The message is taken apart field by field with x690's ``decode`` rather than through puresnmp's PDU
classes, which are built for the manager side: decoding a PDU raises ErrorResponse as soon as its second
field is non-zero (in a GETBULK that is non-repeaters), and x690 cannot instantiate puresnmp's
BulkGetRequest while decoding (no no-argument constructor). The response is puresnmp's GetResponse in
an x690 Sequence. No BER is written here: every field is an x690 type.

Why not pysnmp for v2c: its command responder costs about five times the agent CPU per PDU (README_snmp.md),
and the simulator answers 113 junctions x 2 PDUs every second plus the cameras at full city scale.
Pollers ask the same var-binds every cycle, so the pure steps are memoised, each in a bounded LRU: a
var-bind list is decoded once per distinct encoding, an OID's arcs once per distinct OID, and an answered
value or OID instance is reused with the encoding x690 cached in it (about a third of the agent's CPU per
PDU). A decoded OID keeps its bytes: echoing a request's OIDs (GET, SET, errors) re-encodes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from puresnmp.exc import GenErr, NotWritable, WrongType, WrongValue
from puresnmp.pdu import EndOfMibView, GetResponse, NoSuchInstance, NoSuchObject, PDUContent
from puresnmp.types import Counter, TimeTicks
from puresnmp.varbind import VarBind
from x690 import decode
from x690.exc import X690Error
from x690.types import Integer, ObjectIdentifier, OctetString, X690Type
from x690.types import Sequence as X690Sequence
from x690.util import TypeClass, TypeInfo, get_value_slice

from sim.snmp_mib import Oid, Value

__all__ = ["STATUS", "V2cError", "V2cRequest", "decode_request", "encode_response", "integer_of", "oid_nodes",
           "to_x690", "x690_oid"]

Kind = Literal["GET", "GETNEXT", "SET", "GETBULK"]
X690Value = X690Type[Any]

_V2C = 1  # the version field of an SNMPv2c message (v1 is 0, v3 is 3)
_KINDS: dict[int, Kind] = {0: "GET", 1: "GETNEXT", 3: "SET", 5: "GETBULK"}  # context-specific PDU tags

#: RFC 3416 error-status codes of the statuses the agent sends, from puresnmp's own table
STATUS = {
    "genErr": GenErr.IDENTIFIER,
    "notWritable": NotWritable.IDENTIFIER,
    "wrongType": WrongType.IDENTIFIER,
    "wrongValue": WrongValue.IDENTIFIER,
}

# the three exceptions (RFC 3416) are empty; puresnmp's classes default to the value None, which x690 cannot
# encode (they are decoded, never sent, by a manager): built once with the empty content
_NO_SUCH_OBJECT = NoSuchObject(b"")
_NO_SUCH_INSTANCE = NoSuchInstance(b"")
_END_OF_MIB_VIEW = EndOfMibView(b"")

_X690: dict[str, Callable[[Any], X690Value]] = {
    "Integer32": Integer,
    "OctetString": OctetString,
    "TimeTicks": TimeTicks,
    "Counter32": Counter,
    "noSuchObject": lambda _: _NO_SUCH_OBJECT,
    "noSuchInstance": lambda _: _NO_SUCH_INSTANCE,
    "endOfMibView": lambda _: _END_OF_MIB_VIEW,
}


class V2cError(ValueError):
    """An SNMPv2c message that cannot be answered (malformed, or not a request)."""


@dataclass(frozen=True, slots=True)
class V2cRequest:
    community: OctetString  # as received: echoed in the response
    kind: Kind
    request_id: int
    non_repeaters: int  # GETBULK's; 0 for the others (their error-status field)
    max_repetitions: int  # GETBULK's; 0 for the others (their error-index field)
    varbinds: tuple[tuple[ObjectIdentifier, X690Value], ...]  # decoded instances may be shared: never mutate

    @property
    def community_bytes(self) -> bytes:
        return self.community.raw_bytes[self.community.bounds]


def _peek_v2c(data: bytes) -> int | None:
    """Where the community starts in an SNMPv2c message; None when it is not one (v1, v3, garbage)."""
    try:
        message, _ = decode(data, enforce_type=X690Sequence)  # lazy: only its type and length are read here
        version, nxt = decode(data, message.bounds.start, enforce_type=Integer)
    except (X690Error, ValueError, IndexError, TypeError, KeyError):
        return None
    return nxt if version.value == _V2C else None


def decode_request(data: bytes) -> V2cRequest | None:
    """The v2c request in a datagram; None if the datagram is not SNMPv2c; V2cError if it is but cannot be read."""
    start = _peek_v2c(data)
    if start is None:
        return None
    try:
        community, nxt = decode(data, start, enforce_type=OctetString)
        info = TypeInfo.from_bytes(data[nxt])
        kind = _KINDS.get(info.tag) if info.cls == TypeClass.CONTEXT else None
        if kind is None:
            raise V2cError(f"not a request PDU (tag {data[nxt]:#04x})")
        pdu = get_value_slice(data, nxt)
        request_id, nxt = decode(data, pdu.bounds.start, enforce_type=Integer)
        second, nxt = decode(data, nxt, enforce_type=Integer)
        third, nxt = decode(data, nxt, enforce_type=Integer)
        varbinds = _varbinds(data[nxt : get_value_slice(data, nxt).next_value_index])
        bulk = kind == "GETBULK"
        return V2cRequest(
            community, kind, request_id.value, second.value if bulk else 0, third.value if bulk else 0, varbinds
        )
    except V2cError:
        raise
    except (X690Error, ValueError, IndexError, TypeError, KeyError) as exc:  # x690 cannot take it apart
        raise V2cError(f"undecodable v2c message ({type(exc).__name__}: {exc})") from None


@lru_cache(maxsize=1024)  # a poller asks the same var-binds every cycle: decoded once (errors are not cached)
def _varbinds(encoded: bytes) -> tuple[tuple[ObjectIdentifier, X690Value], ...]:
    bindings, _ = decode(encoded, enforce_type=X690Sequence)
    varbinds: list[tuple[ObjectIdentifier, X690Value]] = []
    for vb in bindings:
        oid, value = vb.value  # each var-bind is a SEQUENCE of two
        if not isinstance(oid, ObjectIdentifier):
            raise V2cError(f"var-bind name is {type(oid).__name__}, not an OID")
        varbinds.append((oid, value))
    return tuple(varbinds)


def encode_response(
    request: V2cRequest,
    varbinds: Sequence[tuple[ObjectIdentifier, X690Value]],
    error_status: int = 0,
    error_index: int = 0,
) -> bytes:
    """The Response-PDU to ``request`` in an SNMPv2c message with the request's community."""
    pdu = GetResponse(
        PDUContent(request.request_id, [VarBind(oid, value) for oid, value in varbinds], error_status, error_index)
    )
    return bytes(X690Sequence([Integer(_V2C), request.community, pdu]))


@lru_cache(maxsize=4096)  # most answers are a few small status codes: an instance keeps its encoding
def to_x690(value: Value) -> X690Value:
    """A neutral value (sim.snmp_mib) as its x690 / puresnmp type (shared instances: never mutate one)."""
    syntax, v = value
    return _X690[syntax](v)


def integer_of(value: X690Value) -> int | None:
    """A SET value as an INTEGER (Integer32); None for any other type (Counter, Gauge, OCTET STRING ...)."""
    return value.value if type(value) is Integer else None  # Counter/Gauge/TimeTicks subclass Integer in x690


def oid_nodes(oid: ObjectIdentifier) -> Oid:
    """A decoded OID's arcs: managers ask for the same few OIDs again and again, decoded once by their bytes."""
    return _nodes(oid.raw_bytes[oid.bounds])


@lru_cache(maxsize=4096)  # bounded whatever managers ask
def _nodes(content: bytes) -> Oid:
    return ObjectIdentifier.from_bytes(content).nodes


@lru_cache(maxsize=4096)  # the served OIDs (a few dozen per device kind), and bounded whatever managers ask
def x690_oid(oid: Oid) -> ObjectIdentifier:
    return ObjectIdentifier(".".join(map(str, oid)))
