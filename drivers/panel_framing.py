"""Info-panel ASCII line protocol: pure framing code (no I/O), shared by the serial driver and the simulator.

The electronic information panels hang on an RS-485-style multi-drop bus. The master (the SCADA serial
driver) sends one addressed request and waits for one reply; only the addressed panel answers.

Frame layout (every byte is printable ASCII except the final CR)::

    @01RD MSG STATUS*FE⏎            request (master → panel)
    #01RD MSG=Hi STATUS=0*A3⏎       reply   (panel → master)
    │└┤└┤ └──────┬──────┘│└┤└ end: CR (0x0D)
    │ │ │      items     │ └ cs: LRC, 2 hex digits
    │ │ └ cmd            └ '*' separates the checksum
    │ └ addr: 2 decimal digits
    └ start: '@' request, '#' reply

    frame  = start addr cmd *( SP item ) "*" cs CR
    addr   = 2 decimal digits, 01..99 (00 is reserved, never answered)
    cmd    = 2 upper-case letters: RD (read fields), WR (write fields), NK (reply only: refused)
    item   = field [ "=" value ]        field = 1..8 of A-Z 0-9
    value  = escaped text: bytes 0x21..0x7E except  @ # * = \\  appear as themselves; every other byte
             of the value's UTF-8 encoding (space, CR, LF, accents, the reserved characters) is written
             as a backslash and two upper-case hex digits: "Route barrée" → Route\\20barr\\C3\\A9e
    cs     = 2 hex digits: LRC = two's complement of the 8-bit sum of every byte after the start byte
             and before the '*' (the same rule as Modbus ASCII), so sum(body) + cs ≡ 0 (mod 256)

Because '@', '#', CR never occur inside a frame, a receiver resynchronises on the next start byte.

Commands::

    @01RD MSG STATUS BRIGHT*cs      →  #01RD MSG=<text> STATUS=<0..3> BRIGHT=<0..100>*cs
    @01WR MSG=<text>*cs             →  #01WR MSG=<text now displayed>*cs     (read-back confirmation)
    anything refused                →  #01NK <code:02d>[ <FIELD>]*cs         (see NakCode)

A RD without items reads every field. A frame with a bad checksum is not answered (on a multi-drop bus
the address itself cannot be trusted); the master times out and retries.

Fields (FIELDS)::

    MSG     string, rw   displayed message, at most MSG_MAX_CHARS characters ("" blanks the panel)
    STATUS  int, r       0 ok, 1 led_fault, 2 power_fault, 3 comm_fault
    BRIGHT  int, r       LED brightness in % (follows daylight)

Decoding byte streams: :class:`FrameDecoder` takes arbitrary chunks (a frame may be split anywhere, or
several frames may arrive in one chunk) and returns complete :class:`Frame` objects and typed errors
(:class:`GarbageBytes`, :class:`BadChecksum`, :class:`TruncatedFrame`, :class:`OverlongFrame`,
:class:`MalformedFrame`, all :class:`FrameError`) in arrival order. Errors are returned, not raised, so
a driver can count them and keep reading. State machine::

              start byte                       CR
     IDLE ───────────────▶ IN_FRAME ──────────────────▶ IDLE   (Frame or BadChecksum/MalformedFrame)
      │ ▲ other bytes:        │ start byte: TruncatedFrame, restart IN_FRAME
      │ │ GarbageBytes        │ > MAX_FRAME bytes: OverlongFrame
      └─┘ (LF ignored)        ▼
                            SKIP ── start byte ──▶ IN_FRAME      (CR ──▶ IDLE)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "ALL_FIELDS",
    "FIELDS",
    "MAX_FRAME",
    "MSG_MAX_CHARS",
    "REPLY_START",
    "REQUEST_START",
    "BadChecksum",
    "Command",
    "FieldSpec",
    "Frame",
    "FrameDecoder",
    "FrameError",
    "GarbageBytes",
    "MalformedFrame",
    "NakCode",
    "OverlongFrame",
    "TruncatedFrame",
    "checksum",
    "encode_frame",
    "escape_value",
    "nak_reply",
    "parse_frame",
    "read_reply",
    "read_request",
    "unescape_value",
    "write_reply",
    "write_request",
]

REQUEST_START = 0x40  # '@'
REPLY_START = 0x23  # '#'
CS_SEP = 0x2A  # '*'
CR = 0x0D
LF = 0x0A
MAX_FRAME = 1024  # bytes from start byte to CR inclusive; a 100-char message fits even fully escaped
MSG_MAX_CHARS = 100

_STARTS = (REQUEST_START, REPLY_START)
_RESERVED = frozenset(b"@#*=\\")
_FIELD_RE = re.compile(r"[A-Z0-9]{1,8}\Z")
_CMD_RE = re.compile(rb"[A-Z]{2}\Z")
_HEX = frozenset(b"0123456789ABCDEFabcdef")


class Command:
    """Command codes (plain strings so a device can receive, and refuse, an unknown one)."""

    READ = "RD"
    WRITE = "WR"
    NAK = "NK"


class NakCode(IntEnum):
    """Reason codes carried by an ``NK`` reply (``#01NK 03 STATUS*cs``)."""

    UNKNOWN_COMMAND = 1  # cmd is not RD or WR
    UNKNOWN_FIELD = 2  # the item names no field of FIELDS (the field is echoed)
    READ_ONLY = 3  # WR of a read-only field
    BAD_VALUE = 4  # WR value missing, too long, badly escaped or not UTF-8
    DEVICE_FAULT = 5  # the panel cannot do it now (power fault: nothing can be displayed)
    MALFORMED = 6  # checksum fine but the request makes no sense (e.g. WR without items)


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    type: type  # str or int
    writable: bool
    description: str


FIELDS: dict[str, FieldSpec] = {
    "MSG": FieldSpec("MSG", str, True, f"displayed message, ≤ {MSG_MAX_CHARS} characters"),
    "STATUS": FieldSpec("STATUS", int, False, "0 ok, 1 led_fault, 2 power_fault, 3 comm_fault"),
    "BRIGHT": FieldSpec("BRIGHT", int, False, "LED brightness %"),
}
ALL_FIELDS: tuple[str, ...] = tuple(FIELDS)


# --------------------------------------------------------------------------------------------- errors
class FrameError(Exception):
    """A byte sequence that is not a valid frame. ``raw`` holds the offending bytes."""

    def __init__(self, raw: bytes, detail: str = "") -> None:
        self.raw = bytes(raw)
        self.detail = detail
        super().__init__(f"{type(self).__name__}: {detail or raw[:40]!r}")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and isinstance(other, FrameError) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash((type(self), self.raw))


class GarbageBytes(FrameError):
    """Bytes outside any frame (before a start byte); a run of them is reported once."""


class BadChecksum(FrameError):
    """Complete frame whose LRC does not match; ``expected``/``got`` are the two checksum values."""

    def __init__(self, raw: bytes, expected: int, got: int) -> None:
        super().__init__(raw, f"checksum {got:02X}, computed {expected:02X}")
        self.expected = expected
        self.got = got


class TruncatedFrame(FrameError):
    """A frame cut short: a new start byte arrived before its CR, or flush() found it unfinished."""


class OverlongFrame(FrameError):
    """More than MAX_FRAME bytes without a CR; ``raw`` holds the first MAX_FRAME bytes."""


class MalformedFrame(FrameError):
    """Complete frame (start … CR) that does not follow the grammar (checksum checked when present)."""


# ---------------------------------------------------------------------------------------------- frame
@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame. Item values are unescaped text (None when the item has no ``=``)."""

    is_reply: bool
    addr: int
    command: str
    items: tuple[tuple[str, str | None], ...] = ()

    def value(self, name: str) -> str | None:
        for field, value in self.items:
            if field == name:
                return value
        return None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.items)

    @property
    def nak(self) -> NakCode | None:
        """The reason code of an NK reply (None for any other frame, or an unknown code)."""
        if self.command != Command.NAK or not self.items:
            return None
        try:
            return NakCode(int(self.items[0][0]))
        except ValueError:
            return None

    @property
    def nak_field(self) -> str | None:
        return self.items[1][0] if self.command == Command.NAK and len(self.items) > 1 else None

    def typed_values(self) -> dict[str, str | int]:
        """Items with a value converted with FIELDS (int fields → int). Unknown fields stay text.

        Raises ValueError when an int field does not hold an integer.
        """
        out: dict[str, str | int] = {}
        for name, value in self.items:
            if value is None:
                continue
            spec = FIELDS.get(name)
            out[name] = int(value) if spec is not None and spec.type is int else value
        return out

    def encode(self) -> bytes:
        return encode_frame(self)


# ---------------------------------------------------------------------------------------- primitives
def checksum(body: bytes) -> int:
    """LRC of the bytes between the start byte and '*': ``(-sum(body)) & 0xFF``."""
    return (-sum(body)) & 0xFF


def escape_value(text: str) -> str:
    """Text → wire form (printable ASCII without reserved characters; everything else as \\HH)."""
    out: list[str] = []
    for b in text.encode("utf-8"):
        if 0x21 <= b <= 0x7E and b not in _RESERVED:
            out.append(chr(b))
        else:
            out.append(f"\\{b:02X}")
    return "".join(out)


def unescape_value(wire: str) -> str:
    """Wire form → text. Raises ValueError on a bad escape, a raw reserved byte or invalid UTF-8."""
    buf = bytearray()
    raw = wire.encode("ascii", errors="strict")
    i = 0
    while i < len(raw):
        b = raw[i]
        if b == 0x5C:  # backslash
            pair = raw[i + 1 : i + 3]
            if len(pair) != 2 or not all(c in _HEX for c in pair):
                raise ValueError(f"bad escape at {i}: {raw[i : i + 3]!r}")
            buf.append(int(pair, 16))
            i += 3
            continue
        if not (0x21 <= b <= 0x7E) or b in _RESERVED:
            raise ValueError(f"unescaped byte 0x{b:02X} at {i}")
        buf.append(b)
        i += 1
    return buf.decode("utf-8")


def encode_frame(frame: Frame) -> bytes:
    """Frame → bytes (start … CR). Raises ValueError on a bad address, command or field name."""
    if not 0 <= frame.addr <= 99:
        raise ValueError(f"address must be 0..99, got {frame.addr}")
    if not _CMD_RE.match(frame.command.encode("ascii", errors="replace")):
        raise ValueError(f"command must be 2 upper-case letters, got {frame.command!r}")
    parts = [f"{frame.addr:02d}{frame.command}"]
    for name, value in frame.items:
        if not _FIELD_RE.match(name):
            raise ValueError(f"field name must be 1..8 of A-Z 0-9, got {name!r}")
        parts.append(name if value is None else f"{name}={escape_value(value)}")
    body = " ".join(parts).encode("ascii")
    start = REPLY_START if frame.is_reply else REQUEST_START
    raw = bytes([start]) + body + b"*%02X\r" % checksum(body)
    if len(raw) > MAX_FRAME:
        raise ValueError(f"frame is {len(raw)} bytes, more than {MAX_FRAME}")
    return raw


def parse_frame(raw: bytes) -> Frame:
    """One complete frame (start byte … CR) → Frame. Raises BadChecksum or MalformedFrame."""
    if len(raw) < 2 or raw[0] not in _STARTS or raw[-1] != CR:
        raise MalformedFrame(raw, "must run from a start byte to CR")
    if len(raw) > MAX_FRAME:
        raise OverlongFrame(raw[:MAX_FRAME], f"more than {MAX_FRAME} bytes")
    inner = raw[1:-1]
    if len(inner) < 3 or inner[-3] != CS_SEP or not all(c in _HEX for c in inner[-2:]):
        raise MalformedFrame(raw, "no '*' + 2 hex checksum before CR")
    body = inner[:-3]
    got = int(inner[-2:], 16)
    expected = checksum(body)
    if got != expected:
        raise BadChecksum(raw, expected, got)
    if any(not (0x20 <= b <= 0x7E) or b in (REQUEST_START, REPLY_START, CS_SEP) for b in body):
        raise MalformedFrame(raw, "control, non-ASCII or reserved byte in the frame body")
    head, *rest = body.split(b" ")
    if len(head) != 4 or not head[:2].isdigit() or not _CMD_RE.match(head[2:]):
        raise MalformedFrame(raw, "header must be 2 digits + 2 upper-case letters")
    items: list[tuple[str, str | None]] = []
    for token in rest:
        name_b, eq, value_b = token.partition(b"=")
        name = name_b.decode("ascii")
        if not _FIELD_RE.match(name):
            raise MalformedFrame(raw, f"bad field name {name!r}")
        if not eq:
            items.append((name, None))
            continue
        try:
            items.append((name, unescape_value(value_b.decode("ascii"))))
        except ValueError as exc:
            raise MalformedFrame(raw, f"field {name}: {exc}") from None
    return Frame(raw[0] == REPLY_START, int(head[:2]), head[2:].decode("ascii"), tuple(items))


# ------------------------------------------------------------------------------------ frame builders
def read_request(addr: int, fields: Iterable[str] = ALL_FIELDS) -> bytes:
    """``@01RD MSG STATUS BRIGHT*cs``."""
    return encode_frame(Frame(False, addr, Command.READ, tuple((f, None) for f in fields)))


def write_request(addr: int, message: str) -> bytes:
    """``@01WR MSG=<escaped message>*cs``. Raises ValueError when the message is too long."""
    if len(message) > MSG_MAX_CHARS:
        raise ValueError(f"message is {len(message)} characters, at most {MSG_MAX_CHARS}")
    return encode_frame(Frame(False, addr, Command.WRITE, (("MSG", message),)))


def read_reply(addr: int, values: Mapping[str, str | int]) -> bytes:
    """``#01RD MSG=... STATUS=0 BRIGHT=80*cs`` (values in the given order)."""
    return encode_frame(Frame(True, addr, Command.READ, tuple((k, str(v)) for k, v in values.items())))


def write_reply(addr: int, message: str) -> bytes:
    """``#01WR MSG=<message now displayed>*cs``."""
    return encode_frame(Frame(True, addr, Command.WRITE, (("MSG", message),)))


def nak_reply(addr: int, code: NakCode, field: str | None = None) -> bytes:
    """``#01NK 03 STATUS*cs``."""
    items: tuple[tuple[str, str | None], ...] = ((f"{int(code):02d}", None),)
    if field is not None and _FIELD_RE.match(field):
        items += ((field, None),)
    return encode_frame(Frame(True, addr, Command.NAK, items))


# ------------------------------------------------------------------------------------------- decoder
class FrameDecoder:
    """Incremental decoder: ``feed(chunk)`` → list of Frame / FrameError in arrival order.

    ``flush()`` ends the current frame (call it on a read timeout): an unfinished frame comes back
    as TruncatedFrame. ``pending`` is the number of buffered bytes of an unfinished frame.
    """

    __slots__ = ("_buf", "_garbage", "_skipping")

    def __init__(self) -> None:
        self._buf = bytearray()  # current frame, starting with its start byte (empty when idle)
        self._garbage = bytearray()
        self._skipping = False  # after an overlong frame: drop bytes up to the next start byte or CR

    @property
    def pending(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame | FrameError]:
        out: list[Frame | FrameError] = []
        buf = self._buf
        for b in data:
            if b in _STARTS:
                self._skipping = False
                if self._garbage:
                    out.append(GarbageBytes(bytes(self._garbage), "bytes before a start byte"))
                    self._garbage.clear()
                if buf:
                    out.append(TruncatedFrame(bytes(buf), "new start byte before CR"))
                buf.clear()
                buf.append(b)
            elif self._skipping:
                if b == CR:
                    self._skipping = False
            elif buf:
                buf.append(b)
                if b == CR:
                    out.append(self._complete(bytes(buf)))
                    buf.clear()
                elif len(buf) >= MAX_FRAME:
                    out.append(OverlongFrame(bytes(buf), f"no CR within {MAX_FRAME} bytes"))
                    buf.clear()
                    self._skipping = True
            elif b not in (LF, CR) or self._garbage:
                # CR/LF between frames are tolerated (a CRLF-terminating master); anything else is garbage
                self._garbage.append(b)
        return out

    def flush(self) -> list[FrameError]:
        out: list[FrameError] = []
        if self._garbage:
            out.append(GarbageBytes(bytes(self._garbage), "bytes outside a frame"))
            self._garbage.clear()
        if self._buf:
            out.append(TruncatedFrame(bytes(self._buf), "no CR before timeout"))
            self._buf.clear()
        self._skipping = False
        return out

    @staticmethod
    def _complete(raw: bytes) -> Frame | FrameError:
        try:
            return parse_frame(raw)
        except FrameError as exc:
            return exc
